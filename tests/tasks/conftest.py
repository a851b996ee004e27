import pytest


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    """Each task test its own empty task cache: the tests count, reuse and damage its files."""
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
