"""The training child runs below the window's scheduling priority."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from effstudio.engine.events import JobControl
from effstudio.gui import training_process


@pytest.mark.skipif(not hasattr(os, "nice"), reason="nice levels are POSIX")
def test_lower_priority_raises_the_nice_level_by_the_steps() -> None:
    code = ("import os; from effstudio.gui.training_process import lower_priority; "
            "before = os.nice(0); lower_priority(3); print(os.nice(0) - before)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "3" or os.nice(0) >= 17  # at the lowest priority already it cannot fall 3


@pytest.mark.skipif(not hasattr(os, "nice"), reason="nice levels are POSIX")
def test_the_training_child_runs_below_the_window() -> None:
    assert training_process.CHILD_NICE > 0
    child = training_process._Child()
    try:
        assert child.wait_ready(JobControl(), timeout_s=120)
        expected = min(19, os.nice(0) + training_process.CHILD_NICE)
        assert psutil.Process(child.process.pid).nice() == expected
    finally:
        child.close(timeout_s=10)
