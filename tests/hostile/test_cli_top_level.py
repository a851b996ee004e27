"""The CLI's last guard: an unexpected exception is one line on stderr and a log file with the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from effstudio import cli

ROOT = Path(__file__).resolve().parents[2]

# a small driver: `effstudio models` whose command raises what the test names
DRIVER = """
import sys
import effstudio.cli as cli

def broken(args):
    raise {error}

cli.cmd_list = broken
sys.exit(cli.main(["models"]))
"""


def _run_driver(error: str, logs: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EFFSTUDIO_LOG_DIR": str(logs), "QT_QPA_PLATFORM": "offscreen"}
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


def test_a_log_folder_that_cannot_be_written_still_gives_one_line(tmp_path):
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder", encoding="utf-8")
    result = _run_driver('RuntimeError("boom")', blocked / "logs", tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "internal error: RuntimeError: boom; the traceback could not be written" in lines[0]


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
