"""Compress section: prune, quantize, distill and export a checkpoint, then compare the variants.

Every operation is a core generator (effstudio.compress) run as a job of
:class:`~effstudio.gui.job.JobHost`. Its settings are those of the run
config's step (``PruneStep``, ``QuantizeStep``, ``DistillStep``, ``ExportStep``),
drawn by :class:`~effstudio.gui.forms.config_form.ConfigForm`; the panel only
turns them into a job, and events into plots and rows (its views are in
:mod:`effstudio.gui.panels.compress_views`). A finished job's file joins the
variants list with the source checkpoint, and is recorded as a file of the
source's run exactly as the CLI records it. Every variant is then measured by
the same ``compare`` job as ``effstudio compare``: all of them timed together,
alternately, at one stated length (the longest validation example unless the
user picks one), with the spread and a verdict on whether the machine was quiet
enough; accuracy and memory already measured on an unchanged file are reused
(also by the next job, which does not evaluate its source again). Long steps
show their progress and the time left. Accuracy is a percentage, as in the
rest of the window. The comparison table exports as CSV or Markdown; the
scatter plots accuracy against batch-1 latency with the Pareto front drawn.

A run config's ``[[compress]]`` steps run here too, after the window trains
it (:meth:`CompressPanel.start_steps`): one job for the whole chain, shown
step by step, its outputs measured into the table like results made by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from effstudio.compress.compare import Measurements, compare_job, rows_to_csv, rows_to_markdown
from effstudio.compress.distill import DistillSettings, distill_job
from effstudio.compress.events import (
    CompareRowEvent,
    CompareVerdictEvent,
    DistillEvalEvent,
    DistillStepEvent,
    ProgressEvent,
    PruneStepEvent,
    ResultEvent,
)
from effstudio.compress.export import export_job
from effstudio.compress.prune import PruneSettings, prune_job
from effstudio.compress.quantize import quantize_job
from effstudio.compress.steps import CompressDoneEvent, CompressStepEvent
from effstudio.config import ConfigError, param
from effstudio.engine.events import Event, LogEvent
from effstudio.engine.loading import config_of_file
from effstudio.engine.run_plan import CompressStep, DistillStep, ExportStep, PruneStep, QuantizeStep
from effstudio.gui import theme
from effstudio.gui.forms.config_form import ConfigForm
from effstudio.gui.icons import action_icon, icon
from effstudio.gui.job import Job, JobFn, JobHost
from effstudio.gui.metrics import format_duration
from effstudio.gui.panels.base import Panel, description_label, side_column
from effstudio.gui.panels.compress_views import (
    CompareTable,
    ParetoScatter,
    ProgressPlots,
    describe_result,
)
from effstudio.gui.panels.run_controls import RunGroup
from effstudio.pipeline import recorded_outputs
from effstudio.registry import Registry

SUFFIX = {"onnx-int8": ".onnx", "onnx-int8-static": ".onnx"}


@dataclass(frozen=True)
class StudentStep(DistillStep):
    """The Distill tab: the step's settings and the student's shape, which the step takes as ``set`` texts."""

    attention: str = param("sdpa", choices_from="attention", help="attention kind of the student")
    d_model: int = param(64, min=8, max=4096, label="Width", help="student model width (d_model)")
    heads: int = param(2, min=1, max=64)
    layers: int = param(2, min=1, max=48)

    def student_settings(self) -> tuple[str, ...]:
        return (f"model.d_model={self.d_model}", f"model.heads={self.heads}", f"model.layers={self.layers}",
                f"model.attention={self.attention}")


# the tabs, in order: each operation's settings are its run-config step's
STEPS: dict[str, type] = {"prune": PruneStep, "quantize": QuantizeStep, "distill": StudentStep, "export": ExportStep}
FIELDS = {"distill": ("student_model", "attention", "d_model", "heads", "layers", "steps", "temperature", "alpha",
                      "hidden_weight", "out")}
PANEL_DEFAULTS = {"distill": {"steps": 200}, "export": {"check": True}}  # quick to try, and checked, by hand
NAMED_BY = ("prune", "amount", "quantize")  # the settings a suggested output file name is made of
NOTES = {"distill": "Teacher: the checkpoint above; after a run in this window, the model just trained, or any "
                    "checkpoint you open.",
         "export": "ONNX with dynamic batch and sequence axes; the check compares the export with PyTorch "
                   "(largest absolute difference) and times it in onnxruntime."}
# tooltips where the panel says more than a declaration (and its output file is a full path here)
HELP = {"prune": "magnitude: smallest weights per layer; global-magnitude: over all layers; heads / neurons / "
                 "structured: cut whole heads and feed-forward neurons (a smaller, faster model)",
        "importance": "how heads and neurons are ranked: weight magnitude, or |weight x gradient| over a few "
                      "training batches",
        "quantize": "dynamic-int8: torch int8 Linear layers; fp16/bf16: half-precision weights; "
                    "onnx-int8(-static): onnxruntime int8, static calibrated on training batches",
        "alpha": "weight of the KL term; the task loss gets 1 - alpha",
        "out": "where the result is written (suggested beside the checkpoint)"}


def operation_job(step: CompressStep, source: Path, out: Path,
                  baseline_accuracy: float | None = None) -> tuple[JobFn, str]:
    """The job that runs a tab's step on ``source`` into ``out``, and what the table calls its result.

    The job records its output as a file of the source's run, as the CLI does
    (:func:`effstudio.pipeline.recorded_outputs`); ``baseline_accuracy`` is the source's accuracy when
    the comparison already measured it, so the job does not evaluate it again.
    """
    def recorded(job: JobFn) -> JobFn:
        return lambda control: recorded_outputs(job(control), source)

    if isinstance(step, PruneStep):
        settings = PruneSettings(step.prune, step.amount, step.importance, step.finetune_steps, step.schedule_steps)
        return (recorded(lambda control: prune_job(source, settings, out, control, baseline_accuracy)),
                f"{step.prune} {round(step.amount * 100)}%")
    if isinstance(step, QuantizeStep):
        return recorded(lambda control: quantize_job(source, step.quantize, out, control,
                                                     calibration_batches=step.calibration_batches,
                                                     baseline_accuracy=baseline_accuracy)), step.quantize
    if isinstance(step, ExportStep):
        return recorded(lambda control: export_job(source, out, step.check, control,
                                                   baseline_accuracy=baseline_accuracy)), "ONNX"
    settings = DistillSettings(step.student_model, step.student_settings(), step.steps, step.temperature, step.alpha,
                               step.hidden_weight)
    return (recorded(lambda control: distill_job(source, settings, out, control,
                                                 teacher_accuracy=baseline_accuracy)),
            f"student {step.attention} d{step.d_model}")


class CompressPanel(JobHost, Panel):
    """Operations on the left (tabs), comparison and live plots on the right."""

    message = Signal(str)
    fine_tune_requested = Signal(str)  # a result checkpoint to train further in the Train section
    job_finished = Signal(str)
    steps_done = Signal(object)  # the CompressDoneEvent of a run config's steps (start_steps)
    steps_log = Signal(str, str)  # level, message: what the jobs report (a check, a failure, a run-store warning)

    def __init__(self, registry: Registry, parent: QWidget | None = None):
        super().__init__("Compress", "Prune, quantize, distill and export a checkpoint. Every result is an ordinary "
                         "checkpoint or ONNX file; it is measured beside the original on the same validation "
                         "split: size, accuracy, latency and memory.", scroll=False, parent=parent)
        self.registry = registry
        self.init_jobs()
        self.forms: dict[str, ConfigForm] = {}  # by operation, one per settings tab
        self.job_kind = ""
        self.rows: dict[str, CompareRowEvent] = {}  # by path, in insertion order
        self.measurements = Measurements()  # figures of unchanged files, reused by later jobs and comparisons
        self.verdict: CompareVerdictEvent | None = None  # whether the last comparison's timings hold
        self.variants: list[Path] = []
        self.labels: dict[str, str] = {}  # path -> what made it ("original", "heads 50%", ...)
        self.last_result: ResultEvent | None = None
        self.trainable_result: Path | None = None  # the newest result checkpoint (not an ONNX file)
        self.error: str | None = None
        self._pending_steps: tuple[Path, JobFn] | None = None  # steps that wait for the running job
        self._step: CompressStepEvent | None = None  # the step of a chain that runs now
        self._steps_done: CompressDoneEvent | None = None
        self._steps_summary = ""  # how the last chain went, kept in view while its outputs are measured

        columns = QHBoxLayout()
        columns.setSpacing(14)
        columns.addWidget(self._make_controls())
        columns.addWidget(self._make_results(), 1)
        self.body.addLayout(columns, 1)
        self._source_changed()

    # ---------------------------------------------------------------- controls
    def _make_controls(self) -> QWidget:
        scroll, layout = side_column(self, 290)
        column = scroll.widget()
        source = QGroupBox("Checkpoint", column)
        source_layout = QVBoxLayout(source)
        source_layout.setSpacing(6)
        row = QHBoxLayout()
        self.source_edit = QLineEdit(source)
        self.source_edit.setObjectName("compressSource")
        self.source_edit.setPlaceholderText("a .safetensors checkpoint")
        self.source_edit.textChanged.connect(lambda _t: self._source_changed())
        browse = QPushButton("\u2026", source)
        browse.setFixedWidth(32)
        browse.setToolTip("Choose a checkpoint")
        browse.clicked.connect(self._browse_source)
        row.addWidget(self.source_edit, 1)
        row.addWidget(browse)
        source_layout.addLayout(row)
        self.source_info = description_label(source)  # what the checkpoint is (set by _source_changed)
        source_layout.addWidget(self.source_info)
        layout.addWidget(source)

        self.tabs = QTabWidget(column)
        self.tabs.setObjectName("compressTabs")
        for operation in STEPS:
            self.tabs.addTab(self._settings_tab(operation), operation.capitalize())
        layout.addWidget(self.tabs)

        self.run_group = RunGroup("Run the operation of the open tab, then measure the result", "compressProblem",
                                  column)
        run = self.run_group
        self.run_button, self.stop_button, self.progress = run.run_button, run.stop_button, run.progress
        self.status_label, self.problem = run.status_label, run.problem
        # room for a result, its check and the comparison's summary: a full side column would squeeze it to a line
        self.status_label.setMinimumHeight(6 * self.status_label.fontMetrics().lineSpacing())
        self.run_button.clicked.connect(self.start_current)
        self.stop_button.clicked.connect(self.stop)
        self.fine_tune_button = QPushButton(icon("start"), "Fine-tune the result", run)
        self.fine_tune_button.setToolTip("Train the newest result further: a new run that starts from its weights, "
                                         "with its own settings")
        self.fine_tune_button.setEnabled(False)
        self.fine_tune_button.clicked.connect(
            lambda: self.trainable_result and self.fine_tune_requested.emit(str(self.trainable_result)))
        run.add_widget(self.fine_tune_button)
        layout.addWidget(run)
        layout.addStretch(1)
        return scroll

    def _settings_tab(self, operation: str) -> QWidget:
        """One operation's settings, drawn from its step declaration (as a run config's [[compress]] names them)."""
        tab = QWidget(self)
        layout = QVBoxLayout(tab)
        layout.setContentsMargins(8, 8, 8, 8)
        if operation in NOTES:
            note = description_label(tab)
            note.setText(NOTES[operation])
            layout.addWidget(note)
        # the student's model and attention kinds come from the registry the panel was given
        offered = {"student_model": self.registry.names("models"), "attention": self.registry.names("attention")}
        form = ConfigForm(STEPS[operation], fields=FIELDS.get(operation), choices=offered, help=HELP, parent=tab)
        form.set_values(PANEL_DEFAULTS.get(operation, {}))
        form.editor("out").setPlaceholderText("output file")
        form.changed.connect(lambda name: self._suggest_outputs() if name in NAMED_BY else None)
        self.forms[operation] = form
        layout.addWidget(form)
        layout.addStretch(1)
        return tab

    # ----------------------------------------------------------------- results
    def _make_results(self) -> QWidget:
        self.result_tabs = QTabWidget(self)
        self.result_tabs.setObjectName("compressResults")

        compare = QWidget(self)
        compare_layout = QVBoxLayout(compare)
        compare_layout.setContentsMargins(0, 6, 0, 0)
        bar = QHBoxLayout()
        self.add_button = QPushButton(action_icon("open"), "Add files\u2026", compare)
        self.add_button.setToolTip("Add checkpoints or ONNX files of the same task to the comparison")
        self.add_button.clicked.connect(self._add_files_dialog)
        self.measure_button = QPushButton("Measure", compare)
        self.measure_button.setToolTip("Measure every variant again: latency timed alternately at the chosen "
                                       "length; accuracy and memory of unchanged files are reused")
        self.measure_button.clicked.connect(self.measure_all)
        self.length_box = QSpinBox(compare)
        self.length_box.setObjectName("compareLength")
        self.length_box.setRange(0, 1_000_000)
        self.length_box.setSpecialValueText("longest example")
        self.length_box.setSuffix(" tokens")
        self.length_box.setToolTip("Tokens of every timed sequence, for every variant alike (as `effstudio compare "
                                   "--length`); the default is the longest validation example")
        length_label = QLabel("Timed at", compare)
        length_label.setBuddy(self.length_box)
        self.remove_button = QPushButton("Remove", compare)
        self.remove_button.clicked.connect(self._remove_selected)
        self.csv_button = QPushButton(action_icon("save"), "CSV\u2026", compare)
        self.csv_button.clicked.connect(lambda: self._export_dialog("csv"))
        self.markdown_button = QPushButton(action_icon("save"), "Markdown\u2026", compare)
        self.markdown_button.clicked.connect(lambda: self._export_dialog("md"))
        for button in (self.add_button, self.measure_button, self.remove_button):
            bar.addWidget(button)
        bar.addSpacing(12)
        bar.addWidget(length_label)
        bar.addWidget(self.length_box)
        bar.addStretch(1)
        bar.addWidget(self.csv_button)
        bar.addWidget(self.markdown_button)
        compare_layout.addLayout(bar)

        self.table = CompareTable(compare)
        self.scatter = ParetoScatter(compare)
        splitter = QSplitter(Qt.Orientation.Vertical, compare)
        splitter.addWidget(self.table)
        splitter.addWidget(self.scatter)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        compare_layout.addWidget(splitter, 1)
        self.verdict_label = description_label(compare)
        self.verdict_label.setObjectName("compareVerdict")
        self.verdict_label.setMinimumHeight(2 * self.verdict_label.fontMetrics().lineSpacing() + 4)
        compare_layout.addWidget(self.verdict_label)
        self.result_tabs.addTab(compare, "Compare")

        self.live = ProgressPlots(self)
        self.result_tabs.addTab(self.live, "Progress")
        return self.result_tabs

    # ------------------------------------------------------------------ source
    def set_checkpoint(self, path: str | Path) -> None:
        """Use this checkpoint as the source (the current model, an opened file)."""
        self.source_edit.setText(str(path))

    @property
    def source(self) -> Path | None:
        text = self.source_edit.text().strip()
        return Path(text) if text else None

    def _browse_source(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint", str(self.source or ""),
                                              "Checkpoints (*.safetensors)")
        if name:
            self.set_checkpoint(name)

    def _source_changed(self) -> None:
        source = self.source
        self.run_group.clear_problem()
        if source is None or not source.is_file():
            self.source_info.setText("Train a model or open a checkpoint to start." if source is None
                                     else "No such file.")
        else:
            try:
                config, metadata = config_of_file(source)
                kind = metadata.get("effstudio.quantization") or metadata.get("effstudio.dtype") or "float32"
                self.source_info.setText(f"{config.model_type} ({config.attention_kind}) on {config.task_name}, "
                                         f"{kind}")
            except Exception as err:  # a file of the wrong kind: say so, the Run button will refuse it
                self.source_info.setText(f"Not an effstudio checkpoint: {err}")
        self._suggest_outputs()
        self._update_buttons()

    def _suggest_outputs(self) -> None:
        """Each tab's output file, beside the checkpoint, named after the settings that make it."""
        source = self.source
        if source is None:
            return
        stem = source.stem
        prune = self.forms["prune"].raw_values()
        quantize = self.forms["quantize"].raw_values()["quantize"]
        names = {"quantize": f"{stem}-{quantize}{SUFFIX.get(quantize, '.safetensors')}",
                 "distill": f"{stem}-student.safetensors", "export": f"{stem}.onnx"}
        try:
            names["prune"] = f"{stem}-{prune['prune']}-{round(float(prune['amount']) * 100)}.safetensors"
        except (ValueError, OverflowError):  # an amount being typed: the name follows once it is a number
            pass
        for operation, name in names.items():
            self.forms[operation].set_values({"out": str(source.parent / name)})

    # -------------------------------------------------------------------- jobs
    @property
    def job(self) -> Job | None:
        """The job that runs now (or whose finished signal is still on the way), else None."""
        return self.job_of()

    @property
    def running(self) -> bool:
        return self.job_running()

    def start_current(self) -> None:
        self.start_operation(self.tabs.tabText(self.tabs.currentIndex()).lower())

    def start_operation(self, operation: str) -> bool:
        """Start "prune", "quantize", "distill" or "export" with the tab's settings; False if refused."""
        source = self.source
        if self.running:
            return False
        if source is None or not source.is_file():
            self.run_group.show_problem("Choose a checkpoint first.")
            return False
        try:
            step = self.forms[operation].config()
        except ConfigError as err:
            self.run_group.show_problem(f"{operation}: {err}")
            return False
        out = Path(step.out)
        if out.resolve() == source.resolve():
            self.run_group.show_problem("The output would overwrite the checkpoint; name another file.")
            return False
        fn, label = operation_job(step, source, out, self.measurements.get(source, "accuracy"))
        self.labels.setdefault(str(source), "original")
        self.labels[str(out)] = label
        if operation in ("prune", "distill"):
            self.live.reset(operation)
            self.result_tabs.setCurrentIndex(1)
        self._run(operation, fn)
        return True

    def measure_pending(self) -> bool:
        """Measure when a variant has no figures yet; False when every one has (or a job runs)."""
        if all(str(p) in self.rows for p in self.variants):
            return False
        return self.measure_all()

    def measure_all(self) -> bool:
        """Measure every variant in one comparison: timings only compare when they are taken together,
        alternately, at one length; accuracy and memory of files that did not change are reused."""
        variants = list(self.variants)
        if not variants or self.running:
            return False
        task = None
        if self.rows:  # new variants are measured on the task of those already in the table
            try:
                task = config_of_file(Path(next(iter(self.rows))))[0].task_name
            except Exception:  # the file is gone or unreadable: each new file then brings its own task
                task = None
        length = self.length_box.value() or None
        self.result_tabs.setCurrentIndex(0)
        self._run("compare", lambda control: compare_job(variants, task_name=task, control=control, repeats=20,
                                                         length=length, measurements=self.measurements))
        return True

    def start_steps(self, checkpoint: str | Path, fn: JobFn) -> bool:
        """Run a run config's compression steps on the checkpoint they start from.

        ``fn`` runs the chain (:func:`effstudio.pipeline.steps_after_training`). While another
        job runs, the chain waits for it; False says so.
        """
        if self.job is not None:  # running, or ended with its finished signal still on the way
            self._pending_steps = (Path(checkpoint), fn)
            self.status_label.setText("The run config's compression steps start when this job ends.")
            return False
        self.set_checkpoint(checkpoint)
        self.labels[str(checkpoint)] = "original"
        self._step = self._steps_done = None
        self._run("steps", fn)
        self.progress.setFormat("compression steps\u2026")
        self.status_label.setText("Running the run config's compression steps\u2026")
        return True

    def _run(self, kind: str, fn: JobFn) -> None:
        self.run_group.clear_problem()
        self.job_kind = kind
        self.error = None
        self.progress.setRange(0, 0)
        self.progress.setFormat(f"{kind}\u2026")
        if kind != "compare":
            self._steps_summary = ""
        self.status_label.setText(f"{self._steps_summary} Measuring\u2026" if kind == "compare" and
                                  self._steps_summary else f"{kind.capitalize()} running\u2026")
        self.start_job(fn, on_event=self._on_event, on_finished=self._on_finished)

    def stop(self) -> None:
        self.stop_jobs()

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        self._pending_steps = None
        return super().shutdown(timeout_ms)

    def _step_prefix(self) -> str:
        """While a chain runs, progress texts start with its step ("2/3 prune \u00b7 "); the label says more."""
        step = self._step if self.job_kind == "steps" else None
        return f"{step.index}/{step.total} {step.method} \u00b7 " if step is not None else ""

    def _on_progress(self, event: ProgressEvent) -> None:
        """A long step: the bar says how far it got and, once a unit is done, the time left at its rate so
        far; the status line says what runs."""
        total = max(event.total, 1)
        self.progress.setRange(0, total)
        self.progress.setValue(min(event.done, total))
        eta = event.eta_s
        left = f" \u00b7 {format_duration(eta)} left" if eta is not None and event.done < event.total else ""
        self.progress.setFormat(f"{self._step_prefix()}%p%{left}" if event.total > 1 else
                                f"{self._step_prefix()}{event.stage}\u2026")
        count = f" ({event.done:,} of {event.total:,})" if event.total > 1 else ""
        self.status_label.setText(f"{event.stage[0].upper()}{event.stage[1:]}{count}\u2026")

    def _on_event(self, event: Event) -> None:
        if isinstance(event, ProgressEvent):
            self._on_progress(event)
        elif isinstance(event, CompressStepEvent):
            self._on_step(event)
        elif isinstance(event, CompressDoneEvent):
            self._steps_done = event
        elif isinstance(event, (PruneStepEvent, DistillStepEvent, DistillEvalEvent)):
            self.live.add(event)
            if not isinstance(event, DistillEvalEvent):
                self.progress.setRange(0, event.total_steps)
                self.progress.setValue(event.step)
                self.progress.setFormat(f"{self._step_prefix()}step {event.step}/{event.total_steps}")
        elif isinstance(event, ResultEvent):
            self._remember(event)
            self.last_result = event
            self.trainable_result = Path(event.path) if event.path.endswith(".safetensors") else None
            self.fine_tune_button.setEnabled(self.trainable_result is not None)
            if self.trainable_result is not None:
                self.fine_tune_button.setToolTip(f"Train {self.trainable_result.name} further with its own settings "
                                                 "(a new run that starts from its weights)")
            self.status_label.setText(describe_result(event))
            self.message.emit(f"{event.method}: wrote {event.path}")
            if self.job_kind == "steps":  # measured with the others once the chain is over
                if self._step is not None:
                    self.labels[event.path] = self._step.description
                self._join(Path(self._step.source) if self._step else None, Path(event.path))
        elif isinstance(event, CompareRowEvent):
            self.rows[event.path] = event
            self._show_rows()
            if event.error:
                self.run_group.show_problem(f"{event.name}: {event.error}")
        elif isinstance(event, CompareVerdictEvent):
            self._show_verdict(event)
        elif isinstance(event, LogEvent):
            step = self._step if self.job_kind == "steps" else None
            self.status_label.setText(f"Step {step.index} of {step.total}, {step.description}: {event.message}"
                                      if step is not None else event.message)
            self.steps_log.emit(event.level, event.message)

    def _remember(self, result: ResultEvent) -> None:
        """Keep what a job measured of its input and its output for the comparison that follows."""
        if self.job_kind == "steps" and self._step is not None:
            source = Path(self._step.source)
        else:
            source = self.source
        if source is not None and result.baseline_accuracy is not None:
            self.measurements.put(source, accuracy=result.baseline_accuracy)
        self.measurements.put(Path(result.path), accuracy=result.accuracy,
                              max_abs_diff=result.details.get("max_abs_diff"))

    def _show_verdict(self, verdict: CompareVerdictEvent) -> None:
        self.verdict = verdict
        where = f"{verdict.length} tokens" if verdict.length is not None else "whole images"
        self.verdict_label.setText(f"Every variant timed alternately at {where} (batch 1 and 32). "
                                   f"{verdict.text[0].upper()}{verdict.text[1:]}.")
        self.verdict_label.setStyleSheet("" if verdict.holds else f"color: {theme.WARNING};")

    def _on_step(self, event: CompressStepEvent) -> None:
        self._step = event
        self.progress.setRange(0, 0)
        self.progress.setFormat(f"{event.index}/{event.total} {event.method}\u2026")
        self.status_label.setText(f"Step {event.index} of {event.total}: {event.description} \u2192 "
                                  f"{Path(event.out).name}")
        if event.method in ("prune", "distill"):
            self.live.reset(event.method)
            self.result_tabs.setCurrentIndex(1)
        self.message.emit(f"compression step {event.index}/{event.total}: {event.description}")

    def _steps_ended(self, status: str) -> None:
        """A chain's job is over: say how it went, then measure what it wrote (unless stopped)."""
        done = self._steps_done
        if done is None:  # the job raised before the chain could report (shown by show_job_error)
            done = CompressDoneEvent("stopped" if status == "stopped" else "failed", 0, 0, [], self.error)
        elif status == "stopped" and done.status != "stopped":
            done = CompressDoneEvent("stopped", done.completed, done.total, done.outputs, done.error)
        failed_step = self._step.index if self._step is not None else done.completed + 1
        self._step = None
        self.progress.setRange(0, max(done.total, 1))
        self.progress.setValue(done.completed)
        self.progress.setFormat(f"steps: {done.status} ({done.completed}/{done.total})")
        wrote = ", ".join(Path(p).name for p in done.outputs) or "nothing"
        if done.status == "finished":
            self.status_label.setText(f"Ran the {done.total} compression step(s); wrote {wrote}.")
        elif done.status == "failed":
            skipped = done.total - failed_step
            self.run_group.show_problem(done.error or "a compression step failed")
            self.status_label.setText(f"Step {failed_step} of {done.total} failed"
                                      + (f"; the {skipped} later step(s) were skipped" if skipped > 0 else "")
                                      + f". Wrote {wrote}.")
        elif done.status == "stopped":
            self.status_label.setText(f"Stopped after {done.completed} of {done.total} step(s); wrote {wrote} "
                                      "(a step cut short writes nothing).")
        else:
            self.status_label.setText(done.error or f"The compression steps {done.status}.")
        self._steps_summary = self.status_label.text() if done.status in ("finished", "failed") else ""
        self.steps_done.emit(done)
        if done.status != "stopped":
            self.measure_pending()

    def show_job_error(self, message: str) -> None:
        self.error = message
        self.run_group.show_problem(message)
        self.status_label.setText(f"{self.job_kind.capitalize()} failed; nothing was written.")

    def _on_finished(self, status: str) -> None:
        kind, result = self.job_kind, self.last_result
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if status == "finished" else 0)
        self.progress.setFormat(status)
        self.job_finished.emit(status)
        if kind == "steps":
            self.last_result = None
            self._steps_ended(status)
            if self.job is None and self._pending_steps is not None:  # a later run's chain waited for this one
                checkpoint, fn = self._pending_steps
                self._pending_steps = None
                self.start_steps(checkpoint, fn)
            return
        if self._pending_steps is not None:  # the chain goes first; what is left to measure waits for it
            self.last_result = None
            if kind != "compare" and result is not None and status == "finished":
                self._join(self.source, Path(result.path))
            checkpoint, fn = self._pending_steps
            self._pending_steps = None
            self.start_steps(checkpoint, fn)
            return
        if kind == "compare" and status == "finished":
            self.status_label.setText(f"{self._steps_summary} ".lstrip() +
                                      f"Measured {len(self.rows)} variant{'s' if len(self.rows) != 1 else ''} "
                                      "on the validation split.")
        if status != "finished":
            if status == "stopped":
                self.status_label.setText("Stopped; nothing was written.")
            return
        if kind != "compare" and result is not None:
            self.last_result = None
            self._steps_summary = describe_result(result)  # kept in view (the ONNX check) while measuring
            self._join(self.source, Path(result.path))
            self.measure_pending()

    def _join(self, *paths: Path | None) -> None:
        """Add a job's source and result to the variants to measure (once each)."""
        for path in paths:
            if path is not None and path not in self.variants:
                self.variants.append(path)

    # ----------------------------------------------------------------- compare
    def add_variants(self, paths: list[Path]) -> None:
        for path in paths:
            if path not in self.variants:
                self.variants.append(Path(path))
                self.labels.setdefault(str(path), "")
        self.measure_pending()

    def _add_files_dialog(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(self, "Add variants", str(self.source.parent if self.source else ""),
                                                "Models (*.safetensors *.onnx)")
        if names:
            self.add_variants([Path(n) for n in names])

    def _remove_selected(self) -> None:
        for path in self.table.selected_paths():
            self.rows.pop(path, None)
            self.variants = [p for p in self.variants if str(p) != path]
        self._show_rows()

    def ordered_rows(self) -> list[CompareRowEvent]:
        return list(self.rows.values())

    def _name(self, row: CompareRowEvent) -> str:
        """What made the variant ("original", "heads 50%", "onnx-int8"), else its file name."""
        return self.labels.get(row.path) or row.name

    def _show_rows(self) -> None:
        rows = self.ordered_rows()
        names = [self._name(row) for row in rows]
        self.table.show_rows(rows, names)
        self.scatter.draw(rows, names)
        self._update_buttons()

    def export_text(self, kind: str) -> str:
        rows = [CompareRowEvent(**{**row.__dict__, "name": self._name(row)}) for row in self.ordered_rows()]
        return rows_to_csv(rows) if kind == "csv" else rows_to_markdown(rows)

    def _export_dialog(self, kind: str) -> None:
        pattern = "CSV (*.csv)" if kind == "csv" else "Markdown (*.md)"
        name, _ = QFileDialog.getSaveFileName(self, "Export the comparison", f"compare.{kind}", pattern)
        if name:
            Path(name).write_text(self.export_text(kind), encoding="utf-8")
            self.message.emit(f"comparison written to {name}")

    # -------------------------------------------------------------------- misc
    def jobs_changed(self) -> None:
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self.running
        source = self.source
        self.run_button.setEnabled(not busy and source is not None and source.is_file())
        self.stop_button.setEnabled(busy)
        self.measure_button.setEnabled(not busy and bool(self.variants))
        has_rows = bool(self.rows)
        for button in (self.csv_button, self.markdown_button, self.remove_button):
            button.setEnabled(has_rows and not busy)
