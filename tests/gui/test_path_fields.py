"""Path settings get a browse button; a data file or folder dropped on the Data section goes to its task."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog, QLineEdit

from effstudio.config import fields_of, param
from effstudio.gui.forms import path_field
from effstudio.gui.forms.config_form import ConfigForm
from effstudio.gui.main_window import DATA
from effstudio.gui.panels.data_drop import DataTarget, data_target
from effstudio.gui.panels.data_panel import DataPanel
from effstudio.registry import get_registry
from effstudio.tasks.charlm import CharLMConfig
from effstudio.tasks.imagefolder import ImageFolderConfig

REGISTRY = get_registry()


@dataclass
class Paths:
    data: str = param("", label="Data", path="file or folder")
    name: str = param("", label="Name")


def test_every_path_setting_gets_a_browse_button_of_its_kind(app, qtbot):
    charlm = ConfigForm(CharLMConfig, prefix="task")
    images = ConfigForm(ImageFolderConfig, prefix="task")
    both = ConfigForm(Paths)
    for form in (charlm, images, both):
        qtbot.addWidget(form)
    assert charlm.path_fields() == ["path"] and charlm.browse_button("path").kind == "file"
    assert images.path_fields() == ["folder"] and images.browse_button("folder").kind == "folder"
    assert both.browse_button("data").menu() is not None  # a file or a folder, from its menu
    assert [a.text() for a in both.browse_button("data").menu().actions()] == ["File\u2026", "Folder\u2026"]
    with pytest.raises(KeyError):
        both.browse_button("name")
    assert isinstance(charlm.editor("path"), QLineEdit)  # the value stays a line edit to type in


def test_a_path_declaration_says_what_it_names():
    assert [(s.name, s.path) for s in fields_of(CharLMConfig) if s.path] == [("path", "file")]  # path=True
    assert [(s.name, s.path) for s in fields_of(Paths)] == [("data", "file or folder"), ("name", None)]
    with pytest.raises(TypeError, match="path='directory'"):
        param("", path="directory")


def test_browsing_sets_the_field_and_starts_where_its_value_is(app, qtbot, monkeypatch, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    asked: list[tuple[str, str]] = []

    def open_file(parent, title, start):
        asked.append(("file", start))
        return str(text), ""

    def open_folder(parent, title, start):
        asked.append(("folder", start))
        return str(tmp_path)

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(open_file))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(open_folder))
    form = ConfigForm(CharLMConfig, prefix="task")
    qtbot.addWidget(form)
    with qtbot.waitSignal(form.changed) as changed:
        form.browse_button("path").click()
    assert changed.args == ["path"] and form.values()["path"] == str(text)
    form.browse_button("path").click()  # again: the dialog opens in the chosen file's folder
    assert asked == [("file", path_field.start_folder("")), ("file", str(tmp_path))]

    images = ConfigForm(ImageFolderConfig, prefix="task")
    qtbot.addWidget(images)
    images.browse_button("folder").click()
    assert images.values()["folder"] == str(tmp_path) and asked[-1][0] == "folder"


def test_a_cancelled_dialog_keeps_the_value(app, qtbot, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a: ("", "")))
    form = ConfigForm(CharLMConfig, prefix="task")
    qtbot.addWidget(form)
    form.set_values({"path": "/data/kept.txt"})
    assert form.browse_button("path").browse("file") == ""
    assert form.values()["path"] == "/data/kept.txt"


def class_folders(root, suffix):
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        (root / name / f"a{suffix}").write_bytes(b"x")
    return root


def test_where_a_dropped_path_goes(tmp_path):
    text = tmp_path / "book.txt"
    text.write_text("words")
    images = class_folders(tmp_path / "images", ".png")
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"\0" * 16)
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "a.txt").write_text("a")
    assert data_target(REGISTRY, text, "copy") == DataTarget("charlm", "path")
    assert data_target(REGISTRY, images, "copy") == DataTarget("imagefolder", "folder")
    assert data_target(REGISTRY, model, "charlm") is None  # a model file is the window's
    assert data_target(REGISTRY, loose, "imagefolder") is None  # not a folder of class folders
    assert data_target(REGISTRY, tmp_path / "gone.txt", "copy") is None


KEPT: list[QMimeData] = []  # an event only points to its data: keep it alive as long as the tests run


def drop_event(path, cls=QDropEvent):
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    KEPT.append(data)
    return cls(QPointF(10, 10).toPoint() if cls is QDragEnterEvent else QPointF(10, 10),
               Qt.DropAction.CopyAction, data, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)


def test_dropping_a_data_file_on_the_data_section_switches_the_task_and_sets_its_path(app, qtbot, tmp_path):
    text = tmp_path / "book.txt"
    text.write_text("a small book")
    panel = DataPanel(REGISTRY)
    qtbot.addWidget(panel)
    panel.task_box.setCurrentIndex(panel.task_box.findData("copy"))
    enter = drop_event(text, QDragEnterEvent)
    panel.dragEnterEvent(enter)
    assert enter.isAccepted()
    with qtbot.waitSignal(panel.changed):
        panel.dropEvent(drop_event(text))
    assert panel.task_name() == "charlm"
    assert panel.overrides()["task.path"] == str(text)
    images = class_folders(tmp_path / "images", ".png")
    panel.dropEvent(drop_event(images))
    assert panel.task_name() == "imagefolder" and panel.overrides()["task.folder"] == str(images)
    assert panel.shutdown(5_000)


def test_drags_over_the_data_section_reach_the_window_only_when_not_data(window, qtbot, tmp_path, monkeypatch):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"\0" * 16)
    text = tmp_path / "book.txt"
    text.write_text("a small book")
    seen_by_window: list[str] = []
    opens_in_inspect = window.dragEnterEvent

    def window_enter(event):
        seen_by_window.append(event.mimeData().urls()[0].fileName())
        opens_in_inspect(event)

    monkeypatch.setattr(window, "dragEnterEvent", window_enter)
    for path in (model, text):
        enter = drop_event(path, QDragEnterEvent)
        QApplication.sendEvent(window.data_panel, enter)
        assert enter.isAccepted()
    assert seen_by_window == ["model.safetensors"]  # the window opens model files in Inspect
    window.show_section(DATA)
    window.data_panel.dropEvent(drop_event(text))  # where Qt sends the drop the section accepted
    assert window.current_section() == DATA
    assert window.current_config().task.path == str(text)
