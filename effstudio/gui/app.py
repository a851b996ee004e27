"""Start the desktop application."""

from __future__ import annotations

import os
import sys

from PySide6.QtWidgets import QApplication

import effstudio
from effstudio.gui import settings as keys
from effstudio.gui.icons import app_icon
from effstudio.gui.platform_libraries import MissingSystemLibraries, check_platform_libraries
from effstudio.gui.theme import apply_theme


def application(argv: list[str] | None = None) -> QApplication:
    """The QApplication, created once with effstudio's names, icon and look."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv) if argv is not None else [sys.argv[0] if sys.argv else "effstudio"])
    assert isinstance(app, QApplication)
    app.setApplicationName(keys.APPLICATION)
    app.setOrganizationName(keys.ORGANISATION)
    app.setApplicationDisplayName("effstudio")
    app.setApplicationVersion(effstudio.__version__)
    app.setDesktopFileName("effstudio")
    if not app.property("effstudio_themed"):  # re-styling re-polishes every widget: once only
        app.setWindowIcon(app_icon())
        apply_theme(app)
        app.setProperty("effstudio_themed", True)
    return app


def run_app(argv: list[str] | None = None, open_path: str | None = None) -> int:
    """Show the main window (optionally opening a run config or checkpoint) and run the event loop.

    Raises MissingSystemLibraries (with what to install) where Qt's X11 plugin could not load."""
    check_platform_libraries()  # before Qt: its own failure aborts the process with a generic message
    app = application(argv)
    from effstudio.gui.collector import collecting_in_gui_thread
    from effstudio.gui.main_window import MainWindow

    with collecting_in_gui_thread():
        window = MainWindow()
        window.show()
        if open_path:
            window.open_path(open_path)
        from effstudio.gui.first_window import ENV, report_first_window

        if os.environ.get(ENV):  # a start-up measurement (packaging/build.py): save the first window, quit
            report_first_window(app, window, os.environ[ENV], wait_for_inspector=bool(open_path))
        return app.exec()


def launch() -> None:
    """Entry point of the `effstudio-gui` script."""
    try:
        raise SystemExit(run_app(sys.argv))
    except MissingSystemLibraries as err:
        print(f"effstudio: {err}", file=sys.stderr)
        raise SystemExit(1) from None
