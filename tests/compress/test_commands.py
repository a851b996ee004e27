"""The CLI contract of prune, quantize, distill, export onnx and compare: --json records and bad input."""

import json

import pytest
import torch

from effstudio.cli import main
from tests.compress.conftest import make_checkpoint, tiny_config


def records(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_prune_json(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "p.safetensors"
    assert main(["prune", str(tiny_checkpoint), "--method", "heads", "--amount", "0.5", "--out", str(out),
                 "--json"]) == 0
    lines = records(capsys)
    assert [r["event"] for r in lines][-1] == "result"
    assert {"step", "total_steps", "sparsity", "accuracy", "params"} <= set(lines[0])
    result = lines[-1]
    assert {"method", "path", "params", "baseline_params", "file_bytes", "accuracy", "baseline_accuracy",
            "details"} <= set(result)
    assert result["method"] == "heads" and result["params"] < result["baseline_params"] and out.is_file()


@pytest.mark.parametrize("amount", ["0", "1", "1.5", "-0.2", "half"])
def test_prune_amount_outside_the_open_interval_is_a_usage_error(tiny_checkpoint, tmp_path, amount, capsys):
    out = tmp_path / "p.safetensors"
    with pytest.raises(SystemExit) if amount == "half" else _no_raise():
        code = main(["prune", str(tiny_checkpoint), "--method", "magnitude", "--amount", amount, "--out", str(out)])
        assert code == 2
        assert "between 0 and 1" in capsys.readouterr().err
    assert not out.exists()


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_file_of_the_wrong_kind_is_refused(tiny_checkpoint, tmp_path, capsys):
    onnx = tmp_path / "m.onnx"
    assert main(["export", "onnx", str(tiny_checkpoint), "--out", str(onnx)]) == 0
    capsys.readouterr()
    out = tmp_path / "p.safetensors"
    assert main(["prune", str(onnx), "--method", "magnitude", "--amount", "0.5", "--out", str(out)]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err
    int8 = tmp_path / "int8.safetensors"
    assert main(["quantize", str(tiny_checkpoint), "--method", "dynamic-int8", "--out", str(int8)]) == 0
    capsys.readouterr()
    assert main(["prune", str(int8), "--method", "heads", "--amount", "0.5", "--out", str(out)]) == 2
    assert "dynamic-int8 checkpoint" in capsys.readouterr().err
    assert main(["export", "onnx", str(int8), "--out", str(tmp_path / "q.onnx")]) == 2
    assert not out.exists() and not (tmp_path / "q.onnx").exists()


def test_quantize_json_and_output_suffix(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "q.safetensors"
    assert main(["quantize", str(tiny_checkpoint), "--method", "dynamic-int8", "--out", str(out), "--json"]) == 0
    result = records(capsys)[-1]
    assert result["event"] == "result" and result["details"]["linear_weight_ratio"] >= 3.5
    assert main(["quantize", str(tiny_checkpoint), "--method", "onnx-int8", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "name the output" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_export_onnx_check_json(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "onnx", str(tiny_checkpoint), "--out", str(out), "--check", "--json"]) == 0
    result = records(capsys)[-1]
    assert result["method"] == "onnx" and result["details"]["max_abs_diff"] <= 1e-4
    assert main(["export", "onnx", str(tiny_checkpoint), "--out", str(tmp_path / "m.txt")]) == 2
    assert ".onnx" in capsys.readouterr().err


def test_distill_json_and_a_student_that_cannot_take_the_task(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "s.safetensors"
    assert main(["distill", "--teacher", str(tiny_checkpoint), "--student-model", "transformer",
                 "--set", "model.d_model=16", "--set", "model.heads=2", "--steps", "3", "--out", str(out),
                 "--json"]) == 0
    lines = records(capsys)
    assert {"distill_step", "distill_eval", "result"} <= {r["event"] for r in lines}
    assert lines[-1]["params"] < lines[-1]["baseline_params"]

    teacher = make_checkpoint(tmp_path / "copy.safetensors", tiny_config("copy"))
    bad = tmp_path / "bad.safetensors"
    assert main(["distill", "--teacher", str(teacher), "--student-model", "transformer", "--set",
                 "model.mode=encoder", "--steps", "3", "--out", str(bad)]) == 2
    assert "cannot take the teacher's task" in capsys.readouterr().err
    assert main(["distill", "--teacher", str(teacher), "--student-model", "no-such-model", "--steps", "3",
                 "--out", str(bad)]) == 2
    assert not bad.exists()


def test_compare_json_rows(tiny_checkpoint, tmp_path, capsys):
    fp16 = tmp_path / "h.safetensors"
    assert main(["quantize", str(tiny_checkpoint), "--method", "fp16", "--out", str(fp16)]) == 0
    capsys.readouterr()
    md = tmp_path / "t.md"
    assert main(["compare", str(tiny_checkpoint), str(fp16), "--repeats", "3", "--markdown", str(md),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [set(r) for r in report["rows"]] == [{"name", "params", "file_bytes", "accuracy", "latency_ms_b1",
                                                 "latency_ms_b32", "peak_mb"}] * 2
    assert md.read_text().startswith("| Variant")
    assert main(["compare", str(tmp_path / "missing.safetensors"), "--json"]) == 2


def _done(capsys):
    return [r for r in records(capsys) if r.get("event") == "done"][-1]


def test_compressed_checkpoints_train_on_with_init_and_then_resume(tiny_checkpoint, tmp_path, capsys):
    from effstudio.engine.checkpoint import read_info
    from effstudio.engine.loading import load_checkpoint
    from effstudio.models.structure import blocks_of

    pruned = tmp_path / "pruned.safetensors"
    assert main(["prune", str(tiny_checkpoint), "--method", "structured", "--amount", "0.5", "--out", str(pruned)]) == 0
    capsys.readouterr()
    # no training state: --resume says how to go on instead of failing on shapes
    assert main(["train", "--resume", str(pruned), "--steps", "4", "--no-record"]) == 2
    assert "--init" in capsys.readouterr().err

    run = tmp_path / "finetune"
    assert main(["train", "--init", str(pruned), "--steps", "3", "--out", str(run), "--no-record", "--json"]) == 0
    done = _done(capsys)
    assert done["status"] == "finished" and done["steps"] == 3
    tuned = load_checkpoint(done["checkpoint"])  # the run's checkpoint keeps the pruned widths
    assert [b.heads for b in blocks_of(tuned.model)] == [2, 2]
    assert "effstudio.structure" in read_info(done["checkpoint"]).metadata
    original = load_checkpoint(pruned)
    assert not torch.equal(tuned.model.blocks[0].q.weight, original.model.blocks[0].q.weight)  # it trained

    assert main(["train", "--resume", done["checkpoint"], "--steps", "5", "--no-record", "--json"]) == 0
    resumed = _done(capsys)
    assert resumed["status"] == "finished" and resumed["steps"] == 5


@pytest.mark.parametrize("method", ["dynamic-int8", "fp16"])
def test_quantized_checkpoints_fine_tune_in_float32(method, tiny_checkpoint, tmp_path, capsys):
    from effstudio.engine.loading import load_checkpoint

    quantized = tmp_path / f"{method}.safetensors"
    assert main(["quantize", str(tiny_checkpoint), "--method", method, "--out", str(quantized)]) == 0
    capsys.readouterr()
    source = load_checkpoint(quantized)
    assert main(["train", "--init", str(quantized), "--steps", "2", "--out", str(tmp_path / "run"),
                 "--no-record", "--json"]) == 0
    done = _done(capsys)
    assert done["status"] == "finished"
    tuned = load_checkpoint(done["checkpoint"])
    assert tuned.kind == "float32"
    # starting weights: exactly the stored ones, widened (two small steps move them only a little)
    start = source.model.blocks[0].mlp[0]
    start_weight = start.weight().dequantize() if method == "dynamic-int8" else start.weight.float()
    assert (tuned.model.blocks[0].mlp[0].weight - start_weight).abs().max() < 0.05


def test_init_and_resume_together_is_a_usage_error(tiny_checkpoint, capsys):
    assert main(["train", "--init", str(tiny_checkpoint), "--resume", str(tiny_checkpoint)]) == 2
    assert "use one" in capsys.readouterr().err


def test_compare_times_at_a_chosen_length_and_says_whether_the_timings_hold(tiny_checkpoint, tmp_path, capsys):
    assert main(["compare", str(tiny_checkpoint), "--repeats", "3", "--length", "12", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    timing = report["timing"]
    assert timing["length"] == 12 and isinstance(timing["holds"], bool)
    assert timing["verdict"].startswith("machine too busy") != timing["holds"]
    assert main(["compare", str(tiny_checkpoint), "--repeats", "3", "--length", "12"]) == 0
    assert "every variant timed alternately at 12 tokens; " in capsys.readouterr().out
    csv_file = tmp_path / "t.csv"
    assert main(["compare", str(tiny_checkpoint), "--length", "5000", "--csv", str(csv_file)]) == 2
    assert "outside what the task's models take (1 to 40)" in capsys.readouterr().err and not csv_file.exists()
