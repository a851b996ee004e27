"""The Data section with a dropped CSV: textclass, its columns, its word pieces, its lengths and classes."""

from __future__ import annotations

import csv
import threading
from collections import Counter

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from effstudio.gui.main_window import DATA, INSPECT
from effstudio.gui.panels import data_panel
from effstudio.gui.panels.data_panel import DataPanel, PreviewStopped, ThrottledProgress
from effstudio.registry import get_registry

TIMEOUT = 60_000
TOPICS = {
    "sport": "the keeper saved a penalty and the striker scored twice before the final whistle",
    "weather": "heavy rainfall and strong winds are expected along the coast until the evening",
    "cooking": "simmer the onions slowly then add garlic tomatoes and a pinch of salt",
}
KEPT: list[QMimeData] = []  # an event only points to its data


def write_csv(path, rows, header=("text", "label")):
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def documents(count: int = 60) -> list[tuple[str, str]]:
    """Distinct short documents; every fifth one has a quoted newline (and a comma) inside its text."""
    rows = []
    for i in range(count):
        label = list(TOPICS)[i % len(TOPICS)]
        text = f"report {i}: {TOPICS[label]}"
        if i % 5 == 0:
            text += f",\nsecond line {i} of the report"
        rows.append((text, label))
    return rows


def drop(panel: DataPanel, path) -> None:
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    KEPT.append(data)
    panel.dropEvent(QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, data, Qt.MouseButton.NoButton,
                               Qt.KeyboardModifier.NoModifier))


def shown_panel(qtbot) -> DataPanel:
    panel = DataPanel(get_registry())
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    panel.task_box.setCurrentIndex(panel.task_box.findData("copy"))
    panel.show()
    qtbot.waitUntil(lambda: panel.preview_settled, timeout=TIMEOUT)
    return panel


def settle(qtbot, panel: DataPanel) -> None:
    qtbot.waitUntil(lambda: panel.preview_settled, timeout=TIMEOUT)


def test_a_dropped_csv_previews_as_word_pieces_with_its_lengths_and_classes(app, qtbot, tmp_path):
    path = write_csv(tmp_path / "news.csv", documents(), header=("body", "topic"))
    panel = shown_panel(qtbot)
    form_settings = {"text_column": "body", "label_column": "topic", "tokenizer": "wordpiece",
                     "vocab_size": 120, "max_length": 16, "val_fraction": 0.2, "test_fraction": 0.0}
    drop(panel, path)
    assert panel.task_name() == "textclass"
    assert panel.overrides()["task.path"] == str(path)
    settle(qtbot, panel)  # the default columns "text" and "label" are not in this file
    assert "'body'" in panel.preview_status.text() and "'topic'" in panel.preview_status.text()
    for name in ("text_column", "label_column"):
        assert panel.form.suggested_values(name) == ["body", "topic"]
    for name in ("text_pair_column", "split_column"):  # these may name no column
        assert panel.form.suggested_values(name) == ["", "body", "topic"]

    reports: list[tuple[str, float, float]] = []
    panel.data_progress.connect(lambda *report: reports.append(report))
    panel.form.set_values(form_settings)
    panel.refresh_preview()
    settle(qtbot, panel)
    assert any(what.endswith(" news.csv") and 0 < done <= total for what, done, total in reports), reports
    assert panel.progress.isHidden()  # shown while the data were read
    preview = panel.text_view.preview
    assert preview is not None, panel.preview_status.text()
    assert panel.summary.text() == "3 classes \u00b7 vocabulary 120 \u00b7 48 train / 12 val / 0 test"
    task = get_registry().get("tasks", "textclass").factory(panel.form.config())

    # examples decoded into word pieces: wordpiece marks a piece that continues a word with "##"
    assert [row.tokens for row in preview.examples] == [list(e.tokens[:64]) for e in task.examples("train", 6)]
    pieces = [t for row in preview.examples for t in row.tokens]
    assert any(t.startswith("##") for t in pieces)
    assert "[CLS]" in panel.text_view.examples.toPlainText()

    # the histogram counts every training example; the line marks max_length
    lengths = task.lengths("train")
    assert int(preview.length_counts.sum()) == len(lengths) == 48
    assert preview.longer == int((np.asarray(lengths) > 16).sum())
    assert panel.text_view.max_line.value() == 16
    assert panel.text_view.max_line.label.toPlainText() == f"max length 16: {preview.longer} of 48 longer"
    x, y = panel.text_view.length_bars.getData()
    assert int(np.sum(y)) == 48

    # one bar per class with the training split's counts (stratified: 16 of each)
    assert panel.text_view.bar_heights() == dict(task.class_counts("train")) == {t: 16 for t in TOPICS}
    assert sum(Counter(label for _text, label in documents()).values()) == 60
    panel.grab().save(str(tmp_path / "data_textclass.png"))
    assert panel.shutdown(5_000)


def test_a_csv_without_the_label_column_says_which_columns_there_are(app, qtbot, tmp_path):
    path = write_csv(tmp_path / "reviews.csv", [(f"review {i}", i % 2) for i in range(20)],
                     header=("review", "stars"))
    panel = shown_panel(qtbot)
    drop(panel, path)
    panel.form.set_values({"text_column": "review"})
    panel.refresh_preview()
    settle(qtbot, panel)
    message = panel.preview_status.text()
    assert message.startswith("Cannot build the task: ")
    assert "reviews.csv" in message and "'label'" in message and "'review', 'stars'" in message
    assert "\n" not in message and "Traceback" not in message
    assert panel.text_view.preview is None  # nothing of another data set left on show
    assert panel.form.suggested_values("label_column") == ["review", "stars"]
    assert panel.shutdown(5_000)


def test_progress_reaches_the_gui_at_most_every_tenth_of_a_second(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(data_panel.time, "monotonic", lambda: now[0])
    sent: list[tuple[str, float, float]] = []
    progress = ThrottledProgress(lambda *report: sent.append(report), stop_requested=lambda: False)
    progress("reading a.csv", 1, 10)
    progress("reading a.csv", 2, 10)  # too soon
    now[0] += 0.2
    progress("reading a.csv", 3, 10)
    progress("tokenizing a.csv", 0, None)  # a new step is always sent
    progress("tokenizing a.csv", 5, 5)  # and a step's end
    assert sent == [("reading a.csv", 1.0, 10.0), ("reading a.csv", 3.0, 10.0), ("tokenizing a.csv", 0.0, -1.0),
                    ("tokenizing a.csv", 5.0, 5.0)]


def test_a_dropped_folder_of_text_files_per_class_is_a_textclass_data_set(app, qtbot, tmp_path):
    root = tmp_path / "letters"
    for label, text in TOPICS.items():
        (root / label).mkdir(parents=True)
        for i in range(4):
            (root / label / f"{i}.txt").write_text(f"{text} {i}", encoding="utf-8")
    panel = DataPanel(get_registry())
    qtbot.addWidget(panel)
    panel.task_box.setCurrentIndex(panel.task_box.findData("copy"))
    drop(panel, root)
    assert panel.task_name() == "textclass" and panel.overrides()["task.path"] == str(root)
    assert panel.shutdown(5_000)


def test_a_csv_dropped_anywhere_on_the_window_opens_in_the_data_section(window, qtbot, tmp_path):
    path = write_csv(tmp_path / "notes.csv", documents(12))
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    KEPT.append(data)
    window.show_section(INSPECT)
    window.dropEvent(QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, data, Qt.MouseButton.NoButton,
                                Qt.KeyboardModifier.NoModifier))
    assert window.current_section() == DATA
    assert window.data_panel.task_name() == "textclass"
    assert window.data_panel.overrides()["task.path"] == str(path)


def test_a_stopped_preview_leaves_its_data_step_at_the_next_report_of_its_own_thread():
    stop = [False]
    progress = ThrottledProgress(lambda *report: None, stop_requested=lambda: stop[0])
    progress.job_thread = threading.current_thread()
    progress("reading a.csv", 1, 10)
    stop[0] = True
    raised: list[BaseException] = []

    def helper_reports():  # a helper thread of the task (a tokenizer's) reports too: it must not be ended
        try:
            progress("tokenizing a.csv", 1, 10)
        except PreviewStopped as err:
            raised.append(err)

    helper = threading.Thread(target=helper_reports)
    helper.start()
    helper.join()
    assert raised == []
    with pytest.raises(PreviewStopped):
        progress("reading a.csv", 2, 10)
