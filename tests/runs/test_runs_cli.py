"""`effstudio runs list|show|export|rename|tag|delete` with --json, on runs recorded by `effstudio train`."""

import json

import pytest

from effstudio.cli import main

TINY = ["--model", "transformer", "--task", "copy", "--steps", "4",
        "--set", "model.d_model=32", "--set", "model.layers=1", "--set", "model.heads=2",
        "--set", "task.train_size=64", "--set", "task.val_size=16", "--set", "task.max_length=8",
        "--set", "train.batch_size=8", "--set", "train.eval_every=2", "--set", "train.attention_every=0",
        "--set", "train.device=cpu"]


def run_json(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def two_runs(tmp_path, capsys):
    code, records = run_json(capsys, "train", *TINY, "--out", str(tmp_path / "a"), "--name", "first", "--json")
    assert code == 0
    code, _ = run_json(capsys, "train", *TINY, "--out", str(tmp_path / "b"), "--json")
    assert code == 0
    ids = [r["id"] for r in records if r["event"] == "run"]
    assert ids == [1]
    return tmp_path


def test_train_records_the_run_once_and_list_shows_it(two_runs, capsys):
    code, (listing,) = run_json(capsys, "runs", "list", "--json")
    assert code == 0
    runs = listing["runs"]
    assert [r["id"] for r in runs] == [2, 1]
    first = runs[1]
    assert first["name"] == "first" and runs[0]["name"] == "copy-sdpa-2"
    assert {"id", "name", "model_type", "attention", "task", "status", "started_at", "ended_at", "duration_s",
            "device", "steps", "total_steps", "final_loss", "val_loss", "val_accuracy", "tags", "run_dir",
            "source", "world_size"} <= set(first)
    assert (first["status"], first["steps"], first["model_type"], first["task"]) == ("finished", 4, "transformer",
                                                                                     "copy")
    assert first["run_dir"] == str(two_runs / "a") and first["world_size"] == 1


def test_show_has_config_metrics_and_files(two_runs, capsys):
    code, (shown,) = run_json(capsys, "runs", "show", "1", "--json")
    assert code == 0
    assert shown["config"]["train"]["steps"] == 4 and shown["config"]["model"]["d_model"] == 32
    assert shown["metrics"]["loss"]["count"] == 4 and shown["metrics"]["val_accuracy"]["count"] == 2
    assert shown["artifacts"][0]["kind"] == "checkpoint" and shown["artifacts"][0]["exists"]
    assert shown["torch_version"] and shown["effstudio_version"]
    code, (last,) = run_json(capsys, "runs", "show", "last", "--json")
    assert last["id"] == 2
    assert main(["runs", "show", "1"]) == 0  # the human-readable form
    text = capsys.readouterr().out
    assert "[train]" in text and "checkpoint" in text


def test_export_formats(two_runs, capsys, tmp_path):
    assert main(["runs", "export", "1", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("step,loss,val_loss,val_accuracy") and len(lines) == 5
    code, (exported,) = run_json(capsys, "runs", "export", "1", "--format", "json")
    assert exported["metrics"]["loss"]["steps"] == [1, 2, 3, 4]
    code, (written,) = run_json(capsys, "runs", "export", "1", "--format", "json", "--out",
                                str(tmp_path / "x" / "run.json"), "--json")
    assert json.loads((tmp_path / "x" / "run.json").read_text())["run"]["id"] == 1
    code, (tb,) = run_json(capsys, "runs", "export", "1", "--format", "tensorboard", "--json")
    assert code == 0 and "tfevents" in tb["path"] and tb["logdir"].endswith("run-1-first")


def test_rename_and_tag(two_runs, capsys):
    code, (renamed,) = run_json(capsys, "runs", "rename", "2", "baseline", "--json")
    assert renamed["name"] == "baseline"
    code, (tagged,) = run_json(capsys, "runs", "tag", "2", "sdpa", "small", "--json")
    assert tagged == {"id": 2, "tags": ["sdpa", "small"]}
    code, (tagged,) = run_json(capsys, "runs", "tag", "2", "small", "--remove", "--json")
    assert tagged["tags"] == ["sdpa"]
    code, (listing,) = run_json(capsys, "runs", "list", "--tag", "sdpa", "--json")
    assert [r["id"] for r in listing["runs"]] == [2]


def test_delete_needs_yes_and_removes_the_files(two_runs, capsys):
    code, (refused,) = run_json(capsys, "runs", "delete", "1", "--json")
    assert code == 2 and "--yes" in refused["error"]
    assert (two_runs / "a" / "checkpoint.safetensors").is_file()
    code, (deleted,) = run_json(capsys, "runs", "delete", "1", "--yes", "--json")
    assert code == 0 and deleted["deleted"] == 1 and deleted["kept"] == []
    assert str(two_runs / "a" / "checkpoint.safetensors") in deleted["removed"]
    assert not (two_runs / "a").exists()
    code, (listing,) = run_json(capsys, "runs", "list", "--json")
    assert [r["id"] for r in listing["runs"]] == [2]


def test_a_missing_run_exits_2(capsys):
    code, (error,) = run_json(capsys, "runs", "show", "42", "--json")
    assert code == 2 and "no run 42" in error["error"]


def test_no_record_and_the_environment_switch(tmp_path, capsys, monkeypatch):
    run_json(capsys, "train", *TINY, "--out", str(tmp_path / "n"), "--no-record", "--json")
    monkeypatch.setenv("EFFSTUDIO_RECORD_RUNS", "0")
    code, records = run_json(capsys, "train", *TINY, "--out", str(tmp_path / "m"), "--json")
    assert code == 0 and not any(r["event"] == "run" for r in records)
    code, (listing,) = run_json(capsys, "runs", "list", "--json")
    assert listing["runs"] == []


def test_import_a_run_folder_trained_without_the_store(tmp_path, capsys):
    trained = tmp_path / "cluster" / "run"
    code, _ = run_json(capsys, "train", *TINY, "--out", str(trained), "--no-record",
                       "--set", "train.checkpoint_every=2", "--json")
    assert code == 0
    code, _ = run_json(capsys, "train", "--resume", str(trained / "checkpoint.safetensors"), "--steps", "6",
                       "--no-record", "--json")
    assert code == 0
    home = tmp_path / "home" / "run"
    home.parent.mkdir()
    trained.rename(home)  # copied home from the cluster
    code, (imported,) = run_json(capsys, "runs", "import", str(home), "--json")
    assert code == 0
    assert (imported["status"], imported["steps"], imported["source"]) == ("finished", 6, "import")
    assert imported["run_dir"] == str(home) and imported["duration_s"] > 0
    code, (shown,) = run_json(capsys, "runs", "show", str(imported["id"]), "--json")
    assert shown["metrics"]["loss"]["count"] == 6
    assert shown["artifacts"][0]["path"] == str(home / "checkpoint.safetensors") and shown["artifacts"][0]["exists"]
    code, (again,) = run_json(capsys, "runs", "import", str(home), "--json")
    assert code == 1 and "already recorded" in again["error"]
