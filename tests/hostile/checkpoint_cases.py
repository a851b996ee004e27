"""Checkpoint pairs whose weights and training state do not belong together, generated at test time.

Each ``make_<case>(folder)`` writes a run folder and returns its ``checkpoint.safetensors``.
The weights file is always a valid effstudio checkpoint (inspect, init, prune... read it
as usual); resuming it must be refused with exit 2 and one line that names the steps of
both halves, never train on the pair. ``make_interrupted_commit`` is the good counterpart:
a save killed between its two renames, which resumes (after completing the save).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from effstudio.bench.faults import SETTINGS
from effstudio.engine import checkpoint as ckpt
from effstudio.engine.build import build_model, build_task
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import CHECKPOINT_NAME, make_optimizer
from tests.hostile.cases import Case, declare_into

CASES: list[Case] = []
case = declare_into(CASES)

STEP = 3  # the weights' step; the mismatched state is one step behind or ahead


def tiny_config(steps: int = 8) -> RunConfig:
    return RunConfig.from_dict({**SETTINGS, "train": {**SETTINGS["train"], "steps": steps}})


def save_pair(folder: Path, step: int, seed: int = 0) -> Path:
    """A consistent checkpoint pair of the tiny model at ``step`` (a resumable training state)."""
    config = tiny_config()
    torch.manual_seed(seed)
    model = build_model(config, build_task(config).spec)
    state = {"optimizer": make_optimizer(model, config.train).state_dict(), "rng_cpu": torch.get_rng_state()}
    return ckpt.save_checkpoint(folder / CHECKPOINT_NAME, model, config, step, state)


def _state_of_another_save(folder: Path, step: int, seed: int = 1) -> Path:
    """The training state of a save at ``step`` made elsewhere (another pair token)."""
    other = save_pair(folder / "other-save", step, seed)
    return ckpt.state_path(other)


def _replace_state(path: Path, source: Path) -> Path:
    shutil.copyfile(source, ckpt.state_path(path))
    shutil.rmtree(source.parent)
    return path


@case("checkpoint")
def make_weights_ahead_of_state(folder: Path) -> Path:
    """Weights of step 3 beside the state of step 2: the issue's SIGKILL between the renames of an old save."""
    return _replace_state(save_pair(folder, STEP), _state_of_another_save(folder, STEP - 1))


@case("checkpoint")
def make_state_ahead_of_weights(folder: Path) -> Path:
    """Weights of step 2 beside the state of step 3 (the renames in the other order)."""
    return _replace_state(save_pair(folder, STEP - 1), _state_of_another_save(folder, STEP))


@case("checkpoint")
def make_state_of_another_save(folder: Path) -> Path:
    """Both at step 3, but the state comes from another save (another pair token, another hash)."""
    return _replace_state(save_pair(folder, STEP), _state_of_another_save(folder, STEP))


@case("checkpoint")
def make_state_cut_short(folder: Path) -> Path:
    """The state file truncated to half (a copy interrupted, a disk that filled)."""
    path = save_pair(folder, STEP)
    state = ckpt.state_path(path)
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])
    return path


@case("checkpoint")
def make_state_bytes_flipped(folder: Path) -> Path:
    """One byte of the state's tensor data changed: it still loads, but its hash is not the one saved."""
    path = save_pair(folder, STEP)
    state = ckpt.state_path(path)
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    return path


def _rewrite_header(path: Path, **changes: str | None) -> Path:
    tensors = safetensors.torch.load_file(str(path))
    with safetensors.safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    for key, value in changes.items():
        name = {"pair": ckpt.PAIR_KEY, "state_hash": ckpt.STATE_HASH_KEY}.get(key, key)
        if value is None:
            metadata.pop(name, None)
        else:
            metadata[name] = value
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    return path


@case("checkpoint")
def make_pair_token_escapes_folder(folder: Path) -> Path:
    """A header whose pair token is a relative path: it must never name a file outside the run folder."""
    path = save_pair(folder, STEP)
    outside = folder.parent / f"{folder.name}-outside"
    outside.mkdir(exist_ok=True)
    shutil.copyfile(ckpt.state_path(path), outside / "x.tmp")  # what a path-following reader would find
    return _rewrite_header(path, pair=f"../{outside.name}/x")


@case("checkpoint")
def make_weights_without_pair_token(folder: Path) -> Path:
    """Weights without pair metadata (as a compressed output) beside a paired training state."""
    return _rewrite_header(save_pair(folder, STEP), pair=None, state_hash=None)


@case("checkpoint")
def make_header_step_differs(folder: Path) -> Path:
    """Same save, same hash, but the header's step says 4 while the state says 3."""
    return _rewrite_header(save_pair(folder, STEP), step=str(STEP + 1))


@case("checkpoint")
def make_legacy_state_not_a_dict(folder: Path) -> Path:
    """An unpaired checkpoint whose state file holds a list of tensors, not a training state."""
    path = _rewrite_header(save_pair(folder, STEP), pair=None, state_hash=None)
    torch.save([torch.zeros(2)], ckpt.state_path(path))
    return path


def make_interrupted_commit(folder: Path) -> Path:
    """A save of step 3 killed between its renames: weights of step 3 committed, its state still under
    its temporary name, the state of step 2 in place. Resumes at step 3 (not a hostile case)."""
    path = save_pair(folder, STEP - 1)

    def stop_between_renames(point: str, file: Path, step: int) -> None:
        if point == "committed":
            raise RuntimeError("killed")  # where a SIGKILL would have ended the process

    ckpt.fault_hook = stop_between_renames
    try:
        save_pair(folder, STEP)
    except ckpt.CheckpointError:
        pass  # the save says it was cut short; on disk is what a kill there leaves
    finally:
        ckpt.fault_hook = None
    return path
