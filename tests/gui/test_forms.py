"""Forms generated from every registered config, and their validation."""

from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit, QSpinBox

from effstudio.config import ConfigError, fields_of, param
from effstudio.engine.run_config import TrainConfig
from effstudio.gui.forms.config_form import ConfigForm, format_value
from effstudio.registry import get_registry

REGISTRY = get_registry()
ENTRIES = [(kind, name) for kind in ("models", "attention", "tasks") for name in REGISTRY.names(kind)]


@pytest.mark.parametrize(("kind", "name"), ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_form_for_every_registered_config(app, qtbot, kind, name):
    entry = REGISTRY.get(kind, name)
    form = ConfigForm(entry.config_cls, prefix=kind)
    qtbot.addWidget(form)
    specs = fields_of(entry.config_cls)
    assert form.field_names() == [s.name for s in specs]
    assert form.values() == dataclasses.asdict(entry.default_config())
    assert form.validate() == []
    for spec in specs:
        widget = form.editor(spec.name)
        if spec.type is bool:
            assert isinstance(widget, QCheckBox)
        elif spec.choices is not None or spec.choices_from is not None:
            assert isinstance(widget, QComboBox)
            offered = [widget.itemData(i) for i in range(widget.count())]
            expected = list(spec.choices) if spec.choices is not None else REGISTRY.names(spec.choices_from)
            assert offered == expected
        elif spec.type is int:
            assert isinstance(widget, QSpinBox)
            if spec.min is not None:
                assert widget.minimum() == spec.min
            if spec.max is not None:
                assert widget.maximum() == spec.max
        else:
            assert isinstance(widget, QLineEdit)
        if spec.help:
            assert spec.help in widget.toolTip()
    # a round trip through set_values keeps every value
    form.set_values(entry.default_config())
    assert form.config() == entry.default_config()


def test_float_field_reports_bad_text_naming_the_field(app, qtbot):
    form = ConfigForm(TrainConfig, prefix="train")
    qtbot.addWidget(form)
    lr = form.editor("lr")
    assert isinstance(lr, QLineEdit)
    assert lr.text() == format_value(TrainConfig().lr)
    lr.setText("fast")
    lr.textEdited.emit("fast")
    assert "expected float" in form.error_text("lr")
    assert form.errors() == {"lr": form.error_text("lr")}
    assert lr.property("invalid") is True
    with pytest.raises(ConfigError) as err:
        form.values()
    assert err.value.field == "lr"
    form.set_value("lr", 3e-4)
    assert form.error_text("lr") == ""
    assert form.values()["lr"] == pytest.approx(3e-4)


def test_out_of_range_and_cross_field_errors(app, qtbot):
    form = ConfigForm(TrainConfig, prefix="train")
    qtbot.addWidget(form)
    form.set_value("lr", 50.0)  # max is 10
    assert "<= 10" in form.error_text("lr")
    form.set_value("lr", 1e-3)
    form.set_value("batch_size", 16)
    form.set_value("grad_accum", 3)  # TrainConfig.check(): batch size must divide
    errors = form.validate()
    assert [e.field for e in errors] == ["grad_accum"]
    assert "not divisible" in form.error_text("grad_accum")


def test_prefixed_errors_find_their_field(app, qtbot):
    form = ConfigForm(TrainConfig, prefix="train")
    qtbot.addWidget(form)
    assert form.set_error("train.steps", "too many")
    assert form.error_text("steps") == "too many"
    assert not form.set_error("model.steps", "not mine")
    assert not form.set_error("nonexistent", "nope")
    form.clear_errors()
    assert form.errors() == {}


def test_choices_can_be_limited(app, qtbot):
    form = ConfigForm(TrainConfig, choices={"device": ["auto", "cpu"]})
    qtbot.addWidget(form)
    device = form.editor("device")
    assert [device.itemData(i) for i in range(device.count())] == ["auto", "cpu"]
    form.set_values({"device": "cuda"})  # a saved value this machine lacks stays visible
    assert device.currentData() == "cuda"
    assert "not available" in device.currentText()


def test_advanced_fields_are_collapsible(app, qtbot):
    entry = REGISTRY.get("models", "transformer")
    form = ConfigForm(entry.config_cls)
    qtbot.addWidget(form)
    advanced = [s.name for s in fields_of(entry.config_cls) if s.advanced]
    assert advanced and form.advanced_group is not None
    assert not form.advanced_group.isExpanded()
    form.set_error(advanced[0], "look here")
    assert form.advanced_group.isExpanded()


def test_a_form_draws_the_fields_it_is_given_with_help_of_its_own(app, qtbot):
    form = ConfigForm(TrainConfig, fields=("steps", "lr"), help={"lr": "how fast, in this form"})
    qtbot.addWidget(form)
    assert form.field_names() == ["steps", "lr"]
    assert "how fast, in this form" in form.editor("lr").toolTip()
    form.set_value("lr", 3e-4)
    config = form.config()  # the fields not drawn keep their defaults
    assert config.lr == pytest.approx(3e-4) and config.batch_size == TrainConfig().batch_size
    assert set(form.values()) == {"steps", "lr"}


def test_a_suggested_field_offers_values_and_keeps_any_text(app, qtbot):
    @dataclasses.dataclass
    class Columns:
        text_column: str = param("text", label="Text column")

    form = ConfigForm(Columns, suggest=["text_column"])
    qtbot.addWidget(form)
    box = form.editor("text_column")
    assert isinstance(box, QComboBox) and box.isEditable()
    form.suggest_values("text_column", ["review", "stars"])
    assert form.suggested_values("text_column") == ["review", "stars"]
    assert form.values() == {"text_column": "text"}  # offering values leaves the value alone
    with qtbot.waitSignal(form.changed) as changed:
        box.setCurrentIndex(0)
    assert changed.args == ["text_column"] and form.values() == {"text_column": "review"}
    box.setEditText("body")  # a name not (yet) in the list is kept as typed
    assert form.values() == {"text_column": "body"}
    form.set_values({"text_column": "stars"})
    assert form.values() == {"text_column": "stars"}


def test_a_field_whose_zero_means_auto_says_so_and_keeps_the_value_0(app, qtbot):
    @dataclasses.dataclass(frozen=True)
    class Config:
        stride: int = param(0, min=0, zero="auto")
        steps: int = param(0, min=0)

    form = ConfigForm(Config)
    qtbot.addWidget(form)
    stride, steps = form.findChild(QSpinBox, "field_stride"), form.findChild(QSpinBox, "field_steps")
    assert stride.text() == "auto" and steps.text() == "0"
    assert form.values()["stride"] == 0
    stride.setValue(64)
    assert stride.text() == "64" and form.values()["stride"] == 64
