"""effstudio.pipeline driven by a plain loop: training, its record, events.jsonl, a [[compress]] step."""

import json
from pathlib import Path

import pytest

from effstudio.compress.events import ResultEvent
from effstudio.compress.steps import CompressDoneEvent, CompressStepEvent
from effstudio.engine.events import DoneEvent, JobControl, StartEvent, StepEvent
from effstudio.engine.run_config import RunConfig
from effstudio.engine.run_plan import QuantizeStep, RunPlan
from effstudio.engine.trainer import train
from effstudio.pipeline import COMPRESSING, TRAINING, run_pipeline
from effstudio.runs.recorder import RunRecordedEvent
from effstudio.runs.store import RunStore

TINY = {
    "model.d_model": 32, "model.layers": 1, "model.heads": 2, "model.dropout": 0.0,
    "task.train_size": 128, "task.val_size": 32, "task.test_size": 16, "task.max_length": 8,
    "train.steps": 4, "train.batch_size": 16, "train.eval_every": 2, "train.attention_every": 0,
    "train.warmup_steps": 1, "train.device": "cpu",
}


@pytest.fixture(autouse=True)
def isolated(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def test_a_plain_loop_gets_training_record_log_and_a_compression_step(tmp_path):
    run_dir = tmp_path / "run"
    config = RunConfig.create("transformer", "copy", TINY)
    plan = RunPlan(config, (QuantizeStep("dynamic-int8"),)).checked(run_dir)
    calls = []

    def train_fn(config, **kwargs):  # a stand-in such as the window's child process: train's arguments
        calls.append(kwargs)
        return train(config, **kwargs)

    pipeline = run_pipeline(plan, control=JobControl(), out_dir=run_dir, train_fn=train_fn, source="gui")
    events, stages = [], []
    for event in pipeline:
        events.append(event)
        stages.append(pipeline.stage)

    assert calls == [{"control": pipeline.control, "out_dir": run_dir, "resume": None, "init": None}]
    kinds = [e.kind for e in events]
    assert isinstance(events[0], StartEvent) and isinstance(events[1], RunRecordedEvent)
    assert [e.step for e in events if isinstance(e, StepEvent)] == [1, 2, 3, 4]
    trained = kinds.index("done")
    assert isinstance(events[trained], DoneEvent) and events[trained].status == "finished"
    assert set(stages[:trained + 1]) == {TRAINING} and set(stages[trained + 1:]) == {COMPRESSING}
    # the job's own log lines and progress (the window's bar and ETA) aside
    compression = [e for e in events[trained + 1:] if e.kind not in ("log", "progress")]
    assert "progress" in kinds[trained + 1:]
    assert [e.kind for e in compression] == ["compress_step", "result", "compress_done"]
    step, result, done = compression
    assert isinstance(step, CompressStepEvent) and step.artifact == "quantized"
    assert isinstance(result, ResultEvent) and Path(result.path).is_file()
    assert isinstance(done, CompressDoneEvent) and done.status == "finished" and done.outputs == [result.path]

    # events.jsonl holds every event, training and compression, in the order they came; not progress
    logged = [json.loads(line) for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert logged == [json.loads(json.dumps(e.to_json())) for e in events if e.kind != "progress"]

    # the run is recorded (from the window here), with the compressed file among its artifacts
    recorded = events[1]
    with RunStore(recorded.store) as store:
        run = store.get_run(recorded.id)
        assert run.source == "gui" and run.status == "finished"
        assert ("quantized", result.path) in [(a.kind, a.path) for a in store.artifacts(recorded.id)]
        assert run.config["compress"][0]["quantize"] == "dynamic-int8"  # the plan, so the run reproduces it


def test_without_recording_or_steps_the_log_is_still_written(tmp_path):
    run_dir = tmp_path / "run"
    plan = RunPlan(RunConfig.create("transformer", "copy", TINY)).checked(run_dir)
    pipeline = run_pipeline(plan, control=JobControl(), out_dir=run_dir, record=False)
    events = list(pipeline)
    assert [e.kind for e in events if e.kind in ("start", "run", "done")] == ["start", "done"]
    assert pipeline.stage == TRAINING and pipeline.recorded is None and pipeline.done is events[-1]
    lines = (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["event"] for line in lines] == [e.kind for e in events]


def test_a_compression_job_run_by_hand_records_its_output_in_the_source_run(tmp_path):
    from effstudio.compress.events import ResultEvent
    from effstudio.engine.events import LogEvent
    from effstudio.pipeline import recorded_outputs
    from effstudio.runs.store import RunStore

    checkpoint, stray = tmp_path / "checkpoint.safetensors", tmp_path / "stray.safetensors"
    store_path = tmp_path / "runs.sqlite"
    with RunStore(store_path) as store:
        run_id = store.create_run(config={}, model_type="transformer", task="listops", total_steps=1)
        store.add_artifact(run_id, "checkpoint", str(checkpoint))
    result = ResultEvent("onnx", str(tmp_path / "model.onnx"), 10, 10, 100, None, None)
    events = list(recorded_outputs(iter([LogEvent("info", "exporting"), result]), checkpoint, store_path=store_path))
    assert events[0].message == "exporting" and events[-1] is result
    assert events[1].message == f"recorded as a file of run {run_id} (effstudio runs show {run_id})"
    with RunStore(store_path) as store:
        assert [(a.kind, a.path) for a in store.artifacts(run_id)] == [
            ("checkpoint", str(checkpoint)), ("onnx", str(tmp_path / "model.onnx"))]
    # a file of no recorded run: passed through, nothing recorded, nothing said
    assert list(recorded_outputs(iter([result]), stray, store_path=store_path)) == [result]
