"""ALBERT onto the `universal` model: one shared post-LN block applied a fixed number of times.

ALBERT shares one layer across its depth: the Universal Transformer with halting off
(``max_steps`` = num_hidden_layers, positions added once, no step embeddings). Its
embeddings are factorised: ``embedding_size`` wide, normalised, then projected to the
hidden width (embedding_hidden_mapping_in). Heads kept: sequence classification
(pooler dense + tanh, classifier) and masked LM (dense to the embedding width,
activation, LayerNorm, decoder tied to the token embedding). Only one layer group of
one layer is imported (every published ALBERT).
"""

from __future__ import annotations

from typing import Any

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

MAX_STEPS = 64  # the universal model's bound on repeated applications


def convert(config: dict[str, Any], tensors: Tensors) -> Converted:
    if setting(config, "num_hidden_groups", 1) != 1 or setting(config, "inner_group_num", 1) != 1:
        raise MappingError("config.json's num_hidden_groups / inner_group_num: effstudio imports ALBERTs that "
                           "share one layer (1 group of 1 layer)")
    kind = config.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise MappingError(f"config.json's position_embedding_type {kind!r}: effstudio imports absolute positions")
    width = setting(config, "hidden_size", 4096)
    heads = setting(config, "num_attention_heads", 64)
    check_heads(width, heads)
    embed = setting(config, "embedding_size", 128)
    hidden = setting(config, "intermediate_size", 16384)
    steps = setting(config, "num_hidden_layers", 12)
    if not 1 <= steps <= MAX_STEPS:
        raise MappingError(f"config.json's num_hidden_layers {steps}: the shared block runs 1 to {MAX_STEPS} times")
    converted = Converted("universal", {}, "text", setting(config, "max_position_embeddings", 512),
                          labels_of(config))
    tensors.find_base(["albert.", ""], "embeddings.word_embeddings.weight")
    build = StateBuilder(tensors, converted)
    build.put("embed.weight", "embeddings.word_embeddings.weight")
    build.put("positions.weight", "embeddings.position_embeddings.weight")
    types = setting(config, "type_vocab_size", 2)
    if types:
        build.put("token_type.weight", "embeddings.token_type_embeddings.weight")
    build.norm("embed_norm", "embeddings.LayerNorm")
    if embed != width:
        build.linear("embed_project", "encoder.embedding_hidden_mapping_in")
    layer = "encoder.albert_layer_groups.0.albert_layers.0."
    for mine, theirs in (("q", "attention.query"), ("k", "attention.key"), ("v", "attention.value"),
                         ("out", "attention.dense"), ("norm1", "attention.LayerNorm"), ("mlp.0", "ffn"),
                         ("mlp.2", "ffn_output"), ("norm2", "full_layer_layer_norm")):
        build.linear("blocks.0." + mine, layer + theirs)

    pooler = "none"
    if tensors.has("classifier.weight", base=False):
        pooler = "tanh"
        build.linear("pooler.0", "pooler")
        build.linear("head", "classifier", base=False)
        converted.notes.append("kept the sequence-classification head (pooler and classifier)")
    else:
        converted.fresh.append("head")
        converted.notes.append(f"added a new classification head for {len(converted.labels)} labels, initialised "
                               "at random (the checkpoint has none)")
        if tensors.has("pooler.weight"):
            pooler = "tanh"
            build.linear("pooler.0", "pooler")
    act = activation(config, "hidden_act", "gelu_new")
    token_head = "none"
    if tensors.has("predictions.dense.weight", base=False):
        token_head = "masked"
        build.linear("token_head.dense", "predictions.dense", base=False)
        build.norm("token_head.norm", "predictions.LayerNorm", base=False)
        bias = "predictions.bias" if tensors.has("predictions.bias", base=False) else "predictions.decoder.bias"
        build.put("token_head.decoder.bias", bias, base=False)
        converted.state["token_head.decoder.weight"] = converted.state["embed.weight"]
        converted.sources["token_head.decoder.weight"] = converted.sources["embed.weight"]
        converted.notes.append("kept the masked-LM head (transform and decoder tied to the token embedding) as "
                               "the token head")
    note_unused(tensors, converted, {"sop_classifier": "the sentence-order head"})
    converted.notes.append(f"the shared layer runs {steps} times (universal model, halting off)")
    converted.model = {
        "d_model": width, "max_steps": steps, "ponder_weight": 0.0, "heads": heads,
        "ff_mult": ff_mult_of(width, hidden), "halting": "off",
        "dropout": float(setting(config, "hidden_dropout_prob", 0.0, float)), "positions": "learned",
        "mode": "encoder", "pooling": "first", "attention": "sdpa", "norm_position": "post", "activation": act,
        "norm_eps": float(setting(config, "layer_norm_eps", 1e-12, float)), "ff_width": hidden,
        "vocab_size": setting(config, "vocab_size"), "embed_dim": 0 if embed == width else embed,
        "token_types": types, "pooler": pooler, "token_head": token_head,
    }
    converted.attention = {"dropout": float(setting(config, "attention_probs_dropout_prob", 0.0, float))}
    return converted
