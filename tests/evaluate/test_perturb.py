"""Perturbations for robustness curves: what each does to tokens and images, and that rate 0 changes nothing."""

import torch

from effstudio.evaluate.perturb import perturbed
from effstudio.tasks.base import Split, TaskSpec

TOKENS = TaskSpec("t", "classify", tuple(f"t{i}" for i in range(30)), 2, 200)
IMAGES = TaskSpec("i", "classify", (), 2, 8, channels=1, image_size=8)


def token_split() -> Split:
    inputs = torch.zeros(20, 200, dtype=torch.int64)
    inputs[:, :100] = torch.randint(1, 30, (20, 100), generator=torch.Generator().manual_seed(0))
    return Split(inputs, torch.zeros(20, dtype=torch.int64))


def real(split: Split) -> torch.Tensor:
    return (split.inputs != 0).sum(dim=1).float()


def test_rate_zero_is_the_split_itself():
    split = token_split()
    assert perturbed(split, TOKENS, "substitution", 0.0) is split


def test_substitution_keeps_lengths_and_changes_about_the_rate_of_tokens():
    split = token_split()
    changed = perturbed(split, TOKENS, "substitution", 0.3)
    assert torch.equal(real(changed), real(split))
    share = float((changed.inputs[:, :100] != split.inputs[:, :100]).float().mean())
    assert 0.2 < share < 0.35  # a random replacement equals the old token 1 time in 29
    assert torch.equal(changed.targets, split.targets)


def test_deletion_and_insertion_shorten_and_lengthen_by_about_the_rate():
    split = token_split()
    assert abs(float(real(perturbed(split, TOKENS, "deletion", 0.2)).mean()) - 80) < 5
    assert abs(float(real(perturbed(split, TOKENS, "insertion", 0.2)).mean()) - 120) < 5


def test_image_perturbations_stay_in_range_and_change_the_images():
    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    split = Split(images, torch.zeros(4, dtype=torch.int64))
    for kind in ("noise", "occlusion", "rotation"):
        out = perturbed(split, IMAGES, kind, 0.3).inputs
        assert out.shape == images.shape and float(out.min()) >= 0 and float(out.max()) <= 1
        assert not torch.equal(out, images)
    occluded = perturbed(split, IMAGES, "occlusion", 0.25).inputs
    assert int((occluded == 0).sum()) >= 4 * 16  # a 4x4 square per image
