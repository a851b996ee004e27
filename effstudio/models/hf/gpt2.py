"""GPT-2 and DistilGPT2 onto the causal `transformer`: pre-LN blocks, tanh GELU, a final LayerNorm.

GPT-2 stores its projections as Conv1D layers, whose weight is (in, out), the transpose
of a Linear's; the query, key and value projections are one (d, 3d) matrix, split here
into the block's q, k and v. The language-model head is the token embedding (tied): it is
kept as the token head (``token_logits``). The task's head reads the last real token, as
GPT2ForSequenceClassification does; its ``score`` layer (no bias) is kept when the file
has one, else a new head is added.
"""

from __future__ import annotations

from typing import Any

import torch

from effstudio.models.hf.base import (
    Converted,
    MappingError,
    StateBuilder,
    Tensors,
    activation,
    check_heads,
    ff_mult_of,
    labels_of,
    note_unused,
    setting,
)


def convert(config: dict[str, Any], tensors: Tensors) -> Converted:
    if config.get("scale_attn_by_inverse_layer_idx") or config.get("scale_attn_weights", True) is False:
        raise MappingError("config.json scales attention in a way effstudio's attention does not "
                           "(scale_attn_by_inverse_layer_idx / scale_attn_weights)")
    if config.get("add_cross_attention"):
        raise MappingError("config.json adds cross-attention to GPT-2; effstudio imports the decoder alone")
    width = setting(config, "n_embd", 768)
    heads = setting(config, "n_head", 12)
    check_heads(width, heads)
    # n_inner null (Hugging Face's default) or 0: four times the width
    hidden = (setting(config, "n_inner") if config.get("n_inner") is not None else 0) or 4 * width
    layers = setting(config, "n_layer", 12)
    converted = Converted("transformer", {}, "text", setting(config, "n_positions", 1024), labels_of(config))
    tensors.find_base(["transformer.", ""], "wte.weight")
    build = StateBuilder(tensors, converted)
    build.put("embed.weight", "wte.weight")
    build.put("positions.weight", "wpe.weight")
    for i in range(layers):
        theirs, ours = f"h.{i}.", f"blocks.{i}."
        build.norm(ours + "norm1", theirs + "ln_1")
        for part, index in (("q", 0), ("k", 1), ("v", 2)):
            build.put(f"{ours}{part}.weight", theirs + "attn.c_attn.weight",
                      transform=lambda w, i=index: _third(w, i, dim=1).T.contiguous())  # (d, 3d) -> (d, d)
            build.put(f"{ours}{part}.bias", theirs + "attn.c_attn.bias", transform=lambda b, i=index: _third(b, i))
        _conv1d(build, ours + "out", theirs + "attn.c_proj")
        build.norm(ours + "norm2", theirs + "ln_2")
        _conv1d(build, ours + "mlp.0", theirs + "mlp.c_fc")
        _conv1d(build, ours + "mlp.2", theirs + "mlp.c_proj")
    build.norm("norm", "ln_f")

    if tensors.has("score.weight", base=False):
        build.put("head.weight", "score.weight", base=False)
        converted.state["head.bias"] = torch.zeros(converted.state["head.weight"].shape[0])
        converted.sources["head.bias"] = "score (it has no bias: zeros)"
        converted.notes.append("kept the sequence-classification head (score, on the last real token)")
    else:
        converted.fresh.append("head")
        converted.notes.append(f"added a new classification head for {len(converted.labels)} labels on the last "
                               "real token, initialised at random (the checkpoint has none)")
    if tensors.has("lm_head.weight", base=False):
        name, weight = tensors.take("lm_head.weight", base=False)
        if config.get("tie_word_embeddings", True) is False and not torch.equal(weight, converted.state["embed.weight"]):
            converted.warnings.append(f"{name} is not tied to the token embedding; the token head uses the "
                                      "embedding, so its logits differ from this checkpoint's")
    converted.notes.append("the language-model head is the tied token embedding, kept as the token head")
    note_unused(tensors, converted, {})
    converted.model = {
        "d_model": width, "layers": layers, "heads": heads, "ff_mult": ff_mult_of(width, hidden),
        "dropout": float(setting(config, "resid_pdrop", 0.1, float)), "positions": "learned", "mode": "decoder",
        "pooling": "last", "attention": "sdpa", "norm_position": "pre",
        "activation": activation(config, "activation_function", "gelu_new"),
        "norm_eps": float(setting(config, "layer_norm_epsilon", 1e-5, float)), "ff_width": hidden,
        "vocab_size": setting(config, "vocab_size"), "token_head": "tied",
    }
    converted.attention = {"dropout": float(setting(config, "attn_pdrop", 0.1, float))}
    return converted


def _third(tensor: torch.Tensor, index: int, dim: int = 0) -> torch.Tensor:
    """The index-th of three equal parts of ``tensor`` along ``dim`` (c_attn holds q, k, v side by side)."""
    size = tensor.shape[dim] // 3
    return tensor.narrow(dim, index * size, size)


def _conv1d(build: StateBuilder, ours: str, theirs: str) -> None:
    """A Conv1D (weight (in, out)) as a Linear (weight (out, in))."""
    build.put(f"{ours}.weight", f"{theirs}.weight", transform=lambda w: w.T.contiguous())
    build.put(f"{ours}.bias", f"{theirs}.bias")
