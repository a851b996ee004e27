"""Whether a model type can take a task, known from their declarations before either is built.

A model that cannot read a task (vit on listops, Transformer-XL on a classification
task) was refused only once the task's data were built and the model constructed. The
task config declares what the task offers (``objectives``: the forms it can be posed in,
the usual first; ``images``), the model config how it refuses a task (``check_task``, the
check its constructor runs too), so the two meet on a sketch of the task's spec that needs
no data: the form checks the pair as you pick, and `effstudio train` before it builds.
A plugin that declares neither is checked when it is built, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from effstudio.config import ConfigError
from effstudio.engine.run_config import RunConfig

if TYPE_CHECKING:
    from effstudio.tasks.base import TaskSpec

SEQ2SEQ = "seq2seq"


def task_sketch(config: RunConfig) -> TaskSpec | None:
    """The spec the task will have as far as a model's check reads it (inputs and objective); None
    when the task does not declare it. Sizes (vocabulary, lengths) are left at zero."""
    task_cls = type(config.task)
    objectives = getattr(task_cls, "objectives", None)
    if not objectives:
        return None
    wants = getattr(type(config.model), "task_form", None)  # an encoder-decoder model takes the seq2seq form
    objective = wants if wants in objectives else objectives[0]
    # imported here: the task module brings torch, which `effstudio --version` and `--help` (they import the
    # run plan that calls this) must not pay for
    from effstudio.tasks.base import TaskSpec

    return TaskSpec(name=config.task_name, objective=objective, vocab=(), num_classes=0, max_length=0,
                    channels=1 if getattr(task_cls, "images", False) else 0)


def check_pairing(config: RunConfig) -> None:
    """Raise the ConfigError the model would raise on this task, before anything is built."""
    sketch = task_sketch(config)
    if sketch is None:
        return
    if getattr(type(config.model), "task_form", None) == SEQ2SEQ and sketch.objective != SEQ2SEQ:
        raise ConfigError("task", f"model type {config.model_type!r} maps a source sequence to a target "
                                  f"sequence; task {config.task_name!r} has no such form (use copy)")
    check_task = getattr(config.model, "check_task", None)
    if callable(check_task):
        check_task(sketch)
