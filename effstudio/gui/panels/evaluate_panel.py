"""Evaluate section: where models fail, how they hold up on longer and perturbed inputs, whether their
confidence can be trusted, and (the Drift tab) whether new data still looks like the training data.

Choose checkpoints or ``.onnx`` files (several at once, compared side by side), the split and what to
measure; the core's :func:`~effstudio.evaluate.run.evaluate` runs as a job and sends one
:class:`~effstudio.evaluate.results.Evaluation` per file. The first tab is the length-generalisation
plot (the question an efficient attention kind answers) with the headline figures under it; the
others show one model at a time (the Model box) or all of them: the confusion matrix (a cell lists
its examples; the selected one is shown with its attention map), accuracy by length, the reliability
diagram, robustness and the most confident mistakes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from effstudio.config import ConfigError, param
from effstudio.engine.events import LogEvent
from effstudio.evaluate.events import Evaluated, EvaluateProgress
from effstudio.evaluate.results import Evaluation, ExampleRow
from effstudio.evaluate.run import ExampleDetail
from effstudio.gui.forms.config_form import ConfigForm
from effstudio.gui.icons import action_icon
from effstudio.gui.job import JobHost
from effstudio.gui.panels.base import Panel, description_label, side_column
from effstudio.gui.panels.drift_tab import DriftTab
from effstudio.gui.panels.evaluate_jobs import (
    ExampleFetched,
    bad_input_line,
    evaluate_job,
    examples_job,
)
from effstudio.gui.panels.run_controls import RunGroup
from effstudio.gui.plots.evaluation_plots import (
    ByLengthPlot,
    LengthGeneralisationPlot,
    ReliabilityPlot,
    RobustnessPlots,
    stops_at,
)
from effstudio.gui.views.confusion_view import ConfusionView
from effstudio.gui.views.evaluation_tables import (
    example_indices,
    examples_table,
    fit_rows,
    headline_table,
    one_line,
    per_class_table,
    selected_index,
    show_examples,
    show_headline,
    show_per_class,
)
from effstudio.gui.views.example_view import ExampleView
from effstudio.registry import Registry

FETCHED_AT_ONCE = 40  # examples of a cell decoded in one go (the list shows them all, the rest without text)
PATH_ROLE = Qt.ItemDataRole.UserRole  # a listed file's full path (the list shows its name)
PER_MODEL_TABS = ("Classes", "Mistakes")  # the tabs that show the model the Model box names
TABS = ("Length", "Classes", "By length", "Calibration", "Robustness", "Mistakes", "Drift")


@dataclass(frozen=True)
class EvaluateOptions:
    """What an evaluation measures (the arguments of ``effstudio evaluate``)."""

    task: str = param("", help="the task to evaluate on; empty: each checkpoint's own (an .onnx file without "
                               "effstudio metadata needs one)")
    split: str = param("val", path="file", help="val, test, or a data file in the task's format")
    longest: int = param(8, choices=(1, 2, 4, 8), label="Lengths up to",
                         help="evaluate at 1x, 2x, ... up to this many times the training maximum length")
    extend_positions: bool = param(False, label="Extend positions",
                                   help="grow a learned position table shorter than the asked length by copying "
                                        "its rows (the plot marks the models that were extended); unticked, such "
                                        "a model is evaluated only as far as its table reaches")
    robustness: bool = param(True, help="accuracy under random substitution, deletion and insertion of tokens "
                                        "(noise, occlusion and rotation for images), 0 to 30%")
    calibrate: bool = param(True, help="fit a softmax temperature on the validation split (`effstudio evaluate "
                                       "--store-temperature` writes it into the checkpoint's header)")

    def factors(self) -> tuple[int, ...]:
        return tuple(2**k for k in range(self.longest.bit_length()))


def display_names(names: dict[str, str]) -> dict[str, str]:
    """What the section calls each file (path -> its name): the name, with its folder in front where
    names repeat (every run's checkpoint is called checkpoint.safetensors)."""
    counts = Counter(names.values())
    return {path: name if counts[name] == 1 else f"{Path(path).parent.name}/{name}" for path, name in names.items()}


class EvaluatePanel(JobHost, Panel):
    """Files and options on the left, the results in tabs on the right; ``evaluations`` by file path."""

    message = Signal(str)

    def __init__(self, registry: Registry, parent: QWidget | None = None):
        super().__init__("Evaluate", "Where a model fails, whether it holds up on longer inputs than it was "
                         "trained on, whether its confidence can be trusted and how noise hurts it; several "
                         "models side by side. Drift: does new data still look like the training data?",
                         scroll=False, parent=parent)
        self.registry = registry
        self.init_jobs()
        self.evaluations: dict[str, Evaluation] = {}  # by file path, in the order of the files
        self.details: dict[tuple[str, int], ExampleDetail] = {}  # by (file, index)
        self.error: str | None = None
        self.warnings: list[str] = []  # what the last evaluation warned of, one line each
        self._files_done = 0
        columns = QHBoxLayout()
        columns.setSpacing(14)
        columns.addWidget(self._make_controls())
        columns.addWidget(self._make_results(), 1)
        self.body.addLayout(columns, 1)
        self.jobs_changed()

    # ---------------------------------------------------------------- controls
    def _make_controls(self) -> QWidget:
        scroll, layout = side_column(self, 300)
        column = scroll.widget()
        models = QGroupBox("Models", column)
        models_layout = QVBoxLayout(models)
        self.file_list = QListWidget(models)
        self.file_list.setObjectName("evaluateFiles")
        self.file_list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.file_list.setMinimumHeight(90)
        self.file_list.setToolTip("Checkpoints (.safetensors) and ONNX files of the same task, evaluated side by side")
        add = QPushButton(action_icon("open"), "Add\u2026", models)
        add.clicked.connect(self._add_files_dialog)
        self.remove_button = QPushButton("Remove", models)
        self.remove_button.clicked.connect(self._remove_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        models_layout.addWidget(self.file_list)
        models_layout.addLayout(buttons)
        layout.addWidget(models)

        options = QGroupBox("Data and measures", column)
        options_layout = QVBoxLayout(options)
        self.form = ConfigForm(EvaluateOptions, suggest=("task",), parent=options)
        self.form.suggest_values("task", self.registry.names("tasks"))
        self.form.editor("task").lineEdit().setPlaceholderText("from the checkpoint")
        options_layout.addWidget(self.form)
        layout.addWidget(options)

        self.run_group = RunGroup("Evaluate every model of the list", "evaluateProblem", column)
        run = self.run_group
        self.run_button, self.stop_button, self.progress = run.run_button, run.stop_button, run.progress
        self.status_label = run.status_label
        self.run_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop_jobs)
        layout.addWidget(run)
        layout.addStretch(1)
        return scroll

    # ----------------------------------------------------------------- results
    def _make_results(self) -> QWidget:
        self.tabs = QTabWidget(self)
        self.tabs.setObjectName("evaluateTabs")
        pages = (self._length_tab(), self._classes_tab(), self._by_length_tab(), self._calibration_tab(),
                 self._robustness_tab(), self._mistakes_tab())
        for page, name in zip(pages, TABS, strict=False):
            self.tabs.addTab(page, name)
        self.drift = DriftTab(self)
        self.tabs.addTab(self.drift, TABS[-1])
        # the model the per-model tabs show, right of the tab names while one of them is open
        self.chooser = QWidget(self.tabs)
        chooser = QHBoxLayout(self.chooser)
        chooser.setContentsMargins(0, 0, 0, 4)
        chooser.addWidget(QLabel("Model", self.chooser))
        self.model_box = QComboBox(self.chooser)
        self.model_box.setObjectName("evaluateModel")
        self.model_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.model_box.setToolTip("The model the Classes and Mistakes tabs show")
        self.model_box.currentIndexChanged.connect(lambda _i: self._show_model())
        chooser.addWidget(self.model_box)
        self.tabs.setCornerWidget(self.chooser)
        self.tabs.currentChanged.connect(lambda _i: self.chooser.setVisible(
            self.tabs.tabText(self.tabs.currentIndex()) in PER_MODEL_TABS))
        self.chooser.hide()
        return self.tabs

    def _page(self, *widgets: QWidget, note: QLabel | None = None) -> QWidget:
        page = QWidget(self)
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 6, 0, 0)
        if note is not None:
            layout.addWidget(note)
        for widget in widgets:
            layout.addWidget(widget, 1)
        return page

    def _length_tab(self) -> QWidget:
        self.length_plot = LengthGeneralisationPlot(self)
        self.length_note = description_label(self)
        self.headline = headline_table(self)
        page = self._page(self.length_plot)
        page.layout().addWidget(self.length_note)
        page.layout().addWidget(self.headline)
        return page

    def _classes_tab(self) -> QWidget:
        self.confusion = ConfusionView(self)
        self.confusion.cell_clicked.connect(self.list_cell)
        self.per_class = per_class_table(self)
        self.cell_title = description_label(self)
        self.cell_title.setText("Click a cell of the confusion matrix to list its examples.")
        self.cell_examples = examples_table("evaluateCellExamples", self)
        self.cell_examples.itemSelectionChanged.connect(lambda: self._example_picked(self.cell_examples,
                                                                                    self.cell_example))
        self.cell_example = ExampleView(self)
        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.confusion, 1)
        left_layout.addWidget(self.per_class)
        right = QWidget(self)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.cell_title)
        right_layout.addWidget(self.cell_examples, 1)
        right_layout.addWidget(self.cell_example, 2)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([520, 420])  # in proportion: the matrix gets a little more than the examples
        return self._page(split)

    def _by_length_tab(self) -> QWidget:
        self.by_length_plot = ByLengthPlot(self)
        return self._page(self.by_length_plot)

    def _calibration_tab(self) -> QWidget:
        self.reliability_plot = ReliabilityPlot(self)
        note = description_label(self)
        note.setText("Confidence against accuracy in 15 bins: on the dashed diagonal a model is exactly as sure "
                     "as it is right; below it, overconfident. ECE is the examples-weighted gap.")
        return self._page(self.reliability_plot, note=note)

    def _robustness_tab(self) -> QWidget:
        self.robustness_plots = RobustnessPlots(self)
        return self._page(self.robustness_plots)

    def _mistakes_tab(self) -> QWidget:
        self.mistakes = examples_table("evaluateMistakes", self)
        self.mistake_example = ExampleView(self)
        self.mistakes.itemSelectionChanged.connect(lambda: self._example_picked(self.mistakes, self.mistake_example))
        split = QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.mistakes)
        split.addWidget(self.mistake_example)
        split.setSizes([260, 440])  # in proportion: the example and its attention map get the room
        return self._page(split)

    # ------------------------------------------------------------------- files
    @property
    def files(self) -> list[Path]:
        return [Path(self.file_list.item(i).data(PATH_ROLE)) for i in range(self.file_list.count())]

    def add_files(self, paths: list[str | Path]) -> None:
        """Add checkpoints or .onnx files to the list (once each); the first also goes to the Drift tab."""
        known = {str(p) for p in self.files}
        for path in paths:
            if str(path) not in known:
                item = QListWidgetItem()
                item.setData(PATH_ROLE, str(path))
                item.setToolTip(str(path))
                self.file_list.addItem(item)
                known.add(str(path))
        names = display_names({str(p): p.name for p in self.files})
        for row, path in enumerate(self.files):
            self.file_list.item(row).setText(names[str(path)])
        if self.files:
            self.drift.offer_checkpoint(self.files[0])
        self.jobs_changed()

    def _add_files_dialog(self) -> None:
        start = str(self.files[-1].parent) if self.files else ""
        names, _ = QFileDialog.getOpenFileNames(self, "Add models to evaluate", start,
                                                "Models (*.safetensors *.onnx)")
        self.add_files(names)

    def _remove_selected(self) -> None:
        for item in self.file_list.selectedItems():
            self.evaluations.pop(item.data(PATH_ROLE), None)
            self.file_list.takeItem(self.file_list.row(item))
        self.add_files([])  # the names left may no longer need their folder
        self._redraw()

    # -------------------------------------------------------------------- jobs
    def start(self) -> bool:
        """Evaluate every listed file with the form's options; False (and why, in red) when refused."""
        if self.job_running():
            return False
        if not self.files:
            self.run_group.show_problem("Add a checkpoint or an .onnx file first.")
            return False
        try:
            options = self.form.config()
        except ConfigError as err:
            self.run_group.show_problem(str(err))
            return False
        self.run_group.clear_problem()
        self.error = None
        self.cancel_jobs()  # an example look-up of the old results is no longer wanted
        self.evaluations.clear()  # the results shown are those of the options shown
        self.details.clear()
        self._redraw()
        self._files_done = 0
        self.warnings = []
        self.progress.setRange(0, 0)
        self.progress.setFormat("starting\u2026")
        self.status_label.setText(f"Evaluating {len(self.files)} model{'s' if len(self.files) != 1 else ''}\u2026")
        self.start_job(evaluate_job(self.files, task=options.task.strip() or None, split=options.split.strip(),
                                    factors=options.factors(), extend_positions=options.extend_positions,
                                    robustness=options.robustness, calibrate=options.calibrate),
                       on_event=self._on_event, on_finished=self._on_finished)
        return True

    def _on_event(self, event: object) -> None:
        if isinstance(event, EvaluateProgress):
            place = next((i for i, p in enumerate(self.files) if str(p) == str(event.file)), self._files_done)
            self.progress.setRange(0, max(event.total, 1))
            self.progress.setValue(event.done)
            self.progress.setFormat(f"{place + 1}/{len(self.files)} {Path(event.file).name}: {event.stage}")
        elif isinstance(event, LogEvent):  # what the evaluation could not do (a length that cannot run...)
            self.warnings.append(event.message)
        elif isinstance(event, Evaluated):
            self._files_done += 1
            self.warnings += [warning for warning in event.warnings if warning not in self.warnings]  # sent as logs too
            self.show_evaluation(str(event.file), event.evaluation)

    def _on_finished(self, status: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if status == "finished" else 0)
        self.progress.setFormat(status)
        count = len(self.evaluations)
        if status == "finished":
            notes = f" {len(self.warnings)} note{'s' if len(self.warnings) != 1 else ''} (hover)." \
                if self.warnings else ""
            self.status_label.setText(f"Evaluated {count} model{'s' if count != 1 else ''}.{notes}")
            self.status_label.setToolTip("\n".join(self.warnings))
            self.message.emit(f"evaluation finished: {count} model(s)")
        elif status == "stopped":
            self.status_label.setText(f"Stopped after {self._files_done} model(s).")

    def show_job_error(self, message: str) -> None:
        self.error = bad_input_line(message)
        self.run_group.show_problem(self.error)
        self.status_label.setText("The evaluation failed.")

    def jobs_changed(self) -> None:
        running = self.job_running()
        self.run_button.setEnabled(not running and bool(self.files))
        self.stop_button.setEnabled(running)
        self.remove_button.setEnabled(not running and self.file_list.count() > 0)

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        ended = self.drift.shutdown(timeout_ms)
        return super().shutdown(timeout_ms) and ended

    # ----------------------------------------------------------------- showing
    def show_evaluation(self, path: str, evaluation: Evaluation) -> None:
        """Add (or replace) a model's results and redraw what compares the models."""
        self.evaluations[path] = evaluation
        self._redraw(chosen=path)

    def _redraw(self, chosen: str | None = None) -> None:
        """Draw the results of ``evaluations``; the Model box keeps its model, else shows ``chosen``."""
        order = {str(p): i for i, p in enumerate(self.files)}
        self.evaluations = dict(sorted(self.evaluations.items(), key=lambda kv: order.get(kv[0], len(order))))
        # named as the section names them: a run's checkpoint is always checkpoint.safetensors
        names = display_names({key: model.model for key, model in self.evaluations.items()})
        models = [replace(model, model=names[key]) for key, model in self.evaluations.items()]
        self.length_plot.show_models(models)
        self.length_note.setText(self._length_note(models))
        show_headline(self.headline, models, list(self.evaluations))
        fit_rows(self.headline, 240)
        self.by_length_plot.show_models(models)
        self.reliability_plot.show_models(models)
        self.robustness_plots.show_models(models)
        shown = self.model_box.currentData()
        self.model_box.blockSignals(True)
        self.model_box.clear()
        for key, model in zip(self.evaluations, models, strict=True):
            self.model_box.addItem(model.model, key)
        self.model_box.setCurrentIndex(max(self.model_box.findData(shown if shown in self.evaluations else chosen), 0))
        self.model_box.blockSignals(False)
        self._show_model()

    def _length_note(self, models: list[Evaluation]) -> str:
        """Which models were extended, which stop short (a learned position table ends there, or the model
        cannot run that long), or why there is no curve at all."""
        if not models:
            return ""
        if not any(m.length_generalisation for m in models):
            tasks = ", ".join(sorted({m.task for m in models}))
            return (f"No length-generalisation curve: {tasks} cannot make inputs longer than its data has. "
                    "Accuracy by the length of the inputs it has is under By length.")
        extended = [m.model for m in models if any(p.extended for p in m.length_generalisation)]
        short = [(m.model, stop) for m in models
                 if (stop := stops_at(m.length_generalisation, "accuracy" if m.accuracy is not None else "loss"))]
        parts = []
        if extended:
            parts.append(f"Position tables extended by copying rows: {', '.join(extended)} (hollow markers).")
        if short:
            names = ", ".join(f"{name} (from {stop:,} tokens)" for name, stop in short)
            parts.append(f"No figures for {names}: a learned position table ends there (tick \u201cExtend "
                         "positions\u201d and run again) or the model cannot run that long (the notes under Run "
                         "say which).")
        return " ".join(parts) or "1\u00d7 is the longest input each model was trained on."

    @property
    def current(self) -> tuple[str, Evaluation] | None:
        """The file and results the Model box names."""
        key = self.model_box.currentData()
        return (key, self.evaluations[key]) if key in self.evaluations else None

    def _show_model(self) -> None:
        current = self.current
        if current is None:  # nothing evaluated (yet)
            self.confusion.set_matrix([], [])
            for table in (self.per_class, self.cell_examples, self.mistakes):
                table.setRowCount(0)
            self.cell_title.setText("")
            self.cell_example.clear()
            self.mistake_example.clear()
            return
        _path, evaluation = current
        self.confusion.set_matrix(evaluation.confusion, evaluation.labels)
        show_per_class(self.per_class, evaluation.per_class)
        fit_rows(self.per_class, 220)
        self.cell_examples.setRowCount(0)
        self.cell_title.setText("Click a cell of the confusion matrix to list its examples." if evaluation.labels else
                                f"No classes: {evaluation.task} is language modelling, measured per token (see "
                                "By length).")
        self.cell_example.clear()
        show_examples(self.mistakes, evaluation.mistakes)
        self.mistake_example.clear()

    # ---------------------------------------------------------------- examples
    def cell_rows(self, true: int, predicted: int) -> list[ExampleRow]:
        """The current model's examples of class ``true`` predicted as ``predicted``, surest first; their
        text once decoded."""
        current = self.current
        if current is None:
            return []
        path, evaluation = current
        labels = evaluation.labels
        rows = [ExampleRow(index, self._text_of(path, index), labels[t], labels[p], confidence)
                for index, (t, p, confidence) in enumerate(evaluation.predictions) if (t, p) == (true, predicted)]
        return sorted(rows, key=lambda row: -row.confidence)

    def _text_of(self, path: str, index: int) -> str:
        detail = self.details.get((path, index))
        return "" if detail is None else detail.text

    def list_cell(self, true: int, predicted: int) -> None:
        """List a confusion cell's examples, then decode the first of them (texts and attention maps)."""
        current = self.current
        if current is None:
            return
        path, evaluation = current
        rows = self.cell_rows(true, predicted)
        self.cell_title.setText(self.confusion.describe(true, predicted) + (", surest first" if len(rows) > 1 else ""))
        show_examples(self.cell_examples, rows)
        self.cell_example.clear()
        wanted = [row.index for row in rows[:FETCHED_AT_ONCE] if (path, row.index) not in self.details]
        if wanted and Path(path).is_file():
            self.start_job(examples_job(Path(path), evaluation, wanted), "examples", on_event=self._on_example,
                           on_failed=self._examples_failed)

    def _on_example(self, event: object) -> None:
        if not isinstance(event, ExampleFetched):
            return
        self.details[(event.file, event.index)] = event.detail
        for table, view in ((self.cell_examples, self.cell_example), (self.mistakes, self.mistake_example)):
            indices = example_indices(table)
            if event.index in indices and self.current is not None and self.current[0] == event.file:
                table.item(indices.index(event.index), 4).setText(one_line(event.detail.text))
                if selected_index(table) == event.index:
                    self._show_detail(view, event.detail)

    def _examples_failed(self, message: str) -> None:
        self.cell_title.setText(f"The examples could not be decoded: {message}")

    def _example_picked(self, table: QTableWidget, view: ExampleView) -> None:
        index = selected_index(table)
        current = self.current
        if index is None or current is None:
            return
        path, evaluation = current
        detail = self.details.get((path, index))
        if detail is not None:
            self._show_detail(view, detail)
        elif Path(path).is_file():
            view.caption.setText(f"Decoding example {index}\u2026")
            self.start_job(examples_job(Path(path), evaluation, [index]), "example", on_event=self._on_example,
                           on_failed=self._examples_failed)

    @staticmethod
    def _show_detail(view: ExampleView, detail: ExampleDetail) -> None:
        caption = (f"Example {detail.index}: true {detail.label}, predicted {detail.predicted} "
                   f"({detail.confidence:.0%} sure)")
        view.show_example(detail.index, caption, detail.text, detail.image, detail.attention, tuple(detail.tokens))
