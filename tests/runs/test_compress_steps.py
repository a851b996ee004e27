"""`effstudio train --config` with [[compress]] steps, and compression outputs recorded as a run's files."""

import json
import shutil

from effstudio.cli import main

CONFIG = """
[model]
type = "transformer"
d_model = 32
layers = 1
heads = 2
dropout = 0.0

[task]
name = "copy"
train_size = 128
val_size = 32
test_size = 16
max_length = 8

[train]
steps = 6
batch_size = 16
eval_every = 3
attention_every = 0
warmup_steps = 2
device = "cpu"
"""

STEPS = """
[[compress]]
method = "prune"
prune = "heads"
amount = 0.5
finetune_steps = 2

[[compress]]
method = "quantize"
quantize = "dynamic-int8"

[[compress]]
method = "export"
format = "onnx"
check = true
"""


def run_json(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


def artifacts(capsys, run_id=1):
    code, (shown,) = run_json(capsys, "runs", "show", run_id, "--json")
    assert code == 0
    return [(a["kind"], a["path"]) for a in shown["artifacts"]]


def test_train_config_runs_the_steps_and_records_their_files(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(CONFIG + STEPS, encoding="utf-8")
    out = tmp_path / "run"
    code, records = run_json(capsys, "train", "--config", config, "--out", out, "--json")
    assert code == 0
    steps = [r for r in records if r["event"] == "compress_step"]
    results = [r for r in records if r["event"] == "result"]
    assert [s["method"] for s in steps] == ["prune", "quantize", "export"]
    assert [s["artifact"] for s in steps] == ["pruned", "quantized", "onnx"]
    assert records[-1]["event"] == "compress_done" and records[-1]["status"] == "finished"
    pruned = out / "checkpoint-pruned-heads-0.5.safetensors"
    int8 = out / "checkpoint-pruned-heads-0.5-dynamic-int8.safetensors"
    onnx = out / "checkpoint-pruned-heads-0.5.onnx"
    assert [r["path"] for r in results] == [str(pruned), str(int8), str(onnx)]
    assert all(p.is_file() for p in (pruned, int8, onnx))
    assert steps[1]["source"] == str(pruned) and steps[2]["source"] == str(pruned)  # quantized files are ends
    assert results[2]["details"]["parity_ok"]

    recorded = artifacts(capsys)
    assert recorded[0][0] == "checkpoint"
    assert recorded[1:] == [("pruned", str(pruned.absolute())), ("quantized", str(int8.absolute())),
                            ("onnx", str(onnx.absolute()))]
    # the run folder's config.toml and the recorded config reproduce the whole run, steps included
    assert "[[compress]]" in (out / "config.toml").read_text(encoding="utf-8")
    code, (shown,) = run_json(capsys, "runs", "show", "1", "--json")
    assert [s["method"] for s in shown["config"]["compress"]] == ["prune", "quantize", "export"]
    assert main(["runs", "show", "1"]) == 0
    text = capsys.readouterr().out
    assert "[[compress]]" in text and "pruned" in text and str(onnx.name) in text
    log = [json.loads(line) for line in (out / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["event"] for r in log].count("result") == 3

    # a quantization by hand of one of the run's files joins the run's files
    half = tmp_path / "half.safetensors"
    code, _ = run_json(capsys, "quantize", pruned, "--method", "fp16", "--out", half, "--json")
    assert code == 0
    assert artifacts(capsys)[-1] == ("quantized", str(half.absolute()))


def test_a_file_of_no_recorded_run_records_nothing(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(CONFIG, encoding="utf-8")
    code, _ = run_json(capsys, "train", "--config", config, "--out", tmp_path / "run", "--json")
    assert code == 0
    before = artifacts(capsys)
    stray = tmp_path / "copy.safetensors"
    shutil.copy(tmp_path / "run" / "checkpoint.safetensors", stray)
    assert main(["quantize", str(stray), "--method", "fp16", "--out", str(tmp_path / "half.safetensors")]) == 0
    captured = capsys.readouterr()
    assert "recorded" not in captured.err  # says nothing about runs
    assert artifacts(capsys) == before
    # and the recorded checkpoint itself, quantized by hand, does join its run
    assert main(["quantize", str(tmp_path / "run" / "checkpoint.safetensors"), "--method", "bf16", "--out",
                 str(tmp_path / "bf16.safetensors")]) == 0
    assert "recorded as a file of run 1" in capsys.readouterr().err
    assert artifacts(capsys)[-1] == ("quantized", str((tmp_path / "bf16.safetensors").absolute()))


def test_a_failing_step_fails_the_command_and_skips_the_rest(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(CONFIG + '[[compress]]\nmethod = "distill"\nsteps = 2\nset = ["model.no_such=1"]\n'
                      + '[[compress]]\nmethod = "export"\n', encoding="utf-8")
    code, records = run_json(capsys, "train", "--config", config, "--out", tmp_path / "run", "--json")
    assert code == 1
    assert [r["method"] for r in records if r["event"] == "compress_step"] == ["distill"]
    done = records[-1]
    assert done["event"] == "compress_done" and done["status"] == "failed" and done["completed"] == 0
    assert "compress[1]" in done["error"] and "no_such" in done["error"]
    assert [kind for kind, _ in artifacts(capsys)] == ["checkpoint"]


def test_a_bad_step_is_a_usage_error_before_training(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(CONFIG + '[[compress]]\nmethod = "prune"\namount = 2\n', encoding="utf-8")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "compress[1].amount" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_keeps_its_steps_and_runs_them_on_its_final_checkpoint(tmp_path, capsys):
    from effstudio.engine.checkpoint import read_info
    from effstudio.engine.run_plan import RunPlan

    config = tmp_path / "run.toml"
    config.write_text(CONFIG + '\n[[compress]]\nmethod = "quantize"\nquantize = "fp16"\n', encoding="utf-8")
    out = tmp_path / "run"
    assert run_json(capsys, "train", "--config", config, "--out", out, "--json")[0] == 0
    half = out / "checkpoint-fp16.safetensors"
    assert read_info(half).step == 6

    code, records = run_json(capsys, "train", "--resume", out / "checkpoint.safetensors", "--steps", 8, "--json")
    assert code == 0 and records[-1]["event"] == "compress_done" and records[-1]["status"] == "finished"
    assert read_info(half).step == 8  # made again from the final checkpoint
    assert len(RunPlan.from_toml(out / "config.toml").compress) == 1  # the folder still reproduces the run
    code, (shown,) = run_json(capsys, "runs", "show", 1, "--json")
    assert shown["steps"] == 8 and len(shown["config"]["compress"]) == 1
