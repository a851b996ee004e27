"""Cycles are collected in the GUI thread only while the window runs: a worker thread never frees
a cycle of Qt objects."""

from __future__ import annotations

import gc
import threading
import weakref

from PySide6.QtWidgets import QLabel

from effstudio.gui.collector import GuiThreadCollector, collect_due, collecting_in_gui_thread


class Node:
    def __init__(self):
        self.other = self  # a cycle: only the collector frees it


def test_the_block_turns_automatic_collection_off_and_back_on(qapp):
    gc.enable()  # as outside the GUI tests, which run inside such a block themselves
    with collecting_in_gui_thread() as collector:
        assert not gc.isenabled()
        assert collector.timer.isActive()
    assert gc.isenabled() and not collector.timer.isActive()


def test_a_worker_thread_allocating_freely_does_not_free_a_cycle_of_widgets(qapp, qtbot):
    with collecting_in_gui_thread(interval_ms=60_000):
        label = QLabel("in a cycle")
        label.cycle = label  # type: ignore[attr-defined]
        alive = weakref.ref(label)
        del label

        def allocate():  # far past every threshold: the automatic collector would have run here
            junk = [Node() for _ in range(50 * gc.get_threshold()[0])]
            del junk

        worker = threading.Thread(target=allocate)
        worker.start()
        worker.join()
        assert alive() is not None
    assert alive() is None  # freed by the collection the block ends with, in this thread


def test_a_due_generation_is_collected_from_the_timer(qapp, qtbot):
    with collecting_in_gui_thread(interval_ms=10) as collector:
        gc.collect()
        node = Node()
        alive = weakref.ref(node)
        del node
        keep = [[] for _ in range(collector.thresholds[0] + 1)]  # tracked containers raise the count
        qtbot.waitUntil(lambda: alive() is None, timeout=5_000)
        del keep


def test_nothing_is_collected_before_a_threshold_is_passed(qapp):
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        node = Node()
        alive = weakref.ref(node)
        del node
        assert collect_due((10**9, 10, 10)) == 0
        assert collect_due((0, 0, 0)) == 0  # a threshold of 0: never
        assert alive() is not None
        keep = [[] for _ in range(3)]  # the count of generation 0 passes 1
        assert collect_due((1, 10**9, 10**9)) >= 1  # generation 0 is due
        assert alive() is None
        del keep
    finally:
        if was:
            gc.enable()


def test_stop_restores_a_collector_that_was_off_as_off(qapp):
    gc.disable()
    try:
        collector = GuiThreadCollector()
        collector.start()
        collector.stop()
        assert not gc.isenabled()
    finally:
        gc.enable()
