"""`effstudio`, `effstudio FILE` and `effstudio gui`: the window, or without a display its headless demo.

The window is imported when it opens, not here: Qt is a large import that `effstudio --version`,
`--help` and the headless commands need not load.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from effstudio.cli.errors import EXIT_FAILED, EXIT_OK
from effstudio.messages import print_error
from effstudio.paths import data_dir


def add_gui_parser(commands: argparse._SubParsersAction) -> None:
    gui = commands.add_parser("gui", help="open the window (or save a screenshot of it)")
    gui.add_argument("path", nargs="?", help="a file to open")
    gui.add_argument("--screenshot", type=Path, metavar="FILE.png",
                     help="run a short demo offscreen, save a PNG, exit")
    gui.add_argument("--steps", type=int, default=120, help="demo steps for --screenshot")
    gui.set_defaults(func=cmd_gui, output_files=("screenshot",))


def cmd_gui(args: argparse.Namespace) -> int:
    if args.screenshot:
        from effstudio.gui.screenshot import save_screenshot

        save_screenshot(Path(args.screenshot), steps=args.steps)
        print(f"screenshot saved to {args.screenshot}")
        return EXIT_OK
    if _no_display():
        return _headless_demo(args)
    from effstudio.gui.app import run_app
    from effstudio.gui.platform_libraries import MissingSystemLibraries

    try:
        return run_app(sys.argv[:1], open_path=args.path)
    except MissingSystemLibraries as err:
        print_error(str(err))
        return EXIT_FAILED


def _no_display() -> bool:
    """True on a Linux/BSD machine without X11 or Wayland (a server, a container, CI)."""
    if sys.platform in ("win32", "darwin") or os.environ.get("QT_QPA_PLATFORM"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _headless_demo(args: argparse.Namespace) -> int:
    """Without a display, run the window offscreen on a short demo and save what it shows."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    target = data_dir() / "demo.png"
    print("No display found: running the headless demo (a short training run in the offscreen window).")
    from effstudio.gui.screenshot import save_screenshot

    save_screenshot(target, steps=args.steps)
    print(f"The window after the demo run is saved to {target}")
    print("Everything the window does is also a command: see `effstudio --help`.")
    return EXIT_OK
