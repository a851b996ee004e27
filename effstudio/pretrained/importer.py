"""A Hugging Face folder imported exactly onto an effstudio model type, and saved as an ordinary checkpoint.

``import_folder`` reads the folder (hf_folder: safety rules, shards, tokenizer), maps
config.json and the tensors onto effstudio's own model (effstudio.models.hf, one
module per family), builds that model through the engine like any other and loads
the tensors, each checked against the shape the config implies. Anything wrong is one
ConfigError line; nothing is written until ``save_imported``.

The task each architecture gets, so that every section works on the checkpoint:

- text encoders (BERT, RoBERTa, DistilBERT, ELECTRA, ALBERT) and GPT-2: ``textclass``
  with the folder's tokenizer (stored beside the checkpoint as ``<name>.tokenizer.json``,
  the task's own file) and config.json's labels, ``max_length`` = the model's positions.
  GPT-2 runs as a causal decoder classifying from its last real token (as
  GPT2ForSequenceClassification does); its language-model head is the tied embedding,
  kept as the token head.
- ViT and DeiT: ``imagefolder`` in RGB at the model's image size, config.json's labels
  kept as its class names (the folder is read when images are asked for). effstudio's images are
  in [0, 1]; the image processor's normalisation ((x - mean) / std, from
  preprocessor_config.json) is folded into the patch projection, so the model reads
  them as they are.

A folder without a tokenizer is imported with an id tokenizer (token i is written "i"):
a warning says so, and views show ids instead of text.

``task_settings`` point the task at the user's data (``path`` of a textclass table,
``folder`` of images, and the task's other settings): the data's labels become the
task's label map. A pretrained classifier whose labels are the data's (in any order)
is kept, its rows put in the data's order; otherwise a new head sized by the data's
labels replaces it. Without them the task reads the shipped sample and the labels are
config.json's id2label, so the sections that evaluate on data want them (or a fine-tune).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn

from effstudio.config import ConfigError, with_values
from effstudio.engine.build import build_model
from effstudio.engine.checkpoint import save_checkpoint
from effstudio.engine.run_config import RunConfig
from effstudio.models.hf import FAMILIES
from effstudio.models.hf.base import Converted, MappingError, Tensors
from effstudio.pretrained.hf_folder import CONFIG, FolderError, HFFolder, read_folder
from effstudio.registry import get_registry
from effstudio.tasks.base import SavedTaskData, TaskSpec
from effstudio.tasks.imagefolder import CLASSES_KEY, ImageFolderTask
from effstudio.tasks.textclass import LABELS_KEY, SOURCE_KEY, TOKENIZER_FILE, TextClassTask
from effstudio.tasks.tokenizer import TextTokenizer

SUPPORTED = ("bert", "roberta", "distilbert", "electra", "albert", "gpt2", "vit", "deit")
TEXT_TASK, IMAGE_TASK = "textclass", "imagefolder"
# header entry of an imported checkpoint (and of what is converted from it): the architecture it came from
PRETRAINED_SOURCE_KEY = "effstudio.pretrained.source"
# ViTImageProcessor's defaults, when a folder has no preprocessor_config.json
DEFAULT_IMAGE_MEAN = DEFAULT_IMAGE_STD = 0.5


@dataclass
class Imported:
    model: nn.Module  # an effstudio model, eval mode, float32
    config: RunConfig  # an ordinary run config (model type, attention, task and its settings)
    task_data: SavedTaskData | None  # the tokenizer (and labels) stored beside the checkpoint
    architecture: str  # "bert", "roberta", "gpt2", "vit", ...
    notes: list[str]  # what was mapped how (heads kept / added, tied weights ...)
    warnings: list[str]  # e.g. no tokenizer: ids are shown instead of text
    new_parts: list[str] = field(default_factory=list)  # modules the import added at random (a new head)
    # an image model's (mean, std) per channel, folded into its patch projection (the check feeds the
    # reference normalised pixels)
    image_normalisation: tuple[list[float], list[float]] | None = None


def import_folder(path: Path, *, task_settings: dict[str, Any] | None = None) -> Imported:
    """The model of the Hugging Face folder (or weights file beside a config.json) ``path``, its task
    reading the data ``task_settings`` name (see the module docstring); ConfigError with one line on
    bad input."""
    folder = read_folder(Path(path))
    architecture = folder.config.get("model_type")
    if architecture not in SUPPORTED:
        shown = repr(architecture) if isinstance(architecture, str) else "missing"
        raise FolderError(f"model_type {shown} is not an architecture effstudio imports; it imports "
                          f"{', '.join(SUPPORTED)}", folder.path / CONFIG)
    tensors = Tensors(folder.weights)
    try:
        converted = FAMILIES[architecture](folder.config, tensors)
    except MappingError as err:
        source = folder.weight_files[0] if str(err).startswith("tensor ") else folder.path / CONFIG
        raise FolderError(f"weights do not match config.json: {err}" if str(err).startswith("tensor ")
                          else str(err), source) from None
    _check_model_settings(converted, folder)
    notes, warnings = list(converted.notes), list(converted.warnings)
    settings = _task_settings(task_settings or {}, converted)
    if converted.task == "image":
        spec, task_data, overrides = _image_task(folder, converted, notes, settings)
    else:
        spec, task_data, overrides = _text_task(folder, converted, notes, warnings, settings)
    overrides.update({f"model.{key}": value for key, value in converted.model.items()})
    overrides.update({f"attention.{key}": value for key, value in converted.attention.items()})
    config = RunConfig.create(converted.model_type, IMAGE_TASK if converted.task == "image" else TEXT_TASK,
                              overrides)
    model = _loaded_model(config, spec, converted, folder)
    normalisation = None if converted.image is None else (converted.image[2], converted.image[3])
    return Imported(model, config, task_data, architecture, notes, warnings, list(converted.fresh), normalisation)


def _check_model_settings(converted: Converted, folder: HFFolder) -> None:
    """config.json's values as the model type's settings, checked as `--set` values are, before anything is sized
    by them (an id tokenizer of vocab_size tokens, the embedding, the model)."""
    try:
        with_values(get_registry().get("models", converted.model_type).default_config(), converted.model,
                    section="model")
    except ConfigError as err:
        raise err.in_source(folder.path / CONFIG) from None


def save_imported(imported: Imported, out: Path) -> Path:
    """Write the imported model as an ordinary checkpoint at ``out``, its tokenizer and labels beside it."""
    out = Path(out)
    # the data named from here, wherever the checkpoint goes; the tokenizer as the task file beside it
    config = imported.config.with_absolute_paths()
    return save_checkpoint(out, imported.model, config, step=0, task_data=imported.task_data,
                           extra_metadata={PRETRAINED_SOURCE_KEY: imported.architecture})


# ---------------------------------------------------------------------- tasks
# settings the model fixes: its positions, its image size, its own tokenizer
_FIXED = {"text": ("max_length", "tokenizer", "tokenizer_path"), "image": ("image_size", "color")}


def _task_settings(settings: dict[str, Any], converted: Converted) -> dict[str, Any]:
    """``task.NAME`` -> value, refusing the settings the pretrained model fixes."""
    found = {}
    for key, value in settings.items():
        name = key.removeprefix("task.")
        if name in _FIXED[converted.task]:
            hint = " (grow it with --max-length)" if name == "max_length" else ""
            raise ConfigError(f"task.{name}", f"fixed by the pretrained model{hint}")
        found[f"task.{name}"] = value
    return found


def _fit_head(converted: Converted, labels: list[str], notes: list[str]) -> None:
    """Make the classification head answer for ``labels`` (the data's): rows reordered when the checkpoint's
    labels are the same set, else a new head sized by them."""
    if labels == converted.labels or "head" in converted.fresh:
        converted.labels = labels
        return
    heads = [name for name in ("head", "distillation_head") if f"{name}.weight" in converted.state]
    if sorted(labels) == sorted(converted.labels):
        order = [converted.labels.index(label) for label in labels]
        for name in heads:
            for part in ("weight", "bias"):
                converted.state[f"{name}.{part}"] = converted.state[f"{name}.{part}"][order]
        notes.append("the classifier's rows are put in the data's label order")
    else:
        for name in heads:
            for part in ("weight", "bias"):
                del converted.state[f"{name}.{part}"]
            converted.fresh.append(name)
        notes.append(f"the data's labels ({', '.join(labels[:5])}) are not the checkpoint's "
                     f"({', '.join(converted.labels[:5])}): a new head for {len(labels)} labels, initialised at "
                     "random, replaces its classifier")
    converted.labels = labels


def _text_task(folder: HFFolder, converted: Converted, notes: list[str], warnings: list[str],
               settings: dict[str, Any]) -> tuple[TaskSpec, SavedTaskData, dict[str, Any]]:
    tokenizer = folder.tokenizer
    rows = converted.model["vocab_size"]
    overrides: dict[str, Any] = {"task.max_length": converted.max_length, "task.tokenizer": "file",
                                 "task.tokenizer_path": TOKENIZER_FILE, **settings}
    if settings:
        if tokenizer is None:
            raise FolderError(f"reading your documents needs the model's tokenizer, and the folder has none "
                              f"({folder.tokenizer_problem})", folder.path)
        config = RunConfig.create("transformer", TEXT_TASK, {**overrides, "task.tokenizer_path": str(folder.path)})
        task = TextClassTask(config.task)  # reads the data: its labels, encoded with the model's tokenizer
        _fit_head(converted, list(task.label_names), notes)
        notes.extend(f"data: {line}" for line in task.notes())
    if tokenizer is None:
        tokenizer = id_tokenizer(rows, folder.config)
        warnings.append(f"no usable tokenizer ({folder.tokenizer_problem}): imported with an id tokenizer, so "
                        "views show token ids instead of text")
    if tokenizer.vocab_size > rows:
        _grow_vocabulary(converted, tokenizer.vocab_size)
        notes.append(f"the tokenizer has {tokenizer.vocab_size - rows} tokens the embedding lacks (special tokens "
                     f"effstudio adds): {rows} -> {tokenizer.vocab_size} rows, the new ones the mean of the others")
    source = json.dumps(task.source()) if settings else json.dumps(
        {"path": str(folder.path), "files": [f.name for f in folder.weight_files]})
    saved = SavedTaskData({LABELS_KEY: json.dumps(converted.labels), SOURCE_KEY: source},
                          {TOKENIZER_FILE: tokenizer.to_json().encode("utf-8")})
    config = RunConfig.create("transformer", TEXT_TASK, overrides).task
    return TextClassTask.from_saved(config, saved).spec, saved, overrides


def _image_task(folder: HFFolder, converted: Converted, notes: list[str], settings: dict[str, Any]
                ) -> tuple[TaskSpec, SavedTaskData, dict[str, Any]]:
    channels, size, _, _ = converted.image
    if channels != 3:
        raise FolderError(f"num_channels is {channels}; effstudio's image tasks read RGB (3) or grey (1) images "
                          "and import RGB models", folder.path / CONFIG)
    mean, std = _normalisation(folder, channels, notes)
    _fold_normalisation(converted, mean, std)
    converted.image = (channels, size, mean, std)
    overrides = {"task.image_size": size, "task.color": "rgb", **settings}
    if settings:
        task = ImageFolderTask(RunConfig.create("vit", IMAGE_TASK, overrides).task)  # the data's classes
        _fit_head(converted, list(task.spec.class_names), notes)
    saved = SavedTaskData({CLASSES_KEY: json.dumps(converted.labels)})
    config = RunConfig.create("vit", IMAGE_TASK, overrides).task
    return ImageFolderTask.from_saved(config, saved).spec, saved, overrides


def _normalisation(folder: HFFolder, channels: int, notes: list[str]) -> tuple[list[float], list[float]]:
    settings = folder.preprocessor or {}
    if not settings:
        notes.append("no preprocessor_config.json: images normalised with mean 0.5 and std 0.5 per channel "
                     "(the ViT image processor's defaults)")
    if settings.get("do_normalize", True) is False:
        return [0.0] * channels, [1.0] * channels
    values = []
    for key, default in (("image_mean", DEFAULT_IMAGE_MEAN), ("image_std", DEFAULT_IMAGE_STD)):
        value = settings.get(key, [default] * channels)
        if isinstance(value, (int, float)):
            value = [value] * channels
        if not (isinstance(value, list) and len(value) == channels and all(
                _finite_number(v) for v in value)):
            raise FolderError(f"{key} is not {channels} finite numbers", folder.path / "preprocessor_config.json")
        values.append([float(v) for v in value])
    if any(s <= 0 for s in values[1]):
        raise FolderError("image_std holds a value <= 0", folder.path / "preprocessor_config.json")
    return values[0], values[1]


def _fold_normalisation(converted: Converted, mean: list[float], std: list[float]) -> None:
    """Make the patch projection read [0, 1] pixels: conv((x - m) / s) = conv'(x), with weights W / s and
    bias b - sum(W m / s) (per input channel c)."""
    weight = converted.state["patches.project.weight"]  # (d, C, p, p)
    bias = converted.state["patches.project.bias"]  # (d,)
    m = torch.tensor(mean, dtype=torch.float64)[None, :, None, None]
    s = torch.tensor(std, dtype=torch.float64)[None, :, None, None]
    scaled = weight.double() / s
    converted.state["patches.project.weight"] = scaled.to(weight.dtype)
    converted.state["patches.project.bias"] = (bias.double() - (scaled * m).sum(dim=(1, 2, 3))).to(bias.dtype)


def id_tokenizer(rows: int, config: dict[str, Any]) -> TextTokenizer:
    """A tokenizer whose token i is written as the number i (for a folder without a tokenizer)."""
    vocab = {str(i): i for i in range(rows)}
    pad = config.get("pad_token_id")
    if isinstance(pad, int) and 0 <= pad < rows:
        vocab = {("[PAD]" if i == pad else token): i for token, i in vocab.items()}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[PAD]" if "[PAD]" in vocab else "0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return TextTokenizer(tokenizer)


def _grow_vocabulary(converted: Converted, rows: int) -> None:
    """Append embedding rows (and masked-LM decoder biases) up to ``rows``, each the mean of the existing ones."""
    embed = converted.state["embed.weight"]  # (V, e)
    extra = rows - embed.shape[0]
    grown = torch.cat([embed, embed.mean(dim=0, keepdim=True).expand(extra, -1)])
    converted.state["embed.weight"] = grown
    if "token_head.decoder.weight" in converted.state:
        converted.state["token_head.decoder.weight"] = grown
        bias = converted.state["token_head.decoder.bias"]
        converted.state["token_head.decoder.bias"] = torch.cat([bias, bias.mean().expand(extra)])
    converted.model["vocab_size"] = rows


# ---------------------------------------------------------------------- the model
def _loaded_model(config: RunConfig, spec: TaskSpec, converted: Converted, folder: HFFolder) -> nn.Module:
    """Build the config's model (fresh parts seeded by train.seed) and load the converted tensors into it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        model = build_model(config, spec, training=False, named_by=folder.path / CONFIG)
    expected = model.state_dict()
    state = {}
    for name, tensor in expected.items():
        if name in converted.state:
            given = converted.state[name]
            if tuple(given.shape) != tuple(tensor.shape):
                raise FolderError(f"weights do not match config.json: {converted.sources.get(name, name)} has "
                                  f"shape {tuple(given.shape)}, config.json implies {tuple(tensor.shape)}",
                                  folder.weight_files[0])
            state[name] = given.to(torch.float32)
        elif any(name == fresh or name.startswith(fresh + ".") for fresh in converted.fresh):
            state[name] = tensor
        else:
            raise FolderError(f"weights do not match config.json: nothing in the file gives {name}",
                              folder.weight_files[0])
    model.load_state_dict(state)
    return model.float().eval()


def _finite_number(value: Any) -> bool:
    """A JSON number a float can hold: not a bool, NaN, an infinity or an integer of hundreds of digits."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False
