"""`effstudio bench startup`, and what keeps `effstudio --version` fast: it loads neither torch nor Qt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from effstudio.bench.startup import measure_startup, time_first_window, time_version
from effstudio.cli import main
from effstudio.cli.errors import EXIT_USAGE

REPO = Path(__file__).resolve().parents[2]


def test_version_and_help_load_neither_torch_nor_qt():
    code = ("import sys\nfrom effstudio.cli import main\n"
            "for argv in (['--version'], ['--help'], ['bench', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'PySide6', 'numpy', 'onnx'})\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert "HEAVY []" in out.stdout


def test_startup_bench_times_both_trees_alternately(tmp_path):
    result = measure_startup(repeats=1, compare=REPO)
    assert result["repeats"] == 1 and result["compare_tree"] == str(REPO)
    for name in ("this", "compare"):
        figures = result[name]
        assert set(figures) == {"version", "first_window"}
        for spread in figures.values():
            assert 0 < spread["min_s"] <= spread["median_s"] <= spread["max_s"] < 120
        assert figures["version"]["median_s"] < figures["first_window"]["median_s"]


def test_the_apps_folders_stay_out_of_the_working_folder(tmp_path):
    # a data folder named `effstudio` in the working folder would shadow the package for the next `python -m effstudio`
    time_first_window(None, tmp_path)  # the window writes its settings and data folders
    assert not (tmp_path / "effstudio").exists()
    assert time_version(None, tmp_path) > 0


def test_compare_must_name_an_effstudio_checkout(tmp_path, capsys):
    assert main(["bench", "startup", "--compare", str(tmp_path), "--json"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "effstudio/__init__.py" in err and "Traceback" not in err
