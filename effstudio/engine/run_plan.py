"""A run config's compression steps, and the plan they make with its training.

A run config TOML may end with an array of ``[[compress]]`` tables, run in
order after training by ``effstudio train --config``::

    [[compress]]
    method = "prune"          # prune | quantize | export | distill
    prune = "heads"           # as `effstudio prune --method`
    amount = 0.5
    finetune_steps = 100

    [[compress]]
    method = "quantize"
    quantize = "dynamic-int8" # as `effstudio quantize --method`

    [[compress]]
    method = "export"
    format = "onnx"
    check = true              # as `effstudio export onnx --check`

Each step's options are those of its command (``--finetune-steps`` is
``finetune_steps``). Chaining: a step takes the newest *model* written before
it, that is, the output of the last prune or distill step, or the trained
checkpoint when there is none. Quantized files and ONNX exports are end
products (a quantizer takes float32 weights, ONNX cannot take torch int8
layers), so ``prune, quantize, export`` gives a pruned checkpoint, its int8
version and its ONNX export. Outputs go into the run folder with names that say
what they are (``checkpoint-pruned-heads-0.5.safetensors``,
``checkpoint-pruned-heads-0.5-dynamic-int8.safetensors``, ...), unless a step
names its ``out``: a file inside the run folder, relative to it. A run config is a
file people share, so its outputs never leave the run folder (no absolute path, no
``..``, no symbolic link that leads out) and never replace the run's own files (the
trained checkpoint and its training state, config.toml, events.jsonl); a step that
would is refused before training starts (:func:`check_outputs`). To write elsewhere,
run the step's command on the result with ``--out``.

The steps are not part of :class:`RunConfig`: a RunConfig is what a checkpoint
was trained with (its header stores it, a resume compares it); a
:class:`RunPlan` is a RunConfig plus what to do with the result.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import tomli_w

from effstudio.config import ConfigError, describe_kind, param, with_values
from effstudio.engine.pairing import check_pairing
from effstudio.engine.run_config import RunConfig, read_toml
from effstudio.engine.run_lock import LOCK_NAME
from effstudio.paths import allow_path, confine
from effstudio.registry import Registry

PRUNE_METHODS = ("magnitude", "global-magnitude", "heads", "neurons", "structured")
IMPORTANCE = ("magnitude", "gradient")  # how heads and neurons are ranked for structured pruning
QUANTIZE_METHODS = ("dynamic-int8", "fp16", "bf16", "onnx-int8", "onnx-int8-static")
EXPORT_FORMATS = ("onnx",)
TRAINED_NAME = "checkpoint.safetensors"  # the trainer's checkpoint file in a run folder
# the run folder's own files, which no step may write: what each one is, for messages
RUN_FILES = {TRAINED_NAME: "the trained checkpoint",
             "checkpoint.state.pt": "the trained checkpoint's training state",
             "config.toml": "the run's config", "events.jsonl": "the run's event log",
             LOCK_NAME: "the run folder's lock"}


def _out_param() -> Any:
    return param("", label="Output file", help="a file in the run folder, relative to it; empty: a descriptive "
                                                "name")


@dataclass(frozen=True)
class PruneStep:
    """`effstudio prune`: magnitude (per layer or global) or whole heads/neurons."""

    method: ClassVar[str] = "prune"
    artifact: ClassVar[str] = "pruned"
    prune: str = param("magnitude", choices=PRUNE_METHODS, label="Pruning method")
    amount: float = param(0.5, min=0.0, max=1.0, help="fraction to remove, in (0, 1)")
    importance: str = param("magnitude", choices=IMPORTANCE, help="how heads/neurons are ranked")
    finetune_steps: int = param(0, min=0, label="Fine-tuning steps", help="in all, spread over the schedule")
    schedule_steps: int = param(0, min=0, zero="auto", help="pruning steps on the cubic schedule (0: 4 with fine-tuning, else 1)")
    out: str = _out_param()

    def check(self) -> None:
        if not 0.0 < self.amount < 1.0:
            raise ConfigError("amount", f"must be between 0 and 1 (exclusive), got {self.amount}")

    def default_name(self, stem: str) -> str:
        return f"{stem}-pruned-{self.prune}-{self.amount:g}.safetensors"


@dataclass(frozen=True)
class QuantizeStep:
    """`effstudio quantize`: torch dynamic int8, fp16, bf16, onnxruntime int8 (dynamic or static)."""

    method: ClassVar[str] = "quantize"
    artifact: ClassVar[str] = "quantized"
    quantize: str = param("dynamic-int8", choices=QUANTIZE_METHODS, label="Quantization")
    calibration_batches: int = param(8, min=1, help="onnx-int8-static: training batches of 16 to calibrate on")
    out: str = _out_param()

    def check(self) -> None:
        if self.out and self.quantize.startswith("onnx") != self.out.lower().endswith(".onnx"):
            what = "an .onnx file" if self.quantize.startswith("onnx") else "a .safetensors checkpoint"
            raise ConfigError("out", f"{self.quantize} writes {what}; got {self.out!r}")

    def default_name(self, stem: str) -> str:
        return f"{stem}-{self.quantize}" + (".onnx" if self.quantize.startswith("onnx") else ".safetensors")


@dataclass(frozen=True)
class ExportStep:
    """`effstudio export onnx`: ONNX with dynamic batch and sequence axes."""

    method: ClassVar[str] = "export"
    artifact: ClassVar[str] = "onnx"
    format: str = param("onnx", choices=EXPORT_FORMATS)
    check: bool = param(False, label="Check", help="compare with PyTorch, evaluate and time in onnxruntime; a "
                                                   "failed parity check fails the step")
    out: str = _out_param()

    def validate_out(self) -> None:
        if self.out and not self.out.lower().endswith(".onnx"):
            raise ConfigError("out", f"the ONNX file name must end in .onnx, got {self.out!r}")

    def default_name(self, stem: str) -> str:
        return f"{stem}.onnx"


@dataclass(frozen=True)
class DistillStep:
    """`effstudio distill`: a new student trained to imitate the model (the teacher)."""

    method: ClassVar[str] = "distill"
    artifact: ClassVar[str] = "distilled"
    student_model: str = param("transformer", choices_from="models", label="Student model")
    steps: int = param(300, min=1)
    temperature: float = param(2.0, min=1e-6, help="softening temperature T")
    alpha: float = param(0.5, min=0.0, max=1.0, help="weight of the KL term")
    hidden_weight: float = param(0.0, min=0.0, help="weight of hidden-state matching when widths are equal")
    # student settings as `--set` takes them: "model.d_model=64"
    set: tuple[str, ...] = dataclasses.field(default=(), metadata={"setting": False})
    out: str = _out_param()

    def default_name(self, stem: str) -> str:
        return f"{stem}-distilled-{self.student_model}.safetensors"


CompressStep = PruneStep | QuantizeStep | ExportStep | DistillStep
STEP_TYPES: dict[str, type] = {cls.method: cls for cls in (PruneStep, QuantizeStep, ExportStep, DistillStep)}
MODEL_STEPS = ("prune", "distill")  # steps whose output is a float model that later steps take


def artifact_kind(result_method: str) -> str:
    """The run-store artifact kind of a compression job's output, from its ResultEvent's ``method``."""
    if result_method in PRUNE_METHODS:
        return "pruned"
    if result_method in QUANTIZE_METHODS:
        return "quantized"
    return {"onnx": "onnx", "distill": "distilled"}.get(result_method, "compressed")


# -------------------------------------------------------------------- parsing
def parse_step(data: Any, index: int) -> CompressStep:
    """One ``[[compress]]`` table; ``index`` counts from 1 and names the step in errors (``compress[2].amount``)."""
    where = f"compress[{index}]"
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"expected a table of settings, got {describe_kind(data)}")
    method = data.get("method")
    if method is None:
        raise ConfigError(f"{where}.method", f"missing: name the step ({', '.join(STEP_TYPES)})")
    cls = STEP_TYPES.get(method) if isinstance(method, str) else None
    if cls is None:
        raise ConfigError(f"{where}.method", f"must be one of {', '.join(STEP_TYPES)}; got {method!r}")
    values = {key: raw for key, raw in data.items() if key != "method"}
    student_settings: tuple[str, ...] = ()
    if cls is DistillStep and "set" in values:
        raw = values.pop("set")
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) and "=" in i for i in items):
            raise ConfigError(f"{where}.set", f"expected a list of \"key=value\" texts, got {describe_kind(raw)}")
        # the student learns the teacher's task on its data: a file may not point it at other data
        task_settings = [i for i in items if i.split("=", 1)[0].strip().startswith("task.")]
        if task_settings:
            raise ConfigError(f"{where}.set", f"{task_settings[0]!r}: the student takes the teacher's task and "
                                              "data; a run config's step cannot change task settings")
        student_settings = tuple(items)
    step = with_values(cls(), values, section=where)  # parses, range-checks and runs the step's check()
    if step.out:
        check_out_name(step.out, f"{where}.out")
    if isinstance(step, ExportStep):  # its `check` is the --check option, so its own test has another name
        try:
            step.validate_out()
        except ConfigError as err:
            raise ConfigError(f"{where}.{err.field}", err.message) from None
    return dataclasses.replace(step, set=student_settings) if student_settings else step


MAX_NAME_BYTES = 255  # the longest file name of the common file systems (ext4, APFS, NTFS in UTF-16 units)


def check_out_name(out: str, field: str) -> None:
    """A step's ``out`` as a run config may name it: a path relative to the run folder, inside it."""
    path = Path(out)
    if path.is_absolute() or path.drive or out.startswith("~"):
        raise ConfigError(field, f"{out!r} is outside the run folder: a run config's outputs go into the run "
                                 "folder, so name a file relative to it (to write elsewhere, run the step's "
                                 "command on the result with --out)")
    if ".." in path.parts:
        raise ConfigError(field, f"{out!r} climbs out of the run folder with '..': name a file inside it")
    if not path.name or out.endswith(("/", "\\")):
        raise ConfigError(field, f"{out!r} names a folder: name a file inside the run folder")
    hidden = [part for part in path.parts if part.startswith(".") and part != "."]
    if hidden:  # the run's lock and the temporary files of its saves are hidden names, and clean-up removes them
        raise ConfigError(field, f"{out!r} names a hidden file ({hidden[0]!r}): the run folder's hidden files are "
                                 "effstudio's own (its lock, unfinished saves); name a visible file")
    too_long = [part for part in path.parts if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES]
    if too_long:
        raise ConfigError(field, f"a name of {len(too_long[0].encode('utf-8', 'surrogatepass'))} bytes in "
                                 f"{describe_kind(out)} is longer than the {MAX_NAME_BYTES} bytes a file system "
                                 "takes")


def step_to_dict(step: CompressStep) -> dict[str, Any]:
    data: dict[str, Any] = {"method": step.method}
    for f in dataclasses.fields(step):
        value = getattr(step, f.name)
        if f.name in ("out", "set") and not value:
            continue
        data[f.name] = list(value) if isinstance(value, tuple) else value
    return data


def parse_steps(data: Any) -> tuple[CompressStep, ...]:
    """The ``compress`` array of a run config (``[[compress]]`` tables), checked as a chain."""
    if data is None:
        return ()
    if isinstance(data, Mapping):  # a single [compress] table
        data = [data]
    if not isinstance(data, (list, tuple)):
        raise ConfigError("compress", "expected [[compress]] tables (a list of steps)")
    steps = tuple(parse_step(item, i) for i, item in enumerate(data, start=1))
    check_chain(steps)
    return steps


# ------------------------------------------------------------------- chaining
@dataclass(frozen=True)
class PlannedStep:
    """A step with its place in the chain: what it reads and what it writes."""

    index: int  # from 1
    step: CompressStep
    source: Path
    out: Path


def chain(steps: Sequence[CompressStep], checkpoint: str | Path, run_dir: str | Path | None = None
          ) -> list[PlannedStep]:
    """Each step's input and output: the newest prune/distill output (or ``checkpoint``) in, a file out.

    Outputs go into ``run_dir`` (default: the checkpoint's folder); :func:`check_outputs` says
    whether they may be written.
    """
    checkpoint = Path(checkpoint)
    folder = Path(run_dir) if run_dir is not None else checkpoint.parent
    model = checkpoint
    planned = []
    for index, step in enumerate(steps, start=1):
        out = folder / (step.out or step.default_name(model.stem))  # check_outputs keeps it inside
        planned.append(PlannedStep(index, step, model, out))
        if step.method in MODEL_STEPS:
            model = out
    return planned


def check_chain(steps: Sequence[CompressStep]) -> None:
    """No two steps write the same file, and none writes one of the run's own files, by name
    (:func:`check_outputs` checks the paths the file system resolves, once the run folder is known)."""
    seen: dict[str, int] = {}
    for planned in chain(steps, Path(TRAINED_NAME)):
        key = os.path.normpath(planned.out)
        where = f"compress[{planned.index}].out"
        if key in RUN_FILES:
            raise ConfigError(where, f"is {RUN_FILES[key]}; name a new file")
        if key in seen:
            raise ConfigError(where, f"writes the same file ({planned.out.name}) as compress[{seen[key]}]; give one "
                                     "of them an out")
        seen[key] = planned.index


def steps_of_run_folder(run_dir: str | Path) -> tuple[CompressStep, ...]:
    """The compression steps a run folder's ``config.toml`` lists (none without a readable file):
    a resumed run runs them again on its final checkpoint, as the first try did on its own."""
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        return ()
    try:
        data = read_toml(path)
    except ConfigError:
        return ()
    try:
        return parse_steps(data.get("compress"))  # a step that escapes is refused
    except ConfigError as err:
        raise err.in_source(path) from None


def check_outputs(planned: Sequence[PlannedStep], checkpoint: str | Path, run_dir: str | Path | None = None,
                  named_by: str = "the run config") -> None:
    """Refuse (ConfigError) a chain that writes outside the run folder (through a symbolic link, an
    absolute path, ``..``) or over a file it must keep: the run's own files (the trained checkpoint,
    its training state, config.toml, events.jsonl, its lock), a step's input, another step's output. Paths
    are compared as the file system resolves them, so another spelling of a file is the same file."""
    checkpoint = Path(checkpoint)
    folder = Path(run_dir) if run_dir is not None else checkpoint.parent

    def key(path: Path) -> str:
        # folded, since a file system that ignores case (macOS, Windows) reads Config.toml as config.toml
        return os.path.normcase(str(path.expanduser().resolve())).casefold()

    kept = {key(folder / name): what for name, what in RUN_FILES.items()}
    kept[key(checkpoint)] = "the trained checkpoint"
    kept[key(checkpoint.with_name(checkpoint.stem + ".state.pt"))] = "the trained checkpoint's training state"
    for item in planned:
        field = f"compress[{item.index}].out"
        if item.step.out:
            check_out_name(item.step.out, field)
        named = str(item.out.relative_to(folder)) if item.out.is_relative_to(folder) else str(item.out)
        confine(named, folder, field, named_by, folder_is="the run folder")
        if item.out.is_dir():  # an output that is a folder fails at the write, after the training
            raise ConfigError(field, f"{named!r} in {named_by} is a folder ({item.out}); name a file")
        out = key(item.out)
        if out in kept:
            raise ConfigError(field, f"{named!r} in {named_by} would overwrite {kept[out]} ({item.out}); "
                                     "name a new file")
        if out == key(item.source):
            raise ConfigError(field, f"{named!r} in {named_by} is the step's own input ({item.out}); "
                                     "name a new file")
        kept[out] = f"the output of compress[{item.index}]"


# ----------------------------------------------------------------------- plan
@dataclass(frozen=True)
class RunPlan:
    """A run config file: the RunConfig to train, then the compression steps (possibly none).

    ``model_type``, ``task_name``, ``attention_kind`` and ``to_dict()`` read like a
    RunConfig's, so the run store records the whole plan as the run's config.
    """

    config: RunConfig
    compress: tuple[CompressStep, ...] = ()

    @property
    def model_type(self) -> str:
        return self.config.model_type

    @property
    def task_name(self) -> str:
        return self.config.task_name

    @property
    def attention_kind(self) -> str | None:
        return self.config.attention_kind

    def to_dict(self) -> dict[str, Any]:
        data = self.config.to_dict()
        if self.compress:
            data["compress"] = [step_to_dict(s) for s in self.compress]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], registry: Registry | None = None,
                  named_by: str | Path | None = None) -> RunPlan:
        if not isinstance(data, Mapping):
            raise ConfigError("config", f"expected a table of sections, got {describe_kind(data)}")
        config = RunConfig.from_dict({k: v for k, v in data.items() if k != "compress"}, registry, named_by)
        return cls(config, parse_steps(data.get("compress")))

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, path: str | Path, registry: Registry | None = None) -> RunPlan:
        """The plan a run config file holds; its path settings are named by the file (see
        RunConfig.check_paths), and a bad value's message names the file."""
        data = read_toml(path)
        try:
            return cls.from_dict(data, registry, named_by=path)
        except ConfigError as err:
            raise err.in_source(path) from None

    def with_config(self, config: RunConfig) -> RunPlan:
        return dataclasses.replace(self, config=config)

    def checked(self, run_dir: str | Path | None, source: str | Path | None = None) -> RunPlan:
        """The plan, checked before anything is trained or written (``train`` and the window's Start):
        its input paths (a path a file named stays in that file's folder) and, where there are steps,
        their outputs in the run folder ``run_dir`` (see check_outputs). ConfigError says what is wrong
        (naming ``source``, the file the steps come from, where known).

        The user's relative paths become absolute, and the checked inputs may be read by what follows
        in this process (the steps read the trained checkpoint's header, which names them)."""
        config = self.config.with_absolute_paths()
        check_pairing(config)  # a model that cannot take the task, before its data are built
        config.check_paths()
        if self.compress:
            if run_dir is None:
                raise ValueError("a plan with compression steps is checked against its run folder")
            trained = Path(run_dir) / TRAINED_NAME
            check_outputs(chain(self.compress, trained, run_dir), trained, run_dir,
                          str(source) if source is not None else "the run config")
        for value in config.input_paths().values():
            allow_path(value)
        return self.with_config(config)


def describe_step(step: CompressStep) -> str:
    """One line for a person: ``prune heads 0.5 (100 fine-tuning steps)``."""
    if isinstance(step, PruneStep):
        extra = f" ({step.finetune_steps} fine-tuning steps)" if step.finetune_steps else ""
        return f"prune {step.prune} {step.amount:g}{extra}"
    if isinstance(step, QuantizeStep):
        return f"quantize {step.quantize}"
    if isinstance(step, ExportStep):
        return f"export {step.format}" + (" (checked)" if step.check else "")
    return f"distill into {step.student_model} ({step.steps} steps)"
