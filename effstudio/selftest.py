"""`effstudio --self-test`: a headless check that an installation works.

Each check is a small, real use of the core: every registered model type is
built and takes one optimizer step, a checkpoint is written and read back, a
model is exported to ONNX and run in onnxruntime. The checks are yielded one
by one as :class:`Check` records (name, ok, seconds, detail), so the CLI can
print them as they finish and a frozen bundle can be checked the same way as a
source checkout. Everything is written to a temporary folder that is removed
afterwards; the user's data and cache folders are not touched.

The imports of the checks sit inside them, so a package missing from an
installation (a frozen bundle that left one out) fails its check and the report
goes on, instead of the self-test failing to start.

The window check lives in :mod:`effstudio.gui.selftest` (the core never imports
Qt); the CLI adds it when Qt can be imported.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from effstudio.engine.data import Batch
    from effstudio.engine.run_config import RunConfig
    from effstudio.registry import Entry
    from effstudio.tasks.base import TaskSpec

# A check raises on failure; a returned string is its detail line.
CheckFn = Callable[[], "str | None"]

# tiny sizes for the fields a model type happens to have: the whole self-test takes seconds
SMALL = {"d_model": 16, "layers": 1, "heads": 2, "ff_mult": 2}
BATCH, LENGTH, TARGET_LENGTH = 4, 12, 5
# extra checks injected by name (EFFSTUDIO_SELFTEST_FAIL=name[,name]): shows what a failure looks like
FAIL_ENV = "EFFSTUDIO_SELFTEST_FAIL"


@dataclass(frozen=True)
class Check:
    """The result of one check: ``detail`` says what was checked, or why it failed."""

    name: str
    ok: bool
    seconds: float
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SelfTestFailure(AssertionError):
    """A check found something wrong (as opposed to crashing)."""


def run_check(name: str, fn: CheckFn) -> Check:
    """Run one check, timing it; any exception becomes a failed check with a short reason."""
    start = time.perf_counter()
    try:
        if name in _injected_failures():
            raise SelfTestFailure(f"failure injected by {FAIL_ENV}")
        detail = fn() or ""
        ok = True
    except BaseException as err:  # noqa: BLE001 - a check must never take the report down with it
        if isinstance(err, KeyboardInterrupt):
            raise
        ok = False
        where = traceback.extract_tb(err.__traceback__)[-1:] if err.__traceback__ else []
        place = f" (at {Path(where[0].filename).name}:{where[0].lineno})" if where else ""
        detail = f"{type(err).__name__}: {str(err)[:300]}{place}"
    return Check(name, ok, round(time.perf_counter() - start, 3), detail)


def _injected_failures() -> set[str]:
    return {name.strip() for name in os.environ.get(FAIL_ENV, "").split(",") if name.strip()}


def environment() -> dict[str, str]:
    """What a bug report needs to know about this installation."""
    import numpy
    import torch

    info = {
        "effstudio": _version(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "frozen": "yes" if getattr(sys, "frozen", False) else "no",
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda or "none",
        "cuda_available": str(torch.cuda.is_available()),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = "missing"
    return info


def _version() -> str:
    import effstudio

    return effstudio.__version__


# ------------------------------------------------------------------ checks
def toy_specs() -> dict[str, TaskSpec]:
    """Task shapes every model type may read: token classification, LM, images, seq2seq."""
    from effstudio.tasks.base import TaskSpec

    vocab = ("<pad>",) + tuple(f"t{i}" for i in range(15))
    return {
        "classify": TaskSpec("selftest-classify", "classify", vocab, num_classes=4, max_length=512),
        "lm": TaskSpec("selftest-lm", "lm", vocab, num_classes=0, max_length=512),
        "image": TaskSpec("selftest-image", "classify", (), num_classes=4, max_length=8, channels=1, image_size=8),
        "seq2seq": TaskSpec("selftest-seq2seq", "seq2seq", vocab, num_classes=len(vocab),
                            max_length=TARGET_LENGTH, source_length=512),
    }


def _toy_batch(spec: TaskSpec, objective: str) -> Batch:
    import torch

    from effstudio.engine.data import Batch
    from effstudio.tasks.base import IGNORE_INDEX

    gen = torch.Generator().manual_seed(0)
    if spec.channels:
        images = torch.rand(BATCH, spec.channels, spec.image_size, spec.image_size, generator=gen)
        return Batch(images, torch.ones(BATCH, dtype=torch.bool), torch.randint(0, spec.num_classes, (BATCH,)))
    vocab = len(spec.vocab)
    lengths = torch.tensor([LENGTH, LENGTH - 3, 5, 2])[:BATCH]
    mask = torch.arange(LENGTH)[None, :] < lengths[:, None]  # (B, N) True = real token
    inputs = torch.randint(1, vocab, (BATCH, LENGTH), generator=gen).masked_fill(~mask, spec.pad_id)
    if objective == "classify":
        targets = torch.randint(0, spec.num_classes, (BATCH,), generator=gen)
    elif objective == "lm":
        targets = torch.roll(inputs, -1, dims=1).masked_fill(~mask, IGNORE_INDEX)
    else:  # seq2seq: (B, T) targets, ignored after each one's end
        targets = torch.randint(1, vocab, (BATCH, TARGET_LENGTH), generator=gen)
        targets[1, 3:] = IGNORE_INDEX
    return Batch(inputs, mask, targets)


def train_one_step(entry: Entry) -> str:
    """Build ``entry`` for the first toy task form it accepts and take one AdamW step."""
    import torch

    from effstudio.config import ConfigError, with_values
    from effstudio.engine.objective import forward_batch, task_loss
    from effstudio.models.base import ModelSpec
    from effstudio.registry import get_registry

    config = entry.default_config()
    names = {f.name for f in dataclasses.fields(config)}
    config = with_values(config, {k: v for k, v in SMALL.items() if k in names})
    kind = getattr(config, "attention", None)
    attention_config = get_registry().get("attention", kind).default_config() if kind else None
    refusals = []
    for form, spec in toy_specs().items():
        torch.manual_seed(0)
        try:
            model = entry.factory(config, ModelSpec(spec, attention_config))
        except ConfigError as err:
            refusals.append(f"{form}: {err}")
            continue
        objective = "seq2seq" if form == "seq2seq" else spec.objective
        batch = _toy_batch(spec, form)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        before = [p.detach().clone() for p in model.parameters()]
        loss = task_loss(forward_batch(model, batch, objective), batch.targets, objective)
        if not torch.isfinite(loss):
            raise SelfTestFailure(f"the loss is {loss.item()} on the {form} task form")
        loss.backward()
        optimizer.step()
        changed = sum(int(not torch.equal(a, b.detach())) for a, b in zip(before, model.parameters(), strict=True))
        if changed == 0:
            raise SelfTestFailure(f"one optimizer step changed no parameter ({form} task form)")
        params = sum(p.numel() for p in model.parameters())
        return f"{form} task form, loss {loss.item():.3f}, {params:,} parameters"
    raise SelfTestFailure("refuses every task form: " + "; ".join(refusals))


def _tiny_run_config() -> RunConfig:
    from effstudio.engine.run_config import RunConfig

    return RunConfig.create("transformer", "copy", {
        "model.d_model": 16, "model.layers": 1, "model.heads": 2, "model.dropout": 0.0,
        "model.attention": "sdpa",
        "task.train_size": 32, "task.val_size": 8, "task.test_size": 8, "task.max_length": 8,
        "train.steps": 1, "train.batch_size": 4, "train.device": "cpu",
    })


class _Workspace:
    """State shared between the checks of one self-test (the checkpoint feeds the export)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.checkpoint: Path | None = None


def check_checkpoint(ws: _Workspace) -> str:
    """Save a model as an effstudio checkpoint, load it back, and compare the outputs."""
    import torch

    from effstudio.engine.build import build_model, build_task
    from effstudio.engine.checkpoint import read_info, save_checkpoint
    from effstudio.engine.data import make_batch
    from effstudio.engine.loading import load_model

    config = _tiny_run_config()
    task = build_task(config)
    torch.manual_seed(0)
    model = build_model(config, task.spec).eval()
    path = save_checkpoint(ws.folder / "selftest.safetensors", model, config, step=1)
    info = read_info(path)
    if info.config.model_type != "transformer" or info.step != 1:
        raise SelfTestFailure(f"the header reads back as {info.config.model_type!r} step {info.step}")
    loaded, _, _ = load_model(path)
    split = task.split("val")
    batch = make_batch(split, torch.arange(min(4, len(split))), task.spec.pad_id)
    with torch.no_grad():
        diff = (model(batch.inputs, batch.mask).logits - loaded(batch.inputs, batch.mask).logits).abs().max().item()
    if diff != 0.0:
        raise SelfTestFailure(f"the reloaded model differs by {diff:.3g}")
    ws.checkpoint = path
    return f"{path.stat().st_size:,} bytes, outputs identical after reloading"


def check_onnx(ws: _Workspace) -> str:
    """Export the checkpoint's model to ONNX and run it in onnxruntime against PyTorch."""
    import torch

    from effstudio.compress.export import example_batch, export_onnx, run_session, session
    from effstudio.engine.loading import load_model

    if ws.checkpoint is None:
        raise SelfTestFailure("no checkpoint to export (the checkpoint check failed)")
    model, config, task = load_model(ws.checkpoint)
    split = task.split("val")
    example = example_batch(split, task.spec, 4)
    path = export_onnx(model, config, task.spec, example, ws.folder / "selftest.onnx")
    sess = session(path, threads=1)
    got = run_session(sess, example.inputs, example.mask)
    with torch.no_grad():
        want = model(example.inputs, example.mask).logits.numpy()
    diff = float(abs(got - want).max())
    if diff > 1e-4:
        raise SelfTestFailure(f"onnxruntime differs from PyTorch by {diff:.3g}")
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}, max difference {diff:.2g}"


def check_registry() -> str:
    from effstudio.registry import get_registry

    registry = get_registry()
    # a built-in entry that fails to load is a broken installation; a third-party plugin is only named
    builtin = [e for e in registry.errors if e.target.startswith("effstudio.")]
    if builtin:
        raise SelfTestFailure("; ".join(f"{e.name} ({e.group}): {e.message}" for e in builtin))
    counts = {kind: len(registry.names(kind)) for kind in ("models", "attention", "tasks")}
    if not all(counts.values()):
        raise SelfTestFailure(f"empty registry sections: {counts} (is the package metadata missing?)")
    detail = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    others = [e.name for e in registry.errors if not e.target.startswith("effstudio.")]
    return detail + (f"; plugins skipped: {', '.join(others)}" if others else "")


@contextmanager
def _private_dirs(folder: Path) -> Iterator[None]:
    """Point the data and cache folders at ``folder`` while the checks run."""
    names = ("EFFSTUDIO_DATA_DIR", "EFFSTUDIO_CACHE_DIR")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["EFFSTUDIO_DATA_DIR"] = str(folder / "data")
    os.environ["EFFSTUDIO_CACHE_DIR"] = str(folder / "cache")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_self_test(folder: Path | None = None,
                  extra: Sequence[tuple[str, Callable[[Path | None], str | None]]] = ()) -> Iterator[Check]:
    """Yield one :class:`Check` per check, in order; ``folder`` keeps the files (default: a temporary one).

    ``extra`` checks run last, each given the checkpoint written by the round-trip check
    (None when that failed): the CLI adds the window check this way.
    """
    with tempfile.TemporaryDirectory(prefix="effstudio-selftest-") as tmp:
        work = Path(folder) if folder is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ws = _Workspace(work)
        with _private_dirs(work):
            yield run_check("imports", _check_imports)
            yield run_check("registry", check_registry)
            from effstudio.registry import get_registry

            for entry in get_registry().all("models"):
                yield run_check(f"model {entry.name}", lambda e=entry: train_one_step(e))
            yield run_check("checkpoint round-trip", lambda: check_checkpoint(ws))
            yield run_check("onnx export", lambda: check_onnx(ws))
            for name, fn in extra:
                yield run_check(name, lambda fn=fn: fn(ws.checkpoint))
            for name in sorted(_injected_failures()):
                if name == "injected":  # a check that exists only to fail
                    yield run_check(name, lambda: None)


def _check_imports() -> str:
    import numpy  # noqa: F401
    import onnx
    import safetensors  # noqa: F401
    import torch

    x = torch.randn(8, 8)
    if not torch.allclose(x @ torch.eye(8), x):
        raise SelfTestFailure("torch matrix product is wrong")
    return f"torch {torch.__version__}, onnx {onnx.__version__}, {torch.get_num_threads()} threads"


def format_check(check: Check) -> str:
    mark = "PASS" if check.ok else "FAIL"
    return f"[{mark}] {check.name:<28} {check.seconds:6.2f}s  {check.detail}"
