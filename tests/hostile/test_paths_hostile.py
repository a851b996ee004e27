"""Paths a file names stay inside its folder: run configs' outputs and inputs, checkpoint headers'
inputs, imported run folders' files. Each hostile case exits 2 with the reason before anything is
trained or written, and leaves the file outside unchanged; the same path typed by the user is theirs."""

from __future__ import annotations

import json

import pytest

from effstudio.cli import main
from effstudio.cli.errors import EXIT_USAGE
from effstudio.paths import _allowed
from tests.hostile import path_cases as cases


@pytest.fixture(autouse=True)
def isolated(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("EFFSTUDIO_RECORD_RUNS", "0")
    saved = set(_allowed)
    yield
    _allowed.clear()  # what a test allowed (as a command line does) is not allowed in the next one
    _allowed.update(saved)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def nothing_trained(tmp_path) -> bool:
    """No checkpoint, event log or config written: not in the run folder, not in the default runs folder."""
    run = cases.run_folder(tmp_path)
    written = [p for p in run.rglob("*") if not p.is_symlink()] if run.exists() else []
    default_runs = tmp_path / "data" / "runs"
    return not written and not (default_runs.exists() and any(default_runs.iterdir()))


OUT_CASES = {
    "out_parent": "climbs out of the run folder",
    "out_absolute": "outside the run folder",
    "out_home": "outside the run folder",
    "out_symlink": "leads outside the run folder",
    "out_symlinked_file": "leads outside the run folder",
    "out_trained_state": "the trained checkpoint's training state",
    "out_trained_spelling": "climbs out of the run folder",
    "out_trained_alias": "would overwrite the trained checkpoint",
    "out_event_log": "the run's event log",
    "distill_set_task_path": "cannot change task settings",
}


PREPARED = {"out_symlink", "out_symlinked_file", "out_trained_alias"}  # cases that make their run folder


@pytest.mark.parametrize("name, into", [(n, "run_folder") for n in sorted(OUT_CASES)] +
                         [(n, "default") for n in sorted(set(OUT_CASES) - PREPARED)])
def test_a_config_output_outside_the_run_folder_is_refused_before_training(tmp_path, capsys, name, into):
    config = dict((n, f) for n, f, _ in cases.CASES)[name](tmp_path)
    out = ["--out", cases.run_folder(tmp_path)] if into == "run_folder" else []
    code, stdout, err = run(capsys, "train", "--config", config, *out)
    assert code == 2, err
    assert ("compress[1].out" in err or "compress[1].set" in err) and OUT_CASES[name] in err and str(config) in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert stdout == ""  # not even a "run folder:" line: training did not start
    assert nothing_trained(tmp_path)
    assert cases.victim(tmp_path).read_text(encoding="utf-8") == cases.VICTIM_TEXT


@pytest.mark.parametrize("name, field", [("charlm_absolute", "task.path"), ("charlm_parent", "task.path"),
                                         ("charlm_symlink", "task.path"), ("imagefolder_absolute", "task.folder"),
                                         ("textclass_val_path", "task.val_path"),
                                         ("textclass_tokenizer_path", "task.tokenizer_path")])
def test_a_config_input_outside_its_folder_is_refused_before_training(tmp_path, capsys, name, field):
    config = dict((n, f) for n, f, _ in cases.CASES)[name](tmp_path)
    code, stdout, err = run(capsys, "train", "--config", config, "--out", cases.run_folder(tmp_path))
    assert code == 2, err
    assert err.startswith(f"effstudio: error: {field}:") and str(config) in err
    assert "leads outside its folder" in err and f"--set {field}=" in err and "--allow-path" in err
    assert stdout == "" and nothing_trained(tmp_path)


@pytest.mark.parametrize("how", ["set", "allow-path"])
def test_the_same_path_given_on_the_command_line_is_the_users(tmp_path, capsys, how):
    config = cases.make_charlm_absolute(tmp_path)
    text = str(cases.secret(tmp_path))
    given = ["--set", f"task.path={text}"] if how == "set" else ["--allow-path", text]
    code, _, err = run(capsys, "train", "--config", config, "--out", cases.run_folder(tmp_path), *given)
    assert code == 0, err
    assert (cases.run_folder(tmp_path) / "checkpoint.safetensors").is_file()


def test_a_relative_input_is_read_beside_its_config_wherever_the_command_runs(tmp_path, capsys, monkeypatch):
    config = tmp_path / "shared" / "run.toml"
    config.parent.mkdir()
    (config.parent / "notes.txt").write_text(cases.SECRET_TEXT, encoding="utf-8")
    config.write_text(cases.CHARLM_HEAD.format(path='"notes.txt"'), encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # not the config's folder
    code, _, err = run(capsys, "train", "--config", config, "--out", cases.run_folder(tmp_path), "--json")
    assert code == 0, err
    saved = (cases.run_folder(tmp_path) / "config.toml").read_text(encoding="utf-8")
    assert json.dumps(str(config.parent / "notes.txt")) in saved  # the header and config name the file read


@pytest.mark.parametrize("command", [
    ["train", "--init", "{ckpt}", "--steps", "3"],
    ["train", "--resume", "{ckpt}", "--steps", "3"],
    ["prune", "{ckpt}", "--method", "magnitude", "--amount", "0.5", "--out", "{out}"],
    ["quantize", "{ckpt}", "--method", "fp16", "--out", "{out}"],
    ["export", "onnx", "{ckpt}", "--out", "{out}.onnx"],
    ["distill", "--teacher", "{ckpt}", "--student-model", "transformer", "--steps", "1", "--out", "{out}"],
    ["compare", "{ckpt}"],
])
def test_a_checkpoint_header_naming_a_path_outside_its_folder_is_refused(tmp_path, capsys, command):
    checkpoint = cases.make_header_charlm_outside(tmp_path)
    out = tmp_path / "out.safetensors"
    argv = [a.format(ckpt=checkpoint, out=out) for a in command]
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert "task.path" in err and str(checkpoint) in err and "leads outside its folder" in err
    assert "--allow-path" in err and "Traceback" not in err
    assert not any(tmp_path.glob("out*")) and not (tmp_path / "data" / "runs").exists()


def test_a_header_path_the_user_names_is_accepted():
    from effstudio.engine.checkpoint import read_info
    from effstudio.paths import allow_path

    folder = __import__("pathlib").Path(__import__("tempfile").mkdtemp())
    checkpoint = cases.make_header_charlm_outside(folder)
    config = read_info(checkpoint).config
    with pytest.raises(Exception, match="leads outside its folder"):
        config.check_paths()
    config.with_overrides([f"task.path={cases.secret(folder)}"]).check_paths()  # --set: the user's value
    allow_path(cases.secret(folder))  # --allow-path
    config.check_paths()


@pytest.mark.parametrize("name, field", [("import_result_absolute", "result.path"),
                                         ("import_checkpoint_parent", "checkpoint.path"),
                                         ("import_artifact_symlink", "result.path"),
                                         ("import_charlm_outside", "task.path")])
def test_an_imported_run_naming_files_outside_its_folder_is_refused(tmp_path, capsys, name, field):
    folder = dict((n, f) for n, f, _ in cases.CASES)[name](tmp_path)
    code, _, err = run(capsys, "runs", "import", folder)
    assert code == 2, err
    assert field in err and "leads outside its folder" in err and "Traceback" not in err
    code, stdout, _ = run(capsys, "runs", "list", "--json")
    assert code == 0 and json.loads(stdout)["runs"] == []
    assert cases.victim(tmp_path).read_text(encoding="utf-8") == cases.VICTIM_TEXT


def test_an_imported_run_moved_from_elsewhere_keeps_its_files(tmp_path, capsys):
    """Absolute paths inside the folder the run was recorded in are its files in the folder now."""
    folder = cases.make_import_result_absolute(tmp_path)
    (folder / "half.safetensors").write_bytes(b"x")
    lines = (folder / "events.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    lines.append(json.dumps({"event": "result", "method": "fp16", "path": "/cluster/runs/x/half.safetensors"}))
    (folder / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, stdout, err = run(capsys, "runs", "import", folder, "--json")
    assert code == 0, err
    code, stdout, _ = run(capsys, "runs", "show", str(json.loads(stdout)["id"]), "--json")
    assert [a["path"] for a in json.loads(stdout)["artifacts"]] == [str((folder / "half.safetensors").resolve())]


def test_an_imported_run_trained_into_a_relative_folder_keeps_its_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "train", "--model", "transformer", "--task", "copy",
                       *sum((["--set", f"{k}={v}"] for k, v in cases.TINY.items()), []), "--out", "run1",
                       "--no-record")
    assert code == 0, err
    (tmp_path / "run1").rename(tmp_path / "moved")
    code, stdout, err = run(capsys, "runs", "import", "moved", "--json")
    assert code == 0, err
    code, stdout, _ = run(capsys, "runs", "show", str(json.loads(stdout)["id"]), "--json")
    artifacts = json.loads(stdout)["artifacts"]
    assert artifacts[0]["path"] == str(tmp_path / "moved" / "checkpoint.safetensors") and artifacts[0]["exists"]


@pytest.mark.parametrize(("case", "expected"), [
    ("out_lock_file", "names a hidden file ('.effstudio.lock')"),
    ("out_other_case", "would overwrite the trained checkpoint"),
    ("charlm_symlink_loop", "symlink loop"),
])
def test_other_spellings_and_loops_are_refused_before_training(case, expected, tmp_path, capsys):
    from effstudio import cli

    config = dict((name, make) for name, make, _ in cases.CASES)[case](tmp_path)
    run = cases.run_folder(tmp_path)
    code = cli.main(["train", "--config", str(config), "--out", str(run), "--no-record"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and expected in err and "internal error" not in err, err
    assert not (run / "checkpoint.safetensors").exists()
