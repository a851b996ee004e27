"""The main window: a sidebar of sections, the run controls, and the training job.

The window assembles a RunConfig from the section forms, validates it the way
the CLI does (errors show next to the field they name), runs it as a job (the
window is a :class:`~effstudio.gui.job.JobHost`) and routes the job's events to
the panels. The job is the training stage of the one pipeline that ``effstudio
train`` runs (:mod:`effstudio.pipeline`: train, record, events.jsonl); the same
pipeline's compression stage, the run config's ``[[compress]]`` steps, runs after
a run that finished, in the Compress section. Closing the
window stops a run and the steps, and waits for their threads.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QSizePolicy,
    QStackedWidget,
    QToolBar,
    QWidget,
)

import effstudio
from effstudio.compress.steps import CompressDoneEvent
from effstudio.config import ConfigError
from effstudio.engine.device import available_devices
from effstudio.engine.events import (
    AttentionEvent,
    CheckpointEvent,
    DoneEvent,
    EvalEvent,
    Event,
    LogEvent,
    MemoryEvent,
    StartEvent,
    StepEvent,
)
from effstudio.engine.pairing import check_pairing
from effstudio.engine.run_config import RunConfig
from effstudio.engine.run_plan import CompressStep, RunPlan, describe_step, steps_of_run_folder
from effstudio.engine.trainer import default_run_dir, train
from effstudio.gui import settings as keys
from effstudio.gui import training_process
from effstudio.gui.command import command_line, torchrun_command_line
from effstudio.gui.forms.config_form import ConfigForm
from effstudio.gui.icons import action_icon, app_icon, icon
from effstudio.gui.job import Job, JobHost
from effstudio.gui.metrics import RunProgress, run_summary
from effstudio.gui.panels.benchmark_panel import BenchFn, BenchmarkPanel
from effstudio.gui.panels.compress_panel import CompressPanel
from effstudio.gui.panels.data_panel import DataPanel
from effstudio.gui.panels.evaluate_panel import EvaluatePanel
from effstudio.gui.panels.inspect_panel import InspectPanel
from effstudio.gui.panels.make_efficient_panel import MakeEfficientPanel
from effstudio.gui.panels.model_panel import ModelPanel
from effstudio.gui.panels.monitor_panel import MonitorPanel
from effstudio.gui.panels.runs_panel import RunsPanel
from effstudio.gui.panels.train_panel import TrainPanel
from effstudio.gui.status_bar import StatusBar
from effstudio.gui.views import discover_views
from effstudio.pipeline import Pipeline, TrainFn, run_pipeline
from effstudio.pretrained.lab_import import hugging_face_folder
from effstudio.registry import Registry, UnknownEntryError, get_registry
from effstudio.runs.recorder import RunRecordedEvent

MODEL, DATA, TRAIN, MONITOR, RUNS, COMPRESS, INSPECT, BENCHMARK = range(8)
EVALUATE = BENCHMARK + 1
SHUTDOWN_TIMEOUT_MS = 60_000
THROTTLE_S = 0.05  # at most one batch of steps per 50 ms reaches the GUI thread
TRAINING = "training"  # the window's job slot


class MainWindow(JobHost, QMainWindow):

    def __init__(
        self,
        settings: QSettings | None = None,
        registry: Registry | None = None,
        *,
        train_fn: TrainFn | None = None,
        bench_fn: BenchFn | None = None,
        out_dir: Path | None = None,
        restore: bool = True,
        isolate: bool = True,
    ):
        """``isolate`` trains in a child process (see training_process); ``train_fn`` overrides both.

        ``bench_fn`` replaces the attention benchmark's generator (tests inject a fake one).
        """
        super().__init__()
        self.init_jobs()
        self.settings = settings if settings is not None else keys.user_settings()
        self.registry = registry or get_registry()
        discover_views(self.registry)  # plugins' model views, before the status bar counts the errors
        if train_fn is None and isolate:
            train_fn = training_process.train_in_process
            training_process.prestart()
        self.train_fn = train_fn or train
        self.out_dir = out_dir
        self.job: Job | None = None  # the run's job, until its thread has ended
        self.progress = RunProgress()
        self.last_done: DoneEvent | None = None
        self._failure: str | None = None  # why the current run failed, when its job raised
        self.config_problems: list[ConfigError] = []
        self._run_title = ""
        # [[compress]] steps of the last run config file loaded: kept when the config is saved again,
        # run after each run that finishes (as `effstudio train --config` does)
        self.compress_steps: tuple[CompressStep, ...] = ()
        self.pipeline: Pipeline | None = None  # the current run's, until its compression steps start
        self._run_id: int | None = None
        self._closing = False

        self.setWindowTitle("effstudio")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.setMinimumSize(960, 620)
        self._make_actions()

        self.model_panel = ModelPanel(self.registry, self)
        self.make_efficient_panel = MakeEfficientPanel(self.registry, self.model_panel)
        self.model_panel.body.insertWidget(self.model_panel.body.count() - 1, self.make_efficient_panel)
        self.data_panel = DataPanel(self.registry, self)
        self.train_panel = TrainPanel(self.action_map, self)
        self.monitor_panel = MonitorPanel(self.action_map["start"], self)
        self.runs_panel = RunsPanel(parent=self)
        self.compress_panel = CompressPanel(self.registry, self)
        self.inspect_panel = InspectPanel(self)
        self.benchmark_panel = BenchmarkPanel(self.registry, bench_fn=bench_fn, settings=self.settings, parent=self)
        self.evaluate_panel = EvaluatePanel(self.registry, self)
        self.sidebar = QListWidget(self)
        self.sidebar.setObjectName("sidebar")
        self.sidebar.setFixedWidth(168)
        self.sidebar.setIconSize(QSize(20, 20))
        self.stack = QStackedWidget(self)
        for name, glyph, panel in (("Model", "model", self.model_panel), ("Data", "data", self.data_panel),
                                   ("Train", "train", self.train_panel), ("Monitor", "monitor", self.monitor_panel),
                                   ("Runs", "runs", self.runs_panel),
                                   ("Compress", "compress", self.compress_panel),
                                   ("Inspect", "inspect", self.inspect_panel),
                                   ("Benchmark", "benchmark", self.benchmark_panel)):
            self.add_section(name, glyph, panel)
        self.add_section("Evaluate", "evaluate", self.evaluate_panel)
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)

        central = QWidget(self)
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.sidebar)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self._make_menus()
        self._make_toolbar()
        self.status = StatusBar(available_devices(), self.registry.errors, self)
        self.setStatusBar(self.status)

        for panel in (self.model_panel, self.data_panel, self.train_panel):
            panel.changed.connect(self._config_changed)
        self.log = self.monitor_panel.log
        self.inspect_panel.opened.connect(self._remember_recent)
        self.inspect_panel.open_in_lab.connect(self.open_in_lab)
        self.make_efficient_panel.imported.connect(self.open_in_lab)
        self.make_efficient_panel.converted.connect(self.open_in_lab)
        self.make_efficient_panel.message.connect(lambda text: self.status.showMessage(text, 15_000))
        self.inspect_panel.message.connect(lambda text: self.status.showMessage(text, 10_000))
        self.benchmark_panel.message.connect(self._on_benchmark_message)
        self.compress_panel.message.connect(lambda text: self.status.showMessage(text, 10_000))
        self.evaluate_panel.message.connect(lambda text: self.status.showMessage(text, 10_000))
        self.compress_panel.fine_tune_requested.connect(self.fine_tune)
        self.compress_panel.steps_log.connect(self.log.add)
        self.compress_panel.steps_done.connect(self._on_compress_steps_done)
        self.runs_panel.open_config.connect(self.open_run_config)
        self.runs_panel.continue_run.connect(self.continue_run)
        self.runs_panel.inspect_file.connect(self.inspect_path)
        self.runs_panel.message.connect(lambda text: self.status.showMessage(text, 10_000))
        self.log.add("info", f"effstudio {effstudio.__version__} \u00b7 devices: {', '.join(available_devices())}")
        for error in self.registry.errors:
            self.log.add("warning", f"plugin {error.name!r} ({error.group}) was skipped: {error.message}")

        self.sidebar.setCurrentRow(MODEL)
        if restore:
            self.restore_settings()
        else:
            self.resize(1280, 800)
        self._config_changed()

    # ------------------------------------------------------------------ layout
    def add_section(self, name: str, glyph: str, panel: QWidget) -> int:
        item = QListWidgetItem(icon(glyph), name)
        item.setSizeHint(QSize(0, 40))
        self.sidebar.addItem(item)
        return self.stack.addWidget(panel)

    def show_section(self, index: int) -> None:
        self.sidebar.setCurrentRow(index)

    def current_section(self) -> int:
        return self.stack.currentIndex()

    def _action(self, key: str, text: str, slot: Callable[..., object],
                shortcut: str | QKeySequence.StandardKey | None = None, glyph: str | None = None,
                tip: str = "") -> QAction:
        action = QAction(text, self)
        if glyph:
            action.setIcon(action_icon(glyph))
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.action_map[key] = action
        return action

    def _make_actions(self) -> None:
        self.action_map: dict[str, QAction] = {}
        self._action("start", "Start", self.start_training, "F5", "start", "Train the model (F5)")
        self._action("pause", "Pause", self.toggle_pause, "F6", "pause", "Pause or resume the run (F6)")
        self._action("stop", "Stop", self.stop_training, "Shift+F5", "stop",
                     "Stop after the current step and save a checkpoint (Shift+F5)")
        self._action("save_config", "Save run config\u2026", self.save_config_dialog,
                     QKeySequence.StandardKey.Save, "save", "Save the settings as a TOML run config")
        self._action("load_config", "Load run config\u2026", self.load_config_dialog,
                     QKeySequence.StandardKey.Open, "open", "Load a TOML run config or a checkpoint's settings")
        self._action("inspect", "Inspect model\u2026", self.inspect_panel_dialog, "Ctrl+I", "inspect",
                     "Open a model file (safetensors, PyTorch, ONNX, NumPy) in the Inspect section")
        self._action("copy_command", "Copy as command", self.copy_command, "Ctrl+Shift+C", "copy",
                     "Copy the `effstudio train` command line for these settings")
        self._action("copy_torchrun", "Copy as torchrun command", self.copy_torchrun_command, None, "copy",
                     "Copy a torchrun command that trains these settings on every GPU of a machine")
        self._action("quit", "Quit", self.close, QKeySequence.StandardKey.Quit)
        self._action("about", "About effstudio", self.show_about)
        self.action_map["quit"].setMenuRole(QAction.MenuRole.QuitRole)
        self.action_map["about"].setMenuRole(QAction.MenuRole.AboutRole)
        self.action_map["pause"].setEnabled(False)
        self.action_map["stop"].setEnabled(False)

    def _make_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        for key in ("load_config", "save_config", "copy_command", "copy_torchrun"):
            file_menu.addAction(self.action_map[key])
        file_menu.addSeparator()
        file_menu.addAction(self.action_map["inspect"])
        self.recent_menu = file_menu.addMenu("Recent files")
        self.recent_menu.aboutToShow.connect(self.fill_recent_menu)
        file_menu.addSeparator()
        file_menu.addAction(self.action_map["quit"])
        run_menu = bar.addMenu("&Run")
        for key in ("start", "pause", "stop"):
            run_menu.addAction(self.action_map[key])
        view_menu = bar.addMenu("&View")
        for index in range(self.sidebar.count()):
            action = view_menu.addAction(self.sidebar.item(index).text())
            action.setShortcut(QKeySequence(f"Ctrl+{index + 1}"))
            action.triggered.connect(lambda _=False, i=index: self.show_section(i))
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.action_map["about"])

    def _make_toolbar(self) -> None:
        toolbar = QToolBar("Run", self)
        toolbar.setObjectName("runToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for key in ("start", "pause", "stop"):
            toolbar.addAction(self.action_map[key])
        spacer = QWidget(toolbar)
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        toolbar.addWidget(spacer)
        for key in ("load_config", "save_config", "copy_command"):
            toolbar.addAction(self.action_map[key])
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, toolbar)

    # ------------------------------------------------------------------ config
    def _sections(self) -> list[tuple[int, ModelPanel | DataPanel | TrainPanel]]:
        return [(MODEL, self.model_panel), (DATA, self.data_panel), (TRAIN, self.train_panel)]

    def _forms(self) -> list[tuple[int, ConfigForm]]:
        return [(index, form) for index, panel in self._sections() for form in panel.forms()]

    def show_config_error(self, field: str, message: str, *, reveal: bool = True) -> bool:
        """Mark the field an error names in whichever form owns it; False when no form does."""
        for index, form in self._forms():
            if form.set_error(field, message):
                if reveal:
                    self.show_section(index)
                return True
        return False

    def validate(self) -> list[ConfigError]:
        """Every form's errors, then whole-config errors; each is shown next to its field."""
        if not self.registry.names("models") or not self.registry.names("tasks"):
            missing = "model types" if not self.registry.names("models") else "tasks"
            return [ConfigError("registry", f"no {missing} are registered")]
        errors: list[ConfigError] = []
        for _index, panel in self._sections():
            errors += panel.validate()
        if not errors:
            try:
                check_pairing(self.build_config())  # a model that cannot take the task: before Start
            except ConfigError as err:
                self.show_config_error(err.field, err.message, reveal=False)
                errors.append(err)
        return errors

    def build_config(self) -> RunConfig:
        """The RunConfig the forms describe; raises ConfigError naming a bad field."""
        model_type, task_name = self.model_panel.model_type(), self.data_panel.task_name()
        if model_type is None or task_name is None:
            raise ConfigError("registry", "pick a model type and a task first")
        overrides = {**self.model_panel.overrides(), **self.data_panel.overrides(), **self.train_panel.overrides()}
        return RunConfig.create(model_type, task_name, overrides, registry=self.registry)

    def current_config(self) -> RunConfig | None:
        """The config to run, or None after showing why there is none."""
        errors = self.validate()
        self.config_problems = errors
        self.train_panel.show_problems(errors)
        if errors:
            first = errors[0]
            self.show_config_error(first.field, first.message)
            self.status.showMessage(f"Cannot start: {first.field}: {first.message}", 10_000)
            return None
        return self.build_config()

    def _config_changed(self) -> None:
        self.config_problems = self.validate()
        self.train_panel.show_problems(self.config_problems)
        self._update_actions()
        model_type, task_name = self.model_panel.model_type(), self.data_panel.task_name()
        if model_type and task_name:
            self.setWindowTitle(f"effstudio \u2014 {model_type} on {task_name}")

    def apply_config(self, config: RunConfig) -> None:
        """Show a run config in the forms."""
        self.model_panel.set_config(config)
        self.data_panel.set_config(config)
        self.train_panel.set_config(config)
        if self.job is None:  # the Run box spoke of the last run, not of these settings
            self.progress = RunProgress()
            self.last_done = None
            self._set_state("idle")
        self._config_changed()

    # ------------------------------------------------------------------- files
    def open_path(self, path: str | Path) -> bool:
        """A TOML run config goes into the forms, a table of texts (CSV, TSV, JSON Lines) into the Data
        section; any other file or folder opens in the Inspect section."""
        if Path(path).suffix.lower() == ".toml":
            return self.load_settings(path)
        if hugging_face_folder(path) is not None:
            return self.open_in_lab(str(path))
        if self.data_panel.open_data_table(str(path)):
            self.show_section(DATA)
            return True
        self.inspect_path(path)
        return True

    def inspect_path(self, path: str | Path) -> None:
        """Show the Inspect section reading a model file or folder (it says there why one cannot be read)."""
        self.show_section(INSPECT)
        self.inspect_panel.open(path)

    def inspect_panel_dialog(self) -> None:
        self.show_section(INSPECT)
        self.inspect_panel.open_file_dialog()

    def _remember_recent(self, path: str) -> None:
        keys.add_recent_file(self.settings, path)

    def fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        paths = keys.recent_files(self.settings)
        for path in paths:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.inspect_path(p))
        if not paths:
            self.recent_menu.addAction("No recent files").setEnabled(False)
            return
        self.recent_menu.addSeparator()
        self.recent_menu.addAction("Clear the list", lambda: self.settings.remove(keys.RECENT_FILES))

    def open_in_lab(self, path: str) -> bool:
        """Load an effstudio checkpoint's run settings into the forms, to train further from them,
        and make it the Compress section's source, to prune, quantize, distill or export it.
        A Hugging Face folder is imported first (a job of the Make efficient panel), then opened."""
        if hugging_face_folder(path) is not None:
            self.show_section(MODEL)
            self.make_efficient_panel.import_folder(path)
            return True
        if not self.load_settings(path):
            return False
        if not self.compress_panel.running:
            self.compress_panel.set_checkpoint(path)
        self.make_efficient_panel.set_checkpoint(path)
        self.show_section(MODEL)
        self.status.showMessage(f"Loaded the settings of {Path(path).name}: start a run to train them again, "
                                "`effstudio train --resume` to continue that run, or compress it in Compress",
                                15_000)
        return True

    def load_settings(self, path: str | Path) -> bool:
        """Load settings from a TOML run config or a checkpoint; False (and a log line) if it cannot."""
        path = Path(path)
        try:
            if path.suffix == ".safetensors":
                from effstudio.engine.checkpoint import read_info

                info = read_info(path)
                info.config.check_paths()  # as `train --init` would: what the header names stays beside it
                self.apply_config(info.config)
                self.set_compress_steps(())
                self.log.add("info", f"Loaded the settings of checkpoint {path} (step {info.step})")
            else:
                plan = RunPlan.from_toml(path)
                plan.config.check_paths()  # as `train --config` would: what the file names stays beside it
                self.apply_config(plan.config)
                self.set_compress_steps(plan.compress)
                self.log.add("info", f"Loaded run config {path}")
        except (ConfigError, UnknownEntryError, OSError, RuntimeError, ValueError) as err:
            self.log.add("error", f"Cannot open {path}: {err}")
            self.status.showMessage(f"Cannot open {path.name}: {err}", 10_000)
            return False
        self.status.showMessage(f"Loaded {path.name}", 5_000)
        return True

    def set_compress_steps(self, steps: tuple[CompressStep, ...]) -> None:
        """Keep a run config's compression steps (and say what they are and who runs them)."""
        self.compress_steps = tuple(steps)
        if steps:
            chain = " \u2192 ".join(describe_step(s) for s in steps)
            self.log.add("info", f"The config has {len(steps)} compression step(s) after training ({chain}): "
                                 "the window runs them in the Compress section when a run finishes, as "
                                 "`effstudio train --config FILE` does; Save run config keeps them")

    def current_plan(self) -> RunPlan | None:
        """The forms' config with the compression steps loaded with it, or None (see current_config)."""
        config = self.current_config()
        return None if config is None else RunPlan(config, self.compress_steps)

    def save_config_to(self, path: str | Path) -> bool:
        plan = self.current_plan()
        if plan is None:
            return False
        path = Path(path)
        try:
            path.write_text(plan.to_toml(), encoding="utf-8")
        except OSError as err:
            self.log.add("error", f"Cannot save {path}: {err}")
            self.status.showMessage(f"Cannot save {path.name}: {err.strerror or err}", 10_000)
            return False
        self.log.add("info", f"Saved run config {path}")
        self.status.showMessage(f"Saved {path.name}", 5_000)
        return True

    def _last_dir(self) -> str:
        return keys.read_str(self.settings, keys.LAST_DIR, str(Path.home()))

    def save_config_dialog(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Save run config", str(Path(self._last_dir()) / "run.toml"),
                                              "Run configs (*.toml)")
        if name:
            self.settings.setValue(keys.LAST_DIR, str(Path(name).parent))
            self.save_config_to(name)

    def load_config_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Load run config", self._last_dir(),
                                              "Run configs and checkpoints (*.toml *.safetensors)")
        if name:
            self.settings.setValue(keys.LAST_DIR, str(Path(name).parent))
            self.load_settings(name)

    def copy_command(self, torchrun: bool = False) -> str | None:
        config = self.current_config()
        if config is None:
            return None
        text = torchrun_command_line(config, self.registry) if torchrun else command_line(config, self.registry)
        if self.compress_steps:  # a command line cannot carry them: the file can
            text += (f"  # trains only: the window also runs {len(self.compress_steps)} compression step(s) "
                     "after it; Save run config, then effstudio train --config FILE runs them too")
        QApplication.clipboard().setText(text)
        self.log.add("info", f"Copied: {text}")
        self.status.showMessage("Copied the command line to the clipboard", 5_000)
        return text

    def copy_torchrun_command(self) -> str | None:
        return self.copy_command(torchrun=True)

    def open_run_config(self, config: RunConfig | RunPlan) -> None:
        """A recorded run's settings in the forms (Runs section), ready to run again."""
        plan = config if isinstance(config, RunPlan) else RunPlan(config)
        self.apply_config(plan.config)
        self.set_compress_steps(plan.compress)
        self.show_section(TRAIN)
        self.status.showMessage("Loaded the run's settings: Start runs them again", 10_000)

    def continue_run(self, config: RunConfig, checkpoint: str, run_dir: str) -> Job | None:
        """Resume a recorded run from its checkpoint, in its folder (its record goes on); the
        compression steps its folder's config lists run again on the final checkpoint."""
        if self.job is not None:
            self.status.showMessage("A run is in progress: stop it before continuing another", 10_000)
            return None
        try:
            steps = steps_of_run_folder(run_dir)
        except ConfigError as err:
            self.log.add("error", f"Cannot continue the run: {err}")
            self.status.showMessage(f"Cannot continue the run: {err}", 10_000)
            return None
        self.apply_config(config)
        self.set_compress_steps(steps)
        return self.start_training(resume=Path(checkpoint), out_dir=Path(run_dir))

    def fine_tune(self, checkpoint: str) -> Job | None:
        """Train a compressed model further: its settings in the forms, a new run from its weights."""
        if self.job is not None:
            self.status.showMessage("A run is in progress: stop it before fine-tuning", 10_000)
            return None
        if not self.load_settings(checkpoint):
            return None
        return self.start_training(init=Path(checkpoint))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile():  # run configs, and any model file or folder (read by content)
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = event.mimeData().urls()
        if urls:
            self.open_path(urls[0].toLocalFile())
            event.acceptProposedAction()

    def show_about(self) -> None:
        QMessageBox.about(self, "About effstudio", (
            f"<h3>effstudio {effstudio.__version__}</h3>"
            "<p>A desktop lab for efficient Transformers: pick an architecture and an attention "
            "mechanism, train it on your CPU or GPU, and watch loss, memory, throughput and attention "
            "maps live.</p><p>Everything the window does is also available headless: "
            "<code>effstudio --help</code>.</p>"))

    # -------------------------------------------------------------------- runs
    @property
    def running(self) -> bool:
        return self.job is not None

    def start_training(self, *, resume: Path | None = None, init: Path | None = None,
                       out_dir: Path | None = None) -> Job | None:
        """Start a run with the forms' settings; None (and the errors shown) when they are invalid.

        ``resume`` continues from a checkpoint, in ``out_dir`` (by default the window's run folder);
        ``init`` starts a new run from a checkpoint's weights (a compressed model to fine-tune).
        """
        if self.job is not None:
            return None
        config = self.current_config()
        if config is None:
            return None
        out_dir = out_dir or self.out_dir
        if out_dir is None and self.compress_steps:  # the steps' outputs are checked in their folder
            out_dir = default_run_dir(config)
        try:  # the checks of `effstudio train`, before anything is trained or written
            plan = RunPlan(config, self.compress_steps).checked(out_dir)
        except ConfigError as err:
            self.log.add("error", f"Cannot start: {err}")
            self.status.showMessage(f"Cannot start: {err}", 15_000)
            return None
        config = plan.config
        keys.save_run_config(self.settings, config)
        self._run_id = None
        self.last_done, self._failure = None, None
        self.progress = RunProgress()
        self._run_title = f"{config.model_type} on {config.task_name}"
        # one pipeline: its training stage runs here, its compression steps in the Compress section
        # a problem with the run's events log is told along the running stage's own events (a LogEvent)
        pipeline = run_pipeline(plan, out_dir=out_dir, resume=resume, init=init, train_fn=self.train_fn,
                                source="gui", warn=lambda message: pipeline.control.report(LogEvent("warning", message)))
        self.pipeline = pipeline
        self.job = self.start_job(self.pipeline.training, TRAINING,
                                  throttle_s=THROTTLE_S, on_event=self._on_event, on_failed=self._on_failed,
                                  on_finished=self._on_finished)
        self.job.ended.connect(self._on_job_ended)
        self._set_state("starting")
        then = f", then {len(plan.compress)} compression step(s)" if plan.compress else ""
        self.log.add("info", f"Starting {self._run_title}: {config.train.steps} steps{then}")
        self.show_section(MONITOR)
        return self.job

    def toggle_pause(self) -> None:
        if self.job is None:
            return
        if self.job.resume():
            self._on_paused(False)
        elif self.job.pause():
            self._on_paused(True)

    def stop_training(self) -> None:
        if self.job is None:
            return
        self.job.stop()
        self.progress.end()
        self._set_state("stopping")
        self.monitor_panel.metrics.show_progress(self.progress)

    def _set_state(self, state: str) -> None:
        self.state = state
        detail = ""
        if state in ("running", "paused") and self.progress.total_steps:
            detail = f"step {self.progress.step}/{self.progress.total_steps}"
        self.status.set_state(state, detail)
        self.train_panel.show_progress(self.progress, state)
        self._update_actions()

    def _update_actions(self) -> None:
        state, active = getattr(self, "state", "idle"), self.job is not None
        problem = self.config_problems[0] if self.config_problems else None
        self.action_map["start"].setEnabled(not active and problem is None)
        self.action_map["start"].setToolTip("A run is in progress" if active else
                                            f"Fix {problem.field}: {problem.message}" if problem else
                                            "Train the model (F5)")
        self.action_map["pause"].setEnabled(active and state in ("running", "paused"))
        paused = state == "paused"
        self.action_map["pause"].setText("Resume" if paused else "Pause")
        self.action_map["pause"].setIcon(action_icon("start" if paused else "pause"))
        self.action_map["stop"].setEnabled(active and state in ("starting", "running", "paused"))

    # --------------------------------------------------------------- job slots
    def _on_event(self, event: Event | list[StepEvent]) -> None:
        if isinstance(event, list):  # a batch of StepEvents
            self.progress.add_steps(event)
            self.monitor_panel.add_steps(event, self.progress)
            if self.state in ("running", "paused", "stopping"):
                self._set_state(self.state)
        elif isinstance(event, StartEvent):
            self.progress.start(event)
            self.status.set_device(event.device)
            self.monitor_panel.run_started(event, self._run_title, self.progress)
            self.log.add("info", f"Run folder {event.run_dir} \u00b7 {event.params:,} parameters on {event.device}")
            if self.state == "starting":
                self._set_state("running")
        elif isinstance(event, EvalEvent):
            self.progress.add_eval(event)
            self.monitor_panel.add_eval(event, self.progress)
            self.train_panel.metrics.show_progress(self.progress)
        elif isinstance(event, MemoryEvent):
            self.monitor_panel.add_memory(event)
            if event.cuda_allocated_mb is not None:
                self.status.set_cuda_memory(event.cuda_allocated_mb)
        elif isinstance(event, AttentionEvent):
            self.monitor_panel.add_attention(event)
        elif isinstance(event, CheckpointEvent):
            self.log.add("info", f"Checkpoint at step {event.step}: {event.path}")
        elif isinstance(event, LogEvent):
            self.log.add(event.level, event.message)
        elif isinstance(event, RunRecordedEvent):
            self._run_id = event.id
            self.log.add("info", f"Recorded as run #{event.id} (Runs section)")
            self.runs_panel.refresh()
        elif isinstance(event, DoneEvent):
            self.last_done = event
        else:
            self.log.add("info", f"{event.kind}: {event.to_json()}")

    def _on_paused(self, paused: bool) -> None:
        if self.state in ("running", "paused"):
            self._set_state("paused" if paused else "running")
            self.log.add("info", "Paused" if paused else "Resumed")

    def _on_failed(self, message: str) -> None:
        """The run raised: a bad setting marks its field, anything else logs its traceback."""
        assert self.job is not None
        err = self.job.exception
        if isinstance(err, ConfigError):
            self.show_config_error(err.field, err.message)
            self._failure = f"Invalid setting {err.field}: {err.message}"
        else:
            self.log.add("error", self.job.details.rstrip())
            self._failure = f"Training failed: {message}"
        self.status.showMessage(self._failure, 15_000)
        self.log.add("error", self._failure)

    def _on_finished(self, _status: str) -> None:
        done = self.last_done
        if done is None:  # the run raised, or its events ended without a final one
            if self._failure is None:
                self._failure = "Training ended without a final event."
                self.status.showMessage(self._failure, 15_000)
                self.log.add("error", self._failure)
            seconds = self.job.seconds if self.job is not None else 0.0
            done = self.last_done = DoneEvent(0, None, None, None, seconds, "failed", self._failure)
        if done.checkpoint and not self.compress_panel.running:
            self.compress_panel.set_checkpoint(done.checkpoint)  # the current model is what Compress works on
        if done.checkpoint:
            self.evaluate_panel.add_files([done.checkpoint])  # beside the models already listed there
        self.progress.end()
        self.monitor_panel.run_ended(self.progress)
        self.status.set_cuda_memory(None)
        summary = run_summary(done)
        self.log.add("error" if done.status == "failed" else "info", summary)
        self.status.showMessage(html.unescape(summary), 15_000)
        self._set_state(done.status)
        self.runs_panel.refresh()
        self._run_compress_steps(done)

    def _run_compress_steps(self, done: DoneEvent) -> None:
        """The run's [[compress]] steps on its checkpoint, in its folder, each output a file of its record."""
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is None or not pipeline.plan.compress or self._closing:
            return
        steps = pipeline.plan.compress
        count = len(steps)
        if done.status != "finished" or not done.checkpoint:
            self.log.add("info", f"Training {done.status}, so the {count} compression step(s) did not run")
            return
        chain = " \u2192 ".join(describe_step(s) for s in steps)
        if self.compress_panel.start_steps(done.checkpoint, pipeline.compression):
            self.log.add("info", f"Running the {count} compression step(s) of the run config ({chain}) on "
                                 f"{done.checkpoint}: see the Compress section")
        else:
            self.log.add("info", f"The {count} compression step(s) of the run config ({chain}) start when the "
                                 "Compress section's current job ends")
        self.status.showMessage(f"Compressing: {chain} (Compress section)", 10_000)

    def _on_compress_steps_done(self, done: CompressDoneEvent) -> None:
        wrote = ", ".join(done.outputs) or "nothing"
        level = "error" if done.status == "failed" else "info"
        if done.status == "finished":
            text = f"Compression steps finished: wrote {wrote}"
        elif done.status == "failed":
            text = f"Compression steps failed ({done.error}); wrote {wrote}"
        else:
            text = f"Compression steps {done.status} after {done.completed} of {done.total}; wrote {wrote}"
        self.log.add(level, text)
        names = ", ".join(Path(p).name for p in done.outputs) or "nothing"
        self.status.showMessage(f"Compression steps {done.status}: wrote {names} (Compress section)", 15_000)
        self.runs_panel.refresh()

    def _on_job_ended(self) -> None:
        self.job = None
        self.status.set_device(None)
        self._update_actions()

    def _on_benchmark_message(self, message: str) -> None:
        self.status.showMessage(message, 15_000)
        self.log.add("error" if " failed:" in message else "info", message)

    # ---------------------------------------------------------------- settings
    def restore_settings(self) -> None:
        geometry = keys.read_bytes(self.settings, keys.GEOMETRY)
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 800)
        state = keys.read_bytes(self.settings, keys.STATE)
        if state is not None:
            self.restoreState(state)
        config = keys.load_run_config(self.settings) or keys.first_run_config(self.registry)
        if config is not None:
            try:
                self.apply_config(config)
            except (ConfigError, UnknownEntryError) as err:
                self.log.add("warning", f"The last settings could not be restored: {err}")
        self.monitor_panel.set_smoothing_weight(keys.read_float(self.settings, keys.SMOOTHING, 0.9))
        section = keys.read_int(self.settings, keys.SECTION, MODEL)
        self.show_section(section if 0 <= section < self.stack.count() else MODEL)

    def save_settings(self) -> None:
        self.settings.setValue(keys.GEOMETRY, self.saveGeometry())
        self.settings.setValue(keys.STATE, self.saveState())
        self.settings.setValue(keys.SECTION, self.current_section())
        self.settings.setValue(keys.SMOOTHING, self.monitor_panel.smoothing_weight())
        try:
            if not self.validate():
                keys.save_run_config(self.settings, self.build_config())
        except ConfigError:
            pass
        self.settings.sync()

    def shutdown(self, timeout_ms: int = SHUTDOWN_TIMEOUT_MS) -> bool:
        """Stop a run and the sections' jobs, wait for their threads; True when all ended."""
        self._closing = True  # a run that ends while the window closes starts no compression steps
        if self.benchmark_panel.running:
            self.status.showMessage("Stopping the benchmark\u2026")
        ended = self.benchmark_panel.shutdown(timeout_ms)
        ended = self.inspect_panel.shutdown(timeout_ms) and ended
        ended = self.compress_panel.shutdown(timeout_ms) and ended
        ended = self.evaluate_panel.shutdown(timeout_ms) and ended
        ended = self.make_efficient_panel.shutdown(timeout_ms) and ended
        if self.job is not None:
            self.status.showMessage("Stopping the run\u2026")
        ended = super().shutdown(timeout_ms) and ended
        self.data_panel.shutdown(10_000)  # a preview only reads: not worth holding the close for long
        return ended

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_settings()
        self.shutdown()
        self.monitor_panel.timer.stop()
        self.runs_panel.timer.stop()
        self.runs_panel.close_store()
        self.status.timer.stop()
        event.accept()

