"""`effstudio bench pretrained`: imported Hugging Face models against transformers, and made efficient.

Without ``--model`` every figure comes from random models built with
``transformers``' own config classes and saved with ``save_pretrained`` (nothing
is downloaded): one tiny model per architecture for the parity rows, and a
small BERT (``hidden`` wide, ``layers`` deep, 512 positions) for the timed rows.
With ``--model PATH`` that folder is used for every row after parity. Rows, each
a dict whose "kind" says what it measures:

- ``parity``: the largest absolute difference between the import and
  transformers (hidden states and logits) on a padded batch, per architecture;
- ``speed``: the imported model against transformers' eager implementation on
  the same weights, at batch 1 and ``big_batch`` x ``speed_length`` tokens;
- ``long``: the imported encoder with ``longformer`` (``window``) against its
  full attention at ``long_length`` tokens (positions grown by copying): time,
  and the peak memory of one forward pass, each measured in a fresh process;
- ``int8``: dynamic int8 of the imported encoder against float32 at batch 1,
  with the largest logit difference;
- ``onnx``: the imported encoder exported to ONNX, largest difference to PyTorch;
- ``finetune``: the Longformer-style conversion experiment on the shipped
  survey reports (the textclass sample, 1-4k tokens per document, the class
  needs the first and the last lines): an original model with a short position
  table (``original_length``) trained on the documents cut to its length, then
  either trained on for ``finetune_steps`` more at that length (the original,
  truncated) or converted to longformer at ``converted_length`` and trained for
  the same steps on the documents at that length; accuracy of both on the test
  documents longer than the original's positions. The original is trained here
  from scratch (no pretrained weights can be downloaded), so it stands for a
  pretrained model whose table is too short.

Pairs are timed alternately in one process (``repeats`` rounds, median and the
spread of the per-round ratios), so a load change on a shared machine hits both.
"""

from __future__ import annotations

import copy
import dataclasses
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from effstudio.compress.export import export_onnx, parity, session
from effstudio.config import ConfigError, param
from effstudio.engine.build import build_model, build_task
from effstudio.engine.data import Batch
from effstudio.engine.events import Event, JobControl, LogEvent
from effstudio.engine.loading import quantize_dynamic_int8
from effstudio.engine.memory import PeakMemory
from effstudio.engine.objective import evaluate
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import train
from effstudio.pretrained.check import TOLERANCE, compare, load_reference
from effstudio.pretrained.efficient import make_efficient
from effstudio.pretrained.importer import SUPPORTED, Imported, import_folder


@dataclass(frozen=True)
class PretrainedBenchSettings:
    model: str = param("", help="A Hugging Face folder for the timed rows (default: random models)", path="folder")
    architectures: tuple[str, ...] = field(default=SUPPORTED, metadata={"setting": False})
    hidden: int = param(256, min=8, help="Width of the random BERT timed without --model")
    layers: int = param(4, min=1, help="Blocks of the random BERT timed without --model")
    repeats: int = param(7, min=1, max=1000, help="Alternating rounds per timed pair")
    speed_length: int = param(128, min=2, help="Tokens per sequence of the speed rows")
    big_batch: int = param(32, min=1, help="The larger batch of the speed rows")
    long_length: int = param(4096, min=16, help="Tokens of the longformer-against-full row")
    window: int = param(256, min=1, help="Longformer window of that row")
    original_steps: int = param(200, min=1, help="Training steps of the conversion experiment's original")
    finetune_steps: int = param(40, min=0, help="Steps of the conversion experiment's fine-tune; 0 skips it")
    original_length: int = param(128, min=8, help="Positions of the experiment's original model")
    converted_length: int = param(4096, min=16, help="Maximum length after its conversion")
    threads: int = param(0, min=0, max=512, zero="default", help="CPU threads for the timed rows (0: PyTorch's default)")
    peak_memory: bool = param(True, help="Measure the long row's peak memory (one fresh process per kind)")
    part: str = param("all", choices=("all", "imports", "finetune"),
                      help="imports: the parity and timed rows; finetune: the conversion experiment alone")


@dataclass(frozen=True)
class PretrainedRowEvent(Event):
    kind: ClassVar[str] = "pretrained_row"
    row: dict[str, Any]


def require_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ConfigError("transformers", "the pretrained benchmark builds and compares with the transformers "
                                          "library, which is not installed (pip install 'effstudio[dev]')") from None
    return transformers


# ------------------------------------------------------------------ random models
def tiny_reference(architecture: str) -> Any:
    """A tiny random transformers model of ``architecture`` (with a sequence-classification head where the
    family has one), built from its own config class."""
    t = require_transformers()
    small = dict(num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=99,
                 max_position_embeddings=64, num_labels=3)
    image = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=16,
                 patch_size=4, num_labels=3)
    builders: dict[str, Callable[[], Any]] = {
        "bert": lambda: t.BertForSequenceClassification(t.BertConfig(hidden_size=32, **small)),
        "roberta": lambda: t.RobertaForSequenceClassification(t.RobertaConfig(hidden_size=32, **small)),
        "distilbert": lambda: t.DistilBertForSequenceClassification(t.DistilBertConfig(
            dim=32, n_layers=2, n_heads=4, hidden_dim=37, vocab_size=99, max_position_embeddings=64, num_labels=3)),
        "electra": lambda: t.ElectraForSequenceClassification(t.ElectraConfig(hidden_size=32, embedding_size=16,
                                                                               **small)),
        "albert": lambda: t.AlbertForSequenceClassification(t.AlbertConfig(hidden_size=32, embedding_size=16,
                                                                            **small)),
        "gpt2": lambda: t.GPT2ForSequenceClassification(t.GPT2Config(
            n_embd=32, n_layer=2, n_head=4, vocab_size=99, n_positions=64, num_labels=3, pad_token_id=0)),
        "vit": lambda: t.ViTForImageClassification(t.ViTConfig(**image)),
        "deit": lambda: t.DeiTForImageClassification(t.DeiTConfig(**image)),
    }
    torch.manual_seed(0)
    return builders[architecture]().eval()


def small_bert(hidden: int, layers: int) -> Any:
    """The random BERT classifier of the timed rows: ``hidden`` wide, 64-wide heads, 512 positions."""
    t = require_transformers()
    torch.manual_seed(0)
    config = t.BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(hidden // 64, 1),
                          intermediate_size=4 * hidden, vocab_size=8000, max_position_embeddings=512, num_labels=4)
    return t.BertForSequenceClassification(config).eval()


# ------------------------------------------------------------------ timing
def alternate(first: Callable[[], object], second: Callable[[], object], repeats: int
              ) -> tuple[float, float, list[float]]:
    """Median ms of ``first`` and of ``second`` timed in alternation after a warm-up of each, and every
    round's ratio second / first."""
    first(), second()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((first, times_a), (second, times_b)):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
    ratios = [b / a for a, b in zip(times_a, times_b, strict=True)]
    return statistics.median(times_a), statistics.median(times_b), ratios


def _spread(ratios: list[float]) -> list[float]:
    return [round(min(ratios), 3), round(max(ratios), 3)]


def _tokens(vocab: int, batch: int, length: int, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (B, N) that avoid the padding id, and a mask with the last row half padding."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(pad + 1, vocab, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.bool)
    if batch > 1:
        mask[-1, length // 2:] = False
    return ids.masked_fill(~mask, pad), mask


def _ours(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode():
            return model(ids, mask).logits
    return run


def _theirs(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> Callable[[], object]:
    attention_mask = mask.long()

    def run() -> object:
        with torch.inference_mode():
            return model(input_ids=ids, attention_mask=attention_mask).logits
    return run


# ------------------------------------------------------------------ rows
def parity_row(architecture: str, folder: Path) -> dict[str, Any]:
    try:
        imported = import_folder(folder)
        differences = compare(imported, load_reference(folder), batch=3, length=16)
    except (ConfigError, ValueError) as err:
        return {"kind": "parity", "architecture": architecture, "hidden": None, "logits": None,
                "tolerance": TOLERANCE, "ok": False, "error": str(err)}
    found = {d.output: d.max_abs for d in differences}
    return {"kind": "parity", "architecture": architecture, "hidden": found.get("hidden"),
            "logits": found.get("logits"), "tolerance": TOLERANCE,
            "ok": all(d.exact for d in differences), "error": None}


def speed_rows(imported: Imported, reference: Any, settings: PretrainedBenchSettings) -> list[dict[str, Any]]:
    vocab = min(reference.config.vocab_size, imported.model.embed.num_embeddings)
    rows = []
    for batch in (1, settings.big_batch):
        ids, mask = _tokens(vocab, batch, settings.speed_length, _pad_id(reference))
        ours_ms, theirs_ms, ratios = alternate(_ours(imported.model, ids, mask), _theirs(reference, ids, mask),
                                               settings.repeats)
        rows.append({"kind": "speed", "batch": batch, "length": settings.speed_length,
                     "effstudio_ms": round(ours_ms, 3), "transformers_eager_ms": round(theirs_ms, 3),
                     "ratio": round(theirs_ms / ours_ms, 3), "ratio_spread": _spread(ratios)})
    return rows


def long_row(folder: Path, settings: PretrainedBenchSettings) -> dict[str, Any]:
    """Longformer (window) against full attention at long_length: alternating time here, peak memory of
    one forward pass each in a fresh process (so that neither inherits the other's freed memory)."""
    full = _long_model(folder, "full", settings)
    longformer = _long_model(folder, "longformer", settings)
    ids, mask = _tokens(full.embed.num_embeddings, 1, settings.long_length)
    full_ms, long_ms, ratios = alternate(_ours(full, ids, mask), _ours(longformer, ids, mask),
                                         max(settings.repeats // 2, 1))
    del full, longformer
    full_mb = _peak_in_child(folder, "full", settings) if settings.peak_memory else None
    long_mb = _peak_in_child(folder, "longformer", settings) if settings.peak_memory else None
    return {"kind": "long", "length": settings.long_length, "window": settings.window,
            "full_ms": round(full_ms, 1), "longformer_ms": round(long_ms, 1),
            "speedup": round(full_ms / long_ms, 3), "speedup_spread": _spread([1 / r for r in ratios]),
            "full_peak_mb": full_mb, "longformer_peak_mb": long_mb,
            "memory_ratio": round(long_mb / full_mb, 3) if full_mb and long_mb is not None else None}


def _long_model(folder: Path, kind: str, settings: PretrainedBenchSettings) -> torch.nn.Module:
    imported = import_folder(folder)
    choice = {"attention": "longformer", "attention_settings": {"window": settings.window}} if kind == "longformer" \
        else {"attention": "full"}
    return make_efficient(imported.model, imported.config, max_length=settings.long_length, **choice).model


def _peak_in_child(folder: Path, kind: str, settings: PretrainedBenchSettings) -> float | None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_child_peak_mb, (str(folder), kind, asdict(settings)))


def _child_peak_mb(folder: str, kind: str, values: dict[str, Any]) -> float:
    """In a fresh process: the resident memory one forward pass adds at its peak (MB)."""
    settings = PretrainedBenchSettings(**{**values, "architectures": tuple(values["architectures"])})
    model = _long_model(Path(folder), kind, settings)
    ids, mask = _tokens(model.embed.num_embeddings, 1, settings.long_length)
    _ours(model, ids[:, :64], mask[:, :64])()  # thread pools and lazily created state before the baseline
    memory = PeakMemory(torch.device("cpu"))
    _ours(model, ids, mask)()
    return round(memory.peak_mb(), 1)


def int8_row(imported: Imported, settings: PretrainedBenchSettings) -> dict[str, Any]:
    model = imported.model
    quantized = quantize_dynamic_int8(model)
    ids, mask = _tokens(model.embed.num_embeddings, 1, settings.speed_length)
    float_ms, int8_ms, ratios = alternate(_ours(model, ids, mask), _ours(quantized, ids, mask), settings.repeats)
    batch_ids, batch_mask = _tokens(model.embed.num_embeddings, 8, settings.speed_length)
    with torch.inference_mode():
        gap = (model(batch_ids, batch_mask).logits - quantized(batch_ids, batch_mask).logits).abs().max()
    return {"kind": "int8", "batch": 1, "length": settings.speed_length, "float32_ms": round(float_ms, 3),
            "int8_ms": round(int8_ms, 3), "speedup": round(float_ms / int8_ms, 3),
            "speedup_spread": _spread([1 / r for r in ratios]), "max_logit_diff": float(gap)}


def onnx_row(imported: Imported, folder: Path) -> dict[str, Any]:
    spec = build_task(imported.config, saved=imported.task_data).spec
    vocab = imported.model.embed.num_embeddings
    ids, mask = _tokens(vocab, 4, min(32, spec.max_length))
    example = Batch(ids, mask, torch.zeros(4, dtype=torch.long))
    path = export_onnx(imported.model, imported.config, spec, example, folder / "imported.onnx")
    short_ids, short_mask = _tokens(vocab, 1, min(17, spec.max_length))
    batches = [example, Batch(short_ids, short_mask, torch.zeros(1, dtype=torch.long))]
    gap = parity(imported.model, session(path), batches)
    return {"kind": "onnx", "max_abs_diff": gap, "tolerance": TOLERANCE, "ok": gap <= TOLERANCE}


def _pad_id(reference: Any) -> int:
    pad = getattr(reference.config, "pad_token_id", None)
    return pad if isinstance(pad, int) else 0


# ------------------------------------------------------------------ fine-tune experiment
def experiment_config(settings: PretrainedBenchSettings, steps: int) -> RunConfig:
    """The original: a small pre-LN transformer on the survey reports, documents cut to its positions."""
    return RunConfig.create("transformer", "textclass", {
        "model.d_model": 64, "model.layers": 2, "model.heads": 4, "model.ff_mult": 2, "model.dropout": 0.1,
        "model.attention": "sdpa", "model.pooling": "cls",
        "task.max_length": settings.original_length, "task.vocab_size": 2000, "task.truncation": "head",
        "train.steps": steps, "train.batch_size": 16, "train.lr": 1e-3, "train.warmup_steps": min(10, steps - 1),
        "train.eval_every": max(steps, 1), "train.attention_every": 0, "train.device": "cpu",
        "train.seed": 0})


def finetune_row(settings: PretrainedBenchSettings, control: JobControl) -> Iterator[Event]:
    steps = settings.finetune_steps
    config = experiment_config(settings, settings.original_steps)
    task = build_task(config)
    torch.manual_seed(0)
    yield LogEvent("info", f"conversion experiment: training the original ({settings.original_length} positions, "
                           f"{settings.original_steps} steps)")
    original = _trained(config, task, None, control)
    # the original, trained on for as many steps at its own length (documents cut to it)
    more = _trained(config.with_overrides({"train.steps": steps, "train.eval_every": steps}), task, original, control)
    converted = make_efficient(original, config, attention="longformer",
                               attention_settings={"window": 64, "global_tokens": "0"},
                               max_length=settings.converted_length)
    long_config = converted.config.with_overrides({"train.steps": steps, "train.batch_size": 4, "train.lr": 5e-4,
                                                   "train.eval_every": steps})
    long_task = build_task(long_config)
    yield LogEvent("info", f"conversion experiment: fine-tuning the longformer conversion "
                           f"({settings.converted_length} positions, {steps} steps)")
    tuned = _trained(long_config, long_task, converted.model, control)
    short_split, long_split = task.split("test"), long_task.split("test")
    if not torch.equal(short_split.targets, long_split.targets):
        raise RuntimeError("the two lengths' test splits hold different documents")
    longer = (long_split.inputs != long_task.spec.pad_id).sum(dim=1) > settings.original_length  # (S,)
    keep = torch.nonzero(longer).flatten()
    short_kept = dataclasses.replace(short_split, inputs=short_split.inputs[keep], targets=short_split.targets[keep])
    long_kept = dataclasses.replace(long_split, inputs=long_split.inputs[keep], targets=long_split.targets[keep])
    _, original_accuracy = evaluate(more, short_kept, task.spec.pad_id, "classify", 8, torch.device("cpu"))
    _, converted_accuracy = evaluate(tuned, long_kept, long_task.spec.pad_id, "classify", 4, torch.device("cpu"))
    yield PretrainedRowEvent({
        "kind": "finetune", "documents": int(len(keep)), "original_length": settings.original_length,
        "converted_length": settings.converted_length, "original_steps": settings.original_steps,
        "finetune_steps": steps,
        "original_truncated_accuracy": round(original_accuracy, 4),
        "converted_accuracy": round(converted_accuracy, 4), "notes": converted.notes})


def _trained(config: RunConfig, task: Any, model: torch.nn.Module | None, control: JobControl) -> torch.nn.Module:
    """A copy of ``model`` (default: one built from the config) trained in memory for the config's steps."""
    module = copy.deepcopy(model) if model is not None else build_model(config, task.spec)
    for _ in train(config, control=control, model=module, keep_checkpoints=False, task=task):
        pass
    return module.eval()


# ------------------------------------------------------------------ the whole run
def run_pretrained_bench(settings: PretrainedBenchSettings, control: JobControl | None = None) -> Iterator[Event]:
    control = control or JobControl()
    require_transformers()
    previous_threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        with tempfile.TemporaryDirectory(prefix="effstudio-bench-pretrained-") as root:
            root_path = Path(root)
            if settings.part == "finetune":
                yield from finetune_row(settings, control)
                return
            for architecture in settings.architectures:
                if control.stop_requested:
                    return
                folder = root_path / architecture
                tiny_reference(architecture).save_pretrained(folder)
                yield PretrainedRowEvent(parity_row(architecture, folder))
            if settings.model:
                folder = Path(settings.model).expanduser()
                yield LogEvent("info", f"timed rows on {folder}")
            else:
                folder = root_path / "small-bert"
                small_bert(settings.hidden, settings.layers).save_pretrained(folder)
                yield LogEvent("info", f"timed rows on a random BERT ({settings.layers} blocks, width "
                                       f"{settings.hidden}, 512 positions)")
            imported = import_folder(folder)
            reference = load_reference(folder)
            for row in speed_rows(imported, reference, settings):
                yield PretrainedRowEvent(row)
            del reference
            if control.stop_requested:
                return
            yield PretrainedRowEvent(long_row(folder, settings))
            yield PretrainedRowEvent(int8_row(imported, settings))
            yield PretrainedRowEvent(onnx_row(imported, root_path))
            if settings.part == "all" and settings.finetune_steps and not control.stop_requested:
                yield from finetune_row(settings, control)
    finally:
        torch.set_num_threads(previous_threads)


def pretrained_report(settings: PretrainedBenchSettings, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``--json`` record: settings and rows."""
    values = asdict(settings)
    values["architectures"] = list(settings.architectures)
    return {"settings": values, "threads": settings.threads or torch.get_num_threads(), "rows": rows}
