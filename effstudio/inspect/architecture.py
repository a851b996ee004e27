"""A one-line description of the architecture a checkpoint holds.

In order of trust: effstudio's own header metadata; a Hugging Face style
config.json; then heuristics on tensor names and shapes (BERT, GPT-2, Llama,
T5, ViT naming, or any stack of numbered layers with an embedding table).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from effstudio.bounded_parse import loads_json
from effstudio.config import ConfigError
from effstudio.engine.checkpoint import header_step
from effstudio.engine.run_config import config_tables
from effstudio.inspect.tensors import Inspected

if TYPE_CHECKING:
    from pathlib import Path

ENCODERS = {"bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2",
            "camembert", "mpnet", "ernie", "xlm", "flaubert", "megatron-bert", "luke", "modernbert", "nomic_bert"}
DECODERS = {"gpt2", "gpt_neo", "gptj", "gpt_neox", "gpt_bigcode", "llama", "mistral", "mixtral", "qwen2",
            "qwen2_moe", "qwen3", "qwen3_moe", "phi", "phi3", "gemma", "gemma2", "gemma3_text", "falcon", "opt",
            "bloom", "mpt", "codegen", "starcoder2", "olmo", "olmo2", "stablelm", "cohere", "deepseek_v2",
            "deepseek_v3", "smollm3", "granite"}
ENCODER_DECODERS = {"t5", "mt5", "umt5", "bart", "mbart", "marian", "pegasus", "whisper", "m2m_100", "led",
                    "prophetnet", "bigbird_pegasus", "blenderbot", "longt5", "switch_transformers", "nllb-moe"}
VISION = {"vit", "deit", "beit", "dinov2", "vit_mae", "clip_vision_model", "siglip_vision_model", "dino", "swin"}

_LAYERS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "encoder_layers")
_HIDDEN = ("hidden_size", "n_embd", "d_model", "dim", "hidden_dim")
_HEADS = ("num_attention_heads", "n_head", "num_heads", "n_heads", "encoder_attention_heads")


def _first(config: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _layers(count: object) -> str:
    return f"{count} layer" if count == 1 else f"{count} layers"


def _join(head: str, parts: list[str]) -> str:
    return ", ".join([head, *parts])


def effstudio_header(metadata: Mapping[str, str], source: str | Path) -> tuple[dict[str, Any], int]:
    """The run config and step an effstudio header carries, through the bounded parser and the checks
    of :func:`config_tables` and :func:`header_step`; a bad one is a ConfigError naming ``source`` and
    the field. Settings are not checked against the registry: a file of a plugin that is not
    installed can still be inspected."""
    try:
        config = loads_json(metadata["config"], source=source, field="config")
        try:
            config_tables(config)
        except ConfigError as err:
            field = err.field if err.field == "config" else f"config: {err.field}"
            raise ConfigError(field, err.message) from None
        step = header_step(dict(metadata))
    except ConfigError as err:  # said as read_info says it, so every command names a header the same way
        raise ConfigError(f"header metadata {err.field}", err.message, str(source)) from None
    return dict(config), step


def describe_effstudio(metadata: Mapping[str, str]) -> str | None:
    try:
        config, _ = effstudio_header(metadata, "header")
        model = dict(config["model"])
    except (KeyError, TypeError, ValueError):  # not the config effstudio writes (a ConfigError too)
        return None
    if not isinstance(config.get("task", {}), dict):
        return None
    parts = []
    if "layers" in model:
        parts.append(_layers(model["layers"]))
    if "d_model" in model:
        parts.append(f"d_model {model['d_model']}")
    if "heads" in model:
        parts.append(f"{model['heads']} heads")
    if model.get("attention"):
        parts.append(f"{model['attention']} attention")
    task = config.get("task", {}).get("name") or metadata.get("task")
    if task:
        parts.append(f"task {task}")
    if metadata.get("step"):
        parts.append(f"step {metadata['step']}")
    return _join(f"effstudio {model.get('type', metadata.get('model_type', 'model'))}", parts)


def describe_config(config: Mapping[str, Any]) -> str | None:
    """From a Hugging Face style config.json."""
    model_type = str(config.get("model_type", "")).lower()
    architectures = config.get("architectures") or []
    text_config = config.get("text_config")
    if not _first(config, _LAYERS) and isinstance(text_config, Mapping):  # multimodal: describe the text tower
        config = {**text_config, "model_type": model_type}
    layers, hidden, heads = _first(config, _LAYERS), _first(config, _HIDDEN), _first(config, _HEADS)
    if model_type in ENCODERS:
        family, canonical = "BERT-like encoder", "bert"
    elif model_type in DECODERS:
        family, canonical = "GPT-like decoder", "gpt2"
    elif model_type in ENCODER_DECODERS:
        family, canonical = "encoder-decoder", ""
        decoder = _first(config, ("num_decoder_layers", "decoder_layers"))
        if layers and decoder:
            layers = f"{layers}+{decoder}"
    elif model_type in VISION:
        family, canonical = "ViT-like vision encoder", "vit"
    elif model_type or architectures:
        family, canonical = (model_type or str(architectures[0])), model_type
    else:
        return None
    if model_type and model_type != canonical:
        family += f" ({model_type})"
    parts = []
    if layers:
        parts.append(_layers(layers))
    if hidden:
        parts.append(f"hidden {hidden}")
    if heads:
        parts.append(f"{heads} heads")
    experts = _first(config, ("num_local_experts", "num_experts", "n_routed_experts"))
    if experts:
        parts.append(f"{experts} experts")
    if model_type in VISION:
        if config.get("image_size") and config.get("patch_size"):
            parts.append(f"image {config['image_size']}, patch {config['patch_size']}")
    elif isinstance(config.get("vocab_size"), int):
        parts.append(f"vocab {config['vocab_size']}")
    return _join(family, parts)


_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers?|blocks?|h|block|encoder\.layer|decoder\.layer)\.(\d+)\.")


def _layer_count(names: list[str], pattern: str) -> int:
    found = {int(m.group(1)) for name in names if (m := re.search(pattern, name))}
    return max(found) + 1 if found else 0


def _embedding(shapes: Mapping[str, tuple[int, ...]], hints: tuple[str, ...]) -> tuple[int, int] | None:
    for name, shape in shapes.items():
        if len(shape) == 2 and any(h in name for h in hints):
            return shape[0], shape[1]
    return None


def describe_names(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """Heuristics on tensor names and shapes."""
    names = list(shapes)
    if not names:
        return None

    def with_sizes(head: str, layers: int, embedding: tuple[int, int] | None, hidden: int | None = None) -> str:
        parts = [_layers(layers)] if layers else []
        if embedding:
            parts += [f"hidden {embedding[1]}", f"vocab {embedding[0]}"]
        elif hidden:
            parts.append(f"hidden {hidden}")
        return _join(head, parts)

    if any("encoder.layer." in n for n in names) and any("word_embeddings" in n for n in names):
        return with_sizes("BERT-like encoder", _layer_count(names, r"encoder\.layer\.(\d+)\."),
                          _embedding(shapes, ("word_embeddings",)))
    if any(re.search(r"(^|\.)h\.\d+\.attn\.", n) for n in names):
        return with_sizes("GPT-like decoder (gpt2)", _layer_count(names, r"(?:^|\.)h\.(\d+)\."),
                          _embedding(shapes, ("wte",)))
    if any(re.search(r"layers\.\d+\.self_attn\.q_proj", n) for n in names):
        return with_sizes("GPT-like decoder (llama)", _layer_count(names, r"layers\.(\d+)\."),
                          _embedding(shapes, ("embed_tokens",)))
    if any("encoder.block." in n for n in names) and any("decoder.block." in n for n in names):
        encoder = _layer_count(names, r"encoder\.block\.(\d+)\.")
        decoder = _layer_count(names, r"decoder\.block\.(\d+)\.")
        embedding = _embedding(shapes, ("shared", "embed_tokens"))
        parts = [f"{encoder}+{decoder} layers"] + ([f"hidden {embedding[1]}", f"vocab {embedding[0]}"]
                                                   if embedding else [])
        return _join("encoder-decoder (t5)", parts)
    if any("patch_embed" in n for n in names):
        patch = next((s for n, s in shapes.items() if "patch_embed" in n and len(s) == 4), None)
        count = _layer_count(names, _LAYER_INDEX.pattern)
        parts = [_layers(count)] if count else []
        if patch:
            parts += [f"hidden {patch[0]}", f"patch {patch[2]}"]
        return _join("ViT-like vision encoder", parts)
    layers = _layer_count(names, _LAYER_INDEX.pattern)
    attention = any(re.search(r"attn|attention|q_proj|query|qkv", n) for n in names)
    if layers and attention:
        embedding = _embedding(shapes, ("embed", "wte", "token", "word"))
        dims = Counter(d for s in shapes.values() if len(s) == 2 for d in s)
        hidden = dims.most_common(1)[0][0] if dims else None
        return with_sizes("Transformer", layers, embedding, hidden)
    convolutions = sum(1 for s in shapes.values() if len(s) == 4)
    if convolutions:
        return f"convolutional network, {convolutions} convolutions"
    if layers:
        return f"{_layers(layers)}, numbered"
    return None


def describe(inspected: Inspected) -> str:
    shapes = {t.name: t.shape for t in inspected.tensors}
    for text in (describe_effstudio(inspected.metadata) if inspected.is_effstudio else None,
                 describe_config(inspected.config) if inspected.config else None,
                 describe_names(shapes)):
        if text:
            return text
    if inspected.graph:
        top = ", ".join(f"{op} \u00d7{n}" for op, n in list(inspected.graph["operators"].items())[:4])
        return f"ONNX graph of {inspected.graph['nodes']} nodes" + (f" ({top})" if top else "")
    return "unrecognised" if inspected.tensors else "no tensors"
