"""The architecture's one rule, checked: the core is Qt-free (import-linter contracts in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(lint).exists():
        pytest.fail("import-linter is a test dependency: pip install -e '.[dev]'")
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_core_runs_without_qt_loaded():
    code = ("import sys, effstudio.cli, effstudio.engine.trainer, effstudio.registry;"
            "effstudio.registry.get_registry();"
            "assert not any(m.split('.')[0] in ('PySide6', 'pyqtgraph') for m in sys.modules), 'Qt loaded'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
