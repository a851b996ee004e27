"""The call shape every attention kind shares.

An attention kind is an nn.Module built by its registry entry's factory as
``factory(config, spec: AttentionSpec)`` and called as::

    out, weights = attn(q, k, v, key_mask=None, need_weights=False)

    q: (B, H, Nq, D)   k, v: (B, H, Nk, D)   key_mask: (B, Nk) bool, True = real token
    out: (B, H, Nq, D)  weights: (B, H, Nq, Nk) normalised attention, or None

Projections and head splitting live in the model block, so kinds only differ
in how they mix values. A kind that cannot be causal sets ``supports_causal``
to False and refuses causal=True with a clear message. A kind that reads its
keys from the queries (Reformer's shared query/key space) sets ``shares_qk``
so the block skips the key projection and passes the queries as keys. A kind
whose time and memory grow slower than N^2 sets ``subquadratic``; the tests
then check that no N x N tensor appears unless weights are asked for.

The weights are the matrix W that mixes the values: out = W @ v for every
query with a real key, masked keys' columns 0, causal kinds' upper triangle 0.
For nearly every kind W is also a distribution over the real keys (entries
>= 0, rows summing to 1). A kind whose mixing is not one, such as Linformer's
W = P F (softmax weights over projected keys, times the signed projection),
sets ``weights_are_probabilities`` to False: its W is still exact, but the
attention-map view must not read it as probabilities, and the tests check it
by reproducing the output instead of by its row sums.

ONNX export traces the model once and keeps the tensor operations it saw, so
a kind whose fast path is a custom autograd Function, loops over chunks of a
length known only at run time, or draws its layout in Python checks
``exporting()`` and takes a forward made of plain tensor operations instead.
That forward computes the same function (the export's parity check compares
them); it may well be quadratic, since it only runs inside an exported graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from effstudio.config import ConfigError

AttentionOutput = tuple[torch.Tensor, torch.Tensor | None]  # out (B, H, Nq, D), weights (B, H, Nq, Nk) or None


def exporting() -> bool:
    """True while this thread traces the model (ONNX export): take the plain-operations forward.

    The tracing state is per thread; torch.onnx.is_in_onnx_export() is process-wide, so a
    forward in another thread (training while the Compress section exports) keeps its fast path.
    """
    return torch.jit.is_tracing()


@dataclass(frozen=True)
class AttentionSpec:
    """What a model tells an attention kind besides the kind's own config.

    max_length: the longest sequence the model will pass (summary token
    included); kinds with per-position parameters size them by it, and window
    settings are checked against it.
    """

    dim: int
    heads: int
    causal: bool = False
    max_length: int = 4096

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


class Attention(nn.Module):
    supports_causal: bool = True
    shares_qk: bool = False
    subquadratic: bool = False
    weights_are_probabilities: bool = True

    def __init__(self, spec: AttentionSpec):
        super().__init__()
        if spec.dim % spec.heads:
            raise ConfigError("heads", f"model width {spec.dim} is not divisible by {spec.heads} heads")
        if spec.causal and not self.supports_causal:
            raise ConfigError(
                "attention",
                f"{type(self).__name__} does not support causal (decoder) use; "
                "pick a kind that does (effstudio attention lists them)",
            )
        self.spec = spec
        self.dim, self.heads, self.causal = spec.dim, spec.heads, spec.causal
        self.head_dim = spec.head_dim

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None, need_weights: bool = False) -> AttentionOutput:
        raise NotImplementedError

    def prepare_export(self) -> None:
        """Compute, before tracing, the constants the export forward reads (tables drawn from generators).

        A random generator inside a trace would be recorded as an operation
        ONNX cannot take; a tensor computed beforehand is recorded as a constant.
        """
