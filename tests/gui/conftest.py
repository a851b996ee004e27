"""GUI test fixtures: offscreen Qt, temporary data/cache/settings, a tiny real run config."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from effstudio.engine.run_config import RunConfig  # noqa: E402

TINY = {
    "model.d_model": 32, "model.layers": 1, "model.heads": 2, "model.dropout": 0.0,
    "task.train_size": 200, "task.val_size": 32, "task.test_size": 16, "task.max_length": 8,
    "train.steps": 20, "train.batch_size": 16, "train.eval_every": 5, "train.attention_every": 5,
    "train.warmup_steps": 2, "train.device": "cpu",
}


def tiny_config(**overrides) -> RunConfig:
    """A copy-task transformer that trains a step in milliseconds."""
    return RunConfig.create("transformer", "copy", {**TINY, **overrides})


@pytest.fixture(autouse=True)
def isolated_user_settings(tmp_path_factory):
    """Even code that asks for the user's QSettings gets a throwaway INI file."""
    folder = tmp_path_factory.getbasetemp() / "qsettings"
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(folder))


@pytest.fixture(autouse=True)
def collect_in_the_gui_thread(qapp):
    """As in the app, cycles are freed in the GUI thread only, never by a job's worker thread; the
    test's closed widgets go at its end, not inside a later test."""
    from effstudio.gui.collector import collecting_in_gui_thread

    with collecting_in_gui_thread():
        yield


@pytest.fixture(scope="session", autouse=True)
def warm_training_process(tmp_path_factory):
    """Start the spare training process early: it warms up while the first tests run."""
    root = tmp_path_factory.getbasetemp()
    saved = {name: os.environ.get(name) for name in ("EFFSTUDIO_DATA_DIR", "EFFSTUDIO_CACHE_DIR")}
    os.environ["EFFSTUDIO_DATA_DIR"] = str(root / "data")  # inherited by the child
    os.environ["EFFSTUDIO_CACHE_DIR"] = str(root / "cache")
    from effstudio.gui import training_process

    training_process.prestart()
    yield
    training_process.shutdown_spare()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def app(qapp):
    from effstudio.gui.app import application

    return application()  # names, icon and theme on pytest-qt's app


@pytest.fixture
def settings(tmp_path):
    from effstudio.gui.settings import file_settings

    return file_settings(str(tmp_path / "settings.ini"))


@pytest.fixture
def window(app, qtbot, settings, tmp_path):
    """A main window showing the tiny config, closed (and its run stopped) afterwards."""
    from effstudio.gui.main_window import MainWindow

    win = MainWindow(settings, out_dir=tmp_path / "run", restore=False, isolate=False)
    qtbot.addWidget(win)
    win.apply_config(tiny_config())
    win.show()
    yield win
    win.close()
    win.shutdown()
