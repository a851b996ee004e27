"""DistilBERT onto the `transformer`: BERT's post-LN encoder under other names, no token types.

Heads kept: sequence classification (pre_classifier + ReLU, then classifier: the pooler
and head on the first token) and masked LM (vocab_transform, activation,
vocab_layer_norm, vocab_projector tied to the token embedding). Without a classifier a
new head reads the first token's vector.
"""

from __future__ import annotations

from typing import Any

from effstudio.models.hf.base import (
    Converted,
    StateBuilder,
    Tensors,
    activation,
    check_heads,
    ff_mult_of,
    labels_of,
    note_unused,
    setting,
)

LAYER_NORM_EPS = 1e-12  # DistilBERT's LayerNorms are built with this epsilon, not read from its config


def convert(config: dict[str, Any], tensors: Tensors) -> Converted:
    width = setting(config, "dim", 768)
    heads = setting(config, "n_heads", 12)
    check_heads(width, heads)
    hidden = setting(config, "hidden_dim", 4 * width)
    layers = setting(config, "n_layers", 6)
    converted = Converted("transformer", {}, "text", setting(config, "max_position_embeddings", 512),
                          labels_of(config))
    tensors.find_base(["distilbert.", ""], "embeddings.word_embeddings.weight")
    build = StateBuilder(tensors, converted)
    build.put("embed.weight", "embeddings.word_embeddings.weight")
    build.put("positions.weight", "embeddings.position_embeddings.weight")
    build.norm("embed_norm", "embeddings.LayerNorm")
    for i in range(layers):
        theirs, ours = f"transformer.layer.{i}.", f"blocks.{i}."
        for mine, their in (("q", "q_lin"), ("k", "k_lin"), ("v", "v_lin"), ("out", "out_lin")):
            build.linear(ours + mine, theirs + "attention." + their)
        build.norm(ours + "norm1", theirs + "sa_layer_norm")
        build.linear(ours + "mlp.0", theirs + "ffn.lin1")
        build.linear(ours + "mlp.2", theirs + "ffn.lin2")
        build.norm(ours + "norm2", theirs + "output_layer_norm")

    pooler = "none"
    if tensors.has("pre_classifier.weight", base=False) and tensors.has("classifier.weight", base=False):
        pooler = "relu"
        build.linear("pooler.0", "pre_classifier", base=False)
        build.linear("head", "classifier", base=False)
        converted.notes.append("kept the sequence-classification head (pre_classifier and classifier)")
    else:
        converted.fresh.append("head")
        converted.notes.append(f"added a new classification head for {len(converted.labels)} labels, initialised "
                               "at random (the checkpoint has none)")
    act = activation(config, "activation", "gelu")
    token_head = "none"
    if tensors.has("vocab_transform.weight", base=False):
        token_head = "masked"
        build.linear("token_head.dense", "vocab_transform", base=False)
        build.norm("token_head.norm", "vocab_layer_norm", base=False)
        build.put("token_head.decoder.bias", "vocab_projector.bias", base=False)
        converted.state["token_head.decoder.weight"] = converted.state["embed.weight"]
        converted.sources["token_head.decoder.weight"] = converted.sources["embed.weight"]
        converted.notes.append("kept the masked-LM head (transform and projector tied to the token embedding) as "
                               "the token head")
    note_unused(tensors, converted, {})
    converted.model = {
        "d_model": width, "layers": layers, "heads": heads, "ff_mult": ff_mult_of(width, hidden),
        "dropout": float(setting(config, "dropout", 0.1, float)), "positions": "learned", "mode": "encoder",
        "pooling": "first", "attention": "sdpa", "norm_position": "post", "activation": act,
        "norm_eps": LAYER_NORM_EPS, "ff_width": hidden, "vocab_size": setting(config, "vocab_size"),
        "pooler": pooler, "token_head": token_head,
    }
    converted.attention = {"dropout": float(setting(config, "attention_dropout", 0.1, float))}
    return converted
