"""Vision Transformer (Dosovitskiy et al., 2021) over any registered attention kind.

An image (C, H, W) is cut into P = (H / p) * (W / p) non-overlapping p x p
patches; a strided convolution projects each patch to a d-wide token (the same
as flattening the patch and applying one linear layer). A learned class token
goes first, learned positions are added, and the sequence of 1 + P tokens runs
through the Transformer's pre-LN blocks (``transformer.Block``: any attention
kind, a dense MLP or a mixture of experts). The class token's final vector,
after a LayerNorm, feeds the classification head.

When attention weights are asked for (the probe), ``extras`` carries what the
ViT view draws: ``cls_patch_attention`` (B, H/p, W/p), the class token's
attention to each patch in the last layer averaged over heads, and ``image``
(B, C, H, W), the input itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from effstudio.attention.base import AttentionSpec
from effstudio.config import ConfigError, param, validate
from effstudio.models import fields
from effstudio.models.base import ModelOutput, ModelSpec, check_heads_divide_width
from effstudio.models.moe import MoEStats, moe_outputs
from effstudio.models.transformer import INIT_STD, Block, _init_weights, build_attention
from effstudio.registry import Entry, get_registry

POSITION_STD = 0.3


@dataclass(frozen=True)
@fields.with_block_fields
@fields.with_moe_fields
class ViTConfig:
    patch_size: int = param(4, min=1, max=64, label="Patch size",
                            help="Side of the square patches, in pixels; must divide the image size")
    d_model: int = fields.width_param(64, "Width of every patch token")
    layers: int = fields.layers_param(4)
    heads: int = fields.heads_param()
    ff_mult: int = fields.ff_mult_param(2)
    dropout: float = fields.dropout_param()
    attention: str = fields.attention_param("How patches mix; the chosen kind's own settings are in the attention section")
    distillation_token: bool = param(False, label="Distillation token", advanced=True,
                                     help="A second learned token after the class token (DeiT); the head reads "
                                          "the class token")
    distillation_head: bool = param(False, label="Distillation head", advanced=True,
                                    help="With a distillation token: a second head reads it and the logits are "
                                         "the mean of the two heads (DeiT distilled with a teacher)")

    def check(self) -> None:
        check_heads_divide_width(self)
        fields.check_moe_fields(self)
        if self.distillation_head and not self.distillation_token:
            raise ConfigError("distillation_head", "a distillation head reads the distillation token; turn "
                                                   "distillation_token on")



class PatchEmbedding(nn.Module):
    """(B, C, H, W) images -> (B, P, d) patch tokens, row by row."""

    def __init__(self, channels: int, patch: int, dim: int):
        super().__init__()
        self.project = nn.Conv2d(channels, dim, kernel_size=patch, stride=patch)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.project(images.to(self.project.weight.dtype))  # (B, d, H/p, W/p); pixels as the weights are
        return x.flatten(2).transpose(1, 2)  # (B, P, d)


class VisionTransformer(nn.Module):
    def __init__(self, config: ViTConfig, spec: ModelSpec):
        super().__init__()
        validate(config)
        task = spec.task
        if not task.is_image or task.objective != "classify":
            raise ConfigError("model", f"vit classifies images; task {task.name!r} has token inputs "
                                       "(pick an image task such as digits or imagefolder)")
        if task.image_size % config.patch_size:
            raise ConfigError("patch_size", f"patch size {config.patch_size} does not divide the image "
                                            f"size {task.image_size}")
        self.config = config
        self.image_shape = task.image_shape
        self.grid = task.image_size // config.patch_size  # patches per side
        d, patches = config.d_model, self.grid**2

        self.patches = PatchEmbedding(task.channels, config.patch_size, d)
        self.cls = nn.Parameter(INIT_STD * torch.randn(d))
        self.distillation = nn.Parameter(INIT_STD * torch.randn(d)) if config.distillation_token else None
        self.tokens = 2 if config.distillation_token else 1  # learned tokens before the patches
        # positions start at the patch tokens' scale (not at 0.02 like token embeddings): with
        # tiny positions every patch looks placeless and small ViTs sit on a plateau for hundreds of steps
        self.positions = nn.Parameter(POSITION_STD * torch.randn(self.tokens + patches, d))  # class token first
        self.dropout = nn.Dropout(config.dropout)
        entry = get_registry().get("attention", config.attention)
        attention_config = spec.attention_config if spec.attention_config is not None else entry.default_config()
        attention_spec = AttentionSpec(dim=d, heads=config.heads, causal=False, max_length=self.tokens + patches)
        self.blocks = nn.ModuleList(
            Block(config, build_attention(entry, attention_config, attention_spec)) for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(d, eps=config.norm_eps)
        self.head = nn.Linear(d, task.num_classes)
        self.distillation_head = nn.Linear(d, task.num_classes) if config.distillation_head else None
        _init_weights(self)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None,
                need_weights: bool = False) -> ModelOutput:
        """inputs (B, C, H, W) float images; ``mask`` is ignored (every patch is real)."""
        if tuple(inputs.shape[1:]) != self.image_shape:
            raise ValueError(f"expected images of shape {self.image_shape}, got {tuple(inputs.shape[1:])}")
        b = inputs.shape[0]
        x = self.patches(inputs)  # (B, P, d)
        x = torch.cat([self._learned_tokens(b, x.dtype), x], dim=1)  # (B, T + P, d), T = 1 or 2 learned tokens
        x = self.dropout(x + self.positions)

        maps: list[torch.Tensor] | None = [] if need_weights else None
        moe: list[MoEStats] = []
        for block in self.blocks:
            x, weights, stats = block(x, None, need_weights)
            if maps is not None:
                maps.append(weights)  # (B, H, 1 + P, 1 + P)
            if stats is not None:
                moe.append(stats)
        logits = self._logits(self.norm(x))  # (B, C)
        aux_loss, extras = moe_outputs(moe, self.config.balance_weight)
        if maps:
            last = maps[-1].detach().float().mean(dim=1)  # (B, 1 + P, 1 + P)
            extras["cls_patch_attention"] = last[:, 0, self.tokens:].reshape(b, self.grid, self.grid)  # (B, Hp, Wp)
            extras["image"] = inputs.detach()  # (B, C, H, W)
        return ModelOutput(logits=logits, attentions=maps, aux_loss=aux_loss, extras=extras)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) from the final states (B, T + P, d): the class token's head (averaged with the
        distillation token's when the model has a distillation head)."""
        logits = self.head(x[:, 0])
        if self.distillation_head is None:
            return logits
        return (logits + self.distillation_head(x[:, 1])) / 2

    def _learned_tokens(self, b: int, dtype: torch.dtype) -> torch.Tensor:
        """(B, T, d): the class token, and the distillation token when the model has one."""
        tokens = self.cls[None] if self.distillation is None else torch.stack([self.cls, self.distillation])
        return tokens.expand(b, -1, -1).to(dtype)

    def hidden_states(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The final states (B, T + P, d) of the learned tokens and the patches, after the last LayerNorm."""
        x = torch.cat([self._learned_tokens(inputs.shape[0], torch.float32), self.patches(inputs)], dim=1)
        x = x + self.positions
        for block in self.blocks:
            x, _, _ = block(x, None, False)
        return self.norm(x)


ENTRY = Entry(
    "vit", "Vision Transformer: image patches as tokens, a class token, any attention kind",
    ViTConfig, VisionTransformer,
)
