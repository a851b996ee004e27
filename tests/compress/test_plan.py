"""A run config's [[compress]] steps: parsed, checked by field, round-tripped, chained."""


import pytest

from effstudio.config import ConfigError
from effstudio.engine.run_config import RunConfig
from effstudio.engine.run_plan import (
    DistillStep,
    ExportStep,
    PruneStep,
    QuantizeStep,
    RunPlan,
    chain,
    parse_steps,
)

HEAD = """
[model]
type = "transformer"
d_model = 32
[task]
name = "copy"
[train]
steps = 5
"""

STEPS = """
[[compress]]
method = "prune"
prune = "heads"
amount = 0.5
finetune_steps = 100

[[compress]]
method = "quantize"
quantize = "dynamic-int8"

[[compress]]
method = "export"
format = "onnx"
check = true
out = "exported/model.onnx"

[[compress]]
method = "distill"
student_model = "transformer"
steps = 20
set = ["model.d_model=16"]
"""


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_steps_parse_typed_and_round_trip(tmp_path):
    plan = RunPlan.from_toml(write(tmp_path, HEAD + STEPS))
    assert plan.config.model.d_model == 32 and plan.config.train.steps == 5
    prune, quantize, export, distill = plan.compress
    assert prune == PruneStep(prune="heads", amount=0.5, finetune_steps=100)
    assert quantize == QuantizeStep(quantize="dynamic-int8")
    assert export == ExportStep(check=True, out="exported/model.onnx")
    assert distill == DistillStep(steps=20, set=("model.d_model=16",))
    again = RunPlan.from_toml(write(tmp_path, plan.to_toml(), "again.toml"))
    assert again == plan
    assert again.to_dict()["compress"][0] == {"method": "prune", "prune": "heads", "amount": 0.5,
                                               "importance": "magnitude", "finetune_steps": 100,
                                               "schedule_steps": 0}


def test_a_config_without_steps_is_unchanged(tmp_path):
    plan = RunPlan.from_toml(write(tmp_path, HEAD))
    assert plan.compress == ()
    assert "compress" not in plan.to_toml()
    assert plan.config == RunConfig.from_toml(tmp_path / "run.toml")


def test_run_config_reads_a_plan_file_as_its_training_part(tmp_path):
    # a checkpoint's header and a resume compare the RunConfig alone: the steps never enter it
    config = RunConfig.from_toml(write(tmp_path, HEAD + STEPS))
    assert config == RunPlan.from_toml(tmp_path / "run.toml").config
    assert "compress" not in config.to_dict()


@pytest.mark.parametrize(("text", "field", "words"), [
    ('[[compress]]\nprune = "heads"\n', "compress[1].method", "missing"),
    ('[[compress]]\nmethod = "shrink"\n', "compress[1].method", "prune, quantize, export, distill"),
    ('[[compress]]\nmethod = "quantize"\n[[compress]]\nmethod = "prune"\namount = 1.5\n',
     "compress[2].amount", "<= 1.0"),
    ('[[compress]]\nmethod = "prune"\namount = 1.0\n', "compress[1].amount", "exclusive"),
    ('[[compress]]\nmethod = "prune"\nprune = "rows"\n', "compress[1].prune", "heads"),
    ('[[compress]]\nmethod = "prune"\namount = "half"\n', "compress[1].amount", "expected float"),
    ('[[compress]]\nmethod = "prune"\nfinetune_steps = -1\n', "compress[1].finetune_steps", ">= 0"),
    ('[[compress]]\nmethod = "quantize"\nquantize = "int4"\n', "compress[1].quantize", "dynamic-int8"),
    ('[[compress]]\nmethod = "quantize"\nquantize = "onnx-int8"\nout = "q.safetensors"\n',
     "compress[1].out", ".onnx"),
    ('[[compress]]\nmethod = "export"\nformat = "tflite"\n', "compress[1].format", "onnx"),
    ('[[compress]]\nmethod = "export"\nout = "model.bin"\n', "compress[1].out", ".onnx"),
    ('[[compress]]\nmethod = "export"\nopset = 18\n', "compress[1].opset", "known settings"),
    ('[[compress]]\nmethod = "distill"\nstudent_model = "nope"\n', "compress[1].student_model", "transformer"),
    ('[[compress]]\nmethod = "distill"\nset = [3]\n', "compress[1].set", "key=value"),
    ('[[compress]]\nmethod = "quantize"\n[[compress]]\nmethod = "quantize"\n', "compress[2].out", "compress[1]"),
    ('[[compress]]\nmethod = "quantize"\nout = "checkpoint.safetensors"\n', "compress[1].out", "trained"),
])
def test_bad_steps_name_their_field(tmp_path, text, field, words):
    with pytest.raises(ConfigError) as caught:
        RunPlan.from_toml(write(tmp_path, HEAD + text))
    assert caught.value.field == field
    assert words in caught.value.message


def test_compress_must_be_tables(tmp_path):
    with pytest.raises(ConfigError) as caught:
        RunPlan.from_toml(write(tmp_path, "compress = 3\n" + HEAD))
    assert caught.value.field == "compress"


def test_steps_chain_from_the_newest_model(tmp_path):
    steps = parse_steps([{"method": "prune", "prune": "neurons", "amount": 0.25},
                         {"method": "quantize", "quantize": "fp16"},
                         {"method": "export"},
                         {"method": "distill", "student_model": "transformer", "steps": 5},
                         {"method": "quantize", "quantize": "onnx-int8"},
                         {"method": "export", "out": "exports/named.onnx"}])
    run = tmp_path / "run"
    planned = chain(steps, run / "checkpoint.safetensors")
    names = [(p.source.name, p.out.name) for p in planned]
    pruned = "checkpoint-pruned-neurons-0.25.safetensors"
    distilled = "checkpoint-pruned-neurons-0.25-distilled-transformer.safetensors"
    assert names == [
        ("checkpoint.safetensors", pruned),
        (pruned, "checkpoint-pruned-neurons-0.25-fp16.safetensors"),
        (pruned, "checkpoint-pruned-neurons-0.25.onnx"),
        (pruned, distilled),
        (distilled, "checkpoint-pruned-neurons-0.25-distilled-transformer-onnx-int8.onnx"),
        (distilled, "named.onnx"),
    ]
    assert all(p.out.parent == run for p in planned[:-1])
    assert planned[-1].out == run / "exports" / "named.onnx"


@pytest.mark.parametrize("out, words", [("sub/../checkpoint.safetensors", "climbs out"),
                                        ("checkpoint.state.pt", "would overwrite the trained checkpoint"),
                                        ("./checkpoint.safetensors", "would overwrite the trained checkpoint"),
                                        ("ABSOLUTE", "outside the run folder")])
def test_a_step_never_overwrites_the_trained_checkpoint(tmp_path, out, words):
    from effstudio.compress.steps import run_steps
    from effstudio.engine.run_plan import QuantizeStep
    from tests.compress.conftest import make_checkpoint

    checkpoint = make_checkpoint(tmp_path / "checkpoint.safetensors")
    before = checkpoint.read_bytes()
    out = str(checkpoint) if out == "ABSOLUTE" else out
    events = list(run_steps((QuantizeStep(quantize="fp16", out=out),), checkpoint, tmp_path))
    assert events[-1].status == "failed" and words in events[-1].error
    assert checkpoint.read_bytes() == before and not (tmp_path / "sub").exists()
