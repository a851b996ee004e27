"""Exports: CSV, JSON, and TensorBoard event files read back by TensorBoard's own reader."""

import csv
import io
import json
import struct

import pytest

from effstudio.runs.export import export_json, write_csv, write_tensorboard
from effstudio.runs.recorder import record_run
from effstudio.runs.store import RunStore
from effstudio.runs.tfevents import crc32c, encode_event, frame_record, masked_crc32c

from .conftest import fake_events, tiny_config


@pytest.fixture
def store(tmp_path):
    list(record_run(fake_events(tmp_path / "run", steps=20), tiny_config(), name="exported"))
    with RunStore() as opened:
        yield opened


def test_csv_is_one_row_per_step_with_a_column_per_metric(store):
    out = io.StringIO()
    assert write_csv(store, 1, out) == 20
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0])[:4] == ["step", "loss", "val_loss", "val_accuracy"]
    assert [int(r["step"]) for r in rows] == list(range(1, 21))
    assert float(rows[4]["val_accuracy"]) == pytest.approx(0.25) and rows[3]["val_accuracy"] == ""
    assert float(rows[9]["rss_mb"]) == pytest.approx(130.0)


def test_json_has_the_run_and_every_series(store):
    data = json.loads(json.dumps(export_json(store, 1)))
    assert data["run"]["name"] == "exported" and data["run"]["config"]["model"]["type"] == "transformer"
    assert data["metrics"]["loss"]["steps"] == list(range(1, 21))
    assert len(data["metrics"]["loss"]["wall_times"]) == 20
    assert data["metrics"]["val_loss"]["values"][0] == pytest.approx(0.4)


def test_crc32c_and_record_framing():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert crc32c(b"") == 0
    record = frame_record(b"abc")
    length, header_crc = struct.unpack("<QI", record[:12])
    assert length == 3 and header_crc == masked_crc32c(record[:8])
    assert record[12:15] == b"abc" and struct.unpack("<I", record[15:])[0] == masked_crc32c(b"abc")


def test_event_encoding_matches_protobuf():
    pb = pytest.importorskip("tensorboard.compat.proto.event_pb2")
    event = pb.Event.FromString(encode_event(123.5, 7, scalars=[("train/loss", 0.25), ("x", -1.0)]))
    assert event.wall_time == 123.5 and event.step == 7
    assert [(v.tag, v.simple_value) for v in event.summary.value] == [("train/loss", 0.25), ("x", -1.0)]
    assert pb.Event.FromString(encode_event(1.0, file_version="brain.Event:2")).file_version == "brain.Event:2"
    assert pb.Event.FromString(encode_event(1.0, -3, scalars=[])).step == -3


def test_tensorboard_export_reads_back_in_tensorboard(store, tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    path = write_tensorboard(store, 1, tmp_path / "tb")
    write_tensorboard(store, 1, tmp_path / "tb")  # a second export replaces the first
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1
    reader = accumulator.EventAccumulator(str(path.parent))
    reader.Reload()
    tags = set(reader.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/loss", "val/accuracy", "memory/rss_mb"} <= tags
    loss = reader.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, 21))
    assert [e.value for e in loss] == pytest.approx([3.0 / s for s in range(1, 21)], rel=1e-6)
    recorded = store.metrics(1)["loss"].wall_times
    assert [e.wall_time for e in loss] == pytest.approx(recorded.tolist())
    assert [e.step for e in reader.Scalars("val/accuracy")] == [5, 10, 15, 20]


def test_tensorboard_default_folder_is_under_the_data_folder(store):
    path = write_tensorboard(store, 1)
    assert path.parent.name == "run-1-exported" and path.parent.parent.name == "tensorboard"
