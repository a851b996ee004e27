"""`effstudio --self-test`: every check passes here, each is reported, and a failure fails the command."""

from __future__ import annotations

import json

import pytest

from effstudio.cli import main
from effstudio.registry import get_registry
from effstudio.selftest import FAIL_ENV, Check, format_check, run_check, run_self_test


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("selftest")


@pytest.fixture(scope="module")
def checks(workspace) -> list[Check]:
    return list(run_self_test(workspace))  # a given folder keeps the files the checks wrote


def test_every_core_check_passes(checks):
    failed = [format_check(c) for c in checks if not c.ok]
    assert not failed, "\n".join(failed)


def test_every_model_type_and_the_file_checks_are_reported(checks):
    names = [c.name for c in checks]
    for model in get_registry().names("models"):
        assert f"model {model}" in names
    for name in ("imports", "registry", "checkpoint round-trip", "onnx export"):
        assert name in names
    for check in checks:
        assert check.seconds >= 0 and check.detail, check
        assert set(check.to_json()) == {"name", "ok", "seconds", "detail"}


def test_a_crashing_check_becomes_a_failure_with_its_reason():
    def broken() -> str:
        raise ValueError("no such thing")

    check = run_check("broken", broken)
    assert not check.ok and "ValueError: no such thing" in check.detail
    assert format_check(check).startswith("[FAIL] broken")


def test_injected_failure_makes_the_command_exit_non_zero(monkeypatch, capsys):
    monkeypatch.setenv(FAIL_ENV, "checkpoint round-trip")
    assert main(["--self-test", "--no-window"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] checkpoint round-trip" in out
    assert "[PASS] registry" in out
    assert "FAILED: checkpoint round-trip" in out


def test_json_report_has_environment_checks_and_summary(monkeypatch, capsys):
    monkeypatch.setenv(FAIL_ENV, "injected")
    assert main(["--self-test", "--json", "--no-window"]) == 1
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[0]["kind"] == "environment" and records[0]["torch"]
    summary = records[-1]
    assert summary["kind"] == "summary" and summary["ok"] is False and summary["failed"] == ["injected"]
    assert summary["checks"] == sum(r["kind"] == "check" for r in records)


def test_window_check_opens_the_checkpoint_in_the_inspector(qapp, checks, workspace, tmp_path):
    from effstudio.gui.selftest import check_window

    checkpoint = workspace / "selftest.safetensors"
    assert checkpoint.is_file()
    screenshot = tmp_path / "window.png"
    detail = check_window(checkpoint, screenshot)
    assert "selftest.safetensors inspected" in detail
    assert screenshot.stat().st_size > 1000


def test_self_test_command_with_the_window_passes(qapp, capsys):
    assert main(["--self-test"]) == 0
    out = capsys.readouterr().out
    assert "[PASS] main window" in out and "checks passed" in out


def test_file_argument_reaches_the_inspector(monkeypatch, tmp_path):
    """`effstudio model.safetensors` (and a desktop "Open with") opens the window on that file."""
    import effstudio.gui.app as app_module

    seen = {}
    monkeypatch.setattr(app_module, "run_app", lambda argv, open_path=None: seen.setdefault("path", open_path) and 0)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    target = tmp_path / "model.safetensors"
    assert main([str(target)]) == 0
    assert seen["path"] == str(target)
