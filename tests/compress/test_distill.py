import pytest
import torch
import torch.nn.functional as F

from effstudio.compress.distill import DistillationLoss, DistillSettings, distill_job, kl_term
from effstudio.engine.data import make_batch
from effstudio.engine.loading import CompressError, load_checkpoint
from effstudio.engine.objective import task_loss
from tests.compress.conftest import make_checkpoint, tiny_config


def test_the_loss_is_the_documented_mix(tiny_checkpoint):
    teacher = load_checkpoint(tiny_checkpoint)
    student = load_checkpoint(make_checkpoint(tiny_checkpoint.parent / "other.safetensors", seed=3)).model
    split = teacher.task.split("train")
    batch = make_batch(split, torch.arange(8), teacher.task.spec.pad_id)
    output = student(batch.inputs, batch.mask)
    ce = task_loss(output, batch.targets, "classify")
    t, alpha = 3.0, 0.3
    hook = DistillationLoss(teacher.model, student, temperature=t, alpha=alpha)
    got = hook(output, batch, ce)
    with torch.no_grad():
        p_teacher = F.softmax(teacher.model(batch.inputs, batch.mask).logits / t, dim=-1)
    log_student = F.log_softmax(output.logits / t, dim=-1)
    kl = (p_teacher * (p_teacher.log() - log_student)).sum(dim=-1).mean() * t * t
    assert torch.allclose(got, alpha * kl + (1 - alpha) * ce, atol=1e-5)
    assert kl_term(output.logits, output.logits, batch.targets, t).item() == pytest.approx(0.0, abs=1e-6)


def test_hidden_states_are_matched_when_widths_allow(tiny_checkpoint):
    teacher = load_checkpoint(tiny_checkpoint)
    student = load_checkpoint(make_checkpoint(tiny_checkpoint.parent / "same.safetensors", seed=4)).model
    hook = DistillationLoss(teacher.model, student, 2.0, 0.5, hidden_weight=1.0)
    assert hook.matches_hidden
    batch = make_batch(teacher.task.split("train"), torch.arange(4), teacher.task.spec.pad_id)
    output = student(batch.inputs, batch.mask)
    hook(output, batch, task_loss(output, batch.targets, "classify"))
    assert hook.last["hidden_loss"] > 0
    hook.close()


def test_a_short_run_lowers_the_kl_and_writes_a_smaller_student(tiny_checkpoint, tmp_path):
    settings = DistillSettings("transformer", ("model.d_model=16", "model.heads=2", "model.attention=full",
                                               "train.lr=3e-3"), steps=16, temperature=2.0, alpha=0.9)
    out = tmp_path / "student.safetensors"
    events = list(distill_job(tiny_checkpoint, settings, out))
    result = events[-1]
    steps = [e for e in events if e.kind == "distill_step"]
    assert len(steps) == 16
    first = sum(e.kl for e in steps[:4]) / 4
    final = sum(e.kl for e in steps[-4:]) / 4
    assert final < first
    assert any(e.kind == "distill_eval" for e in events)
    assert result.params < 0.6 * result.baseline_params
    student = load_checkpoint(out)
    assert student.config.model.d_model == 16 and student.config.task == load_checkpoint(tiny_checkpoint).config.task


def test_a_student_that_cannot_take_the_task_is_refused(tmp_path):
    teacher = make_checkpoint(tmp_path / "copy.safetensors", tiny_config("copy"))
    out = tmp_path / "student.safetensors"
    with pytest.raises(CompressError, match="cannot take the teacher's task"):
        list(distill_job(teacher, DistillSettings("transformer", ("model.mode=encoder",), steps=2), out))
    assert not out.exists()
