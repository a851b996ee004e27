"""evaluate() and the evaluate / drift commands on tiny checkpoints: figures, events, files, bad input."""

import json
from pathlib import Path

import pytest
import torch

from effstudio.cli import main
from effstudio.engine.build import build_model, build_task
from effstudio.engine.checkpoint import read_info, save_checkpoint
from effstudio.engine.run_config import RunConfig
from effstudio.evaluate.events import Evaluated, EvaluateError, EvaluateProgress
from effstudio.evaluate.model_file import TEMPERATURE_KEY, open_model_file
from effstudio.evaluate.run import evaluate, examples_of, split_of
from effstudio.tasks.base import Split

KEYS = {"model", "task", "split", "examples", "accuracy", "macro_f1", "per_class", "confusion", "by_length",
        "length_generalisation", "ece", "temperature", "robustness"}
TINY = {"model.d_model": 16, "model.layers": 1, "model.heads": 2, "model.dropout": 0.0,
        "task.train_size": 10, "task.val_size": 24, "task.test_size": 24, "task.min_length": 4,
        "task.max_length": 24, "train.device": "cpu"}


def checkpoint(path: Path, **overrides) -> Path:
    config = RunConfig.create("transformer", "listops", {**TINY, **overrides})
    torch.manual_seed(0)
    task = build_task(config)
    return save_checkpoint(path, build_model(config, task.spec), config, step=0)


@pytest.fixture(scope="module")
def learned(tmp_path_factory) -> Path:
    return checkpoint(tmp_path_factory.mktemp("learned") / "learned.safetensors")


@pytest.fixture(autouse=True)
def one_thread(one_thread):
    return one_thread


def evaluated(events) -> list[Evaluated]:
    return [e for e in events if isinstance(e, Evaluated)]


def test_evaluation_figures_agree_with_its_predictions(learned):
    events = list(evaluate([learned], split="test", factors=(), robustness=False))
    assert any(isinstance(e, EvaluateProgress) for e in events)
    (done,) = evaluated(events)
    ev = done.evaluation
    assert ev.examples == 24 and len(ev.predictions) == 24
    assert sum(map(sum, ev.confusion)) == 24
    right = sum(t == p for t, p, _ in ev.predictions)
    assert ev.accuracy == pytest.approx(right / 24)
    assert sum(ev.confusion[i][i] for i in range(10)) == right
    assert sum(b.examples for b in ev.by_length) == 24
    assert sum(b.count for b in ev.reliability) == 24
    confidences = [c for t, p, c in ev.predictions if t != p]
    assert [round(m.confidence, 6) for m in ev.mistakes] == sorted(confidences, reverse=True)[: len(ev.mistakes)]
    assert ev.temperature is not None and ev.temperature > 0
    assert set(ev.to_json()) == KEYS


def test_length_generalisation_extends_learned_positions_only_when_asked(learned):
    (plain,) = evaluated(evaluate([learned], split="test", factors=(1, 2), robustness=False, calibrate=False))
    points = plain.evaluation.length_generalisation
    assert [(p.factor, p.length) for p in points] == [(1, 24), (2, 48)]
    assert points[0].accuracy is not None and points[1].accuracy is None and not points[1].extended
    (grown,) = evaluated(evaluate([learned], split="test", factors=(1, 2), extend_positions=True, robustness=False,
                                  calibrate=False))
    points = grown.evaluation.length_generalisation
    assert points[1].accuracy is not None and points[1].extended and not points[0].extended


def test_sinusoidal_positions_run_longer_without_extension(tmp_path):
    path = checkpoint(tmp_path / "sin.safetensors", **{"model.positions": "sinusoidal"})
    (done,) = evaluated(evaluate([path], split="test", factors=(1, 2), robustness=False, calibrate=False))
    assert all(p.accuracy is not None and not p.extended for p in done.evaluation.length_generalisation)


def test_robustness_curves_start_at_the_clean_accuracy(learned):
    (done,) = evaluated(evaluate([learned], split="test", factors=(), calibrate=False))
    ev = done.evaluation
    kinds = {p.perturbation for p in ev.robustness}
    assert kinds == {"substitution", "deletion", "insertion"}
    clean = [p.accuracy for p in ev.robustness if p.rate == 0]
    assert clean == [ev.accuracy] * 3
    assert max(p.rate for p in ev.robustness) == pytest.approx(0.3)


def test_examples_of_gives_the_decoded_example_and_an_attention_map(learned):
    (done,) = evaluated(evaluate([learned], split="test", factors=(), robustness=False, calibrate=False))
    detail = examples_of(learned, done.evaluation, 3)
    assert detail.text.startswith("[") and detail.tokens[0].startswith("[")
    n = len(detail.tokens)
    assert detail.attention.shape == (n, n)
    assert detail.predicted == done.evaluation.labels[done.evaluation.predictions[3][1]]


def test_temperature_is_stored_in_the_header_and_applied_when_asked(tmp_path):
    path = checkpoint(tmp_path / "t.safetensors")
    assert main(["evaluate", str(path), "--factors", "1", "--no-robustness", "--store-temperature",
                 "--json"]) == 0
    stored = float(read_info(path).metadata[TEMPERATURE_KEY])
    assert open_model_file(path).stored_temperature == pytest.approx(stored)
    (applied,) = evaluated(evaluate([path], factors=(), robustness=False, calibrate=False, apply_temperature=True))
    assert applied.evaluation.temperature == pytest.approx(stored)


def test_the_command_prints_the_json_keys_and_writes_the_evaluation_file(learned, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["evaluate", str(learned), "--split", "test", "--factors", "1,2", "--json", "--out", str(out)]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert set(record) == KEYS
    assert set(record["by_length"][0]) == {"bucket", "examples", "accuracy"}
    assert set(record["length_generalisation"][0]) == {"factor", "length", "accuracy"}
    assert set(record["robustness"][0]) == {"perturbation", "rate", "accuracy"}
    assert set(record["per_class"][0]) == {"label", "precision", "recall", "f1", "support"}
    assert json.loads((out / "learned.evaluation.json").read_text()) == record


@pytest.mark.parametrize(("rows", "message"), [
    ("text,label\n", "no examples"),
    ("text,label\nhello world,1\n", "not in the vocabulary"),
    ("text,label\n[MAX 1 2 ],elephant\n", "label set differs"),
])
def test_bad_data_files_are_one_line_and_exit_2(learned, tmp_path, capsys, rows, message):
    data = tmp_path / "data.csv"
    data.write_text(rows)
    assert main(["evaluate", str(learned), "--split", str(data), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (learned.parent / "learned.evaluation.json").exists()


def test_labels_the_model_never_saw_are_counted_left_out_and_warned_about(learned, tmp_path, capsys):
    data = tmp_path / "data.csv"
    data.write_text("text,label\n[MAX 1 2 ],2\n[MIN 3 4 ],3\n[SM 1 1 ],zz\n[SM 1 2 ],zz\n")
    assert main(["evaluate", str(learned), "--split", str(data), "--factors", "1", "--no-robustness", "--json",
                 "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "2 row(s) with labels the model never saw ('zz')" in captured.err
    assert json.loads(captured.out)["examples"] == 2


def test_a_task_whose_vocabulary_differs_is_refused_saying_how(learned, capsys):
    assert main(["evaluate", str(learned), "--task", "copy", "--json"]) == 2
    assert "not in the model's vocabulary" in capsys.readouterr().err


def test_an_empty_split_is_refused(learned, monkeypatch):
    model = open_model_file(learned)
    empty = Split(torch.zeros(0, 24, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    monkeypatch.setattr(model.task, "split", lambda name: empty)
    with pytest.raises(EvaluateError, match="the test split of task 'listops' is empty"):
        split_of(model, "test")


def test_onnx_without_metadata_and_no_task_is_refused(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["inputs"], ["logits"])], "g",
                              [helper.make_tensor_value_info("inputs", TensorProto.INT64, [1, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.INT64, [1, 4])])
    path = tmp_path / "bare.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert main(["evaluate", str(path), "--json"]) == 2
    assert "without effstudio metadata; name its task with --task" in capsys.readouterr().err


def test_drift_command_prints_the_json_keys(learned, tmp_path, capsys):
    current = tmp_path / "current.csv"
    current.write_text("text\n" + "".join(f"[MAX {i % 10} {(i * 3) % 10} [MIN 4 5 ] ]\n" for i in range(30)))
    assert main(["drift", str(learned), "--reference", "test", "--current", str(current), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"signals", "mmd", "p_value", "drift"}
    names = {s["name"] for s in report["signals"]}
    assert {"length_psi", "length_js", "token_psi", "token_js", "unknown_rate", "predicted_class_psi",
            "mmd_p_value"} == names


def test_drift_of_a_missing_current_file_is_one_line(learned, tmp_path, capsys):
    assert main(["drift", str(learned), "--reference", "val", "--current", str(tmp_path / "no.csv")]) == 2
    assert "neither a split" in capsys.readouterr().err


def test_recorded_evaluation_figures_join_the_compare_table(tmp_path, capsys):
    path = checkpoint(tmp_path / "joined.safetensors")
    assert main(["evaluate", str(path), "--factors", "1", "--no-robustness", "--json"]) == 0
    accuracy = json.loads(capsys.readouterr().out)["accuracy"]
    assert main(["compare", str(path), "--repeats", "1"]) == 0
    table = capsys.readouterr().out
    assert "eval accuracy" in table and f"| joined.safetensors | {accuracy:.4f} |" in table


def test_an_evaluation_is_recorded_as_a_file_of_the_models_run(tmp_path, capsys):
    from effstudio.runs.store import RunStore

    sets = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]
    assert main(["train", "--model", "transformer", "--task", "listops", *sets, "--set", "train.attention_every=0",
                 "--steps", "1", "--out", str(tmp_path / "run")]) == 0
    model = tmp_path / "run" / "checkpoint.safetensors"
    assert main(["evaluate", str(model), "--factors", "1", "--no-robustness", "--json"]) == 0
    capsys.readouterr()
    with RunStore() as store:
        run_id = store.run_of_file(model)
        kinds = {(a.kind, Path(a.path).name) for a in store.artifacts(run_id)}
    assert ("evaluation", "checkpoint.evaluation.json") in kinds


def test_two_files_whose_records_would_collide_in_one_out_folder_are_refused(learned, tmp_path, capsys):
    other = tmp_path / "run2" / "learned.safetensors"  # another run's file of the same name
    other.parent.mkdir()
    other.write_bytes(learned.read_bytes())
    out = tmp_path / "out"
    assert main(["evaluate", str(learned), str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "would both write" in err and "\n" not in err
    assert not out.exists()


def test_a_folder_given_as_split_is_not_a_data_file(learned, tmp_path, capsys):
    assert main(["evaluate", str(learned), "--split", str(tmp_path), "--json"]) == 2
    assert "neither val, test nor an existing data file" in capsys.readouterr().err
