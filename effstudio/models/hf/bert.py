"""BERT, RoBERTa, ELECTRA (and BERT-shaped MiniLM, whose model_type is "bert") onto the `transformer`.

All three are post-LN encoders: embeddings (token + position + token type 0) ->
LayerNorm -> blocks of LN(x + attention(x)), LN(x + MLP(x)), exact GELU.
RoBERTa's positions start at row pad_token_id + 1 (2); ELECTRA's embeddings are
``embedding_size`` wide and projected to the hidden width. Heads kept:

- sequence classification: BERT's pooler (dense + tanh on [CLS]) and classifier;
  RoBERTa's and ELECTRA's classification head (dense + tanh / GELU, then out_proj)
  map onto the same pooler + head;
- masked LM: the transform (dense, activation, LayerNorm) and the decoder tied to
  the token embedding, with its bias, as the model's token head.

Without a classifier a new head (at random, one row per config.json label) reads
BERT's pooler when the file has one, else the [CLS] vector.
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

# masked LM heads: (probe, dense, LayerNorm, bias candidates), by family
_MASKED = {
    "bert": ("cls.predictions.transform.dense.weight", "cls.predictions.transform.dense",
             "cls.predictions.transform.LayerNorm", ("cls.predictions.bias", "cls.predictions.decoder.bias")),
    "roberta": ("lm_head.dense.weight", "lm_head.dense", "lm_head.layer_norm",
                ("lm_head.bias", "lm_head.decoder.bias")),
    "electra": ("generator_predictions.dense.weight", "generator_predictions.dense",
                "generator_predictions.LayerNorm", ("generator_lm_head.bias",)),
}
_POOLERS = {"bert": "tanh", "roberta": "tanh", "electra": "gelu"}


def convert(config: dict[str, Any], tensors: Tensors) -> Converted:
    family = config["model_type"]
    if config.get("is_decoder") or config.get("add_cross_attention"):
        raise MappingError(f"config.json describes a {family} decoder (is_decoder / add_cross_attention); "
                           "effstudio imports the encoder")
    kind = config.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise MappingError(f"config.json's position_embedding_type {kind!r}: effstudio imports absolute positions")
    width = setting(config, "hidden_size")
    heads = setting(config, "num_attention_heads")
    check_heads(width, heads)
    embed = setting(config, "embedding_size", width) if family == "electra" else width
    offset = setting(config, "pad_token_id", 1) + 1 if family == "roberta" else 0
    positions = setting(config, "max_position_embeddings", 512)
    if positions <= offset:
        raise MappingError(f"config.json's max_position_embeddings {positions} leaves no position after the "
                           f"offset {offset}")
    hidden = setting(config, "intermediate_size")
    act = activation(config, "hidden_act", "gelu")
    converted = Converted("transformer", {}, "text", positions - offset, labels_of(config))
    tensors.find_base([f"{family}.", ""], "embeddings.word_embeddings.weight")
    build = StateBuilder(tensors, converted)

    build.put("embed.weight", "embeddings.word_embeddings.weight")
    build.put("positions.weight", "embeddings.position_embeddings.weight")
    types = setting(config, "type_vocab_size", 2)
    if types:
        build.put("token_type.weight", "embeddings.token_type_embeddings.weight")
    build.norm("embed_norm", "embeddings.LayerNorm")
    if embed != width:
        build.linear("embed_project", "embeddings_project")
    layers = setting(config, "num_hidden_layers")
    for i in range(layers):
        theirs, ours = f"encoder.layer.{i}.", f"blocks.{i}."
        build.linear(ours + "q", theirs + "attention.self.query")
        build.linear(ours + "k", theirs + "attention.self.key")
        build.linear(ours + "v", theirs + "attention.self.value")
        build.linear(ours + "out", theirs + "attention.output.dense")
        build.norm(ours + "norm1", theirs + "attention.output.LayerNorm")
        build.linear(ours + "mlp.0", theirs + "intermediate.dense")
        build.linear(ours + "mlp.2", theirs + "output.dense")
        build.norm(ours + "norm2", theirs + "output.LayerNorm")

    pooler = _classification_head(family, tensors, build, converted)
    token_head = "none"
    probe, dense, norm, biases = _MASKED[family]
    if tensors.has(probe, base=False):
        token_head = "masked"
        build.linear("token_head.dense", dense, base=False)
        build.norm("token_head.norm", norm, base=False)
        bias = next((b for b in biases if tensors.has(b, base=False)), biases[0])
        build.put("token_head.decoder.bias", bias, base=False)
        converted.state["token_head.decoder.weight"] = converted.state["embed.weight"]
        converted.sources["token_head.decoder.weight"] = converted.sources["embed.weight"]
        converted.notes.append("kept the masked-LM head (transform and decoder tied to the token embedding) as "
                               "the token head")
    note_unused(tensors, converted, {
        "cls.seq_relationship": "the next-sentence head",
        "discriminator_predictions": "the replaced-token discriminator head",
        f"{tensors.base}pooler": "the pooler (no classifier reads it)",
    })
    converted.model = {
        "d_model": width, "layers": layers, "heads": heads, "ff_mult": ff_mult_of(width, hidden),
        "dropout": float(setting(config, "hidden_dropout_prob", 0.1, float)), "positions": "learned",
        "mode": "encoder", "pooling": "first", "attention": "sdpa", "norm_position": "post",
        "activation": act, "norm_eps": float(setting(config, "layer_norm_eps", 1e-12, float)),
        "ff_width": hidden, "vocab_size": setting(config, "vocab_size"), "embed_dim": 0 if embed == width else embed,
        "token_types": types, "position_offset": offset, "pooler": pooler, "token_head": token_head,
    }
    converted.attention = {"dropout": float(setting(config, "attention_probs_dropout_prob", 0.1, float))}
    return converted


def _classification_head(family: str, tensors: Tensors, build: StateBuilder, converted: Converted) -> str:
    """Map the sequence-classification head (or the pooler for a new one); returns the pooler kind."""
    if family == "bert" and tensors.has("classifier.weight", base=False):
        build.linear("pooler.0", "pooler.dense")
        build.linear("head", "classifier", base=False)
        converted.notes.append("kept the sequence-classification head (pooler and classifier)")
        return "tanh"
    if family != "bert" and tensors.has("classifier.dense.weight", base=False):
        build.linear("pooler.0", "classifier.dense", base=False)
        build.linear("head", "classifier.out_proj", base=False)
        converted.notes.append("kept the sequence-classification head (dense and out_proj)")
        return _POOLERS[family]
    converted.fresh.append("head")
    converted.notes.append(f"added a new classification head for {len(converted.labels)} labels, initialised "
                           "at random (the checkpoint has none)")
    if tensors.has("pooler.dense.weight"):
        build.linear("pooler.0", "pooler.dense")
        return "tanh"
    return "none"
