"""ViT and DeiT onto `vit`: patch convolution, class token (and DeiT's distillation token), pre-LN blocks.

Heads kept: image classification (``classifier``, on the class token). DeiT's
DeiTForImageClassificationWithTeacher averages two heads (class and distillation
token): both are kept (ViT's distillation_head). ViTModel's pooler (dense + tanh) feeds no head and is
left out. The image processor's normalisation is the importer's business (it is
folded into the patch projection).
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
    family = config["model_type"]
    width = setting(config, "hidden_size", 768)
    heads = setting(config, "num_attention_heads", 12)
    check_heads(width, heads)
    hidden = setting(config, "intermediate_size", 3072)
    layers = setting(config, "num_hidden_layers", 12)
    size, patch = setting(config, "image_size", 224), setting(config, "patch_size", 16)
    if patch < 1 or size % patch:
        raise MappingError(f"config.json's patch_size {patch} does not divide its image_size {size}")
    converted = Converted("vit", {}, "image", size, labels_of(config))
    converted.image = (setting(config, "num_channels", 3), size, [], [])
    tensors.find_base([f"{family}.", ""], "embeddings.cls_token")
    build = StateBuilder(tensors, converted)
    build.put("cls", "embeddings.cls_token", transform=lambda t: t.reshape(-1))  # (1, 1, d) -> (d,)
    distillation = family == "deit"
    if distillation:
        build.put("distillation", "embeddings.distillation_token", transform=lambda t: t.reshape(-1))
    build.put("positions", "embeddings.position_embeddings", transform=lambda t: t.reshape(t.shape[-2:]))
    build.linear("patches.project", "embeddings.patch_embeddings.projection")
    qkv_bias = config.get("qkv_bias", True) is not False
    for i in range(layers):
        theirs, ours = f"encoder.layer.{i}.", f"blocks.{i}."
        for mine, their in (("q", "query"), ("k", "key"), ("v", "value")):
            build.linear(ours + mine, theirs + "attention.attention." + their, bias=qkv_bias)
            if not qkv_bias:
                converted.state[f"{ours}{mine}.bias"] = torch.zeros(width)
                converted.sources[f"{ours}{mine}.bias"] = "qkv_bias is false: zeros"
        build.linear(ours + "out", theirs + "attention.output.dense")
        build.norm(ours + "norm1", theirs + "layernorm_before")
        build.linear(ours + "mlp.0", theirs + "intermediate.dense")
        build.linear(ours + "mlp.2", theirs + "output.dense")
        build.norm(ours + "norm2", theirs + "layernorm_after")
    build.norm("norm", "layernorm")

    if tensors.has("classifier.weight", base=False):
        build.linear("head", "classifier", base=False)
        converted.notes.append("kept the image-classification head (classifier, on the class token)")
    elif tensors.has("cls_classifier.weight", base=False):
        build.linear("head", "cls_classifier", base=False)
        build.linear("distillation_head", "distillation_classifier", base=False)
        converted.notes.append("kept both heads of the teacher-distilled classifier (class and distillation "
                               "token; the logits are their mean)")
    else:
        converted.fresh.append("head")
        converted.notes.append(f"added a new classification head for {len(converted.labels)} labels, initialised "
                               "at random (the checkpoint has none)")
    note_unused(tensors, converted, {f"{tensors.base}pooler": "the pooler (no head reads it)"})
    converted.model = {
        "patch_size": patch, "d_model": width, "layers": layers, "heads": heads,
        "ff_mult": ff_mult_of(width, hidden), "dropout": float(setting(config, "hidden_dropout_prob", 0.0, float)),
        "attention": "sdpa", "distillation_token": distillation,
        "distillation_head": "distillation_head.weight" in converted.state, "norm_position": "pre",
        "activation": activation(config, "hidden_act", "gelu"),
        "norm_eps": float(setting(config, "layer_norm_eps", 1e-12, float)), "ff_width": hidden,
    }
    converted.attention = {"dropout": float(setting(config, "attention_probs_dropout_prob", 0.0, float))}
    return converted
