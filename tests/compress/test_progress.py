"""Long steps report their progress; a known baseline accuracy is not measured again."""

from effstudio.compress.events import ProgressEvent
from effstudio.compress.export import export_job
from effstudio.compress.prune import PruneSettings, prune_job
from effstudio.compress.quantize import quantize_job


def stages(events):
    return [e.stage for e in events if isinstance(e, ProgressEvent)]


def test_quantize_reuses_a_known_baseline_and_reports_its_evaluation(tiny_checkpoint, tmp_path):
    first = list(quantize_job(tiny_checkpoint, "fp16", tmp_path / "a.safetensors"))
    assert "evaluating the original" in stages(first)
    evaluation = [e for e in first if isinstance(e, ProgressEvent) and e.stage == "evaluating the original"]
    assert evaluation[0].done == 0 and evaluation[-1].done == evaluation[-1].total == 48  # the validation split
    assert evaluation[-1].eta_s == 0.0 and evaluation[0].eta_s is None
    known = first[-1].baseline_accuracy
    again = list(quantize_job(tiny_checkpoint, "fp16", tmp_path / "b.safetensors", baseline_accuracy=known))
    assert "evaluating the original" not in stages(again)
    assert "evaluating the quantized model" in stages(again)
    assert again[-1].baseline_accuracy == known and again[-1].accuracy == first[-1].accuracy


def test_pruning_reports_every_step_and_fine_tuning(tiny_checkpoint, tmp_path):
    settings = PruneSettings(method="magnitude", amount=0.5, finetune_steps=4, schedule_steps=2)
    events = list(prune_job(tiny_checkpoint, settings, tmp_path / "p.safetensors", baseline_accuracy=0.25))
    seen = stages(events)
    assert "evaluating the original" not in seen and events[-1].baseline_accuracy == 0.25
    assert {"step 1/2: fine-tuning", "step 2/2: fine-tuning", "step 2/2: evaluating"} <= set(seen)
    tuning = [e for e in events if isinstance(e, ProgressEvent) and e.stage == "step 1/2: fine-tuning"]
    assert [e.done for e in tuning] == [0, 1, 2] and tuning[-1].total == 2
    # the result's accuracy is the last step's (the masks made permanent change no weight)
    last_step = [e for e in events if e.kind == "prune_step"][-1]
    assert events[-1].accuracy == last_step.accuracy


def test_the_onnx_check_is_logged_and_reused_baseline_skips_evaluating_the_checkpoint(tiny_checkpoint, tmp_path):
    events = list(export_job(tiny_checkpoint, tmp_path / "m.onnx", check=True, baseline_accuracy=0.5))
    logs = [e.message for e in events if e.kind == "log"]
    assert any(m.startswith("ONNX check passed: max |PyTorch - onnxruntime| = ") for m in logs)
    assert "evaluating the checkpoint" not in stages(events) and "evaluating the ONNX file" in stages(events)
    from effstudio.engine.loading import load_checkpoint

    task = load_checkpoint(tiny_checkpoint).task
    longest = int((task.split("val").inputs != task.spec.pad_id).sum(dim=1).max())
    result = events[-1]
    assert result.baseline_accuracy == 0.5 and result.details["timing_length"] == longest
