"""A form generated from a config dataclass: one editor per field, errors beside it.

The form knows nothing about a particular config: ``fields_of(config_cls)`` says
the type, range, choices and help of every field. Integers get spin boxes
(clamped to the declared range), floats a monospace line edit checked as you type
(learning rates need more than a fixed number of decimals), choices a combo box,
booleans a check box, path settings a line edit with a browse button, and text
fields the caller suggests values for (a table's column names) an editable combo
box. Advanced fields go into a collapsible group at the end.

Values are checked with the same ``parse_value``/``check_value``/``check()`` that
the CLI uses; a ConfigError shows in red under the field it names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from effstudio.config import (
    ConfigError,
    FieldSpec,
    check_value,
    fields_of,
    parse_value,
    with_values,
)
from effstudio.gui.forms.path_field import BrowseButton
from effstudio.gui.theme import MUTED, monospace_font
from effstudio.registry import get_registry

INT_LIMIT = 2**31 - 1


def format_value(value: Any) -> str:
    """How a value reads in an editor and after `--set key=`: floats in their shortest exact form (1e-05, 0.001)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


class _Editor:
    """One field's widget with a uniform get/set interface."""

    def __init__(self, spec: FieldSpec, widget: QWidget):
        self.spec, self.widget = spec, widget

    def raw(self) -> Any:
        w = self.widget
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox) and w.isEditable():  # any text; the list only suggests
            return w.currentText()
        if isinstance(w, QComboBox):
            data = w.currentData()
            return data if data is not None else w.currentText()
        if isinstance(w, QSpinBox):
            return w.value()
        assert isinstance(w, QLineEdit)
        return w.text()

    def set(self, value: Any) -> None:
        w = self.widget
        if isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QComboBox) and w.isEditable():
            w.setCurrentText(format_value(value))
        elif isinstance(w, QComboBox):
            index = w.findData(value)
            if index < 0:  # a value this machine does not offer (a device, a removed plugin)
                w.addItem(f"{value} (not available)", value)
                index = w.count() - 1
            w.setCurrentIndex(index)
        elif isinstance(w, QSpinBox):
            w.setValue(int(value))
        else:
            assert isinstance(w, QLineEdit)
            w.setText(format_value(value))


class ConfigForm(QWidget):
    """Editors for every field of ``config_cls``.

    ``choices`` replaces a field's offered values (e.g. devices that exist here);
    ``prefix`` ("model", "train") is stripped from ConfigError field names;
    ``columns`` spreads the basic fields over that many side-by-side columns;
    ``fields`` names the fields to draw, in their order (the others keep their defaults);
    ``help`` replaces a field's declared help where the form's context gives the field another meaning;
    ``suggest`` names text fields drawn as editable combo boxes, whose list ``suggest_values`` fills.
    ``changed(name)`` fires when the user edits a field.
    """

    changed = Signal(str)

    def __init__(
        self,
        config_cls: type,
        *,
        prefix: str = "",
        choices: Mapping[str, Sequence[Any]] | None = None,
        columns: int = 1,
        fields: Sequence[str] | None = None,
        help: Mapping[str, str] | None = None,
        suggest: Sequence[str] = (),
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.config_cls = config_cls
        self.prefix = prefix
        specs = {spec.name: spec for spec in fields_of(config_cls)}
        self.specs = {name: specs[name] for name in fields} if fields is not None else specs
        self._choices = dict(choices or {})
        self._help = dict(help or {})
        self._suggested = set(suggest)
        self._editors: dict[str, _Editor] = {}
        self._error_labels: dict[str, QLabel] = {}
        self._browse_buttons: dict[str, BrowseButton] = {}
        self._unit_labels: dict[str, QLabel] = {}
        self._field_labels: dict[str, QLabel] = {}
        self._errors: dict[str, str] = {}

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        basic = [s for s in self.specs.values() if not s.advanced]
        advanced = [s for s in self.specs.values() if s.advanced]
        if basic:
            columns = max(1, min(columns, len(basic)))
            per_column = -(-len(basic) // columns)
            row = QHBoxLayout()
            row.setSpacing(24)
            for start in range(0, len(basic), per_column):
                row.addWidget(self._rows(basic[start:start + per_column]), 1, Qt.AlignmentFlag.AlignTop)
            layout.addLayout(row)
        self.advanced_group: QCollapsible | None = None
        if advanced:
            self.advanced_group = QCollapsible("Advanced", self, expandedIcon="\u25be", collapsedIcon="\u25b8")
            self.advanced_group.setDuration(0)
            self.advanced_group.addWidget(self._rows(advanced))
            layout.addWidget(self.advanced_group)
        if not self.specs:
            empty = QLabel("No settings.")
            empty.setObjectName("description")
            layout.addWidget(empty)
        self.set_values(config_cls())

    # ---------------------------------------------------------------- building
    def _rows(self, specs: list[FieldSpec]) -> QWidget:
        box = QWidget(self)
        form = QFormLayout(box)
        form.setContentsMargins(0, 0, 0, 0)
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(6)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for spec in specs:
            editor = self._make_editor(spec)
            self._editors[spec.name] = editor
            cell = QWidget(box)
            column = QVBoxLayout(cell)
            column.setContentsMargins(0, 0, 0, 0)
            column.setSpacing(2)
            column.addWidget(self._with_unit(spec, self._with_browse_button(spec, editor.widget, cell), cell))
            error = QLabel(cell)
            error.setObjectName("fieldError")
            error.setWordWrap(True)
            error.hide()
            column.addWidget(error)
            self._error_labels[spec.name] = error
            label = QLabel(spec.label, box)
            tip = self._tooltip(spec)
            label.setToolTip(tip)
            editor.widget.setToolTip(tip)
            label.setBuddy(editor.widget)
            self._field_labels[spec.name] = label
            form.addRow(label, cell)
        return box

    def _with_browse_button(self, spec: FieldSpec, widget: QWidget, cell: QWidget) -> QWidget:
        """A path setting's line edit with its browse button beside it; any other editor as it is."""
        if spec.path is None or not isinstance(widget, QLineEdit):
            return widget
        row = QWidget(cell)
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        widget.setParent(row)
        layout.addWidget(widget, 1)
        button = BrowseButton(spec.path, spec.label, widget, row)
        button.setObjectName(f"browse_{spec.name}")
        button.chosen.connect(lambda path, n=spec.name: self.set_value(n, path))
        layout.addWidget(button)
        self._browse_buttons[spec.name] = button
        return row

    def _with_unit(self, spec: FieldSpec, widget: QWidget, cell: QWidget) -> QWidget:
        """The editor with what its value counts beside it ("steps", "tokens"), where the field says."""
        if not spec.unit:
            return widget
        row = QWidget(cell)
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        widget.setParent(row)
        layout.addWidget(widget, 1)
        unit = QLabel(spec.unit, row)
        unit.setObjectName(f"unit_{spec.name}")
        unit.setStyleSheet(f"color: {MUTED};")
        layout.addWidget(unit)
        self._unit_labels[spec.name] = unit
        return row

    def unit_text(self, name: str) -> str:
        """The unit shown beside a field ("" when it has none)."""
        label = self._unit_labels.get(name)
        return label.text() if label is not None else ""

    def _update_enabled(self) -> None:
        """Disable the settings whose ``only_if`` condition does not hold (experts while feed-forward is dense)."""
        raw = self.raw_values()
        for name, spec in self.specs.items():
            if spec.only_if is None or spec.only_if[0] not in raw:
                continue
            other, value = spec.only_if
            active = raw[other] == value
            self._editors[name].widget.setEnabled(active)
            self._field_labels[name].setEnabled(active)
            self._editors[name].widget.setToolTip(
                self._tooltip(spec) + ("" if active else f"<br><i>Used only when {self.specs[other].label} is "
                                                        f"{format_value(value)}</i>"))

    def _tooltip(self, spec: FieldSpec) -> str:
        lines = [f"<b>{spec.label}</b> <code>{self.prefix + '.' if self.prefix else ''}{spec.name}</code>"]
        text = self._help.get(spec.name, spec.help)
        if text:
            lines.append(text)
        bounds = []
        if spec.min is not None:
            bounds.append(f"min {format_value(spec.min)}")
        if spec.max is not None:
            bounds.append(f"max {format_value(spec.max)}")
        bounds.append(f"default {format_value(spec.default)}" + (f" {spec.unit}" if spec.unit else ""))
        lines.append(f"<span style='color:{MUTED}'>{', '.join(bounds)}</span>")
        return "<br>".join(lines)

    def _offered(self, spec: FieldSpec) -> list[tuple[Any, str]] | None:
        """(value, tooltip) pairs for a choice field, or None for a free field."""
        if spec.name in self._choices:
            return [(c, "") for c in self._choices[spec.name]]
        if spec.choices is not None:
            return [(c, "") for c in spec.choices]
        if spec.choices_from is not None:
            return [(e.name, e.description) for e in get_registry().all(spec.choices_from)]
        return None

    def _make_editor(self, spec: FieldSpec) -> _Editor:
        offered = self._offered(spec)
        widget: QWidget
        if spec.type is bool:
            widget = QCheckBox(self)
            widget.toggled.connect(lambda _=None, n=spec.name: self._edited(n))
        elif offered is not None:
            widget = QComboBox(self)
            for value, tip in offered:
                widget.addItem(format_value(value), value)
                if tip:
                    widget.setItemData(widget.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            widget.currentIndexChanged.connect(lambda _=None, n=spec.name: self._edited(n))
        elif spec.name in self._suggested and spec.type is str:
            widget = QComboBox(self)
            widget.setEditable(True)
            widget.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)  # typing edits the value, not the list
            widget.currentTextChanged.connect(lambda _=None, n=spec.name: self._edited(n))
        elif spec.type is int:
            widget = QSpinBox(self)
            low = int(spec.min) if spec.min is not None else -INT_LIMIT
            high = int(spec.max) if spec.max is not None else INT_LIMIT
            widget.setRange(max(low, -INT_LIMIT), min(high, INT_LIMIT))
            widget.setFont(monospace_font())
            widget.setAlignment(Qt.AlignmentFlag.AlignRight)
            widget.setKeyboardTracking(False)
            widget.setMinimumWidth(110)
            if spec.zero and widget.minimum() == 0:
                widget.setSpecialValueText(spec.zero)  # shown at the minimum, 0
            widget.valueChanged.connect(lambda _=None, n=spec.name: self._edited(n))
        else:
            widget = QLineEdit(self)
            if spec.type is float:
                widget.setFont(monospace_font())
                widget.setAlignment(Qt.AlignmentFlag.AlignRight)
                widget.setPlaceholderText(format_value(spec.default))
            widget.textEdited.connect(lambda _=None, n=spec.name: self._edited(n))
        widget.setObjectName(f"field_{spec.name}")
        return _Editor(spec, widget)

    # ------------------------------------------------------------------ values
    def field_names(self) -> list[str]:
        return list(self.specs)

    def editor(self, name: str) -> QWidget:
        return self._editors[name].widget

    def browse_button(self, name: str) -> BrowseButton:
        """The browse button of a path setting (KeyError for any other field)."""
        return self._browse_buttons[name]

    def suggest_values(self, name: str, values: Sequence[str]) -> None:
        """Offer ``values`` in a suggested field's list; its value stays as it is (no signal)."""
        widget = self._editors[name].widget
        assert isinstance(widget, QComboBox) and widget.isEditable(), f"{name} is not a suggested field"
        current = widget.currentText()
        widget.blockSignals(True)
        try:
            widget.clear()
            widget.addItems(list(values))
            widget.setCurrentText(current)
        finally:
            widget.blockSignals(False)

    def suggested_values(self, name: str) -> list[str]:
        widget = self._editors[name].widget
        assert isinstance(widget, QComboBox)
        return [widget.itemText(i) for i in range(widget.count())]

    def offers(self, name: str, value: Any) -> bool:
        """Whether a choice field lists ``value`` among its choices (a free field takes any value)."""
        offered = self._offered(self.specs[name])
        return offered is None or any(choice == value for choice, _tip in offered)

    def path_fields(self) -> list[str]:
        """The path settings, in their order."""
        return [name for name, spec in self.specs.items() if spec.path is not None]

    def set_values(self, config: Any) -> None:
        """Show a config instance's (or a mapping's) values; unknown keys are ignored."""
        values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        for name, value in values.items():
            editor = self._editors.get(name)
            if editor is None:
                continue
            editor.widget.blockSignals(True)
            try:
                editor.set(value)
            finally:
                editor.widget.blockSignals(False)
        self._update_enabled()
        self.validate()

    def set_value(self, name: str, value: Any) -> None:
        """Set one field as if the user had edited it (signals fire)."""
        self._editors[name].set(value)
        self._edited(name)

    def raw_values(self) -> dict[str, Any]:
        return {name: editor.raw() for name, editor in self._editors.items()}

    def values(self) -> dict[str, Any]:
        """Typed values of every field; raises ConfigError naming the first bad one."""
        values = {}
        for name, raw in self.raw_values().items():
            spec = self.specs[name]
            value = parse_value(spec, raw)
            check_value(spec, value)
            values[name] = value
        return values

    def config(self) -> Any:
        """A config instance with the form's values, checked like the CLI checks them."""
        return with_values(self.config_cls(), self.values())

    def non_default_values(self) -> dict[str, Any]:
        values = self.values()
        return {name: v for name, v in values.items() if v != self.specs[name].default}

    # ------------------------------------------------------------------ errors
    def _edited(self, name: str) -> None:
        self._update_enabled()
        self.validate()
        self.changed.emit(name)

    def validate(self) -> list[ConfigError]:
        """Check every field and the config's own ``check()``; show and return the errors."""
        errors: list[ConfigError] = []
        values = {}
        for name, raw in self.raw_values().items():
            spec = self.specs[name]
            try:
                value = parse_value(spec, raw)
                check_value(spec, value)
                values[name] = value
            except ConfigError as err:
                errors.append(err)
        if not errors:
            try:
                with_values(self.config_cls(), values)
            except ConfigError as err:
                errors.append(err)
        self.clear_errors()
        for err in errors:
            self.set_error(err.field, err.message)
        return errors

    def owns(self, field: str) -> str | None:
        """The field name in this form that an error's (maybe prefixed) field names, else None."""
        if self.prefix and field.startswith(self.prefix + "."):
            field = field[len(self.prefix) + 1:]
        elif self.prefix and "." in field:
            return None
        return field if field in self._editors else None

    def set_error(self, field: str, message: str) -> bool:
        """Mark a field invalid with ``message``; False when this form has no such field."""
        name = self.owns(field)
        if name is None:
            return False
        self._errors[name] = message
        label = self._error_labels[name]
        label.setText(message)
        label.show()
        widget = self._editors[name].widget
        widget.setProperty("invalid", True)
        widget.style().unpolish(widget)
        widget.style().polish(widget)
        if self.advanced_group is not None and self.specs[name].advanced:
            self.advanced_group.expand(animate=False)
        return True

    def clear_errors(self) -> None:
        for name in list(self._errors):
            self._error_labels[name].hide()
            widget = self._editors[name].widget
            widget.setProperty("invalid", False)
            widget.style().unpolish(widget)
            widget.style().polish(widget)
        self._errors.clear()

    def errors(self) -> dict[str, str]:
        return dict(self._errors)

    def error_text(self, name: str) -> str:
        label = self._error_labels[name]
        return label.text() if not label.isHidden() else ""
