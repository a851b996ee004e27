"""The run store: an embedded SQLite database of runs, their metrics by step and their files.

One file, ``runs.sqlite`` in the platformdirs data folder (``EFFSTUDIO_DATA_DIR``
moves it). The schema is versioned by ``PRAGMA user_version``: :data:`MIGRATIONS`
is a list of steps, step ``i`` takes a database from version ``i`` to ``i + 1``,
and opening a store applies the missing steps in one transaction each. A database
written by a newer effstudio is refused, never altered.

Crash safety: WAL journal mode, so a process killed mid-write (SIGKILL, power
cut of the app, not of the disk) leaves the database readable with every
committed transaction. A run records the host, process id and process start time
of its recorder; a run still ``running`` whose process is gone (or, on another
host, whose heartbeat is older than :data:`STALE_S`) is marked ``interrupted``
when a store is next opened.

Connections are per thread (sqlite3's rule): the recorder's writer thread opens
its own :class:`RunStore`.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from effstudio.engine.run_lock import LOCK_NAME
from effstudio.paths import data_dir

DB_NAME = "runs.sqlite"
STATUSES = ("running", "finished", "stopped", "failed", "interrupted")
STALE_S = 600.0  # a running run on another host with no heartbeat for this long is interrupted
BUSY_TIMEOUT_S = 30.0
RUN_FILES = ("checkpoint.safetensors", "checkpoint.state.pt", "config.toml", "events.jsonl", LOCK_NAME)

# Step i takes a database from user_version i to i + 1. Append; never edit a released step.
MIGRATIONS: list[tuple[str, ...]] = [
    # 1: runs, their metrics by step, their files
    (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            model_type TEXT NOT NULL,
            attention TEXT,
            task TEXT NOT NULL,
            config TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL,
            device TEXT,
            run_dir TEXT,
            params INTEGER,
            start_step INTEGER NOT NULL DEFAULT 0,
            total_steps INTEGER,
            steps INTEGER NOT NULL DEFAULT 0,
            final_loss REAL,
            val_loss REAL,
            val_accuracy REAL,
            error TEXT,
            effstudio_version TEXT,
            torch_version TEXT,
            source TEXT,
            host TEXT,
            pid INTEGER,
            pid_started REAL,
            heartbeat REAL
        )""",
        "CREATE INDEX runs_status ON runs (status)",
        "CREATE INDEX runs_run_dir ON runs (run_dir)",
        """CREATE TABLE metrics (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            step INTEGER NOT NULL,
            value REAL,
            wall_time REAL NOT NULL,
            PRIMARY KEY (run_id, name, step)
        ) WITHOUT ROWID""",
        """CREATE TABLE artifacts (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            path TEXT NOT NULL,
            step INTEGER,
            created_at REAL NOT NULL,
            UNIQUE (run_id, path)
        )""",
    ),
    # 2: tags; the number of processes of a torchrun job
    (
        """CREATE TABLE tags (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            PRIMARY KEY (run_id, tag)
        ) WITHOUT ROWID""",
        "ALTER TABLE runs ADD COLUMN world_size INTEGER NOT NULL DEFAULT 1",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)


class RunStoreError(RuntimeError):
    """The store cannot be opened or a run is not there; the message says which and why."""


class RunNotFound(RunStoreError):
    pass


def default_path() -> Path:
    return data_dir() / DB_NAME


def iso_time(timestamp: float | None) -> str | None:
    """Local time with its UTC offset, to the second (``2026-05-01T14:03:07+02:00``)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """One row of ``runs`` with its tags; ``to_json()`` is the CLI's record of a run."""

    id: int
    name: str
    model_type: str
    attention: str | None
    task: str
    config: dict[str, Any]
    status: str
    started_at: float
    ended_at: float | None
    device: str | None
    run_dir: str | None
    params: int | None
    start_step: int
    total_steps: int | None
    steps: int
    final_loss: float | None
    val_loss: float | None
    val_accuracy: float | None
    error: str | None
    effstudio_version: str | None
    torch_version: str | None
    source: str | None
    host: str | None
    pid: int | None
    world_size: int = 1
    tags: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        if self.ended_at is None:
            return None if self.status != "running" else max(time.time() - self.started_at, 0.0)
        return max(self.ended_at - self.started_at, 0.0)

    def summary_json(self) -> dict[str, Any]:
        """The fields of ``runs list --json``."""
        return {
            "id": self.id, "name": self.name, "model_type": self.model_type, "attention": self.attention,
            "task": self.task, "status": self.status, "started_at": iso_time(self.started_at),
            "ended_at": iso_time(self.ended_at), "duration_s": self.duration_s, "device": self.device,
            "steps": self.steps, "total_steps": self.total_steps, "final_loss": self.final_loss,
            "val_loss": self.val_loss, "val_accuracy": self.val_accuracy, "tags": list(self.tags),
            "run_dir": self.run_dir, "source": self.source, "world_size": self.world_size,
        }

    def to_json(self) -> dict[str, Any]:
        """Everything about the run except its metric series (``runs show --json``)."""
        record = self.summary_json()
        record.update({
            "params": self.params, "start_step": self.start_step, "error": self.error,
            "effstudio_version": self.effstudio_version, "torch_version": self.torch_version,
            "host": self.host, "pid": self.pid, "config": self.config,
        })
        return record


@dataclass(frozen=True)
class Artifact:
    kind: str  # "checkpoint", "export", ...
    path: str
    step: int | None
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "step": self.step, "created_at": iso_time(self.created_at),
                "exists": Path(self.path).exists()}


@dataclass(frozen=True)
class MetricSeries:
    """One metric of one run: steps, values and wall-clock times, ordered by step."""

    steps: np.ndarray  # int64
    values: np.ndarray  # float64 (NaN where the value was not finite)
    wall_times: np.ndarray  # float64, seconds since the epoch

    def __len__(self) -> int:
        return len(self.steps)


@dataclass
class DeleteResult:
    run_id: int
    removed: list[str] = field(default_factory=list)  # files and folders deleted
    kept: list[str] = field(default_factory=list)  # files not deleted (shared with another run, or failed)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -------------------------------------------------------------------- helpers
def _process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def process_alive(pid: int | None, started: float | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (a reused pid is not it)."""
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        if started is not None and abs(process.create_time() - started) > 1.0:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # zombies included
        return False
    except psutil.AccessDenied:  # it exists, owned by someone else
        return True


def _json_value(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


# ---------------------------------------------------------------------- store
class RunStore:
    """A connection to the run store. Not shared between threads; open one per thread."""

    def __init__(self, path: str | Path | None = None, *, recover: bool = True, migrate: bool = True):
        self.path = Path(path) if path is not None else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as err:
            raise RunStoreError(f"cannot open the run store {self.path}: {err}") from None
        self.conn.row_factory = sqlite3.Row
        try:
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")  # WAL: a killed process loses nothing committed
            self.conn.execute("PRAGMA foreign_keys = ON")
            if migrate:
                self.migrate()
            if recover:
                self.mark_interrupted()
        except sqlite3.DatabaseError as err:
            self.conn.close()
            raise RunStoreError(f"the run store {self.path} is not usable: {err}") from None
        except BaseException:
            self.conn.close()
            raise

    # ---------------------------------------------------------------- schema
    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self, migrations: Sequence[Sequence[str]] = MIGRATIONS) -> int:
        """Apply the missing migration steps, each in its own transaction; return the new version."""
        if self.version == len(migrations):
            # up to date: no write lock to wait for, so reading the store goes on while another process
            # (a run recording, a long import, a database browser) holds it
            return len(migrations)
        while True:
            self.conn.execute("BEGIN IMMEDIATE")  # one migrating process at a time; re-read inside
            try:
                version = self.version
                if version > len(migrations):
                    raise RunStoreError(
                        f"the run store {self.path} has schema version {version}, newer than this effstudio "
                        f"knows ({len(migrations)}); upgrade effstudio or move the file away")
                if version == len(migrations):
                    self.conn.execute("COMMIT")
                    return version
                for statement in migrations[version]:
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {version + 1}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _write(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self.conn:  # autocommit connection: BEGIN/COMMIT around the statement
            self.conn.execute("BEGIN")
            return self.conn.execute(sql, params)

    # ------------------------------------------------------------- recording
    def create_run(self, *, config: dict[str, Any], model_type: str, task: str, attention: str | None = None,
                   name: str | None = None, status: str = "running", started_at: float | None = None,
                   device: str | None = None, run_dir: str | None = None, params: int | None = None,
                   start_step: int = 0, total_steps: int | None = None, source: str | None = None,
                   world_size: int = 1, pid: int | None = None, versions: dict[str, str] | None = None) -> int:
        """Insert a run; without a name it is called ``<task>-<attention or model>-<id>``."""
        now = time.time()
        pid = os.getpid() if pid is None else pid
        versions = versions or {}
        with self.conn:
            self.conn.execute("BEGIN")
            cursor = self.conn.execute(
                """INSERT INTO runs (name, model_type, attention, task, config, status, started_at, device,
                       run_dir, params, start_step, total_steps, steps, source, world_size, host, pid,
                       pid_started, heartbeat, effstudio_version, torch_version)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (name or "", model_type, attention, task, json.dumps(config), status,
                 started_at if started_at is not None else now, device, run_dir, params, start_step, total_steps,
                 start_step, source, world_size, socket.gethostname(), pid, _process_started(pid), now,
                 versions.get("effstudio"), versions.get("torch")))
            run_id = int(cursor.lastrowid)
            if not name:
                self.conn.execute("UPDATE runs SET name = ? WHERE id = ?",
                                  (f"{task}-{attention or model_type}-{run_id}", run_id))
        return run_id

    def continue_run(self, run_id: int, *, start_step: int, config: dict[str, Any], total_steps: int | None,
                     device: str | None, world_size: int = 1, pid: int | None = None,
                     versions: dict[str, str] | None = None) -> None:
        """A run resumed from its checkpoint: running again, metrics past ``start_step`` dropped."""
        pid = os.getpid() if pid is None else pid
        versions = versions or {}
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, start_step))
            self.conn.execute(
                """UPDATE runs SET status = 'running', ended_at = NULL, error = NULL, config = ?, total_steps = ?,
                       steps = ?, device = ?, world_size = ?, host = ?, pid = ?, pid_started = ?, heartbeat = ?,
                       effstudio_version = COALESCE(?, effstudio_version), torch_version = COALESCE(?, torch_version)
                   WHERE id = ?""",
                (json.dumps(config), total_steps, start_step, device, world_size, socket.gethostname(), pid,
                 _process_started(pid), time.time(), versions.get("effstudio"), versions.get("torch"), run_id))

    def resumable_run(self, run_dir: str) -> int | None:
        """The newest run recorded in ``run_dir`` (a resumed run continues it)."""
        row = self.conn.execute("SELECT id FROM runs WHERE run_dir = ? ORDER BY id DESC LIMIT 1",
                                (run_dir,)).fetchone()
        return int(row[0]) if row else None

    def add_metrics(self, rows: Iterable[tuple[int, str, int, float | None, float]],
                    progress: dict[int, dict[str, Any]] | None = None) -> None:
        """Write ``(run_id, name, step, value, wall_time)`` rows and run columns in one transaction."""
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, name, step, value, wall_time) VALUES (?, ?, ?, ?, ?)",
                ((r, n, s, _json_value(v), w) for r, n, s, v, w in rows))
            for run_id, columns in (progress or {}).items():
                self._update(run_id, {**columns, "heartbeat": time.time()})

    def _update(self, run_id: int, columns: dict[str, Any]) -> None:
        names = list(columns)
        unknown = set(names) - set(RunRecord.__dataclass_fields__) - {"heartbeat"}
        if unknown:
            raise ValueError(f"unknown run columns {sorted(unknown)}")
        values = [json.dumps(v) if n == "config" else v for n, v in columns.items()]
        assignments = ", ".join(f"{name} = ?" for name in names)
        self.conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values, run_id))

    def update_run(self, run_id: int, **columns: Any) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            self._update(run_id, columns)

    def heartbeat(self, run_id: int) -> None:
        self._write("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run_id))

    def add_artifact(self, run_id: int, kind: str, path: str | Path, step: int | None = None) -> None:
        self._write(
            """INSERT INTO artifacts (run_id, kind, path, step, created_at) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (run_id, path) DO UPDATE SET kind = excluded.kind, step = excluded.step,
                   created_at = excluded.created_at""",
            (run_id, kind, str(path), step, time.time()))

    def finish_run(self, run_id: int, status: str, *, steps: int | None = None, final_loss: float | None = None,
                   val_accuracy: float | None = None, error: str | None = None,
                   ended_at: float | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        columns: dict[str, Any] = {"status": status, "ended_at": ended_at or time.time(), "error": error}
        if steps is not None:
            columns["steps"] = steps
        if final_loss is not None:
            columns["final_loss"] = _json_value(final_loss)
        if val_accuracy is not None:
            columns["val_accuracy"] = _json_value(val_accuracy)
        self.update_run(run_id, **columns)

    def mark_interrupted(self) -> list[int]:
        """Mark runs left ``running`` by a process that is gone as ``interrupted``; return their ids."""
        rows = self.conn.execute("SELECT id, host, pid, pid_started, heartbeat FROM runs WHERE status = 'running'"
                                 ).fetchall()
        host, now = socket.gethostname(), time.time()
        dead = []
        for row in rows:
            if row["host"] == host:
                gone = not process_alive(row["pid"], row["pid_started"])
            else:
                gone = row["heartbeat"] is None or now - row["heartbeat"] > STALE_S
            if gone:
                dead.append(int(row["id"]))
        if dead:
            with self.conn:
                self.conn.execute("BEGIN")
                for run_id in dead:
                    self.conn.execute(
                        """UPDATE runs SET status = 'interrupted', ended_at = COALESCE(heartbeat, started_at),
                               error = 'the process recording this run ended without finishing it (killed or '
                                       || 'crashed); continue it from its last checkpoint'
                           WHERE id = ? AND status = 'running'""", (run_id,))
        return dead

    # ---------------------------------------------------------------- reading
    def _record(self, row: sqlite3.Row, tags: list[str]) -> RunRecord:
        data = {k: row[k] for k in row.keys() if k in RunRecord.__dataclass_fields__}
        data["config"] = json.loads(row["config"])
        data.setdefault("world_size", 1)
        return RunRecord(**data, tags=tags)

    def _tags(self, run_ids: Sequence[int] | None = None) -> dict[int, list[str]]:
        if self.version < 2:
            return {}
        tags: dict[int, list[str]] = {}
        for run_id, tag in self.conn.execute("SELECT run_id, tag FROM tags ORDER BY tag"):
            if run_ids is None or run_id in run_ids:
                tags.setdefault(int(run_id), []).append(tag)
        return tags

    def list_runs(self, *, status: str | None = None, tag: str | None = None, model_type: str | None = None,
                  task: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first, optionally filtered."""
        where, params = [], []
        for column, value in (("status", status), ("model_type", model_type), ("task", task)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if tag is not None:
            where.append("id IN (SELECT run_id FROM tags WHERE tag = ?)")
            params.append(tag)
        sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self.conn.execute(sql, params).fetchall()
        tags = self._tags()
        return [self._record(row, tags.get(int(row["id"]), [])) for row in rows]

    def get_run(self, run_id: int) -> RunRecord:
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run {run_id} in the run store (see `effstudio runs list`)")
        return self._record(row, self._tags([run_id]).get(run_id, []))

    def resolve(self, ref: str | int) -> int:
        """A run id from ``12`` or ``last`` (the newest run)."""
        if isinstance(ref, int) or str(ref).strip().isdigit():
            run_id = int(ref)
            self.get_run(run_id)
            return run_id
        if str(ref).strip().lower() == "last":
            row = self.conn.execute("SELECT MAX(id) FROM runs").fetchone()
            if row[0] is None:
                raise RunNotFound("the run store has no runs yet")
            return int(row[0])
        raise RunNotFound(f"{ref!r} is not a run id (a number, or 'last')")

    def metric_names(self, run_id: int) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT name FROM metrics WHERE run_id = ? ORDER BY name",
                                                (run_id,))]

    def metrics(self, run_id: int, names: Sequence[str] | None = None) -> dict[str, MetricSeries]:
        """The run's metric series by name (all of them, or ``names``)."""
        sql = "SELECT name, step, value, wall_time FROM metrics WHERE run_id = ?"
        params: list[Any] = [run_id]
        if names is not None:
            sql += f" AND name IN ({', '.join('?' * len(names))})"
            params += list(names)
        grouped: dict[str, list[tuple[int, float, float]]] = {}
        for name, step, value, wall in self.conn.execute(sql + " ORDER BY name, step", params):
            grouped.setdefault(name, []).append((step, np.nan if value is None else value, wall))
        result = {}
        for name, rows in grouped.items():
            steps, values, walls = zip(*rows, strict=True)
            result[name] = MetricSeries(np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64),
                                        np.asarray(walls, dtype=np.float64))
        return result

    def metric_summary(self, run_id: int) -> dict[str, dict[str, Any]]:
        """Per metric: count, first/last step, last, min and max value."""
        summary = {}
        for name, series in self.metrics(run_id).items():
            finite = series.values[np.isfinite(series.values)]
            summary[name] = {
                "count": len(series), "first_step": int(series.steps[0]), "last_step": int(series.steps[-1]),
                "last": _json_value(series.values[-1]),
                "min": float(finite.min()) if len(finite) else None,
                "max": float(finite.max()) if len(finite) else None,
            }
        return summary

    def artifacts(self, run_id: int) -> list[Artifact]:
        rows = self.conn.execute("SELECT kind, path, step, created_at FROM artifacts WHERE run_id = ? ORDER BY id",
                                 (run_id,)).fetchall()
        return [Artifact(r["kind"], r["path"], r["step"], r["created_at"]) for r in rows]

    def run_of_file(self, path: str | Path) -> int | None:
        """The newest run that has ``path`` among its artifacts (a checkpoint, a pruned file...), or None."""
        path = Path(path).expanduser()
        try:
            resolved = path.resolve()
        except OSError:
            resolved = path.absolute()
        names = sorted({str(path), str(path.absolute()), str(resolved)})
        row = self.conn.execute(
            f"SELECT run_id FROM artifacts WHERE path IN ({', '.join('?' * len(names))}) ORDER BY run_id DESC LIMIT 1",
            names).fetchone()
        if row is not None:
            return int(row[0])
        # a path recorded in another spelling (relative, through a link): compare where the files are
        rows = self.conn.execute("SELECT run_id, path FROM artifacts WHERE path LIKE ? ORDER BY run_id DESC",
                                 (f"%{path.name}",)).fetchall()
        for run_id, recorded in rows:
            try:
                if Path(recorded).resolve() == resolved:
                    return int(run_id)
            except OSError:
                continue
        return None

    def last_checkpoint(self, run_id: int) -> Artifact | None:
        """The run's newest checkpoint file that still exists."""
        existing = [a for a in self.artifacts(run_id) if a.kind == "checkpoint" and Path(a.path).is_file()]
        return max(existing, key=lambda a: (a.step or 0, a.created_at)) if existing else None

    # ---------------------------------------------------------------- editing
    def rename(self, run_id: int, name: str) -> None:
        name = name.strip()
        if not name:
            raise RunStoreError("a run's name cannot be empty")
        self.get_run(run_id)
        self._write("UPDATE runs SET name = ? WHERE id = ?", (name, run_id))

    def set_tags(self, run_id: int, tags: Iterable[str]) -> list[str]:
        """Replace the run's tags (stripped, deduplicated, empty ones dropped); return them sorted."""
        self.get_run(run_id)
        clean = sorted({t.strip() for t in tags if t.strip()})
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute("DELETE FROM tags WHERE run_id = ?", (run_id,))
            self.conn.executemany("INSERT INTO tags (run_id, tag) VALUES (?, ?)", ((run_id, t) for t in clean))
        return clean

    def add_tags(self, run_id: int, tags: Iterable[str]) -> list[str]:
        return self.set_tags(run_id, [*self.get_run(run_id).tags, *tags])

    def remove_tags(self, run_id: int, tags: Iterable[str]) -> list[str]:
        drop = {t.strip() for t in tags}
        return self.set_tags(run_id, [t for t in self.get_run(run_id).tags if t not in drop])

    def run_files(self, run_id: int) -> list[Path]:
        """The files of a run that deleting it with its files removes: those no other run refers to,
        and, for a run with a folder, only those inside it (an export a user wrote elsewhere stays)."""
        run = self.get_run(run_id)
        folder = Path(run.run_dir).resolve() if run.run_dir else None
        candidates: list[Path] = []
        for artifact in self.artifacts(run_id):
            path = Path(artifact.path)
            if folder is not None and not path.resolve().is_relative_to(folder):
                continue
            candidates.append(path)
            if artifact.kind == "checkpoint":
                candidates.append(path.with_name(path.stem + ".state.pt"))
        if run.run_dir:
            candidates += [Path(run.run_dir) / name for name in RUN_FILES]
        others = self.conn.execute(
            "SELECT path FROM artifacts WHERE run_id != ? UNION SELECT run_dir FROM runs WHERE id != ? "
            "AND run_dir IS NOT NULL", (run_id, run_id)).fetchall()
        shared = {str(row[0]) for row in others}
        seen, files = set(), []
        for path in candidates:
            if str(path) in seen or str(path) in shared or str(path.parent) in shared:
                continue
            seen.add(str(path))
            if path.is_file():
                files.append(path)
        return files

    def delete_run(self, run_id: int, *, remove_files: bool = True, force: bool = False) -> DeleteResult:
        """Delete a run's records and, unless told not to, its files and (then empty) run folder.

        Only the run's own files go: its artifacts, the checkpoint's training state, and the files a
        run folder holds (config.toml, events.jsonl); a folder is removed only once empty. A run
        still ``running`` is refused unless ``force``.
        """
        run = self.get_run(run_id)
        if run.status == "running" and not force:
            raise RunStoreError(f"run {run_id} is still running; stop it first")
        result = DeleteResult(run_id)
        if remove_files:
            for path in self.run_files(run_id):
                try:
                    path.unlink()
                    result.removed.append(str(path))
                except OSError:
                    result.kept.append(str(path))
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        if remove_files and run.run_dir and self.resumable_run(run.run_dir) is None:
            folder = Path(run.run_dir)
            try:
                folder.rmdir()  # only when empty: never a folder with someone else's files
                result.removed.append(str(folder))
            except OSError:
                pass
        return result

    def integrity_check(self) -> str:
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])
