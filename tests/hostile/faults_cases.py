"""Checkpoints whose training state is consistent with its weights but not what resuming needs,
generated at test time: a state written by another effstudio version, or edited by hand.

Each ``make_<case>(folder)`` writes a run folder and returns its ``checkpoint.safetensors``: a
pair whose halves belong together (same step, same token, the hash the weights name), so
inspect, init, prune... read it as usual; resuming it must be refused with exit 2 and one line
that says what the state lacks, never a KeyError or a torch error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from effstudio.engine import checkpoint as ckpt
from tests.hostile.cases import Case, declare_into
from tests.hostile.checkpoint_cases import save_pair

CASES: list[Case] = []
case = declare_into(CASES)


def _rewrite_state(folder: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    """A pair whose state is changed by ``change(state)``, the weights naming the changed state's hash."""
    path = save_pair(folder, 2)
    state = ckpt.resume_point(path).state
    change(state)
    torch.save(state, ckpt.state_path(path))
    with safetensors.safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    metadata[ckpt.STATE_HASH_KEY] = ckpt._sha256(ckpt.state_path(path))
    safetensors.torch.save_file(safetensors.torch.load_file(str(path)), str(path), metadata=metadata)
    return path


@case("checkpoint")
def make_state_without_optimizer(folder: Path) -> Path:
    return _rewrite_state(folder, lambda state: state.pop("optimizer"))


@case("checkpoint")
def make_state_without_random_state(folder: Path) -> Path:
    return _rewrite_state(folder, lambda state: state.pop("rng_cpu"))


@case("checkpoint")
def make_state_with_optimizer_of_another_model(folder: Path) -> Path:
    return _rewrite_state(folder, lambda state: state["optimizer"]["param_groups"][0]["params"].append(999))


@case("checkpoint")
def make_state_with_random_state_of_another_kind(folder: Path) -> Path:
    return _rewrite_state(folder, lambda state: state.update(rng_cpu=torch.zeros(3)))
