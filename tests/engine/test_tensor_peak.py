"""The peak memory of the tensors a computation allocates."""

import torch
from torch import nn

from effstudio.engine.memory import MB, TensorPeak, forward_peak_mb


def test_a_linear_layer_allocates_its_output():
    layer = nn.Linear(256, 1024)
    x = torch.randn(32, 256)
    with torch.inference_mode():
        peak = forward_peak_mb(lambda: layer(x), [*layer.parameters(), x])
    assert peak == 32 * 1024 * 4 / MB


def test_two_live_intermediates_count_together_and_freed_ones_do_not():
    mlp = nn.Sequential(nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 256))
    x = torch.randn(32, 256)
    with torch.inference_mode():
        peak = forward_peak_mb(lambda: mlp(x), [*mlp.parameters(), x])
    # the first layer's output and the GELU of it are alive together; the last output is smaller
    assert peak == 2 * 32 * 1024 * 4 / MB


def test_views_of_weights_and_inputs_cost_nothing():
    weight = torch.randn(64, 64)
    with TensorPeak([weight]) as peak:
        view = weight.t()
        again = view[:10]
        new = weight + 1
    assert peak.peak_bytes == 64 * 64 * 4 and peak.live_bytes == 64 * 64 * 4
    del view, again, new
    assert peak.live_bytes == 0
