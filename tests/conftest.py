"""Fixtures every test shares: throwaway data and cache folders, and one-thread training."""

import pytest
import torch


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    """The run store and the task cache live in the session's temporary folder, never the user's."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(root / "cache"))


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread, and a busy machine does not stall them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
