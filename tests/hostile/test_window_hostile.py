"""Hostile model files opened in the window (what a drop, `effstudio FILE` or File > Open do): the Inspect
section shows why a file cannot be read, no exception escapes into Qt, nothing runs, and the window goes on
working (the next, good file opens)."""

from __future__ import annotations

import html
import os
import re

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings  # noqa: E402

from tests.hostile import reader_cases  # noqa: E402
from tests.hostile.reader_cases import CASES, MARKER  # noqa: E402
from tests.hostile.test_readers_hostile import EXPECTED, METADATA_NOTE, TENSOR_REFUSED  # noqa: E402

TIMEOUT = 30_000


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory, monkeypatch):
    """Data, cache and the user's QSettings in throwaway places."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(root / "cache"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(root / "qsettings"))


@pytest.fixture
def window(qapp, qtbot, tmp_path):
    from effstudio.gui.app import application
    from effstudio.gui.main_window import MainWindow
    from effstudio.gui.settings import file_settings

    application()
    win = MainWindow(file_settings(str(tmp_path / "settings.ini")), out_dir=tmp_path / "run", restore=False,
                     isolate=False)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()
    win.shutdown()


def banner(panel) -> str:
    return html.unescape(panel.error_banner.text())


def test_hostile_files_opened_in_the_window(window, qtbot, tmp_path):
    from effstudio.gui.main_window import INSPECT, MODEL
    from effstudio.gui.panels.inspect_tensors import MIN, NAME

    panel = window.inspect_panel
    good = reader_cases.tiny_checkpoint(tmp_path / "good" / "good.safetensors")
    for name, make, _kind in CASES:
        folder = tmp_path / name
        path = make(folder)
        open_before = panel.inspected  # a refused file leaves it open, under the error
        assert window.open_path(path), name
        assert window.current_section() == INSPECT
        qtbot.waitUntil(lambda: panel.state in ("ready", "failed"), timeout=TIMEOUT)
        if name in TENSOR_REFUSED:  # shown, with the tensor's statistics refused and saying why
            assert panel.state == "ready", (name, banner(panel))
            qtbot.waitUntil(lambda: panel.stats_done, timeout=TIMEOUT)
            tensor = panel.inspected.tensors[0].name
            row = panel.tensors.model.leaves[tensor]
            assert row[MIN].text() == "error" and re.search(EXPECTED[name], row[NAME].toolTip()), name
            assert panel.select_tensor(tensor)  # the picture of a refused tensor says why, it does not hang
            qtbot.waitUntil(lambda: not panel.busy, timeout=TIMEOUT)
            assert panel.state == "ready" and panel.error_banner.isHidden(), banner(panel)
        elif name in METADATA_NOTE:
            assert panel.state == "ready"
            assert re.search(EXPECTED[name], panel.details.toPlainText())
        else:
            assert panel.error_banner.isVisible(), name
            if open_before is None:
                assert panel.state == "failed", name
            else:
                assert panel.state == "ready" and panel.inspected.path == open_before.path, name
            assert path.name in banner(panel) and re.search(EXPECTED[name], banner(panel)), (name, banner(panel))
        assert not (folder / MARKER).exists(), name
        qtbot.waitUntil(lambda: not panel.busy, timeout=TIMEOUT)

        window.open_path(good)  # the window goes on working
        qtbot.waitUntil(lambda: panel.state == "ready", timeout=TIMEOUT)
        assert panel.error_banner.isHidden()
        qtbot.waitUntil(lambda: not panel.busy, timeout=TIMEOUT)
    window.show_section(MODEL)
    assert window.current_section() == MODEL
