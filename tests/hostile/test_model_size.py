"""A model too large for the machine is refused before anything is allocated, with the estimate in
the message: from --set, a TOML and a checkpoint header, through every command that builds one."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from effstudio.cli import main
from effstudio.config import ConfigError
from effstudio.engine.build import build_model, build_task
from effstudio.engine.model_size import (
    LIMIT_ENV,
    analytic_params,
    available_bytes,
    check_fits,
    estimate,
)
from effstudio.engine.run_config import RunConfig
from effstudio.models.base import ModelSpec
from effstudio.registry import get_registry
from tests.hostile import path_cases as cases

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("EFFSTUDIO_RECORD_RUNS", "0")
    monkeypatch.delenv(LIMIT_ENV, raising=False)


def config_of(task: str = "copy", **settings) -> RunConfig:
    tiny = cases.TINY if task == "copy" else {k: v for k, v in cases.TINY.items() if not k.startswith("task.")}
    return RunConfig.create("transformer", task, {**tiny, **settings})


def builder(config: RunConfig, spec):
    entry = get_registry().get("models", config.model_type)
    return lambda: entry.factory(config.model, ModelSpec(task=spec, attention_config=config.attention))


@pytest.mark.parametrize("attention", ["full", "performer", "reformer", "linformer"])
def test_the_estimate_counts_the_parameters_the_model_has(attention):
    config = config_of("listops", **{"model.attention": attention, "model.d_model": 32, "model.heads": 4,
                                     "task.max_length": 512, "task.train_size": 10, "task.val_size": 1,
                                     "task.test_size": 1})
    spec = build_task(config).spec
    real = build_model(config, spec)
    count = sum(p.numel() for p in real.parameters()) + sum(b.numel() for b in real.buffers())
    size = estimate(config.model, spec, builder(config, spec), batch=8, training=True)
    if size.exact:
        assert size.params == count
    else:  # built with real values only (performer): estimated from the widths
        assert attention == "performer" and 0.5 * count <= size.params <= 2 * count
    assert size.param_bytes == size.params * 4 * 4  # weights, gradients, two AdamW moments


def test_the_width_estimate_grows_as_the_model_does():
    spec = build_task(config_of()).spec
    small, wide = config_of(), config_of(**{"model.d_model": 1_000_000, "model.heads": 4})
    assert analytic_params(wide.model, spec) > 1e12 > analytic_params(small.model, spec)


@pytest.mark.parametrize("settings", [{"model.d_model": 1_000_000, "model.heads": 4},
                                      {"model.d_model": 65_536, "model.layers": 48},
                                      {"model.d_model": 65_536, "model.layers": 8, "model.attention": "performer"}])
def test_a_huge_model_is_refused_in_milliseconds(settings):
    config = config_of(**settings)
    spec = build_task(config).spec
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        check_fits(config.model_type, config.model, spec, builder(config, spec), batch=8, training=True)
    assert time.perf_counter() - started < 1.0
    message = str(caught.value)
    assert caught.value.field == "model.d_model" and f"{config.model.d_model} with model.layers" in message
    assert "would need about" in message and " TB of parameters and optimizer state" in message
    assert "available" in message and LIMIT_ENV in message


def test_a_bigger_machine_allows_more(monkeypatch):
    config = config_of(**{"model.d_model": 1_000_000, "model.heads": 4})
    spec = build_task(config).spec
    monkeypatch.setenv(LIMIT_ENV, "1e9")  # a petabyte-and-more machine: the check passes, nothing is built
    size = check_fits(config.model_type, config.model, spec, builder(config, spec), training=False)
    assert size.params > 1e12
    monkeypatch.setenv(LIMIT_ENV, "lots")
    with pytest.raises(ConfigError, match=LIMIT_ENV):
        available_bytes(None)


def test_a_cuda_device_is_measured_by_its_free_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (2_000_000_000, 80_000_000_000))
    assert available_bytes(torch.device("cuda:0")) == (2_000_000_000, "free on cuda:0")
    config = config_of(**{"model.d_model": 8192, "model.layers": 4, "model.heads": 4})
    spec = build_task(config).spec
    with pytest.raises(ConfigError, match="2.0 GB free on cuda:0"):
        check_fits(config.model_type, config.model, spec, builder(config, spec), training=True,
                   device=torch.device("cuda:0"))


def run(capsys, *argv):
    started = time.perf_counter()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err, time.perf_counter() - started


@pytest.mark.parametrize("source", ["set", "toml-width", "toml-deep"])
def test_train_refuses_a_huge_model_from_the_command_line_or_a_file(tmp_path, capsys, source):
    if source == "set":
        argv = ["--model", "transformer", "--task", "copy", *sum((["--set", f"{k}={v}"] for k, v in cases.TINY.items()), []),
                "--set", "model.d_model=1000000", "--set", "model.heads=4"]
    else:
        make = cases.make_toml_huge_width if source == "toml-width" else cases.make_toml_wide_and_deep
        argv = ["--config", make(tmp_path)]
    code, err, seconds = run(capsys, "train", *argv, "--out", tmp_path / "run")
    assert code == 2, err
    assert "would need about" in err and "TB" in err and LIMIT_ENV in err and "Traceback" not in err
    assert seconds < 20 and not (tmp_path / "run" / "checkpoint.safetensors").exists()


HEADER_COMMANDS = [
    ["train", "--resume", "{ckpt}", "--steps", "5"],
    ["train", "--init", "{ckpt}", "--steps", "5"],
    ["prune", "{ckpt}", "--method", "heads", "--amount", "0.5", "--out", "{out}"],
    ["quantize", "{ckpt}", "--method", "dynamic-int8", "--out", "{out}"],
    ["export", "onnx", "{ckpt}", "--out", "{out}.onnx"],
    ["distill", "--teacher", "{ckpt}", "--student-model", "transformer", "--steps", "1", "--out", "{out}"],
]


@pytest.mark.parametrize("make", [cases.make_header_huge_width, cases.make_header_wide_and_deep])
@pytest.mark.parametrize("command", HEADER_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_tiny_file_claiming_a_huge_model_is_refused_by_every_command(tmp_path, capsys, make, command):
    checkpoint = make(tmp_path)
    assert checkpoint.stat().st_size < 4096
    argv = [a.format(ckpt=checkpoint, out=tmp_path / "out.safetensors") for a in command]
    code, err, seconds = run(capsys, *argv)
    assert code == 2, err
    assert "would need about" in err and str(checkpoint) in err and LIMIT_ENV in err and "Traceback" not in err
    assert seconds < 20 and not list(tmp_path.glob("out*"))


def test_compare_reports_the_refusal_as_the_files_row(tmp_path, capsys):
    """compare measures what it can: a file it cannot load gets a row with the reason (exit 1)."""
    checkpoint = cases.make_header_huge_width(tmp_path)
    code = main(["compare", str(checkpoint), "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and "would need about" in err and "Traceback" not in err


def test_a_header_claiming_an_impossible_length_names_the_setting(tmp_path, capsys):
    code, err, _ = run(capsys, "prune", cases.make_header_huge_length(tmp_path), "--method", "magnitude",
                       "--amount", "0.5", "--out", tmp_path / "out.safetensors")
    assert code == 2 and "task.max_length: must be <= 512, got 1000000000" in err


@pytest.mark.parametrize("argv", [
    ["prune", "{ckpt}", "--method", "magnitude", "--amount", "0.5", "--out", "{out}"],
    ["train", "--model", "transformer", "--task", "copy", "--set", "model.d_model=1000000", "--set", "model.heads=4",
     "--out", "{out}"],
], ids=["prune-header", "train-set"])
def test_the_refusal_allocates_nothing(tmp_path, argv):
    """In a process of its own: exit 2, one line on stderr, and a peak memory of an idle PyTorch process."""
    checkpoint = cases.make_header_huge_width(tmp_path)
    argv = [a.format(ckpt=checkpoint, out=tmp_path / "out") for a in argv]
    # VmHWM is this process's own high-water mark; ru_maxrss would carry over the forking pytest process's
    code = ("import re, sys\nfrom effstudio.cli import main\ncode = main(sys.argv[1:])\n"
            "status = open('/proc/self/status').read()\n"
            "print('peak_kb', re.search(r'VmHWM:\\s*(\\d+)', status).group(1), file=sys.stderr)\nsys.exit(code)")
    env = {"PYTHONPATH": str(ROOT), "EFFSTUDIO_DATA_DIR": str(tmp_path / "data"), "EFFSTUDIO_RECORD_RUNS": "0",
           "EFFSTUDIO_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 2 and "would need about" in lines[0] and "Traceback" not in done.stderr
    assert int(lines[1].split()[1]) < 1_000_000  # kB: under 1 GB (a 4 TB model was refused, not attempted)


def test_a_huge_student_is_refused_with_its_estimate(tmp_path, capsys):
    from tests.compress.conftest import make_checkpoint, tiny_config

    teacher = make_checkpoint(tmp_path / "teacher.safetensors", tiny_config("copy"))
    code, err, seconds = run(capsys, "distill", "--teacher", teacher, "--student-model", "transformer",
                             "--set", "model.d_model=1000000", "--set", "model.heads=4", "--steps", "1",
                             "--out", tmp_path / "student.safetensors")
    assert code == 2 and "would need about" in err and "cannot take" not in err
    assert seconds < 20 and not (tmp_path / "student.safetensors").exists()
