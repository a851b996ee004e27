"""The recorder taps the event stream: batched writes, statuses, resumed runs, a broken store."""

import pytest

from effstudio.engine.events import LogEvent, StartEvent, StepEvent
from effstudio.engine.trainer import train
from effstudio.runs.recorder import RunRecordedEvent, record_run
from effstudio.runs.store import RunStore

from .conftest import fake_events, tiny_config


def test_events_pass_through_unchanged_plus_the_run_id(tmp_path):
    config = tiny_config()
    original = list(fake_events(tmp_path / "run", checkpoint=tmp_path / "run" / "c.safetensors"))
    seen = list(record_run(iter(original), config))
    assert isinstance(seen[1], RunRecordedEvent)
    assert seen[:1] + seen[2:] == original
    with RunStore() as store:
        run = store.get_run(seen[1].id)
        assert (run.status, run.steps, run.total_steps, run.source) == ("finished", 20, 20, "cli")
        assert run.val_accuracy == pytest.approx(1.0) and run.val_loss == pytest.approx(0.1)
        assert run.torch_version and run.effstudio_version
        metrics = store.metrics(run.id)
        assert metrics["loss"].steps.tolist() == list(range(1, 21))
        assert metrics["val_accuracy"].steps.tolist() == [5, 10, 15, 20]
        assert metrics["rss_mb"].steps.tolist() == [10, 20]
        assert {"lr", "tokens_per_s", "grad_norm", "val_loss"} <= set(metrics)
        assert [a.kind for a in store.artifacts(run.id)] == ["checkpoint"]


def test_steps_are_written_in_batches_not_one_by_one(tmp_path, monkeypatch):
    writes = []
    original = RunStore.add_metrics

    def counting(self, rows, progress=None):
        rows = list(rows)
        writes.append(len(rows))
        return original(self, rows, progress)

    monkeypatch.setattr(RunStore, "add_metrics", counting)
    events = fake_events(tmp_path, steps=1000, eval_every=500)
    done = list(record_run(events, tiny_config(), flush_s=3600))[-1]
    assert done.status == "finished"
    assert len(writes) == 2  # one batch per evaluation, nothing in between
    assert sum(writes) == 1000 * 4 + 100 + 2 * 2  # 4 step metrics, rss every 10 steps, 2 per eval
    with RunStore() as store:
        assert len(store.metrics(1)["loss"]) == 1000


def test_a_time_based_flush_writes_while_the_run_goes_on(tmp_path):
    def slow_run():
        yield StartEvent(str(tmp_path), "cpu", 1, 100, 0)
        for step in range(1, 4):
            yield StepEvent(step, 100, 1.0, 1e-3, 1.0, 1.0, 1.0, 0.0)
        with RunStore() as store:  # the writer thread has had the rows since step 1 (flush_s=0)
            import time

            deadline = time.time() + 10
            while len(store.metrics(1).get("loss", [])) < 3 and time.time() < deadline:
                time.sleep(0.01)
            assert len(store.metrics(1)["loss"]) == 3
            assert store.get_run(1).status == "running" and store.get_run(1).steps == 3

    list(record_run(slow_run(), tiny_config(), flush_s=0.0))
    with RunStore() as store:
        assert store.get_run(1).status == "interrupted"  # the stream ended without a DoneEvent


def test_a_failing_stream_marks_the_run_failed(tmp_path):
    def failing():
        yield StartEvent(str(tmp_path), "cpu", 1, 10, 0)
        yield StepEvent(1, 10, 1.0, 1e-3, 1.0, 1.0, 1.0, 0.0)
        raise RuntimeError("the child process died")

    with pytest.raises(RuntimeError):
        list(record_run(failing(), tiny_config()))
    with RunStore() as store:
        run = store.get_run(1)
        assert run.status == "failed" and "child process died" in run.error
        assert len(store.metrics(1)["loss"]) == 1


def test_a_consumer_that_stops_listening_leaves_the_run_interrupted(tmp_path):
    stream = record_run(fake_events(tmp_path, steps=50), tiny_config())
    for event in stream:
        if isinstance(event, StepEvent) and event.step == 5:
            break
    stream.close()
    with RunStore() as store:
        assert store.get_run(1).status == "interrupted"


def test_an_unusable_store_never_stops_the_run(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(blocker))
    events = list(record_run(fake_events(tmp_path, steps=10), tiny_config()))
    assert events[-2].kind == "done" or events[-1].kind == "done"
    warnings = [e for e in events if isinstance(e, LogEvent) and e.level == "warning"]
    assert len(warnings) == 1 and "could not record" in warnings[0].message


def test_a_resumed_run_continues_its_record(tmp_path):
    out = tmp_path / "run"
    config = tiny_config(**{"train.steps": 6, "train.checkpoint_every": 3})
    first = list(record_run(train(config, out_dir=out), config))
    run_id = first[1].id
    checkpoint = first[-1].checkpoint
    longer = config.with_overrides({"train.steps": 10})
    again = list(record_run(train(longer, out_dir=out, resume=checkpoint), longer))
    assert again[1].id == run_id
    with RunStore() as store:
        assert len(store.list_runs()) == 1
        run = store.get_run(run_id)
        assert (run.status, run.steps, run.total_steps) == ("finished", 10, 10)
        assert store.metrics(run_id)["loss"].steps.tolist() == list(range(1, 11))
        assert run.config["train"]["steps"] == 10


def test_a_models_own_step_metrics_are_recorded(tmp_path):
    def stream():
        yield StartEvent(str(tmp_path), "cpu", 1, 2, 0)
        for step in (1, 2):
            yield StepEvent(step, 2, 1.0, 1e-3, 1.0, 1.0, 1.0, 0.0, metrics={"ponder_mean": 1.5 + step})

    list(record_run(stream(), tiny_config()))
    with RunStore() as store:
        assert store.metrics(1)["ponder_mean"].values.tolist() == [2.5, 3.5]
