"""The model/task check made from declarations agrees with what building the pair says."""

from __future__ import annotations

import functools

import pytest

from effstudio.config import ConfigError
from effstudio.engine.build import build_model, build_task
from effstudio.engine.pairing import check_pairing, task_sketch
from effstudio.engine.run_config import RunConfig
from effstudio.registry import get_registry

SMALL = {"copy": {"task.train_size": 8, "task.val_size": 4, "task.test_size": 4},
         "listops": {"task.train_size": 10, "task.val_size": 4, "task.test_size": 4, "task.max_length": 64},
         "digits": {"task.train_size": 10, "task.val_size": 4, "task.test_size": 4}}
SMALL_MODEL = {"model.d_model": 16, "model.heads": 2}


def refusal(action) -> str | None:
    try:
        action()
    except ConfigError as err:
        return str(err)
    return None


def config_of(model: str, task: str) -> RunConfig:
    return RunConfig.create(model, task, {**SMALL[task], **SMALL_MODEL})


@functools.cache
def task_of(model: str, task: str):
    """The task as ``model`` reads it (an encoder-decoder model its seq2seq form); built once."""
    return build_task(config_of(model, task))


@pytest.mark.parametrize("task", sorted(SMALL))
@pytest.mark.parametrize("model", get_registry().names("models"))
def test_the_check_before_start_says_what_building_would_say(model, task):
    config = config_of(model, task)
    assert refusal(lambda: check_pairing(config)) == refusal(lambda: build_model(config, task_of(model, task).spec))


@pytest.mark.parametrize("task", sorted(SMALL))
def test_a_tasks_sketch_has_the_inputs_and_objective_of_the_built_task(task):
    config, built_task = config_of("transformer", task), task_of("transformer", task)
    sketch = task_sketch(config)
    assert sketch is not None
    assert (sketch.objective, sketch.is_image) == (built_task.spec.objective, built_task.spec.is_image)


def test_train_refuses_the_pair_before_building_anything(tmp_path, capsys):
    from effstudio.cli import main

    assert main(["train", "--model", "vit", "--task", "listops", "--out", str(tmp_path / "run"), "--no-record"]) == 2
    assert "vit classifies images" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
