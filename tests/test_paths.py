"""effstudio.paths.confine: a path a file names stays inside the file's folder, as the file system
resolves it; allow_path records what the user named themselves."""

from __future__ import annotations

import pytest

from effstudio.config import ConfigError
from effstudio.paths import _allowed, allow_path, confine, user_allowed


@pytest.fixture(autouse=True)
def no_allowed_paths():
    saved = set(_allowed)
    _allowed.clear()
    yield
    _allowed.clear()
    _allowed.update(saved)


@pytest.mark.parametrize("named", ["a.txt", "sub/a.txt", "sub/../a.txt", "./a.txt"])
def test_paths_inside_the_folder_resolve_there(tmp_path, named):
    folder = tmp_path / "shared"
    folder.mkdir()
    assert confine(named, folder, "task.path", folder / "run.toml").parent in (folder, folder / "sub")


@pytest.mark.parametrize("named", ["../a.txt", "sub/../../a.txt", "/etc/passwd", "~/a.txt", "link/a.txt", "file"])
def test_paths_leading_out_are_refused_naming_field_and_file(tmp_path, named):
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "link").symlink_to(tmp_path, target_is_directory=True)
    (folder / "file").symlink_to(tmp_path / "elsewhere.txt")  # dangling: still leads out
    with pytest.raises(ConfigError) as caught:
        confine(named, folder, "task.path", folder / "run.toml")
    assert caught.value.field == "task.path"
    assert str(folder / "run.toml") in caught.value.message and "leads outside its folder" in caught.value.message


def test_an_absolute_path_inside_the_folder_is_inside(tmp_path):
    assert confine(tmp_path / "x" / "a.txt", tmp_path, "out", "cfg") == (tmp_path / "x" / "a.txt").resolve()


def test_what_the_user_allowed_covers_a_file_or_a_folders_contents(tmp_path):
    assert not user_allowed(tmp_path / "data" / "a.txt")
    allow_path(tmp_path / "data")
    assert user_allowed(tmp_path / "data" / "a.txt") and user_allowed(tmp_path / "data")
    assert not user_allowed(tmp_path / "database.txt")
