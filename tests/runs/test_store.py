"""The run store's schema, migrations, queries, editing and crash recovery."""

import sqlite3
import subprocess
import sys
import time

import pytest

from effstudio.runs import store as store_module
from effstudio.runs.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    RunNotFound,
    RunStore,
    RunStoreError,
    default_path,
)


def make_run(store, **kwargs):
    fields = {"config": {"model": {"type": "transformer"}}, "model_type": "transformer", "task": "copy",
              "attention": "sdpa", "total_steps": 10}
    fields.update(kwargs)
    return store.create_run(**fields)


def test_a_new_store_has_the_latest_schema_in_wal_mode():
    with RunStore() as store:
        assert store.path == default_path()
        assert store.path.parent.name == "data"  # under EFFSTUDIO_DATA_DIR
        assert store.version == SCHEMA_VERSION == len(MIGRATIONS)
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"runs", "metrics", "artifacts", "tags"} <= tables


def test_migration_from_version_1_keeps_the_runs(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO runs (name, model_type, task, config, status, started_at) "
                 "VALUES ('old run', 'transformer', 'listops', '{}', 'finished', 1.0)")
    conn.execute("INSERT INTO metrics VALUES (1, 'loss', 1, 2.5, 1.0)")
    conn.commit()
    conn.close()

    with RunStore(path) as store:
        assert store.version == SCHEMA_VERSION
        run = store.get_run(1)
        assert (run.name, run.world_size, run.tags) == ("old run", 1, [])
        assert store.metrics(1)["loss"].values.tolist() == [2.5]
        assert store.set_tags(1, ["kept"]) == ["kept"]


def test_migrations_apply_step_by_step_and_stop_at_each_version(tmp_path):
    path = tmp_path / "steps.sqlite"
    with RunStore(path, migrate=False, recover=False) as store:
        assert store.version == 0
        assert store.migrate(MIGRATIONS[:1]) == 1
        assert store.migrate() == SCHEMA_VERSION
        assert store.migrate() == SCHEMA_VERSION  # idempotent


def test_a_failing_migration_leaves_the_previous_version(tmp_path):
    path = tmp_path / "bad.sqlite"
    broken = [*MIGRATIONS, ("CREATE TABLE extra (x)", "THIS IS NOT SQL")]
    with RunStore(path) as store:
        with pytest.raises(sqlite3.OperationalError):
            store.migrate(broken)
        assert store.version == SCHEMA_VERSION
        assert store.conn.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchone() is None


def test_a_store_from_a_newer_effstudio_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RunStoreError, match="newer than this effstudio"):
        RunStore(path)


def test_runs_list_filter_rename_tag():
    with RunStore() as store:
        first = make_run(store, task="listops")
        second = make_run(store, task="copy", name="mine")
        assert store.get_run(first).name == f"listops-sdpa-{first}"
        assert [r.id for r in store.list_runs()] == [second, first]  # newest first
        assert [r.id for r in store.list_runs(task="listops")] == [first]
        store.rename(first, "  better name ")
        assert store.get_run(first).name == "better name"
        assert store.add_tags(first, ["b", "a", "a", " "]) == ["a", "b"]
        assert store.remove_tags(first, ["a"]) == ["b"]
        assert [r.id for r in store.list_runs(tag="b")] == [first]
        assert store.resolve("last") == second
        with pytest.raises(RunNotFound):
            store.resolve("999")
        with pytest.raises(RunStoreError):
            store.rename(first, "")


def test_delete_removes_only_the_runs_own_files(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("checkpoint.safetensors", "checkpoint.state.pt", "config.toml", "events.jsonl"):
        (run_dir / name).write_text("x")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "mine.txt").write_text("not a run file")
    with RunStore() as store:
        run_id = make_run(store, run_dir=str(run_dir), status="finished")
        store.add_artifact(run_id, "checkpoint", run_dir / "checkpoint.safetensors", 10)
        elsewhere = tmp_path / "exports" / "model.onnx"  # a user's export of the run, written outside it
        elsewhere.parent.mkdir()
        elsewhere.write_text("onnx")
        store.add_artifact(run_id, "onnx", elsewhere)
        other = make_run(store, run_dir=str(shared), status="finished")
        assert len(store.run_files(run_id)) == 4 and elsewhere not in store.run_files(run_id)
        result = store.delete_run(run_id)
        assert result.removed[-1] == str(run_dir) and len(result.removed) == 5 and not run_dir.exists()
        with pytest.raises(RunNotFound):
            store.get_run(run_id)
        assert store.artifacts(run_id) == [] and store.metrics(run_id) == {}
        store.delete_run(other)
        assert (shared / "mine.txt").is_file()  # a folder with other files stays
        assert elsewhere.is_file()  # files outside the run folder are the user's to delete


def test_a_running_run_is_not_deleted_without_force():
    with RunStore() as store:
        run_id = make_run(store)
        with pytest.raises(RunStoreError, match="still running"):
            store.delete_run(run_id)


def test_runs_of_dead_processes_are_marked_interrupted():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with RunStore() as store:
        alive = make_run(store)  # this process
        crashed = make_run(store, pid=dead.pid)
        far_away = make_run(store)
        store.update_run(far_away, host="another-host", heartbeat=time.time() - store_module.STALE_S - 1)
        nearby = make_run(store)
        store.update_run(nearby, host="another-host", heartbeat=time.time())
    with RunStore() as store:  # opening marks them
        status = {r.id: r.status for r in store.list_runs()}
        assert status == {alive: "running", crashed: "interrupted", far_away: "interrupted", nearby: "running"}
        assert "killed or crashed" in store.get_run(crashed).error


def test_a_file_that_is_not_a_database_is_reported(tmp_path):
    path = tmp_path / "garbage.sqlite"
    path.write_bytes(b"this is not an SQLite database, not even close" * 100)
    with pytest.raises(RunStoreError, match="not usable"):
        RunStore(path)
