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


_EXIT_STATUS: list[int] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the test process with its status once pytest is done. The interpreter's own teardown destroys the
    Qt objects hundreds of window tests leave behind in an order Qt does not always survive (a segmentation
    fault after every test passed, about one run in three); nothing after this point is part of a test."""
    if not _EXIT_STATUS or config.option.collectonly or hasattr(config, "workerinput"):
        return
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[-1])
