"""The settings the model types share, declared once (one call per config field).

Each function returns the field's ``param()``; arguments give what differs
between model types (a default, or a help text that names the model's parts).
"""

from __future__ import annotations

from typing import Any

from effstudio.config import ConfigError, param

EMBED_HELP = "Language modelling: the output layer reuses the token embedding matrix"
MOE = ("ffn", "moe")  # the mixture-of-experts settings matter only with this feed-forward


def width_param(default: int = 128, help: str = "Width of every token vector") -> Any:
    return param(default, min=8, label="Model width", help=help, unit="dims")


def layers_param(default: int = 2, help: str = "Number of Transformer blocks") -> Any:
    return param(default, min=1, max=48, help=help, unit="blocks")


def heads_param(help: str = "Attention heads per block; must divide the model width") -> Any:
    return param(4, min=1, help=help)


def ff_mult_param(default: int = 4) -> Any:
    return param(default, min=1, max=16, label="Feed-forward multiplier", unit="\u00d7 width",
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


def _moe_params() -> dict[str, tuple[str, Any]]:
    """The mixture-of-experts fields (see moe.py) by name: (annotation, fresh param()), in form order."""
    return {
        "ffn": ("str", param("dense", choices=("dense", "moe"), label="Feed-forward",
                             help="dense: one MLP per block; moe: a mixture of experts with a learned router "
                                  "(Switch Transformer / GShard)")),
        "experts": ("int", param(4, min=2, max=256, label="Experts", only_if=MOE, unit="per block",
                                 help="Mixture of experts: expert MLPs per block")),
        "top_k": ("int", param(1, min=1, max=2, label="Experts per token", only_if=MOE,
                               help="Mixture of experts: 1 routes each token to one expert (Switch), 2 to two "
                                    "(GShard)", advanced=True)),
        "capacity_factor": ("float", param(1.25, min=0.01, max=64.0, label="Capacity factor", only_if=MOE,
                                           help="Mixture of experts: an expert takes at most factor x top-k x "
                                                "tokens / experts tokens; tokens over capacity skip the "
                                                "feed-forward and pass through unchanged", advanced=True)),
        "balance_weight": ("float", param(0.01, min=0.0, max=10.0, label="Load-balancing weight", only_if=MOE,
                                          help="Mixture of experts: weight (alpha) of the load-balancing loss "
                                               "alpha * experts * sum_i f_i P_i; 0 turns it off",
                                          advanced=True)),
    }


def with_moe_fields(cls: type) -> type:
    """Class decorator, under ``@dataclass``: the config also offers a mixture-of-experts feed-forward.

    Appends the fields ffn, experts, top_k, capacity_factor and balance_weight after the class's
    own (the form, ``--set`` and TOML order); the class's ``check()`` calls :func:`check_moe_fields`.
    """
    annotations = dict(cls.__annotations__)
    for name, (annotation, default) in _moe_params().items():
        annotations[name] = annotation
        setattr(cls, name, default)
    cls.__annotations__ = annotations
    return cls


def check_moe_fields(config: Any) -> None:
    if config.ffn == "moe" and config.top_k > config.experts:
        raise ConfigError("top_k", f"cannot route each token to {config.top_k} of {config.experts} experts")
