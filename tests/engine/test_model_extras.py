"""Model extras through the trainer and the CLI: step metrics, probe views, checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from effstudio.cli import main
from effstudio.engine.events import AttentionEvent, DoneEvent, StepEvent
from effstudio.engine.loading import load_model
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import train
from effstudio.models.universal import UniversalTransformer
from tests.engine.conftest import train_stopped_at

TINY = {
    "model.d_model": 16, "model.heads": 2, "model.ff_mult": 2, "model.dropout": 0.0,
    "task.train_size": 128, "task.val_size": 16, "task.test_size": 16,
    "task.min_length": 6, "task.max_length": 16,
    "train.batch_size": 8, "train.eval_every": 100, "train.warmup_steps": 1, "train.device": "cpu",
}
MODELS = {
    "universal": ({"model.max_steps": 3}, {"ponder_mean"}),
    "transformer": ({"model.ffn": "moe", "model.experts": 3, "model.layers": 2},
                    {"moe_dropped", "moe_balance_loss"}),
}


def config(model: str, **overrides) -> RunConfig:
    return RunConfig.create(model, "listops", {**TINY, **MODELS[model][0], **overrides})


@pytest.mark.parametrize("model", MODELS)
def test_steps_carry_metrics_and_probes_carry_views(model, tmp_path):
    events = list(train(config(model, **{"train.steps": 4, "train.attention_every": 2, "train.grad_accum": 2}),
                        out_dir=tmp_path))
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert len(steps) == 4
    for step in steps:
        assert set(step.metrics) == MODELS[model][1]
        assert all(isinstance(v, float) and math.isfinite(v) for v in step.metrics.values())
    record = json.loads(json.dumps(steps[-1].to_json()))
    assert record["metrics"] == steps[-1].metrics

    probes = [e for e in events if isinstance(e, AttentionEvent)]
    assert [p.step for p in probes] == [1, 2, 4]
    for probe in probes:
        n = len(probe.tokens)
        assert probe.maps.shape[-2:] == (n, n)
        if model == "universal":
            assert set(probe.views) == {"ponder_steps"}
            steps_used = probe.views["ponder_steps"]
            assert steps_used.shape == (1, n) and steps_used.dtype == np.float32
            assert ((steps_used >= 1) & (steps_used <= 3)).all()
            assert probe.maps.shape[0] == int(steps_used.max())  # one map per step taken
        else:
            assert set(probe.views) == {"expert_load"}
            assert probe.views["expert_load"].shape == (2, 3)
            assert np.allclose(probe.views["expert_load"].sum(-1), 1.0)
        assert "views" not in probe.to_json() and "maps" not in probe.to_json()
    assert events[-1].status == "finished"


def test_models_without_extras_report_no_metrics(tmp_path):
    events = list(train(config("transformer", **{"model.ffn": "dense", "train.steps": 2, "train.attention_every": 1}),
                        out_dir=tmp_path))
    assert all(e.metrics == {} for e in events if isinstance(e, StepEvent))
    assert all(e.views == {} for e in events if isinstance(e, AttentionEvent))


@pytest.mark.parametrize("model", MODELS)
def test_stop_then_resume_equals_one_run(model, tmp_path):
    cfg = config(model, **{"train.steps": 4, "train.attention_every": 0})

    def history(events):
        return [(e.loss, e.metrics) for e in events if isinstance(e, StepEvent)]

    straight = history(train(cfg, out_dir=tmp_path / "straight"))
    first = train_stopped_at(cfg, 2, tmp_path / "split")
    checkpoint = tmp_path / "split" / "checkpoint.safetensors"
    second = list(train(cfg, out_dir=tmp_path / "split", resume=checkpoint))
    assert second[0].start_step == 2 and isinstance(second[-1], DoneEvent)
    combined = history(first) + history(second)
    assert [loss for loss, _ in combined] == pytest.approx([loss for loss, _ in straight], rel=1e-5)
    for (_, got), (_, want) in zip(combined, straight, strict=True):
        assert got == pytest.approx(want, rel=1e-4)

    loaded, saved_config, _ = load_model(checkpoint)
    assert saved_config.model_type == model
    assert isinstance(loaded, UniversalTransformer) == (model == "universal")


@pytest.mark.parametrize(("model", "settings"), [
    ("universal", ["--set", "max_steps=3"]),
    ("transformer", ["--set", "ffn=moe", "--set", "experts=3"]),
])
def test_cli_json_step_records_carry_metrics(model, settings, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EFFSTUDIO_RECORD_RUNS", "0")
    tiny = [item for key, value in TINY.items() for item in ("--set", f"{key}={value}")]
    code = main(["train", "--model", model, "--task", "listops", "--steps", "3", "--out", str(tmp_path / "run"),
                 "--json", *tiny, *settings])
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    steps = [r for r in records if r["event"] == "step"]
    assert len(steps) == 3
    assert all(set(r["metrics"]) == MODELS[model][1] for r in steps)
