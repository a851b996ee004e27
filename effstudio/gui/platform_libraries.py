"""The system libraries Qt 6's X11 (xcb) platform plugin loads, checked before the window is created.

Without one of them Qt prints only its generic "could not load the Qt platform plugin xcb"
and aborts the process, which no Python code can catch. So on Linux, when Qt would pick
xcb, the libraries are looked up first (the dynamic loader's own search, as Qt's is) and a
missing one becomes one message that names the packages to install.
"""

from __future__ import annotations

import ctypes
import os
import sys

# shared object -> (Debian/Ubuntu package, Fedora package): what libqxcb.so and libQt6XcbQpa.so link to
XCB_LIBRARIES: dict[str, tuple[str, str]] = {
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
}


class MissingSystemLibraries(RuntimeError):
    """The window cannot open here: Qt's xcb plugin would not load. The message names what to install."""


def qt_would_use_xcb(environ: dict[str, str] | None = None, platform: str = sys.platform) -> bool:
    """True where Qt picks its X11 plugin: Linux/BSD, no platform chosen (or xcb), and not a Wayland session."""
    env = os.environ if environ is None else environ
    if platform in ("win32", "darwin"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(";")[0].split(":")[0] == "xcb"
    return not (env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE") == "wayland")


def loadable(library: str) -> bool:
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def missing_xcb_libraries(is_loadable=loadable) -> list[str]:
    """The shared objects of XCB_LIBRARIES that the dynamic loader does not find, in their order."""
    return [library for library in XCB_LIBRARIES if not is_loadable(library)]


def missing_libraries_message(missing: list[str]) -> str:
    """One line: what is missing and the command that installs it (Debian/Ubuntu and Fedora)."""
    debian = sorted({XCB_LIBRARIES[m][0] for m in missing})
    fedora = sorted({XCB_LIBRARIES[m][1] for m in missing})
    return (f"the window needs system libraries that Qt's X11 (xcb) platform plugin loads, and "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing; install them "
            f"(Debian/Ubuntu: sudo apt install {' '.join(debian)}; Fedora: sudo dnf install {' '.join(fedora)}), "
            f"or run the headless commands (effstudio --help)")


def check_platform_libraries() -> None:
    """Raise MissingSystemLibraries where Qt would use xcb and a library it loads is absent."""
    if not qt_would_use_xcb():
        return
    missing = missing_xcb_libraries()
    if missing:
        raise MissingSystemLibraries(missing_libraries_message(missing))
