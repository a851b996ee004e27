from collections.abc import Callable
from types import ModuleType

import pytest
import torch

from effstudio.tasks.base import GeneratedTask


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    """Each task test its own empty task cache: the tests count, reuse and damage its files."""
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path / "cache"))


def assert_read_back_from_cache(monkeypatch, module: ModuleType, make: Callable[[], GeneratedTask],
                                split: str) -> None:
    """A second task made by ``make`` reads ``split`` from the cache the first one wrote: the same
    tensors, while ``module``'s generator refuses to run."""
    first = make().split(split)

    def refuse(config):
        raise AssertionError("generator called although the cache holds the data")

    monkeypatch.setattr(module, "generate_splits", refuse)
    again = make().split(split)
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.targets, again.targets)
