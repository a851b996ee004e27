"""The settings the model types share, declared once (one call per config field).

Each function returns the field's ``param()``; arguments give what differs
between model types (a default, or a help text that names the model's parts).
The feed-forward and mixture-of-experts fields live beside their layer in moe.py.
"""

from __future__ import annotations

from typing import Any

from effstudio.config import param

EMBED_HELP = "Language modelling: the output layer reuses the token embedding matrix"


def width_param(default: int = 128, help: str = "Width of every token vector") -> Any:
    return param(default, min=8, label="Model width", help=help)


def layers_param(default: int = 2, help: str = "Number of Transformer blocks") -> Any:
    return param(default, min=1, max=48, help=help)


def heads_param(help: str = "Attention heads per block; must divide the model width") -> Any:
    return param(4, min=1, help=help)


def ff_mult_param(default: int = 4) -> Any:
    return param(default, min=1, max=16, label="Feed-forward multiplier",
                 help="Feed-forward hidden width as a multiple of the model width", advanced=True)


def dropout_param() -> Any:
    return param(0.1, min=0.0, max=0.9, help="Dropout on embeddings and residual branches while training")


def positions_param(help: str = "learned: a trained table of positions; sinusoidal: fixed sine/cosine waves") -> Any:
    return param("learned", choices=("learned", "sinusoidal"), help=help)


def mode_param() -> Any:
    return param("auto", choices=("auto", "encoder", "decoder"),
                 help="auto: encoder for classification tasks, causal decoder for language-modelling tasks")


def pooling_param() -> Any:
    return param("cls", choices=("cls", "mean"),
                 help="Classification only: read a learned summary token (cls) or average the real tokens (mean)")


def attention_param(help: str = "How tokens mix; the chosen kind's own settings are in the attention section") -> Any:
    return param("sdpa", choices_from="attention", help=help)


def tie_embeddings_param(help: str = EMBED_HELP) -> Any:
    return param(True, label="Tie embeddings", help=help, advanced=True)
