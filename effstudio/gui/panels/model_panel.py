"""Model section: the model type, its settings, and the settings of its attention kind.

The attention form follows the model form's ``attention`` field: picking another
kind swaps in that kind's generated form.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from effstudio.config import ConfigError
from effstudio.engine.run_config import RunConfig
from effstudio.gui.forms.config_form import ConfigForm
from effstudio.gui.panels.base import Panel, description_label, empty_state
from effstudio.registry import Registry, UnknownEntryError


class ModelPanel(Panel):
    changed = Signal()

    def __init__(self, registry: Registry, parent: QWidget | None = None):
        super().__init__("Model", "Pick an architecture and its attention mechanism. "
                         "Hover over a setting for what it does.", parent=parent)
        self.registry = registry
        self.model_form: ConfigForm | None = None
        self.attention_form: ConfigForm | None = None

        self.type_box = QComboBox(self)
        self.type_box.setObjectName("modelType")
        self.type_box.setMinimumWidth(260)
        for entry in registry.all("models"):
            self.type_box.addItem(entry.name, entry.name)
            self.type_box.setItemData(self.type_box.count() - 1, entry.description, Qt.ItemDataRole.ToolTipRole)
        self.description = description_label(self)
        picker = QGroupBox("Architecture", self)
        picker_layout = QVBoxLayout(picker)
        row = QHBoxLayout()
        row.addWidget(QLabel("Model type", picker))
        row.addWidget(self.type_box)
        row.addStretch(1)
        picker_layout.addLayout(row)
        picker_layout.addWidget(self.description)
        self.body.addWidget(picker)

        self.model_group = QGroupBox("Model settings", self)
        self.model_layout = QVBoxLayout(self.model_group)
        self.attention_group = QGroupBox("Attention", self)
        self.attention_layout = QVBoxLayout(self.attention_group)
        self.attention_description = description_label(self)
        self.attention_layout.addWidget(self.attention_description)
        columns = QHBoxLayout()
        columns.setSpacing(12)
        columns.addWidget(self.model_group, 1, Qt.AlignmentFlag.AlignTop)
        columns.addWidget(self.attention_group, 1, Qt.AlignmentFlag.AlignTop)
        self.body.addLayout(columns)
        self.body.addStretch(1)

        if not registry.names("models"):
            self.model_group.hide()
            self.attention_group.hide()
            self.type_box.setEnabled(False)
            self.body.insertWidget(1, empty_state(
                "No model types are registered.\nA plugin may have failed to load: see the warning in the "
                "status bar.", self))
            return
        self.type_box.currentIndexChanged.connect(self._type_changed)
        self._type_changed()

    # ---------------------------------------------------------------- building
    def model_type(self) -> str | None:
        return self.type_box.currentData()

    def _type_changed(self) -> None:
        name = self.model_type()
        if name is None:
            return
        entry = self.registry.get("models", name)
        self.description.setText(entry.description)
        kind, settings = self._chosen_attention()
        if self.model_form is not None:
            self.model_form.hide()  # at once: it is deleted when the event loop next runs
            self.model_form.deleteLater()
        self.model_form = ConfigForm(entry.config_cls, prefix="model", parent=self.model_group)
        self.model_form.changed.connect(self._model_field_changed)
        self.model_layout.addWidget(self.model_form)
        self.model_group.setTitle(f"Model settings \u00b7 {name}")
        keeps = (kind is not None and "attention" in self.model_form.specs
                 and self.model_form.offers("attention", kind))
        if keeps:  # the new type accepts the kind picked before: keep it, and its settings
            self.model_form.set_values({"attention": kind})
            if "attention" in self.model_form.errors():  # offered, but refused by the type's own check
                self.model_form.set_values({"attention": self.model_form.specs["attention"].default})
                keeps = False
        self._attention_changed(settings if keeps else None)
        self.changed.emit()

    def _chosen_attention(self) -> tuple[str | None, dict[str, Any] | None]:
        """The attention kind of the current form and its valid settings (None where they do not parse)."""
        kind = self.attention_kind()
        if kind is None or self.attention_form is None:
            return kind, None
        try:
            return kind, self.attention_form.values()
        except ConfigError:
            return kind, None

    def _model_field_changed(self, name: str) -> None:
        if name == "attention":
            self._attention_changed()
        self.changed.emit()

    def attention_kind(self) -> str | None:
        if self.model_form is None or "attention" not in self.model_form.specs:
            return None
        kind = self.model_form.raw_values()["attention"]
        return kind if kind in self.registry.names("attention") else None

    def _attention_changed(self, values: Any = None) -> None:
        if self.attention_form is not None:
            self.attention_form.hide()
            self.attention_form.deleteLater()
            self.attention_form = None
        kind = self.attention_kind()
        if kind is None:
            has_field = self.model_form is not None and "attention" in self.model_form.specs
            self.attention_group.setVisible(has_field)
            self.attention_description.setText("This attention kind is not available.")
            return
        entry = self.registry.get("attention", kind)
        self.attention_group.show()
        self.attention_group.setTitle(f"Attention \u00b7 {kind}")
        self.attention_description.setText(entry.description)
        self.attention_form = ConfigForm(entry.config_cls, prefix="attention", parent=self.attention_group)
        if values is not None:
            self.attention_form.set_values(values)
        self.attention_form.changed.connect(lambda _name: self.changed.emit())
        self.attention_layout.addWidget(self.attention_form)

    # ------------------------------------------------------------------ values
    def forms(self) -> list[ConfigForm]:
        return [f for f in (self.model_form, self.attention_form) if f is not None]

    def overrides(self) -> dict[str, Any]:
        """``{"model.x": v, "attention.y": v}``; raises ConfigError naming a bad field."""
        result: dict[str, Any] = {}
        for form in self.forms():
            result.update({f"{form.prefix}.{k}": v for k, v in form.values().items()})
        return result

    def set_config(self, config: RunConfig) -> None:
        index = self.type_box.findData(config.model_type)
        if index < 0:
            raise UnknownEntryError("models", config.model_type, self.registry.names("models"))
        self.type_box.setCurrentIndex(index)
        if self.model_form is None:
            return
        self.model_form.set_values(config.model)
        attention = config.attention if dataclasses.is_dataclass(config.attention) else None
        self._attention_changed(attention)
        self.changed.emit()

    def validate(self) -> list[ConfigError]:
        errors = []
        for form in self.forms():
            errors += [ConfigError(f"{form.prefix}.{e.field}", e.message) for e in form.validate()]
        return errors
