"""The architecture's rules, checked: the core is Qt-free and imports only go down the layers
(import-linter contracts in pyproject.toml)."""

import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import effstudio

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(lint).exists():
        pytest.fail("import-linter is a test dependency: pip install -e '.[dev]'")
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_core_runs_without_qt_loaded():
    code = ("import sys, effstudio.cli, effstudio.engine.trainer, effstudio.registry;"
            "effstudio.registry.get_registry();"
            "assert not any(m.split('.')[0] in ('PySide6', 'pyqtgraph') for m in sys.modules), 'Qt loaded'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _layers() -> list[list[str]]:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        contracts = tomllib.load(handle)["tool"]["importlinter"]["contracts"]
    (layers,) = [c for c in contracts if c["type"] == "layers"]
    assert layers["containers"] == ["effstudio"]
    return [[name.strip() for name in layer.split("|")] for layer in layers["layers"]]


def test_every_module_of_effstudio_has_a_layer():
    """A new top-level package or module outside the layers could import anything: it must be placed."""
    placed = [name for layer in _layers() for name in layer]
    present = {info.name for info in pkgutil.iter_modules(effstudio.__path__)}
    assert len(placed) == len(set(placed)), "a module named in two layers"
    assert set(placed) == present


def test_the_layers_go_down_from_the_front_ends():
    layers = _layers()
    order = {name: depth for depth, layer in enumerate(layers) for name in layer}
    assert order["cli"] < order["gui"] < order["pipeline"] < order["bench"] < order["compress"] < order["engine"]
    assert order["engine"] < order["models"] < order["attention"] < order["registry"] < order["config"]
    # independent: none of them imports another
    assert any({"runs", "compress", "inspect", "pretrained"} <= set(layer) for layer in layers)
