"""The settings the model types share, declared once (one call per config field).

Each function returns the field's ``param()``; arguments give what differs
between model types (a default, or a help text that names the model's parts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from effstudio.config import ConfigError, param

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
    return param("cls", choices=("cls", "mean", "first", "last"),
                 help="Classification only: read a learned summary token (cls), average the real tokens (mean), "
                      "or read the first token (BERT's [CLS]) or the last real one (a decoder's)")


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
        "experts": ("int", param(4, min=2, max=256, label="Experts",
                                 help="Mixture of experts: expert MLPs per block")),
        "top_k": ("int", param(1, min=1, max=2, label="Experts per token",
                               help="Mixture of experts: 1 routes each token to one expert (Switch), 2 to two "
                                    "(GShard)", advanced=True)),
        "capacity_factor": ("float", param(1.25, min=0.01, max=64.0, label="Capacity factor",
                                           help="Mixture of experts: an expert takes at most factor x top-k x "
                                                "tokens / experts tokens; tokens over capacity skip the "
                                                "feed-forward and pass through unchanged", advanced=True)),
        "balance_weight": ("float", param(0.01, min=0.0, max=10.0, label="Load-balancing weight",
                                          help="Mixture of experts: weight (alpha) of the load-balancing loss "
                                               "alpha * experts * sum_i f_i P_i; 0 turns it off",
                                          advanced=True)),
    }


def with_moe_fields(cls: type) -> type:
    """Class decorator, under ``@dataclass``: the config also offers a mixture-of-experts feed-forward.

    Appends the fields ffn, experts, top_k, capacity_factor and balance_weight after the class's
    own (the form, ``--set`` and TOML order); the class's ``check()`` calls :func:`check_moe_fields`.
    """
    return _append_fields(cls, _moe_params())


def check_moe_fields(config: Any) -> None:
    if config.ffn == "moe" and config.top_k > config.experts:
        raise ConfigError("top_k", f"cannot route each token to {config.top_k} of {config.experts} experts")


# ---------------------------------------------------------------------- what pretrained models need
# Fields a Hugging Face import sets to reproduce a pretrained model exactly (effstudio.pretrained). Their
# defaults are the model types' own design, so a model built without them is unchanged.

def _block_params() -> dict[str, tuple[str, Any]]:
    """The block's own variants (read by transformer.Block through :func:`block_settings`), in form order."""
    return {
        "norm_position": ("str", param("pre", choices=("pre", "post"), label="LayerNorm position",
                                       help="pre: x + f(LN(x)) with a final LayerNorm (GPT-2, ViT); post: "
                                            "LN(x + f(x)) with a LayerNorm on the embeddings (BERT)",
                                       advanced=True)),
        "activation": ("str", param("gelu", choices=("gelu", "gelu_tanh", "relu"), label="Activation",
                                    help="Feed-forward activation: exact GELU, its tanh approximation (GPT-2), "
                                         "or ReLU", advanced=True)),
        "norm_eps": ("float", param(1e-5, min=1e-12, max=0.1, label="LayerNorm \u03b5",
                                    help="The epsilon of every LayerNorm", advanced=True)),
        "ff_width": ("int", param(0, min=0, max=1_000_000, label="Feed-forward width",
                                  help="Hidden width of the feed-forward part; 0 = multiplier x model width",
                                  advanced=True)),
    }


def _token_params() -> dict[str, tuple[str, Any]]:
    """Embedding and head variants of the token models (transformer, universal), in form order."""
    return {
        "vocab_size": ("int", param(0, min=0, max=10_000_000, label="Embedding rows",
                                    help="Rows of the token embedding; 0 = the task's vocabulary (a pretrained "
                                         "model keeps its own)", advanced=True)),
        "embed_dim": ("int", param(0, min=0, max=65_536, label="Embedding width",
                                   help="Width of the token and position embeddings, projected to the model "
                                        "width when it differs (ALBERT, ELECTRA); 0 = the model width",
                                   advanced=True)),
        "token_types": ("int", param(0, min=0, max=1024, label="Token types",
                                     help="Rows of a segment embedding (BERT's token types); every token gets "
                                          "type 0; 0 = none", advanced=True)),
        "position_offset": ("int", param(0, min=0, max=1024, label="Position offset",
                                         help="Learned positions start at this row of the table (RoBERTa: 2)",
                                         advanced=True)),
        "pooler": ("str", param("none", choices=("none", "tanh", "gelu", "relu"), label="Pooler",
                                help="Classification: a dense layer and this activation between the pooled "
                                     "vector and the head (BERT's pooler: tanh)", advanced=True)),
        "token_head": ("str", param("none", choices=("none", "masked", "tied"), label="Token head",
                                    help="A pretrained token head kept beside the task's head: masked (a masked "
                                         "language model's transform and decoder) or tied (a causal language "
                                         "model's output layer, the embedding)", advanced=True)),
    }


def _append_fields(cls: type, params: dict[str, tuple[str, Any]]) -> type:
    annotations = dict(cls.__annotations__)
    for name, (annotation, default) in params.items():
        annotations[name] = annotation
        setattr(cls, name, default)
    cls.__annotations__ = annotations
    return cls


def with_block_fields(cls: type) -> type:
    """Class decorator, under ``@dataclass``: norm_position, activation, norm_eps, ff_width (see above)."""
    return _append_fields(cls, _block_params())


def with_token_fields(cls: type) -> type:
    """Class decorator, under ``@dataclass``: the block fields and the embedding and head ones (see above)."""
    return _append_fields(cls, {**_block_params(), **_token_params()})


@dataclass(frozen=True)
class BlockSettings:
    norm_position: str = "pre"
    activation: str = "gelu"
    norm_eps: float = 1e-5
    ff_width: int = 0


def block_settings(config: Any) -> BlockSettings:
    """The block variants a config declares; a model type without the fields gets the defaults."""
    return BlockSettings(**{f: getattr(config, f) for f in _block_params() if hasattr(config, f)})


def ff_hidden(config: Any) -> int:
    """Hidden width of a block's feed-forward part."""
    return block_settings(config).ff_width or config.ff_mult * config.d_model
