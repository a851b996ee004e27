"""Perturbed copies of a split, for robustness curves: accuracy against perturbation strength (0-30%).

Tokens: each real token is replaced by a random one (substitution), removed (deletion) or followed by a
random one (insertion) with probability ``rate``; the padded width stays the split's, so an insertion
past it is cut. Random tokens are drawn from the vocabulary without the padding token.
Images: Gaussian noise of standard deviation ``rate`` (pixels in [0, 1]); occlusion of a centred-at-random
square covering ``rate`` of the image; rotation by ``rate`` x 360 degrees.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from effstudio.tasks.base import Split, TaskSpec

TOKEN_PERTURBATIONS = ("substitution", "deletion", "insertion")
IMAGE_PERTURBATIONS = ("noise", "occlusion", "rotation")
RATES = (0.0, 0.05, 0.1, 0.2, 0.3)


def perturbations_for(spec: TaskSpec) -> tuple[str, ...]:
    return IMAGE_PERTURBATIONS if spec.is_image else TOKEN_PERTURBATIONS


def perturbed(split: Split, spec: TaskSpec, perturbation: str, rate: float, seed: int = 0) -> Split:
    """A copy of ``split`` with its inputs perturbed (targets unchanged)."""
    if rate <= 0:
        return split
    rng = np.random.default_rng([seed, int(rate * 1000), len(perturbation)])
    if spec.is_image:
        return Split(_image(split.inputs, perturbation, rate, rng), split.targets)
    return Split(_tokens(split.inputs.numpy(), spec, perturbation, rate, rng), split.targets)


def _tokens(inputs: np.ndarray, spec: TaskSpec, perturbation: str, rate: float,
            rng: np.random.Generator) -> torch.Tensor:
    choices = np.array([i for i in range(spec.vocab_size) if i != spec.pad_id])
    out = np.full_like(inputs, spec.pad_id)  # (S, N)
    width = inputs.shape[1]
    for r, row in enumerate(inputs):
        tokens = row[row != spec.pad_id]
        hit = rng.random(len(tokens)) < rate
        if perturbation == "substitution":
            tokens = np.where(hit, rng.choice(choices, len(tokens)), tokens)
        elif perturbation == "deletion":
            kept = tokens[~hit]
            tokens = kept if len(kept) else tokens[:1]  # an example keeps at least one token
        else:  # insertion: a random token after each hit
            pieces = [[t, rng.choice(choices)] if h else [t] for t, h in zip(tokens, hit, strict=True)]
            tokens = np.array([t for piece in pieces for t in piece], dtype=inputs.dtype)
        out[r, : min(width, len(tokens))] = tokens[:width]
    return torch.from_numpy(out)


def _image(images: torch.Tensor, perturbation: str, rate: float, rng: np.random.Generator) -> torch.Tensor:
    """images (S, C, H, W) in [0, 1]."""
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    if perturbation == "noise":
        noise = torch.randn(images.shape, generator=generator) * rate
        return (images + noise).clamp(0.0, 1.0)
    s, _, h, w = images.shape
    if perturbation == "occlusion":
        side = max(1, round(math.sqrt(rate) * min(h, w)))
        out = images.clone()
        tops = rng.integers(0, h - side + 1, s)
        lefts = rng.integers(0, w - side + 1, s)
        for i in range(s):
            out[i, :, tops[i]: tops[i] + side, lefts[i]: lefts[i] + side] = 0.0
        return out
    angle = rate * 2 * math.pi
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=images.dtype).expand(s, 2, 3)  # (S, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")
