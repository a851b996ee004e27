from dataclasses import dataclass
from importlib.metadata import EntryPoint

import pytest

from effstudio.config import param
from effstudio.registry import Entry, Registry, UnknownEntryError, get_registry


@dataclass(frozen=True)
class ToyConfig:
    size: int = param(3, min=1, help="How big")


TOY = Entry("toy", "A toy task", ToyConfig, lambda config: config.size)
NOT_AN_ENTRY = object()


def entry_point(name, target, kind="tasks"):
    return EntryPoint(name=name, value=target, group=f"effstudio.{kind}")


def test_builtins_register_through_entry_points():
    registry = get_registry()
    assert "transformer" in registry.names("models")
    assert {"full", "sdpa"} <= set(registry.names("attention"))
    assert {"listops", "copy"} <= set(registry.names("tasks"))
    assert registry.errors == []


def test_a_working_plugin_loads():
    registry = Registry()
    registry.load_entry_point("tasks", entry_point("toy", f"{__name__}:TOY"))
    assert registry.get("tasks", "toy").factory(ToyConfig()) == 3
    assert registry.errors == []


@pytest.mark.parametrize(
    ("target", "name", "words"),
    [
        ("no_such_module_anywhere:ENTRY", "ghost", "ModuleNotFoundError"),
        (f"{__name__}:NOT_AN_ENTRY", "odd", "not an effstudio Entry"),
        (f"{__name__}:MISSING", "missing", "AttributeError"),
        (f"{__name__}:TOY", "renamed", "differs from the entry's name"),
    ],
)
def test_a_broken_plugin_is_reported_and_skipped(target, name, words):
    registry = Registry()
    registry.load_entry_point("tasks", entry_point(name, target))
    registry.load_entry_point("tasks", entry_point("toy", f"{__name__}:TOY"))
    assert registry.names("tasks") == ["toy"], "the good plugin still loads"
    (error,) = registry.errors
    assert error.name == name and error.group == "effstudio.tasks"
    assert words in error.message


def test_unknown_names_list_what_exists():
    registry = Registry()
    registry.register("tasks", TOY)
    with pytest.raises(UnknownEntryError, match="unknown task 'nope'; available: toy"):
        registry.get("tasks", "nope")


def test_broken_plugin_is_reported_by_the_cli(monkeypatch, capsys):
    import effstudio.registry as registry_module
    from effstudio.cli import main

    broken = Registry().discover()
    broken.load_entry_point("tasks", entry_point("ghost", "no_such_module_anywhere:ENTRY"))
    monkeypatch.setattr(registry_module, "_registry", broken)
    assert main(["tasks", "--json"]) == 0
    captured = capsys.readouterr()
    assert "plugin 'ghost' (effstudio.tasks) was skipped: ModuleNotFoundError" in captured.err
    assert '"plugin_errors": [{"group": "effstudio.tasks", "name": "ghost"' in captured.out
