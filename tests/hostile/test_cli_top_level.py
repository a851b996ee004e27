"""The CLI's last guard: an unexpected exception is one line on stderr and a log file with the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from effstudio import cli
from effstudio.cli.errors import EXIT_FAILED, EXIT_OK

ROOT = Path(__file__).resolve().parents[2]

# a small driver: `effstudio models` whose command raises what the test names
DRIVER = """
import sys
import effstudio.cli as cli
import effstudio.cli.listing as listing

def broken(args):
    raise {error}

listing.cmd_list = broken
sys.exit(cli.main(["models"]))
"""


def _run_driver(error: str, logs: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EFFSTUDIO_LOG_DIR": str(logs), "QT_QPA_PLATFORM": "offscreen",
           "TMPDIR": str(cwd / "tmp")}
    return subprocess.run([sys.executable, "-c", DRIVER.format(error=error)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def test_unexpected_exception_is_one_line_and_a_log_file(tmp_path):
    logs = tmp_path / "logs"
    result = _run_driver('ZeroDivisionError("forced\\nover two lines")', logs, tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("effstudio: internal error: ZeroDivisionError: forced over two lines; "
                               "the traceback is in ")
    log_files = list(logs.glob("*.log"))
    assert len(log_files) == 1
    assert str(log_files[0]) in lines[0]
    text = log_files[0].read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text and "in broken" in text and "['models']" in text


def test_keyboard_interrupt_is_exit_130_with_a_short_line(tmp_path):
    result = _run_driver("KeyboardInterrupt", tmp_path / "logs", tmp_path)
    assert result.returncode == 130
    assert result.stderr.strip() == "effstudio: interrupted"
    assert not (tmp_path / "logs").exists()


def test_a_log_folder_that_cannot_be_written_sends_the_traceback_to_the_temp_folder(tmp_path):
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder", encoding="utf-8")
    (tmp_path / "tmp").mkdir()
    result = _run_driver('RuntimeError("boom")', blocked / "logs", tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "internal error: RuntimeError: boom; the traceback is in " in lines[0]
    (log_file,) = (tmp_path / "tmp").glob("effstudio-error-*.log")
    assert str(log_file) in lines[0] and "RuntimeError: boom" in log_file.read_text(encoding="utf-8")


# one valid command line per subcommand: each command's own code is replaced by one that raises
SUBCOMMANDS = {
    "models": ["models"], "attention": ["attention", "--json"], "tasks": ["tasks"],
    "train": ["train", "--model", "transformer", "--task", "copy"], "runs": ["runs", "list"],
    "prune": ["prune", "m.safetensors", "--method", "magnitude", "--amount", "0.5", "--out", "p.safetensors"],
    "quantize": ["quantize", "m.safetensors", "--method", "fp16", "--out", "q.safetensors"],
    "distill": ["distill", "--teacher", "m.safetensors", "--student-model", "transformer", "--steps", "1",
                "--out", "d.safetensors"],
    "export": ["export", "onnx", "m.safetensors", "--out", "m.onnx"], "compare": ["compare", "m.safetensors"],
    "inspect": ["inspect", "m.safetensors"], "gui": ["gui"], "bench": ["bench", "faults"],
}


@pytest.mark.parametrize("argv", list(SUBCOMMANDS.values()), ids=list(SUBCOMMANDS))
def test_every_subcommand_turns_an_unexpected_exception_into_one_line(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EFFSTUDIO_LOG_DIR", str(tmp_path / "logs"))
    real_parser = cli.build_parser

    def parser_whose_commands_raise():
        parser = real_parser()
        parse = parser.parse_args

        def parse_args(args=None, namespace=None):
            parsed = parse(args, namespace)
            parsed.func = lambda _args: {}["a key no command has"]
            return parsed
        parser.parse_args = parse_args
        return parser

    monkeypatch.setattr(cli, "build_parser", parser_whose_commands_raise)
    assert cli.main(argv) == EXIT_FAILED
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("effstudio: internal error: KeyError: ") and "Traceback" not in captured.err
    (log_file,) = (tmp_path / "logs").glob("*.log")
    assert str(log_file) in line


@pytest.mark.parametrize("argv", [["attention", "--json"], ["models", "--json"], ["tasks"]])
def test_a_closed_stdout_ends_quietly(argv, tmp_path):
    """`effstudio attention --json | head -c 10`: the reader closed the pipe; no error, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EFFSTUDIO_LOG_DIR": str(tmp_path / "logs"),
           "QT_QPA_PLATFORM": "offscreen"}
    process = subprocess.Popen([sys.executable, "-m", "effstudio", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    assert process.stdout.read(10)
    process.stdout.close()  # before the command has written everything
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) in (EXIT_OK, EXIT_FAILED)
    assert stderr == "", stderr
    assert not (tmp_path / "logs").exists()


def test_known_errors_keep_exit_code_2(capsys):
    assert cli.main(["train", "--model", "transformer", "--task", "listops", "--set", "train.steps=zero"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "effstudio: error: train.steps: expected int, got 'zero'"


def test_usage_errors_from_argparse_are_left_to_argparse(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["prune"])
    assert exit_info.value.code == 2


def test_logs_dir_follows_the_data_folder_when_only_it_is_set(monkeypatch, tmp_path):
    from effstudio.paths import logs_dir

    monkeypatch.delenv("EFFSTUDIO_LOG_DIR", raising=False)
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    assert logs_dir() == tmp_path / "data" / "logs"
    monkeypatch.setenv("EFFSTUDIO_LOG_DIR", str(tmp_path / "elsewhere"))
    assert logs_dir() == tmp_path / "elsewhere"
