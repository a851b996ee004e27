"""Drift signals over 20 seeds: a sample of the reference distribution is rarely flagged; doubled lengths,
a shifted vocabulary and a changed class prior always are. Small sizes and a hand-built model keep it fast."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from effstudio.evaluate.drift import drift_report
from effstudio.evaluate.model_file import Evaluable
from effstudio.models.base import ModelOutput
from effstudio.tasks.base import Split, TaskSpec

VOCAB = 24  # id 0 pads; ids 1-15 form three groups of five, one per class; 16-23 only a shifted sample uses
SPEC = TaskSpec("groups", "classify", tuple(f"t{i}" for i in range(VOCAB)), 3, 80)
SEEDS = range(20)
EXAMPLES = 100


class GroupCounter(nn.Module):
    """Predicts the class whose token group is most frequent: logits are the group shares."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 3)
        with torch.no_grad():
            self.embed.weight.zero_()
            for token in range(1, 16):
                self.embed.weight[token, (token - 1) // 5] = 3.0
        self.norm = nn.LayerNorm(3, elementwise_affine=False)

    def forward(self, inputs, mask=None, need_weights=False):
        hidden = self.norm(self.embed(inputs))  # (B, N, 3)
        real = mask.unsqueeze(-1).float()
        return ModelOutput((hidden * real).sum(1) / real.sum(1).clamp(min=1))


def sample(seed: int, *, lengths=(10, 30), prior=(1 / 3, 1 / 3, 1 / 3), shift: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, EXAMPLES, p=prior)
    inputs = np.zeros((EXAMPLES, SPEC.max_length), dtype=np.int64)
    for row, label in enumerate(labels):
        n = rng.integers(lengths[0], lengths[1] + 1)
        own = rng.random(n) < 0.6  # most tokens from the class's own group, the rest from any
        tokens = np.where(own, 1 + 5 * label + rng.integers(0, 5, n), rng.integers(1, 16, n))
        inputs[row, :n] = tokens + shift
    return Split(torch.from_numpy(inputs), torch.from_numpy(labels))


@pytest.fixture(scope="module")
def model():
    class Task:
        spec = SPEC

    return Evaluable(Path("groups.safetensors"), Task(), None, model=GroupCounter().eval())


def flagged(model, changed) -> list[bool]:
    return [drift_report(model, sample(1000 + seed), changed(seed), seed=seed).drift for seed in SEEDS]


def test_a_sample_of_the_reference_distribution_is_flagged_in_at_most_a_tenth_of_the_seeds(model):
    assert sum(flagged(model, lambda seed: sample(seed))) <= 2


@pytest.mark.parametrize("changed", [
    lambda seed: sample(seed, lengths=(20, 60)),  # lengths doubled
    lambda seed: sample(seed, shift=8),  # the same texts in a vocabulary shifted half out of the reference's
    lambda seed: sample(seed, prior=(0.7, 0.15, 0.15)),  # a changed class prior
], ids=["doubled-lengths", "shifted-vocabulary", "class-prior"])
def test_a_changed_distribution_is_flagged_in_every_seed(model, changed):
    assert all(flagged(model, changed))


def test_the_signal_that_changed_is_the_one_that_says_so(model):
    signals = {s.name: s for s in drift_report(model, sample(1), sample(2, lengths=(20, 60))).signals}
    assert signals["length_psi"].drift and signals["length_js"].drift
    assert not signals["predicted_class_psi"].drift
    prior = {s.name: s for s in drift_report(model, sample(1), sample(2, prior=(0.7, 0.15, 0.15))).signals}
    assert prior["predicted_class_psi"].drift and not prior["length_psi"].drift


def test_the_report_has_the_json_keys_and_a_projection_of_both_samples(model):
    report = drift_report(model, sample(1), sample(2))
    assert set(report.to_json()) == {"signals", "mmd", "p_value", "drift"}
    assert set(report.to_json()["signals"][0]) == {"name", "value", "threshold", "drift"}
    assert len(report.reference_xy) == EXAMPLES and len(report.current_xy) == EXAMPLES
