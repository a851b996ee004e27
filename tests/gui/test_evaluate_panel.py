"""The Evaluate section: hand-made results drawn as they should be (a confusion cell lists exactly its
examples, one length curve per model, extended models named), the drift verdicts, and a real
evaluation of a tiny trained ListOps checkpoint run from the panel."""

from __future__ import annotations

import pytest

from effstudio.evaluate.results import (
    ClassFigures,
    DriftReport,
    DriftSignal,
    Evaluation,
    ExampleRow,
    LengthBucket,
    LengthPoint,
    ReliabilityBin,
    RobustnessPoint,
)
from effstudio.gui.panels.evaluate_panel import TABS, EvaluatePanel
from effstudio.gui.views.evaluation_tables import example_indices
from effstudio.registry import get_registry

LABELS = ["neg", "neu", "pos"]
# (true, predicted, confidence) of 10 examples: true neg predicted pos at indices 2, 5 and 7
PREDICTIONS = [(0, 0, 0.9), (1, 1, 0.8), (0, 2, 0.55), (2, 2, 0.95), (1, 0, 0.6),
               (0, 2, 0.85), (2, 1, 0.5), (0, 2, 0.7), (1, 1, 0.65), (2, 2, 0.9)]


def confusion_of(predictions: list[tuple[int, int, float]], classes: int = 3) -> list[list[int]]:
    matrix = [[0] * classes for _ in range(classes)]
    for true, predicted, _confidence in predictions:
        matrix[true][predicted] += 1
    return matrix


def evaluation(model: str, *, extended: bool = False, learned_stop: int | None = None, shift: float = 0.0,
               predictions: list[tuple[int, int, float]] = PREDICTIONS) -> Evaluation:
    """A three-class evaluation at 64..512 tokens; ``learned_stop``: no figure from that length on."""
    lengths = [LengthPoint(f, 64 * f, None if learned_stop and 64 * f >= learned_stop else 0.8 - 0.1 * k - shift,
                           extended=extended and f > 1)
               for k, f in enumerate((1, 2, 4, 8))]
    mistakes = sorted((ExampleRow(i, f"example {i} text", LABELS[t], LABELS[p], c)
                       for i, (t, p, c) in enumerate(predictions) if t != p), key=lambda r: -r.confidence)
    return Evaluation(
        model=model, task="textclass", split="val", examples=len(predictions), labels=list(LABELS),
        accuracy=0.6 - shift, macro_f1=0.55 - shift,
        per_class=[ClassFigures(label, 0.6, 0.5, 0.55, 3 + (label == "neu")) for label in LABELS],
        confusion=confusion_of(predictions),
        by_length=[LengthBucket("1-32", 1, 32, 6, 0.7 - shift), LengthBucket("33-64", 33, 64, 4, 0.45 - shift)],
        length_generalisation=lengths, ece=0.12 + shift, temperature=1.4,
        reliability=[ReliabilityBin(0.4, 0.6, 3, 0.55, 0.33), ReliabilityBin(0.6, 0.8, 3, 0.68, 0.67),
                     ReliabilityBin(0.8, 1.0, 4, 0.9, 0.75 - shift)],
        robustness=[RobustnessPoint(kind, rate, 0.6 - shift - rate * (1 + k))
                    for k, kind in enumerate(("substitution", "deletion", "insertion")) for rate in (0.0, 0.1, 0.3)],
        mistakes=mistakes, predictions=list(predictions))


@pytest.fixture
def panel(qtbot):
    widget = EvaluatePanel(get_registry())
    qtbot.addWidget(widget)
    widget.resize(1280, 800)
    yield widget
    widget.shutdown()


def test_a_cell_click_lists_exactly_its_examples_surest_first(panel, qtbot):
    panel.add_files(["a.safetensors"])
    panel.show_evaluation("a.safetensors", evaluation("a"))
    assert panel.confusion.cell_texts() == ["1", "0", "3", "1", "2", "0", "0", "1", "2"]
    with qtbot.waitSignal(panel.confusion.cell_clicked) as clicked:
        panel.confusion.select(0, 2)  # true neg, predicted pos
    assert clicked.args == [0, 2]
    assert example_indices(panel.cell_examples) == [5, 7, 2]  # by confidence 0.85, 0.7, 0.55
    assert [panel.cell_examples.item(r, 2).text() for r in range(3)] == ["neg"] * 3
    assert [panel.cell_examples.item(r, 3).text() for r in range(3)] == ["pos"] * 3
    assert "true neg \u2192 predicted pos: 3 examples" in panel.cell_title.text()
    panel.confusion.select(2, 1)
    assert example_indices(panel.cell_examples) == [6]
    panel.confusion.select(1, 2)
    assert example_indices(panel.cell_examples) == []


def test_one_length_curve_per_model_and_the_extended_one_is_named(panel):
    panel.add_files(["a.safetensors", "b.safetensors", "c.onnx"])
    panel.show_evaluation("b.safetensors", evaluation("b", extended=True, shift=0.1))
    panel.show_evaluation("a.safetensors", evaluation("a", learned_stop=256))
    panel.show_evaluation("c.onnx", evaluation("c", shift=0.2))
    assert panel.tabs.tabText(0) == TABS[0] == "Length" and panel.tabs.currentIndex() == 0
    plot = panel.length_plot
    assert [line.name for line in plot.lines] == ["a", "b", "c"]  # in the order of the files
    assert len(plot.curves) == 3
    legend = plot.legend_texts()
    assert legend[1] == "b (positions extended: hollow)"
    assert legend[0] == "a \u2014 none from 256 tokens"
    assert plot.lines[1].marked == [False, True, True, True]
    xs, ys = plot.curves[0].getData()
    assert ys[0] == pytest.approx(80.0) and all(y != y for y in ys[2:])  # percent; a gap from 256 tokens on
    assert plot.plot_item.getAxis("left").labelText == "accuracy (%)"
    assert "Extend positions" in panel.length_note.text() and "b" in panel.length_note.text()
    assert panel.headline.rowCount() == 3
    assert [panel.headline.item(r, 4).text() for r in range(3)] == ["60.0%", "50.0%", "40.0%"]
    assert [panel.model_box.itemText(i) for i in range(3)] == ["a", "b", "c"]
    assert len(panel.robustness_plots.plots) == 3
    assert all(len(p.curves) == 3 for p in panel.robustness_plots.plots.values())
    assert "(ECE 0.220)" in panel.reliability_plot.legend_texts()[1]
    assert panel.length_plot.legend.isVisible()


def test_an_empty_plot_shows_no_legend_box(panel):
    assert not panel.length_plot.legend.isVisible()


def test_files_of_the_same_name_are_told_apart_by_their_folder(panel):
    panel.add_files(["/runs/sdpa/checkpoint.safetensors", "/runs/local/checkpoint.safetensors", "/x/other.onnx"])
    assert [panel.file_list.item(i).text() for i in range(3)] == [
        "sdpa/checkpoint.safetensors", "local/checkpoint.safetensors", "other.onnx"]
    for path in ("/runs/sdpa/checkpoint.safetensors", "/runs/local/checkpoint.safetensors"):
        panel.show_evaluation(path, evaluation("checkpoint.safetensors"))
    assert [line.name for line in panel.length_plot.lines] == ["sdpa/checkpoint.safetensors",
                                                               "local/checkpoint.safetensors"]
    assert panel.headline.item(1, 0).text() == "local/checkpoint.safetensors"
    assert panel.evaluations["/runs/sdpa/checkpoint.safetensors"].model == "checkpoint.safetensors"


def test_a_language_model_has_no_confusion_matrix_and_plots_bits_per_character(panel):
    lm = Evaluation(model="lm", task="charlm", split="val", examples=20, labels=[], accuracy=0.4, macro_f1=None,
                    by_length=[LengthBucket("1-64", 1, 64, 20, None, 2.5)],
                    length_generalisation=[LengthPoint(1, 64, None, 2.4), LengthPoint(2, 128, None, 2.9)])
    panel.add_files(["lm.safetensors"])
    panel.show_evaluation("lm.safetensors", lm)
    assert panel.confusion.cell_texts() == [] and "No classes" in panel.cell_title.text()
    for plot in (panel.by_length_plot, panel.length_plot):
        assert plot.plot_item.getAxis("left").labelText == "bits per character"
    assert panel.length_plot.lines[0].ys == [2.4, 2.9] and panel.headline.item(0, 5).text() == "\u2014"


def test_a_task_that_cannot_lengthen_says_so_instead_of_a_curve(panel):
    short = evaluation("a")
    short.length_generalisation = []
    panel.add_files(["a.safetensors"])
    panel.show_evaluation("a.safetensors", short)
    assert not panel.length_plot.lines
    assert panel.length_note.text().startswith("No length-generalisation curve: textclass cannot make inputs")


def test_removing_a_file_removes_its_results(panel):
    panel.add_files(["/r/a/checkpoint.safetensors", "/r/b/checkpoint.safetensors"])
    for path in ("/r/a/checkpoint.safetensors", "/r/b/checkpoint.safetensors"):
        panel.show_evaluation(path, evaluation("checkpoint.safetensors"))
    panel.file_list.item(0).setSelected(True)
    panel._remove_selected()
    assert list(panel.evaluations) == ["/r/b/checkpoint.safetensors"]
    assert panel.file_list.item(0).text() == "checkpoint.safetensors"  # no longer needs its folder
    assert [line.name for line in panel.length_plot.lines] == ["checkpoint.safetensors"]
    assert panel.headline.rowCount() == 1 and panel.model_box.count() == 1
    panel.file_list.item(0).setSelected(True)
    panel._remove_selected()
    assert not panel.length_plot.lines and panel.headline.rowCount() == 0 and panel.confusion.cell_texts() == []


def test_the_model_box_switches_the_confusion_matrix_and_the_mistakes(panel):
    other = [(t, t, 0.9) for t, _p, _c in PREDICTIONS]  # a model that is always right
    panel.add_files(["a.safetensors", "b.safetensors"])
    panel.show_evaluation("a.safetensors", evaluation("a"))
    panel.show_evaluation("b.safetensors", evaluation("b", predictions=other))
    panel.model_box.setCurrentIndex(1)
    assert panel.confusion.cell_texts() == ["4", "0", "0", "0", "3", "0", "0", "0", "3"]
    assert panel.mistakes.rowCount() == 0
    panel.model_box.setCurrentIndex(0)
    assert example_indices(panel.mistakes) == [5, 7, 4, 2, 6]


def test_the_drift_tab_shows_each_verdict(panel):
    from effstudio.gui.views.drift_view import ratio

    report = DriftReport(
        signals=[DriftSignal("length_psi", 0.45, 0.2, True), DriftSignal("token_js", 0.01, 0.05, False),
                 DriftSignal("unknown_rate", 0.0, 0.01, False), DriftSignal("mmd_p_value", 0.002, 0.01, True),
                 DriftSignal("predicted_class_psi", 0.1, 0.2, False)],
        mmd=0.3, p_value=0.002, drift=True, reference_xy=[(0.0, 0.1), (0.2, -0.1)], current_xy=[(1.0, 1.2)])
    panel.drift.show_report(report)
    results = panel.drift.results
    assert results.verdicts() == {"length_psi": "drift", "token_js": "no drift", "unknown_rate": "no drift",
                                  "mmd_p_value": "drift", "predicted_class_psi": "no drift"}
    assert results.table.item(3, 0).text() == "MMD p-value" and results.table.item(3, 2).text() == "< 0.01"
    assert results.verdict.text().count("Drift") == 1 and "2 of 5 signals" in results.verdict.text()
    # a bar past the threshold line for each signal that says drift, a p-value below its threshold included
    assert [ratio(s) > 1 for s in results.bars.signals] == [True, False, False, True, False]
    assert ratio(report.signals[3]) == pytest.approx(5.0) and ratio(report.signals[0]) == pytest.approx(2.25)
    assert len(results.projection.reference.data) == 2 and len(results.projection.current.data) == 1


def test_running_without_files_or_inputs_is_refused(panel):
    assert not panel.start() and "Add a checkpoint" in panel.run_group.problem.text()
    assert not panel.drift.start() and "checkpoint and the current" in panel.drift.status_label.text()


def test_the_job_s_events_fill_the_section_and_bad_input_is_one_line(panel, qtbot, monkeypatch):
    from effstudio.evaluate.events import Evaluated, EvaluateError, EvaluateProgress
    from effstudio.gui.panels import evaluate_panel

    def fake_job(files, **options):
        assert options["factors"] == (1, 2, 4) and options["task"] is None and options["split"] == "test"

        def job(control):
            for done in range(3):
                yield EvaluateProgress(str(files[0]), "predicting", done, 3)
            yield Evaluated(str(files[0]), evaluation("a"), ("2 examples have labels the model never saw",))
        return job

    monkeypatch.setattr(evaluate_panel, "evaluate_job", fake_job)
    panel.add_files(["a.safetensors"])
    panel.form.set_values({"longest": 4, "split": "test"})
    assert panel.start() and not panel.run_button.isEnabled()
    qtbot.waitUntil(lambda: panel.job_of() is None, timeout=10_000)
    assert list(panel.evaluations) == ["a.safetensors"] and panel.progress.text() == "finished"
    assert "1 note" in panel.status_label.text() and "labels the model never saw" in panel.status_label.toolTip()

    def failing_job(files, **options):
        def job(control):
            raise EvaluateError("b.onnx: no effstudio metadata; name the task")
            yield
        return job

    monkeypatch.setattr(evaluate_panel, "evaluate_job", failing_job)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.job_of() is None, timeout=10_000)
    assert panel.run_group.problem.text() == "b.onnx: no effstudio metadata; name the task"


def test_an_example_is_shown_as_text_or_image_with_its_attention_map(qtbot):
    import numpy as np

    from effstudio.gui.views.example_view import NO_ATTENTION, ExampleView

    view = ExampleView()
    qtbot.addWidget(view)
    maps = np.full((2, 2, 4, 4), 0.25, dtype=np.float32)  # (layers, heads, N, N)
    view.show_example(3, "Example 3", "[MAX 1 2 ]", None, maps, ("[MAX", "1", "2", "]"))
    assert view.input.currentWidget() is view.text and view.text.toPlainText() == "[MAX 1 2 ]"
    assert view.attention.current_map().shape == (4, 4)
    assert view.attention.step_label.text() == "example 3 \u00b7 4\u00d74"
    view.show_example(5, "Example 5", "[MAX 1 2 ]", None, maps[0, 0], ("[MAX", "1", "2", "]"))
    assert view.attention.current_map().shape == (4, 4) and view.attention.choice.layer_box.isHidden()
    assert view.attention.step_label.text() == "last layer, mean of heads \u00b7 example 5 \u00b7 4\u00d74"
    view.show_example(4, "Example 4", "", np.zeros((3, 8, 8), dtype=np.float32), None, ())
    assert view.input.currentWidget() is view.picture and view.image.image.shape == (8, 8, 3)
    assert view.attention.current_map() is None and view.empty_attention.text() == NO_ATTENTION

TIMEOUT = 120_000
LISTOPS = {"model.d_model": 32, "model.layers": 1, "model.heads": 2, "model.dropout": 0.0,
           "task.train_size": 128, "task.val_size": 48, "task.test_size": 16, "task.min_length": 8,
           "task.max_length": 32, "train.steps": 8, "train.batch_size": 16, "train.eval_every": 8,
           "train.attention_every": 0, "train.warmup_steps": 1, "train.device": "cpu"}


@pytest.fixture(scope="module")
def listops_checkpoint(tmp_path_factory):
    """A one-layer transformer trained for a few steps on short ListOps expressions (learned positions)."""
    import torch

    from effstudio.engine.events import DoneEvent
    from effstudio.engine.run_config import RunConfig
    from effstudio.engine.trainer import train

    torch.manual_seed(0)
    config = RunConfig.create("transformer", "listops", LISTOPS)
    done = [e for e in train(config, out_dir=tmp_path_factory.mktemp("listops")) if isinstance(e, DoneEvent)][-1]
    assert done.status == "finished" and done.checkpoint
    return done.checkpoint


def test_an_evaluation_runs_from_the_panel_end_to_end(panel, qtbot, listops_checkpoint):
    from PySide6.QtCore import QCoreApplication

    panel.add_files([listops_checkpoint])
    panel.form.set_values({"longest": 2, "robustness": False})
    assert panel.start()
    qtbot.waitUntil(lambda: not panel.job_running() and panel.job_of() is None, timeout=TIMEOUT)
    assert panel.error is None, panel.error
    evaluation = panel.evaluations[str(listops_checkpoint)]
    assert evaluation.task == "listops" and evaluation.examples == 48
    assert sum(map(sum, evaluation.confusion)) == 48 and len(evaluation.predictions) == 48
    assert panel.headline.rowCount() == 1
    assert panel.headline.item(0, 4).text() == f"{100 * evaluation.accuracy:.1f}%"
    line = panel.length_plot.lines[0]
    assert len(panel.length_plot.curves) == 1 and [p.factor for p in evaluation.length_generalisation] == [1, 2]
    assert len(line.xs) == 2 and panel.progress.text() == "finished"
    # the fullest cell lists its examples, which are then decoded into text
    true, predicted = max(((t, p) for t in range(len(evaluation.labels)) for p in range(len(evaluation.labels))),
                          key=lambda cell: evaluation.confusion[cell[0]][cell[1]])
    panel.tabs.setCurrentIndex(TABS.index("Classes"))
    panel.confusion.select(true, predicted)
    assert len(example_indices(panel.cell_examples)) == evaluation.confusion[true][predicted]
    qtbot.waitUntil(lambda: bool(panel.cell_examples.item(0, 4).text()), timeout=TIMEOUT)
    panel.cell_examples.selectRow(0)
    QCoreApplication.processEvents()
    qtbot.waitUntil(lambda: panel.cell_example.index == example_indices(panel.cell_examples)[0], timeout=TIMEOUT)
    assert panel.cell_example.text.toPlainText()
    assert panel.cell_example.attention.current_map() is not None


def test_a_drift_check_runs_from_the_tab_end_to_end(panel, qtbot, listops_checkpoint, tmp_path):
    import random

    rng = random.Random(0)
    rows = ["text"] + [f"[MAX {' '.join(rng.choice('0123456789') for _ in range(28))} ]" for _ in range(40)]
    current = tmp_path / "current.csv"
    current.write_text("\n".join(rows) + "\n", encoding="utf-8")
    panel.add_files([listops_checkpoint])  # the first model is offered to the Drift tab
    tab = panel.drift
    assert tab.form.raw_values()["checkpoint"] == str(listops_checkpoint)
    tab.form.set_values({"reference": "val", "current": str(current)})
    assert tab.start()
    qtbot.waitUntil(lambda: tab.job_of() is None, timeout=TIMEOUT)
    assert tab.error is None, tab.error
    report = tab.report
    verdicts = tab.results.verdicts()
    assert list(verdicts) == [s.name for s in report.signals] and "length_psi" in verdicts
    assert all(verdicts[s.name] == ("drift" if s.drift else "no drift") for s in report.signals)
    assert verdicts["length_psi"] == "drift"  # 30 tokens each against the 8 to 32 of the reference
    assert len(tab.results.projection.current.data) == 40
