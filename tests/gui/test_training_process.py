"""Training in a child process, the window's default: same events, same control."""

from __future__ import annotations

import multiprocessing
import threading

import torch

from effstudio.gui import training_process
from effstudio.gui.main_window import MainWindow

from .conftest import tiny_config


def test_child_reports_a_config_error_with_its_field(tmp_path):
    """The child's side of the protocol, run in a thread here: no second interpreter needed."""
    parent, child = multiprocessing.Pipe(duplex=True)
    thread = threading.Thread(target=training_process.child_main, args=(child, torch.get_num_threads()), daemon=True)
    thread.start()
    assert parent.poll(60) and parent.recv() == ("ready",)
    data = tiny_config(**{"model.mode": "encoder"}).to_dict()
    parent.send(("train", data, str(tmp_path), None, None))
    assert parent.poll(60)
    kind, field, message = parent.recv()
    assert (kind, field) == ("config_error", "mode") and "encoder" in message
    thread.join(10)
    assert not thread.is_alive()


def test_window_runs_and_closes_with_a_child_process(app, qtbot, settings, tmp_path):
    window = MainWindow(settings, out_dir=tmp_path / "run", restore=False)  # isolate=True is the default
    qtbot.addWidget(window)
    window.apply_config(tiny_config(**{"train.steps": 100_000, "train.eval_every": 1_000}))
    window.show()
    job = window.start_training()
    assert job is not None and window.pipeline.train_fn is training_process.train_in_process
    qtbot.waitUntil(lambda: len(window.monitor_panel.curves.loss) >= 3, timeout=60_000)
    steps = window.monitor_panel.curves.loss.x
    assert list(steps[:3]) == [1, 2, 3]
    assert window.progress.device == "cpu" and window.state == "running"
    assert window.job is job
    window.close()  # stops the run in the child and waits for the job's thread
    assert job.qthread.isFinished() and job.status == "stopped"
    qtbot.waitUntil(lambda: window.last_done is not None, timeout=5_000)  # the run's last events, delivered
    done = window.last_done
    assert done.status == "stopped" and done.steps < 100_000
    assert done.checkpoint and (tmp_path / "run" / "checkpoint.safetensors").exists()
    training_process.shutdown_spare()  # the spare started for the next run is not needed here
