"""What the attention tests compare with: the largest difference of two tensors, and a padding mask."""

import torch


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"shape {tuple(a.shape)} != {tuple(b.shape)}"
    return (a - b).abs().max().item()


def padded_mask(batch: int, n: int, cut: int) -> torch.Tensor:
    """(batch, n), True = real token: the second example's last ``cut`` tokens are padding."""
    mask = torch.ones(batch, n, dtype=torch.bool)
    mask[1, n - cut:] = False
    return mask
