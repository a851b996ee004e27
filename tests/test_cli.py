import json
import subprocess
import sys

import pytest

from effstudio.cli import main

TINY = ["--set", "model.d_model=32", "--set", "model.layers=1", "--set", "model.heads=2",
        "--set", "task.train_size=128", "--set", "task.val_size=32", "--set", "task.max_length=40",
        "--set", "task.min_length=8", "--set", "train.batch_size=16", "--set", "train.eval_every=4"]


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path / "cache"))


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("command", ["models", "tasks", "attention"])
def test_listings_describe_fields(command, capsys):
    assert main([command, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["entries"], f"no {command} registered"
    for entry in listing["entries"]:
        assert entry["name"] and entry["description"]
        for field in entry["fields"]:
            assert {"name", "type", "default", "help"} <= set(field)


def test_models_listing_names_the_transformer(capsys):
    main(["models", "--json"])
    names = [e["name"] for e in json.loads(capsys.readouterr().out)["entries"]]
    assert "transformer" in names


def test_train_json_then_resume(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", "transformer", "--task", "listops", "--steps", "8", "--out", str(out),
                 "--json", *TINY])
    assert code == 0
    records = json_lines(capsys.readouterr().out)
    kinds = [r["event"] for r in records]
    assert kinds[-1] == "done" and "step" in kinds and "eval" in kinds and "checkpoint" in kinds
    step = next(r for r in records if r["event"] == "step")
    assert {"step", "loss", "lr", "tokens_per_s", "rss_mb"} <= set(step)
    evaluation = next(r for r in records if r["event"] == "eval")
    assert {"step", "val_loss", "val_accuracy"} <= set(evaluation)
    done = records[-1]
    assert {"steps", "final_loss", "val_accuracy", "checkpoint", "seconds"} <= set(done)
    assert done["steps"] == 8
    assert (out / "events.jsonl").is_file()

    code = main(["train", "--resume", done["checkpoint"], "--steps", "12", "--out", str(out), "--json"])
    assert code == 0
    resumed = json_lines(capsys.readouterr().out)
    steps = [r["step"] for r in resumed if r["event"] == "step"]
    assert steps == [9, 10, 11, 12]
    assert resumed[-1]["steps"] == 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "model.d_model=abc"], "model.d_model: expected int"),
        (["--set", "train.lr=-3"], "train.lr: must be >= 0"),
        (["--set", "model.bogus=1"], "model.bogus: unknown setting"),
        (["--set", "train.device=tpu"], "train.device: must be one of"),
    ],
)
def test_invalid_settings_exit_2_naming_the_field(args, message, capsys, tmp_path):
    code = main(["train", "--model", "transformer", "--task", "copy", "--out", str(tmp_path / "x"), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_unknown_model_lists_the_available_ones(capsys):
    assert main(["train", "--model", "nope", "--task", "copy"]) == 2
    assert "unknown model type 'nope'; available: " in capsys.readouterr().err


def test_resume_from_a_corrupt_file_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert main(["train", "--resume", str(bad)]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


def test_config_file_run(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('[model]\ntype = "transformer"\nd_model = 32\nlayers = 1\nheads = 2\n'
                      '[task]\nname = "copy"\ntrain_size = 64\nval_size = 16\n'
                      '[train]\nsteps = 3\nbatch_size = 8\n')
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "r"), "--json"]) == 0
    assert json_lines(capsys.readouterr().out)[-1]["steps"] == 3


def test_console_script_version():
    result = subprocess.run([sys.executable, "-m", "effstudio", "--version"], capture_output=True, text=True,
                            check=True)
    assert result.stdout.startswith("effstudio ")


def test_resume_refuses_a_new_model(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "transformer", "--task", "copy", "--steps", "2", "--out", str(out),
                 "--json", *TINY]) == 0
    capsys.readouterr()
    checkpoint = str(out / "checkpoint.safetensors")
    assert main(["train", "--resume", checkpoint, "--model", "transformer", "--steps", "4"]) == 2
    assert "--resume uses the checkpoint's own model" in capsys.readouterr().err
    assert main(["train", "--resume", checkpoint, "--set", "model.d_model=64", "--steps", "4"]) == 2
    assert "different model or task config" in capsys.readouterr().err


def test_help_and_version_build_the_parser_without_loading_torch():
    """`effstudio --help` and `--version` stay fast: nothing they import may bring torch or Qt."""
    import subprocess
    import sys

    code = ("import sys, effstudio.cli;"
            "effstudio.cli.build_parser().format_help();"
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6', 'numpy')];"
            "assert not heavy, heavy[:5]")
    subprocess.run([sys.executable, "-c", code], check=True)
