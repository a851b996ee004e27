import json

import pytest
import safetensors.torch
import torch

from effstudio.engine.checkpoint import CheckpointError, atomic_write, read_info, save_checkpoint
from effstudio.engine.data import make_batch
from effstudio.engine.loading import load_model
from effstudio.engine.trainer import train
from tests.engine.conftest import tiny_listops


def test_round_trip_gives_identical_outputs(tmp_path):
    config = tiny_listops(**{"train.steps": 3})
    events = list(train(config, out_dir=tmp_path))
    path = tmp_path / "checkpoint.safetensors"
    assert events[-1].checkpoint == str(path)

    info = read_info(path)
    assert info.config == config
    assert info.step == 3
    assert info.metadata["model_type"] == "transformer" and info.metadata["task"] == "listops"
    assert json.loads(info.metadata["config"])["model"]["type"] == "transformer"

    model, loaded_config, task = load_model(path)
    again, _, _ = load_model(path)
    batch = make_batch(task.split("val"), torch.arange(4), task.spec.pad_id)
    with torch.no_grad():
        torch.testing.assert_close(model(batch.inputs, batch.mask).logits, again(batch.inputs, batch.mask).logits)
    assert loaded_config == config
    # the training state loads without unpickling arbitrary objects
    state = torch.load(tmp_path / "checkpoint.state.pt", weights_only=True)
    assert state["step"] == 3


def test_non_effstudio_and_corrupt_files_are_refused(tmp_path):
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="not an effstudio checkpoint"):
        read_info(plain)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_info(corrupt)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_info(tmp_path / "missing.safetensors")


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"previous")

    def write_then_fail(tmp):
        tmp.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(CheckpointError, match=r"could not write .*file\.bin: No space left on device; the file "
                                              r"there is kept"):
        atomic_write(target, write_then_fail)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_full_disk_during_save_is_reported_not_raised(tmp_path, monkeypatch):
    import effstudio.engine.checkpoint as checkpoint

    config = tiny_listops(**{"train.steps": 2})

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.safetensors.torch, "save_model", no_space)
    events = list(train(config, out_dir=tmp_path))
    errors = [e for e in events if e.kind == "log" and e.level == "error"]
    assert len(errors) == 1 and "No space left on device" in errors[0].message
    assert "\n" not in errors[0].message
    done = events[-1]
    assert (done.status, done.checkpoint, done.error) == ("failed", None, errors[0].message)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half-written left behind


def test_save_checkpoint_metadata_is_strings(tmp_path):
    from effstudio.engine.build import build_model, build_task

    config = tiny_listops()
    model = build_model(config, build_task(config).spec)
    path = save_checkpoint(tmp_path / "m.safetensors", model, config, step=5)
    with safetensors.safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["step"] == "5" and metadata["effstudio.version"]
    assert not (tmp_path / "m.state.pt").exists()


def _paired_checkpoint(tmp_path, step=4):
    config = tiny_listops(**{"train.steps": step})
    list(train(config, out_dir=tmp_path))
    return tmp_path / "checkpoint.safetensors"


def test_both_halves_name_the_same_save(tmp_path):
    import hashlib

    from effstudio.engine.checkpoint import PAIR_KEY, STATE_HASH_KEY, resume_point, state_path

    path = _paired_checkpoint(tmp_path)
    metadata = read_info(path).metadata
    state = torch.load(state_path(path), weights_only=True)
    assert len(metadata[PAIR_KEY]) == 16 and state["pair"] == metadata[PAIR_KEY]
    assert metadata[STATE_HASH_KEY] == hashlib.sha256(state_path(path).read_bytes()).hexdigest()
    assert metadata["step"] == "4" and state["step"] == 4
    point = resume_point(path)
    assert (point.step, point.state_file, point.note) == (4, state_path(path), None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors", "checkpoint.state.pt",
                                                          "config.toml"]


def _unpaired(path, weights_step, state_step):
    """A checkpoint as written before pairs had tokens: no pair metadata, a state without a token."""
    from effstudio.engine.checkpoint import PAIR_KEY, STATE_HASH_KEY, state_path

    tensors = safetensors.torch.load_file(str(path))
    metadata = {k: v for k, v in read_info(path).metadata.items() if k not in (PAIR_KEY, STATE_HASH_KEY)}
    safetensors.torch.save_file(tensors, str(path), metadata={**metadata, "step": str(weights_step)})
    state = torch.load(state_path(path), weights_only=True)
    del state["pair"]
    torch.save({**state, "step": state_step}, state_path(path))


def test_a_checkpoint_from_before_pairing_resumes_when_its_steps_agree(tmp_path):
    path = _paired_checkpoint(tmp_path)
    _unpaired(path, 4, 4)
    events = list(train(tiny_listops(**{"train.steps": 6}), out_dir=tmp_path, resume=path))
    assert events[0].start_step == 4 and events[-1].status == "finished"


def test_a_checkpoint_from_before_pairing_is_refused_when_its_steps_differ(tmp_path):
    path = _paired_checkpoint(tmp_path)
    _unpaired(path, 4, 3)
    with pytest.raises(CheckpointError, match=r"weights are at step 4 but its training state .* is at step 3"):
        list(train(tiny_listops(**{"train.steps": 6}), out_dir=tmp_path, resume=path))


def test_a_checkpoint_without_training_state_still_saves_loads_and_initialises(tmp_path):
    from effstudio.engine.build import build_model, build_task

    config = tiny_listops(**{"train.steps": 2})
    model = build_model(config, build_task(config).spec)
    path = save_checkpoint(tmp_path / "pruned.safetensors", model, config, step=9)
    assert read_info(path).step == 9 and "effstudio.pair" not in read_info(path).metadata
    events = list(train(config, out_dir=tmp_path / "fine-tune", init=path))
    assert events[0].start_step == 0 and events[-1].status == "finished"
