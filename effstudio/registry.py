"""One registry for model types, attention kinds and tasks.

Entries are discovered through the entry-point groups ``effstudio.models``,
``effstudio.attention`` and ``effstudio.tasks`` (the window's model views have a
group of their own, ``effstudio.views``, loaded by effstudio.gui.views through
:meth:`Registry.load_plugin`, so a broken view is reported here too). The built-ins are declared in
effstudio's own pyproject.toml under the same groups, so a plugin is a
pip-installable package with an entry point and nothing else::

    [project.entry-points."effstudio.attention"]
    my_kind = "my_package.attention:ENTRY"

where ``ENTRY`` is an :class:`Entry`. A plugin that fails to import, or whose
object is not an ``Entry``, is recorded in :attr:`Registry.errors` (shown by the
GUI and by ``effstudio models``) and skipped: it never stops start-up.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from effstudio.config import FieldSpec, describe_kind, did_you_mean, fields_of, set_choice_names

KINDS = ("models", "attention", "tasks")
GROUP_PREFIX = "effstudio."


@dataclass(frozen=True)
class Entry:
    """A registered model type, attention kind or task.

    ``factory`` builds the object; its arguments depend on the kind:
      - attention: ``factory(config, spec: AttentionSpec)`` -> nn.Module with the shared call shape
      - models:    ``factory(config, spec: ModelSpec)`` -> nn.Module
      - tasks:     ``factory(config)`` -> a Task
    """

    name: str
    description: str
    config_cls: type
    factory: Callable[..., Any]
    source: str = "effstudio"

    def fields(self) -> list[FieldSpec]:
        return fields_of(self.config_cls)

    def default_config(self) -> Any:
        return self.config_cls()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "fields": [f.to_json() for f in self.fields()],
        }


@dataclass(frozen=True)
class PluginError:
    """A plugin that could not be loaded, and why."""

    group: str
    name: str
    target: str
    message: str
    details: str = ""

    def to_json(self) -> dict[str, str]:
        return {"group": self.group, "name": self.name, "target": self.target, "message": self.message}


class UnknownEntryError(KeyError):
    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name = kind, name
        self.known = sorted(known)
        singular = {"models": "model type", "attention": "attention kind", "tasks": "task"}[kind]
        # a name no installed entry has may come from a plugin that is not installed here
        super().__init__(f"unknown {singular} {describe_kind(name)}{did_you_mean(name, self.known)}; "
                         f"available: {', '.join(self.known) or 'none'} (a plugin that provides it may not be "
                         f"installed: see `effstudio {kind}`)")

    def __str__(self) -> str:
        return self.args[0]


@dataclass
class Registry:
    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    errors: list[PluginError] = field(default_factory=list)

    def register(self, kind: str, entry: Entry) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown registry kind {kind!r}; expected one of {KINDS}")
        if not isinstance(entry, Entry):
            raise TypeError(f"expected an effstudio.registry.Entry, got {type(entry).__name__}")
        fields_of(entry.config_cls)  # a malformed config class is refused at registration
        self.entries[kind][entry.name] = entry

    def get(self, kind: str, name: str) -> Entry:
        try:
            return self.entries[kind][name]
        except KeyError:
            raise UnknownEntryError(kind, name, self.entries[kind]) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def all(self, kind: str) -> list[Entry]:
        return [self.entries[kind][n] for n in self.names(kind)]

    def load_plugin(self, group: str, ep: EntryPoint, accept: Callable[[Any], None]) -> None:
        """Load one entry point of ``group`` and hand its object to ``accept``; a failure to import
        it, or ``accept`` refusing it, becomes a PluginError, never an exception."""
        try:
            accept(ep.load())
        except Exception as err:  # a broken plugin must never stop start-up
            if not any(e.group == group and e.name == ep.name for e in self.errors):  # said once
                self.errors.append(
                    PluginError(group, ep.name, ep.value, f"{type(err).__name__}: {err}", traceback.format_exc())
                )

    def load_entry_point(self, kind: str, ep: EntryPoint) -> None:
        """Load one entry point of ``effstudio.<kind>``; failures become a PluginError."""

        def accept(obj: Any) -> None:
            entry = obj() if callable(obj) and not isinstance(obj, Entry) else obj
            if not isinstance(entry, Entry):
                raise TypeError(f"{ep.value} is a {type(entry).__name__}, not an effstudio Entry")
            if entry.name != ep.name:
                raise ValueError(f"entry point name {ep.name!r} differs from the entry's name {entry.name!r}")
            dist = getattr(ep, "dist", None)
            source = dist.name if dist is not None else entry.source
            self.register(kind, Entry(entry.name, entry.description, entry.config_cls, entry.factory, source))

        self.load_plugin(GROUP_PREFIX + kind, ep, accept)

    def discover(self) -> Registry:
        for kind in KINDS:
            for ep in entry_points(group=GROUP_PREFIX + kind):
                self.load_entry_point(kind, ep)
        return self


_lock = threading.Lock()
_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, discovered on first use."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = Registry().discover()
        return _registry


set_choice_names(lambda kind: get_registry().names(kind))  # a param(choices_from=KIND) offers these names
