"""Cases of the value, size and path classes beyond the first hostile set: each refused in one line that
says what to change, before anything is written; and two trainings never share a run folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from effstudio import cli
from effstudio.cli.errors import EXIT_OK, EXIT_USAGE
from effstudio.engine.run_config import RunConfig
from tests.hostile import path_cases, value_cases

TINY_SET = [item for key, value in value_cases.TINY.items() for item in ("--set", f"{key}={value}")]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EFFSTUDIO_LOG_DIR", str(tmp_path / "logs"))


def one_line(argv: list, capsys, code: int = EXIT_USAGE) -> str:
    assert cli.main([str(a) for a in argv]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    (line,) = err.strip().splitlines()
    return line


@pytest.mark.parametrize(("setting", "expected"), [
    ("train.seed=9223372036854775807", "train.seed: must be <= 2147483647"),
    ("train.steps=1_0", "train.steps: expected int, got '1_0'"),
    ("train.steps=\u0663", "train.steps: expected int"),
    ("train.lr=\u0663.5", "train.lr: expected float"),
    ("train.device=CPU", "did you mean 'cpu'?"),
    ("modle.d_model=32", "unknown section 'modle' (did you mean 'model'?)"),
    ("lyers=2", "lyers: unknown setting (did you mean 'model.layers'?)"),
    ("model.layres=2", "model.layres: unknown setting (did you mean 'model.layers'?)"),
    ("model.attention=flash_plugin", "a plugin that provides it may not be installed"),
    ("model.attention=" + "x" * 100_000, "got 'xxxxxxxx"),
])
def test_a_bad_set_value_is_one_line_that_says_what_to_change(setting, expected, capsys):
    line = one_line(["train", "--model", "transformer", "--task", "listops", "--set", setting], capsys)
    assert expected in line and len(line) < 400, line


def test_an_unknown_model_type_says_a_plugin_may_be_missing(capsys):
    line = one_line(["train", "--model", "Transformer", "--task", "listops"], capsys)
    assert "did you mean 'transformer'?" in line and "plugin" in line


def test_a_byte_order_mark_and_crlf_line_ends_are_read_like_any_toml(tmp_path):
    text = value_cases.tiny_config().to_toml()
    path = tmp_path / "windows.toml"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert RunConfig.from_toml(path) == value_cases.tiny_config()


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "fifo"])
def test_a_charlm_text_that_never_ends_is_not_read(device, tmp_path, capsys):
    if device == "fifo":
        device = tmp_path / "pipe.txt"
        os.mkfifo(device)
    elif not Path(device).exists():
        pytest.skip(f"{device} is missing here")
    line = one_line(["train", "--model", "transformer", "--task", "charlm", "--set", f"task.path={device}",
                     "--out", tmp_path / "run", "--no-record"], capsys)
    assert str(device) in line and ("a device" in line or "a pipe" in line)
    assert not (tmp_path / "run").exists()


def test_a_charlm_text_over_the_limit_is_refused_before_it_is_read(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("effstudio.tasks.charlm.MAX_TEXT_BYTES", 1000)
    text = tmp_path / "long.txt"
    text.write_text("a long text. " * 100, encoding="utf-8")
    line = one_line(["train", "--model", "transformer", "--task", "charlm", "--set", f"task.path={text}",
                     "--no-record"], capsys)
    assert "larger than the limit of 1,000 bytes" in line


def _image_folder(root: Path, per_class: int) -> Path:
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            (root / name / f"{index}.png").write_bytes(b"")
    return root


def test_an_image_folder_of_too_many_files_stops_while_it_is_listed(tmp_path, monkeypatch):
    from effstudio.config import ConfigError
    from effstudio.tasks import imagefolder

    monkeypatch.setattr(imagefolder, "MAX_IMAGE_FILES", 5)
    folder = _image_folder(tmp_path / "images", per_class=3)
    (folder / "cats" / "loop").symlink_to("..", target_is_directory=True)  # a loop is not followed
    with pytest.raises(ConfigError, match="more than 5 images"):
        imagefolder.scan(str(folder))
    monkeypatch.setattr(imagefolder, "MAX_DECODED_IMAGE_BYTES", 1000)
    monkeypatch.setattr(imagefolder, "MAX_IMAGE_FILES", 10)
    with pytest.raises(ConfigError, match=r"image_size: 6 images of 3 x 8 x 8 .* above the limit"):
        imagefolder.ImageFolderTask(imagefolder.ImageFolderConfig(folder=str(folder), image_size=8, color="rgb"))


def test_train_refuses_an_out_folder_that_holds_another_run(tmp_path, capsys):
    run = tmp_path / "earlier"
    run.mkdir()
    for name in ("checkpoint.safetensors", "events.jsonl", "config.toml"):
        (run / name).write_text(f"the earlier run's {name}", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    line = one_line(["train", "--model", "transformer", "--task", "listops", *TINY_SET, "--out", run,
                     "--no-record"], capsys)
    assert "already holds the checkpoint of another run" in line
    assert f"--resume {run / 'checkpoint.safetensors'}" in line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_second_training_into_a_folder_in_use_is_refused(tmp_path, capsys):
    from effstudio.engine.run_lock import RunFolderLock

    run = tmp_path / "busy"
    held = RunFolderLock.acquire(run)  # as a training in another process holds it
    try:
        line = one_line(["train", "--model", "transformer", "--task", "listops", *TINY_SET, "--out", run,
                         "--no-record"], capsys)
        assert "is in use by process" in line
        assert sorted(p.name for p in run.iterdir()) == [".effstudio.lock"]
    finally:
        held.release()
    assert cli.main(["train", "--model", "transformer", "--task", "listops", *TINY_SET, "--out", str(run),
                     "--no-record"]) == EXIT_OK  # once the other ends, the folder is free


def test_a_run_that_cannot_start_leaves_no_folder_behind(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EFFSTUDIO_MEMORY_LIMIT_GB", "0.000001")
    run = tmp_path / "never"
    line = one_line(["train", "--model", "transformer", "--task", "listops", *TINY_SET, "--out", run,
                     "--no-record"], capsys)
    assert "would need about" in line
    assert not run.exists()


@pytest.mark.parametrize(("case", "expected"), [
    ("out_existing_folder", "is a folder"), ("out_trailing_slash", "names a folder"),
    ("out_run_folder_itself", "names a folder"), ("out_nul", "NUL character"), ("out_long_name", "255 bytes"),
    ("charlm_fifo", "a pipe"), ("charlm_device_link", "leads outside its folder"), ("charlm_nul", "NUL character"),
])
def test_outputs_and_inputs_a_config_names_are_checked_before_training(case, expected, tmp_path, capsys):
    config = dict((name, make) for name, make, _ in path_cases.CASES)[case](tmp_path)
    line = one_line(["train", "--config", config, "--out", path_cases.run_folder(tmp_path), "--no-record"], capsys)
    assert expected in line and str(config) in line, line
    trained = path_cases.run_folder(tmp_path) / "checkpoint.safetensors"
    assert not trained.exists()
    if "NUL" in expected:
        assert "If you trust it" not in line  # no such file exists to trust


def test_a_header_seed_that_overflows_derived_seeds_is_refused_by_init(tmp_path, capsys):
    """The inspector shows such a header (its checks need no registry); every command that trains refuses it."""
    ckpt = value_cases.make_ckpt_config_seed_max_int(tmp_path)
    line = one_line(["train", "--init", ckpt, "--steps", "1", "--out", tmp_path / "run", "--no-record"], capsys)
    assert ckpt.name in line and "train.seed: must be <= 2147483647" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("case", "field"), [("toml_xl_memory", "model.mem_len: 8192"),
                                             ("toml_performer_features", "attention.features: 65536")])
def test_memory_that_is_not_in_the_widths_is_estimated_before_allocation(case, field, tmp_path, capsys):
    config = dict((name, make) for name, make, _ in path_cases.CASES)[case](tmp_path)
    line = one_line(["train", "--config", config, "--out", tmp_path / "run", "--no-record"], capsys)
    assert field in line and "of activations" in line and "EFFSTUDIO_MEMORY_LIMIT_GB" in line
    assert not (tmp_path / "run").exists()


def test_depth_counts_the_blocks_a_token_passes():
    from effstudio.engine.model_size import depth
    def config(model, **values):
        return RunConfig.create(model, "copy", {f"model.{k}": v for k, v in values.items()}).model

    assert depth(config("universal", max_steps=12)) == 12
    assert depth(config("transformer", layers=3)) == 3
    assert depth(config("seq2seq", layers=3)) == 6


def test_a_name_from_a_file_cannot_steer_the_terminal(tmp_path, capsys):
    """A charlm path inside the config's folder, named with an escape sequence and a right-to-left
    override: the message shows them as escapes."""
    config = tmp_path / "run.toml"
    config.write_text(path_cases.CHARLM_HEAD.format(path='"notes\\u001b[2J\\u202etxt.exe"'), encoding="utf-8")
    line = one_line(["train", "--config", config, "--out", tmp_path / "run", "--no-record"], capsys)
    assert "\x1b" not in line and "\u202e" not in line
    assert "notes\\x1b[2J\\u202etxt.exe" in line


@pytest.mark.parametrize(("argv", "expected"), [
    (["compare", "{good}", "--repeats", "0"], "--repeats: expected a whole number from 1"),
    (["compare", "{good}", "--repeats", "99999999999999999999"], "--repeats: expected a whole number from 1"),
    (["compare", "{good}", "--threads", "-3"], "--threads: expected a whole number from 0"),
])
def test_counts_of_the_command_line_are_bounded(argv, expected, tmp_path, capsys):
    good = tmp_path / "good.safetensors"
    with pytest.raises(SystemExit) as exit_info:  # argparse's own usage error: exit 2
        cli.main([item.format(good=good) for item in argv])
    assert exit_info.value.code == EXIT_USAGE
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--temperature", "nan", "temperature must be a positive number, got nan"),
    ("--hidden-weight", "nan", "hidden-state weight must be a number of 0 or more, got nan"),
])
def test_a_nan_distillation_setting_is_refused_before_training(option, value, expected, tmp_path, capsys):
    good = value_cases.make_good_checkpoint(tmp_path)
    line = one_line(["distill", "--teacher", good, "--student-model", "transformer", "--steps", "1", option, value,
                     "--out", tmp_path / "d.safetensors"], capsys)
    assert expected in line
    assert not (tmp_path / "d.safetensors").exists()
