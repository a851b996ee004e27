import pytest

from effstudio.cli import main
from effstudio.gui import platform_libraries
from effstudio.gui.platform_libraries import (
    MissingSystemLibraries,
    check_platform_libraries,
    missing_libraries_message,
    missing_xcb_libraries,
    qt_would_use_xcb,
)


@pytest.mark.parametrize(("environ", "platform", "expected"), [
    ({}, "linux", True),
    ({"QT_QPA_PLATFORM": "xcb"}, "linux", True),
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux", False),
    ({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}, "linux", False),
    ({}, "win32", False),
])
def test_the_check_applies_only_where_qt_would_load_its_x11_plugin(environ, platform, expected):
    assert qt_would_use_xcb(environ, platform) is expected


def test_a_missing_library_names_the_packages_that_install_it():
    missing = missing_xcb_libraries(lambda library: library != "libxcb-cursor.so.0")
    assert missing == ["libxcb-cursor.so.0"]
    message = missing_libraries_message(missing)
    assert "libxcb-cursor.so.0 is missing" in message
    assert "sudo apt install libxcb-cursor0;" in message and "sudo dnf install xcb-util-cursor)" in message


def test_the_window_command_says_what_to_install_instead_of_qts_abort(monkeypatch, capsys):
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(platform_libraries, "loadable", lambda library: "keysyms" not in library)
    with pytest.raises(MissingSystemLibraries):
        check_platform_libraries()
    assert main(["gui"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("effstudio: error: the window needs system libraries") and "libxcb-keysyms1" in line
