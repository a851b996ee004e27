"""Hostile values in files and hostile paths, through every entry point that reads them.

Each case must end with exit code 2, exactly one line on stderr naming the file and the field (or
the reason), no traceback, and nothing written: not beside the hostile file, not in the current
folder, not in the run store.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from effstudio.cli import main
from tests.hostile import value_cases as cases
from tests.hostile.entry_points import READERS, model_file_readers

ROOT = Path(__file__).resolve().parents[2]
BY_NAME = {name: (make, kind) for name, make, kind in cases.CASES}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Data, cache and logs in the test's folder; an empty current folder that must stay empty."""
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path.parent / "hostile-cache"))
    monkeypatch.setenv("EFFSTUDIO_LOG_DIR", str(tmp_path / "logs"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield
    assert not any(cwd.iterdir()), f"written into the current folder: {sorted(cwd.iterdir())}"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Every case of value_cases, made once: name -> path."""
    root = tmp_path_factory.mktemp("hostile-values")
    os.environ.setdefault("EFFSTUDIO_CACHE_DIR", str(root / "cache"))
    paths = {}
    for name, make, _ in cases.CASES:
        folder = root / name
        folder.mkdir()
        paths[name] = make(folder)
    paths["good"] = cases.make_good_checkpoint(root, "good.safetensors")
    return paths


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.lstat().st_size for p in folder.rglob("*")}


def refused(argv, capsys, *, names, watch, code=2) -> str:
    """Run the CLI in-process; check the outcome; return the one message line."""
    before = {folder: _listing(folder) for folder in watch}
    result = main([str(a) for a in argv])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert result == code, f"exit {result} for {argv}: {captured.err}"
    assert "Traceback" not in captured.err
    assert len(lines) == 1, f"expected one line on stderr, got: {captured.err!r}"
    for name in names:
        assert name in lines[0], f"{name!r} not named in: {lines[0]}"
    for folder, listing in before.items():
        assert _listing(folder) == listing, f"{folder} changed"
    return lines[0]


@contextlib.contextmanager
def fifo_never_blocks(fifo: Path):
    """Keep opening the other end of ``fifo`` while the test runs, so that code which wrongly reads
    from it (or writes to it) gets an end of file or a reader and fails the test instead of hanging."""
    done = threading.Event()

    def unblock():
        while not done.wait(0.05):
            for flags in (os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK):
                try:
                    fd = os.open(fifo, flags)
                except OSError:  # no reader yet (ENXIO) or the fifo is gone
                    continue
                if not flags & os.O_WRONLY:  # the reading end: take what a writer sent
                    with contextlib.suppress(OSError):
                        os.read(fd, 1 << 20)
                os.close(fd)

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _no_runs(tmp_path: Path) -> None:
    runs = tmp_path / "data" / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "a run folder was created"


# ------------------------------------------------------------ checkpoint headers
CHECKPOINT_CASES = [name for name, _, kind in cases.CASES if kind == "checkpoint"]




@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_bad_checkpoint_header_is_one_line_naming_file_and_field(case, reader, made, tmp_path, capsys):
    ckpt = made[case]
    out = tmp_path / "out"
    out.mkdir()
    argv = model_file_readers(ckpt, made["good"], out)[reader]
    # the inspector still shows what a damaged file holds, and exits 1 as for any damage it finds
    code = 1 if reader.startswith("inspect") else 2
    refused(argv, capsys, names=[ckpt.name, cases.FIELDS[case]], watch=[ckpt.parent, out], code=code)
    _no_runs(tmp_path)


def test_good_checkpoint_still_passes_the_header_checks(made, capsys):
    from effstudio.engine.checkpoint import read_info

    info = read_info(made["good"])
    assert info.step == 1 and info.config.model_type == "transformer"
    assert main(["inspect", str(made["good"]), "--no-stats"]) == 0
    assert "effstudio transformer" in capsys.readouterr().out


# ------------------------------------------------------------ --config files
TOML_CASES = [name for name, _, kind in cases.CASES if kind == "toml"]


@pytest.mark.parametrize("case", TOML_CASES)
def test_bad_config_file_is_one_line_naming_file_and_field(case, made, tmp_path, capsys):
    config = made[case]
    out = tmp_path / "run"
    refused(["train", "--config", config, "--out", out, "--no-record"], capsys,
            names=[config.name, cases.FIELDS[case]], watch=[config.parent])
    assert not out.exists()
    _no_runs(tmp_path)


@pytest.mark.parametrize("case", ["toml_not_utf8", "toml_deep_array", "toml_model_number", "toml_steps_text"])
def test_bad_config_file_of_a_run_folder_is_refused_by_runs_import(case, made, tmp_path, capsys):
    run = cases.make_good_run_folder(tmp_path, config=made[case].read_bytes())
    refused(["runs", "import", run], capsys, names=["config.toml", cases.FIELDS[case]], watch=[run])
    assert main(["runs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == []


@pytest.mark.parametrize("case", ["toml_escaped_quotes", "ckpt_config_escaped_quotes"])
def test_readers_take_linear_time_on_strings_that_never_end(case, made, capsys):
    import time

    argv = ["train", "--config", made[case]] if case.startswith("toml") else ["inspect", made[case], "--no-stats"]
    started = time.perf_counter()
    refused(argv, capsys, names=[made[case].name, cases.FIELDS[case]], watch=[made[case].parent],
            code=2 if case.startswith("toml") else 1)
    assert time.perf_counter() - started < 5


def test_good_config_file_is_read(tmp_path):
    from effstudio.engine.run_config import RunConfig

    path = tmp_path / "run.toml"
    path.write_text(cases.tiny_config().to_toml(), encoding="utf-8")
    assert RunConfig.from_toml(path) == cases.tiny_config()


# ------------------------------------------------------------ runs import
RUN_CASES = [name for name, _, kind in cases.CASES if kind == "run_folder"]


@pytest.mark.parametrize("case", RUN_CASES)
def test_bad_run_folder_is_refused_and_nothing_recorded(case, made, tmp_path, capsys):
    run = made[case]
    refused(["runs", "import", run], capsys, names=[cases.FIELDS[case]], watch=[run])
    assert main(["runs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == []


@pytest.mark.parametrize("case", ["run_list_line", "run_step_text", "run_deep_line"])
def test_bad_run_folder_json_mode_gives_an_error_record(case, made, capsys):
    assert main(["runs", "import", str(made[case]), "--json"]) == 2
    captured = capsys.readouterr()
    assert "events.jsonl:3" in json.loads(captured.out)["error"]
    assert len(captured.err.splitlines()) == 1


def test_good_run_folder_imports_and_a_line_cut_by_a_crash_is_passed_over(tmp_path, capsys):
    run = cases.make_good_run_folder(tmp_path, lines=[b'{"event": "step", "st'])
    assert main(["runs", "import", str(run), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "finished" and record["steps"] == 2


# ------------------------------------------------------------ symlink loops as inputs
def input_readers(loop: Path, good: Path, out: Path) -> dict[str, list]:
    return {**model_file_readers(loop, good, out),
            "--config": ["train", "--config", loop, "--out", out / "run"],
            "runs import": ["runs", "import", loop]}


@pytest.mark.parametrize("reader", list(input_readers(Path("l"), Path("g"), Path("o"))))
@pytest.mark.parametrize("case", ["symlink_loop", "symlink_loop_pair"])
def test_symlink_loop_as_input_says_so(case, reader, made, tmp_path, capsys):
    loop = made[case]
    out = tmp_path / "out"
    out.mkdir()
    refused(input_readers(loop, made["good"], out)[reader], capsys, names=[loop.name, "symlink loop"],
            watch=[loop.parent, out])


def test_symlink_loop_inside_a_path_says_so(made, tmp_path, capsys):
    loop_folder = tmp_path / "loopdir"
    os.symlink(loop_folder.name, loop_folder)
    refused(["prune", loop_folder / "x.safetensors", "--method", "magnitude", "--amount", "0.5",
             "--out", tmp_path / "p.safetensors"], capsys, names=["symlink loop"], watch=[])


@pytest.mark.parametrize("reader", ["--config", "train --resume", "train --init", "prune", "compare", "distill --teacher"])
def test_pipe_as_input_is_refused_without_reading(reader, made, tmp_path, capsys):
    fifo = made["fifo"]
    out = tmp_path / "out"
    out.mkdir()
    with fifo_never_blocks(fifo):
        refused(input_readers(fifo, made["good"], out)[reader], capsys, names=[fifo.name, "pipe"], watch=[out])


# ------------------------------------------------------------ outputs of the wrong kind
def file_writers(good: Path, out: Path) -> dict[str, list]:
    """Commands whose output is a file; the output path is appended by the test."""
    return {
        "prune": ["prune", good, "--method", "magnitude", "--amount", "0.5", "--out", out],
        "quantize": ["quantize", good, "--method", "fp16", "--out", out],
        "export": ["export", "onnx", good, "--out", out],
        "distill": ["distill", "--teacher", good, "--student-model", "transformer", "--steps", "1", "--out", out],
        "compare --csv": ["compare", good, "--csv", out],
        "compare --markdown": ["compare", good, "--markdown", out],
        "bench attention --json": ["bench", "attention", "--kinds", "full", "--lengths", "8", "--json", out],
    }


WRITERS = list(file_writers(Path("g"), Path("o")))


def _null_device(tmp_path: Path) -> Path:
    """/dev/null, reached through a link in the test's folder: if a regression wrote to it by renaming
    a file over it (as an atomic write does), only the link would be replaced, never the system's device."""
    link = tmp_path / "null"
    os.symlink(os.devnull, link)
    return link


def _special_outputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    folder = tmp_path / "a_folder"
    folder.mkdir()
    fifo = tmp_path / "a_pipe"
    os.mkfifo(fifo)
    plain = tmp_path / "a_file"
    plain.write_text("keep me", encoding="utf-8")
    return {"folder": (folder, "is a folder"), "/dev/null": (_null_device(tmp_path), "is a device"),
            "pipe": (fifo, "is a pipe"), "under a file": (plain / "x.out", "is a file, not a folder")}


@pytest.mark.parametrize("target", ["folder", "/dev/null", "pipe", "under a file"])
@pytest.mark.parametrize("writer", WRITERS)
def test_file_output_of_the_wrong_kind_is_refused(writer, target, made, tmp_path, capsys):
    out, reason = _special_outputs(tmp_path)[target]
    with fifo_never_blocks(tmp_path / "a_pipe"):
        refused(file_writers(made["good"], out)[writer], capsys, names=[str(out), reason],
                watch=[tmp_path / "a_folder"])
    assert (tmp_path / "a_file").read_text(encoding="utf-8") == "keep me"


@pytest.mark.parametrize("target", ["file", "/dev/null", "under a file"])
@pytest.mark.parametrize("writer", ["train --out", "runs export --format tensorboard"])
def test_folder_output_of_the_wrong_kind_is_refused(writer, target, tmp_path, capsys):
    plain = tmp_path / "a_file"
    plain.write_text("keep me", encoding="utf-8")
    out, reason = {"file": (plain, "is a file"), "/dev/null": (_null_device(tmp_path), "is a device"),
                   "under a file": (plain / "run", "is a file, not a folder")}[target]
    if writer == "train --out":
        argv = ["train", "--model", "transformer", "--task", "listops", "--steps", "1", "--out", out, "--no-record"]
    else:
        run = cases.make_good_run_folder(tmp_path)
        assert main(["runs", "import", str(run)]) == 0
        capsys.readouterr()
        argv = ["runs", "export", "last", "--format", "tensorboard", "--out", out]
    refused(argv, capsys, names=[str(out), reason], watch=[])
    assert plain.read_text(encoding="utf-8") == "keep me"
    _no_runs(tmp_path)


def test_runs_export_csv_into_a_folder_is_refused(tmp_path, capsys):
    run = cases.make_good_run_folder(tmp_path)
    assert main(["runs", "import", str(run)]) == 0
    capsys.readouterr()
    refused(["runs", "export", "last", "--format", "csv", "--out", run], capsys, names=[str(run), "is a folder"],
            watch=[run])


@pytest.mark.parametrize("writer", ["prune", "quantize", "export", "distill", "compare --csv", "compare --markdown"])
def test_output_that_is_the_input_is_refused(writer, made, tmp_path, capsys):
    good = tmp_path / "model.safetensors"
    good.write_bytes(made["good"].read_bytes())
    before = good.read_bytes()
    refused(file_writers(good, good)[writer], capsys, names=[str(good), "is the input file"], watch=[tmp_path])
    assert good.read_bytes() == before


def test_existing_file_output_is_still_replaced(made, tmp_path, capsys):
    out = tmp_path / "q.safetensors"
    out.write_bytes(b"old")
    assert main(["quantize", str(made["good"]), "--method", "fp16", "--out", str(out)]) == 0
    assert out.stat().st_size > 3


# ------------------------------------------------------------ a real process: no traceback on stderr
@pytest.mark.parametrize(("case", "argv"), [
    ("toml_deep_array", ["train", "--config"]),
    ("ckpt_config_deep_list", ["inspect"]),
    ("run_deep_line", ["runs", "import"]),
    ("symlink_loop", ["prune", "--method", "magnitude", "--amount", "0.5", "--out", "OUT", "--"]),
])
def test_hostile_input_in_a_real_process(case, argv, made, tmp_path):
    argv = [str(tmp_path / "p.safetensors") if a == "OUT" else a for a in argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run([sys.executable, "-m", "effstudio", *argv, str(made[case])], capture_output=True,
                            text=True, env=env, cwd=tmp_path / "cwd", timeout=120)
    assert result.returncode == (1 if argv[0] == "inspect" else 2), result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert made[case].name in result.stderr and cases.FIELDS[case] in result.stderr
