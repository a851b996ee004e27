"""The example plugin in examples/ installs like any third-party package and plugs in through entry points.

It is pip-installed (offline, no dependencies) into a temporary folder put on
sys.path; a fresh registry then finds its attention kind, a run trains with that
kind through the ordinary build path, and the window's view discovery finds its view.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from effstudio import registry as registry_module  # noqa: E402
from effstudio.attention.base import AttentionSpec  # noqa: E402
from effstudio.attention.full import allowed_keys, masked_softmax  # noqa: E402
from effstudio.engine.build import build_model, build_task  # noqa: E402
from effstudio.engine.events import DoneEvent, StepEvent  # noqa: E402
from effstudio.engine.run_config import RunConfig  # noqa: E402
from effstudio.engine.trainer import train  # noqa: E402
from effstudio.gui.views import base as views  # noqa: E402
from effstudio.registry import Registry  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "effstudio-plugin-example"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example package installed into a folder on sys.path; removed again afterwards."""
    folder = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(EXAMPLE, folder / "source")  # the build writes beside the sources: not in the repo
    target = folder / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, timeout=120)
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.split(".")[0] == "effstudio_example"]:
        del sys.modules[name]


@pytest.fixture
def plugin_registry(installed, monkeypatch):
    """A registry discovered with the example installed, standing in for the process-wide one."""
    registry = Registry().discover()
    monkeypatch.setattr(registry_module, "_registry", registry)
    return registry


@pytest.fixture
def clean_views(monkeypatch):
    """Views registered by a test are forgotten after it."""
    monkeypatch.setattr(views, "VIEWS", dict(views.VIEWS))


def test_the_kind_is_registered_from_the_plugin_package(plugin_registry):
    entry = plugin_registry.get("attention", "cosine")
    assert entry.source == "effstudio-plugin-example"
    assert [f.name for f in entry.fields()] == ["scale", "learn_scale", "block"]
    assert plugin_registry.errors == []


def cosine_oracle(q, k, v, key_mask, causal, scale):
    """Dense reference: softmax over scale * cos(q, k) among the allowed keys."""
    cos = torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(k, dim=-1).transpose(-2, -1)
    weights = masked_softmax(scale * cos, allowed_keys(key_mask, q.shape[-2], k.shape[-2], causal, q.device))
    return weights @ v, weights


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("nq", "nk"), [(10, 10), (4, 10)])
def test_the_kind_matches_a_dense_oracle(plugin_registry, causal, nq, nk):
    entry = plugin_registry.get("attention", "cosine")
    config = entry.config_cls(scale=5.0, block=3)  # blocks of 3 queries: the last one is short
    attention = entry.factory(config, AttentionSpec(dim=16, heads=2, causal=causal, max_length=32))
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 2, nq, 8), torch.randn(2, 2, nk, 8), torch.randn(2, 2, nk, 8)
    key_mask = torch.ones(2, nk, dtype=torch.bool)
    key_mask[1, -3:] = False  # padding at the end of the second example
    out, weights = attention(q, k, v, key_mask, need_weights=True)
    want_out, want_weights = cosine_oracle(q, k, v, key_mask, causal, 5.0)
    torch.testing.assert_close(out, want_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weights, want_weights, rtol=1e-5, atol=1e-6)
    assert attention(q, k, v, key_mask)[1] is None
    assert isinstance(attention.log_scale, torch.nn.Parameter), "the scale is learned by default"


def test_a_run_trains_with_the_kind(plugin_registry, tmp_path):
    config = RunConfig.create("transformer", "copy", {
        "model.d_model": 16, "model.layers": 1, "model.heads": 2, "model.dropout": 0.0,
        "model.attention": "cosine", "attention.block": 4,
        "task.train_size": 64, "task.val_size": 16, "task.test_size": 16, "task.max_length": 6,
        "train.steps": 2, "train.batch_size": 8, "train.eval_every": 2, "train.attention_every": 0,
        "train.warmup_steps": 1, "train.device": "cpu",
    })
    assert type(config.attention).__name__ == "CosineAttentionConfig" and config.attention.block == 4
    model = build_model(config, build_task(config).spec)
    assert any(type(m).__name__ == "CosineAttention" for m in model.modules())
    events = list(train(config, out_dir=tmp_path))
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == [1, 2] and all(np.isfinite(e.loss) for e in steps)
    assert isinstance(events[-1], DoneEvent) and events[-1].status == "finished"
    assert 'attention = "cosine"' in (tmp_path / "config.toml").read_text()


def test_the_view_is_found_and_draws_segment_lengths(plugin_registry, clean_views, qtbot):
    views.discover_views(plugin_registry)
    (view_cls,) = views.views_for(["token_segments"])
    assert view_cls.__module__ == "effstudio_example.segment_lengths" and view_cls.key == "token_segments"
    assert plugin_registry.errors == []
    view = view_cls()
    qtbot.addWidget(view)
    view.set_arrays({"token_segments": np.array([[0, 0, 0, 1, 1, 2, 2, 2, 2, -1]])}, ())
    assert view.lengths.tolist() == [3, 2, 4]
    assert "3 segments" in view.summary.text() and "segment 3, 4 tokens" in view.summary.text()


@pytest.mark.parametrize(("target", "words"), [
    ("effstudio.gui.views.expert_view:ExpertLoadView", "already has a view"),  # a built-in's key
    ("effstudio.registry:Registry", "is not a ModelView class"),
    ("no_such_plugin_module:View", "ModuleNotFoundError"),
])
def test_a_broken_view_plugin_is_reported_once_and_skipped(clean_views, target, words):
    registry = Registry()
    key = "token_segments" if "expert" not in target else "segment_attention"
    before = dict(views.VIEWS)
    for _ in range(2):  # the window discovers again on each start: said once
        registry.load_plugin(views.VIEW_GROUP, EntryPoint(key, target, views.VIEW_GROUP),
                             lambda view: views.register_plugin_view(key, view))
    (error,) = registry.errors
    assert error.group == "effstudio.views" and error.name == key and words in error.message
    assert views.VIEWS == before
