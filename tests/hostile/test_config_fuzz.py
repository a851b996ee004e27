"""Property-based fuzzing of run-config TOML: whatever the file holds, reading it either gives a run
config or raises ConfigError/UsageError with a message; never another exception.

Documents are built from the real sections and setting names with values of random (often wrong)
types, unknown keys and sections, nested tables and lists, odd unicode; then the text is mutated
(deep nesting, bytes that are not UTF-8, cut short). The example budget is fixed and derandomized,
so the suite stays fast and repeatable.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effstudio.cli.errors import UsageError
from effstudio.cli.train import _compress_steps, _train_config
from effstudio.config import ConfigError
from effstudio.engine.run_config import SECTIONS, RunConfig, TrainConfig
from effstudio.engine.run_plan import RunPlan
from effstudio.registry import get_registry

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _defaults() -> dict[str, dict[str, object]]:
    """Each section's settings and their default values (a plausible value to draw)."""
    registry = get_registry()
    configs = {"model": registry.get("models", "transformer").default_config(),
               "attention": registry.get("attention", "full").default_config(),
               "task": registry.get("tasks", "listops").default_config(), "train": TrainConfig()}
    return {section: {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
            for section, config in configs.items()}


DEFAULTS = _defaults()
KNOWN = {section: [*({"model": ["type"], "task": ["name"]}.get(section, [])), *names]
         for section, names in DEFAULTS.items()}
NAMES = {"model.type": get_registry().names("models"), "task.name": get_registry().names("tasks")}

odd_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=256),  # often in range, so some documents get further
    st.sampled_from([2**63, -(2**63) - 1, 10**400, -(10**400)]),  # past 64 bits, past a float
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
    st.sampled_from(["full", "cpu", "fp32", "auto", "transformer", "listops", "1e-3", "true", "\u202e", "\x00"]),
    st.dates(),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(odd_text, inner, max_size=3)), max_leaves=8)


@st.composite
def sections(draw, section: str):
    if draw(st.integers(0, 9)) == 0:  # the whole section of the wrong type: model = 5, [[task]]
        return draw(st.one_of(scalars, st.lists(st.dictionaries(odd_text, scalars, max_size=2), max_size=2)))
    table = {}
    for key in draw(st.lists(st.one_of(st.sampled_from(KNOWN[section]), odd_text), max_size=6)):
        name = f"{section}.{key}"
        if name in NAMES and draw(st.booleans()):
            table[key] = draw(st.sampled_from(NAMES[name]))
        elif key in DEFAULTS[section] and draw(st.booleans()):  # a right value, or one near it
            default = DEFAULTS[section][key]
            near = st.integers(-2, 2 * default + 2) if type(default) is int else st.just(default)
            table[key] = draw(st.one_of(st.just(default), near))
        else:
            table[key] = draw(values)
    return table


steps = st.fixed_dictionaries({"method": st.one_of(st.sampled_from(["prune", "quantize", "export", "distill"]),
                                                   scalars)},
                              optional={"amount": scalars, "out": st.one_of(odd_text, scalars),
                                        "prune": scalars, "quantize": scalars, "steps": scalars,
                                        "student_model": scalars, "set": values, "check": scalars})


@st.composite
def documents(draw) -> dict:
    doc = {}
    for section in draw(st.lists(st.sampled_from(SECTIONS), unique=True, max_size=4)):
        doc[section] = draw(sections(section))
    if draw(st.booleans()):
        doc.setdefault("model", {})
        if isinstance(doc["model"], dict):
            doc["model"]["type"] = "transformer"
        doc.setdefault("task", {})
        if isinstance(doc["task"], dict):
            doc["task"]["name"] = "listops"
    if draw(st.integers(0, 3)) == 0:
        doc["compress"] = draw(st.one_of(st.lists(steps, max_size=3), scalars))
    if draw(st.integers(0, 9)) == 0:
        doc[draw(odd_text.filter(bool))] = draw(values)
    return doc


@st.composite
def toml_bytes(draw) -> bytes:
    text = tomli_w.dumps(draw(documents())).encode("utf-8")
    mutation = draw(st.sampled_from(["none", "none", "deep", "deep_table", "bytes", "cut", "unicode_line"]))
    if mutation == "deep":
        depth = draw(st.one_of(st.integers(1, 80), st.sampled_from([1_000, 20_000, 100_000])))
        text += b"\nx = " + b"[" * depth + b"]" * depth + b"\n"
    elif mutation == "deep_table":
        depth = draw(st.one_of(st.integers(1, 80), st.sampled_from([1_000, 5_000])))
        text += b"\n[" + b".".join([b"k"] * depth) + b"]\n"
    elif mutation == "bytes":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.binary(min_size=1, max_size=4)) + text[at:]
    elif mutation == "cut":
        text = text[:draw(st.integers(0, len(text)))]
    elif mutation == "unicode_line":
        text += ("\n# " + draw(odd_text).replace("\n", " ") + "\n").encode("utf-8", "surrogatepass")
    return text


def _train_args(config: Path) -> argparse.Namespace:
    return argparse.Namespace(set=None, steps=None, device=None, resume=None, init=None, model=None, task=None,
                              config=config)


@FUZZ
@given(toml_bytes())
def test_any_run_config_file_is_read_or_refused_with_a_message(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.toml"
        path.write_bytes(data)
        for read in (RunConfig.from_toml, RunPlan.from_toml, lambda p: _train_config(_train_args(p)),
                     lambda p: _compress_steps(_train_args(p), None)):
            try:
                result = read(path)
            except (ConfigError, UsageError) as err:
                assert str(err).strip(), f"{type(err).__name__} without a message"
                continue
            assert result is not None


@FUZZ
@given(documents())
def test_a_config_that_is_read_round_trips(doc):
    """Whatever is accepted is a valid config: it validates and survives TOML both ways unchanged."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.toml"
        path.write_text(tomli_w.dumps(doc), encoding="utf-8")
        try:
            config = RunConfig.from_toml(path)
        except ConfigError as err:
            assert str(err).startswith(str(path)), str(err)  # every message names the file
            return
        config.validate()
        path.write_text(config.to_toml(), encoding="utf-8")
        assert RunConfig.from_toml(path) == config
