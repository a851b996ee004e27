"""Live run figures: progress and ETA from step events, and the tiles that show them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from effstudio.engine.events import DoneEvent, EvalEvent, StartEvent, StepEvent
from effstudio.gui import theme
from effstudio.gui.theme import monospace_font

DASH = "\u2014"


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return DASH
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_count(value: float | None, unit: str = "") -> str:
    if value is None or not math.isfinite(value):
        return DASH
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.1f}{suffix}{unit}"
    return f"{value:.0f}{unit}"


def format_number(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:.{digits}g}"


def run_summary(done: DoneEvent) -> str:
    """One line on how a run ended, for the log and the status bar."""
    if done.status == "failed":
        return f"Failed: {done.error or 'unknown error'}"
    summary = (f"{done.status.capitalize()} after {done.steps} steps in {format_duration(done.seconds)}"
               f" \u00b7 final loss {format_number(done.final_loss)}")
    if done.val_accuracy is not None:
        summary += f" \u00b7 val accuracy {100 * done.val_accuracy:.1f}%"
    if done.checkpoint:
        summary += f" \u00b7 checkpoint {done.checkpoint}"
    return summary


@dataclass
class RunProgress:
    """What the progress bar, the tiles and the status bar show about the current run."""

    total_steps: int = 0
    start_step: int = 0
    step: int = 0
    elapsed_s: float = 0.0
    loss: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    tokens_per_s: float | None = None
    rss_mb: float | None = None
    params: int | None = None
    device: str = ""
    run_dir: str = ""
    ending: bool = False  # stopping or ended: no estimate of the time left is shown


    def start(self, event: StartEvent) -> None:
        self.total_steps, self.start_step, self.step = event.total_steps, event.start_step, event.start_step
        self.params, self.device, self.run_dir = event.params, event.device, event.run_dir
        self.elapsed_s, self.ending = 0.0, False
        self.loss = self.val_loss = self.val_accuracy = self.tokens_per_s = None

    def add_steps(self, events: list[StepEvent]) -> None:
        if not events:
            return
        last = events[-1]
        self.step, self.total_steps, self.elapsed_s = last.step, last.total_steps, last.elapsed_s
        self.loss, self.tokens_per_s, self.rss_mb = last.loss, last.tokens_per_s, last.rss_mb

    def add_eval(self, event: EvalEvent) -> None:
        self.val_loss, self.val_accuracy = event.val_loss, event.val_accuracy

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0

    def end(self) -> None:
        """The run is stopping or has ended: its figures stay, the time left is no longer estimated."""
        self.ending = True

    @property
    def eta_s(self) -> float | None:
        done = self.step - self.start_step
        if self.ending or done <= 0 or self.elapsed_s <= 0:
            return None
        return (self.total_steps - self.step) * self.elapsed_s / done


class MetricTile(QFrame):
    """A caption over a big monospace number."""

    def __init__(self, name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("metricTile")
        self.setStyleSheet(f"QFrame#metricTile {{ background: {theme.SURFACE}; border: 1px solid {theme.BORDER};"
                           " border-radius: 6px; }")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(0)
        caption = QLabel(name.upper(), self)
        caption.setObjectName("metricName")
        self.value = QLabel(DASH, self)
        self.value.setObjectName("metricValue")
        font = monospace_font()
        font.setPointSize(max(font.pointSize(), 10) + 2)
        font.setBold(True)
        self.value.setFont(font)
        self.value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(caption)
        layout.addWidget(self.value)

    def set_text(self, text: str) -> None:
        self.value.setText(text)


class MetricStrip(QWidget):
    """A row (or grid) of tiles filled from a RunProgress."""

    NAMES = ("step", "loss", "val loss", "val accuracy", "tokens/s", "elapsed", "ETA")

    def __init__(self, columns: int | None = None, names: tuple[str, ...] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        names = names or self.NAMES
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        columns = columns or len(names)
        self.tiles = {}
        for i, name in enumerate(names):
            tile = MetricTile(name, self)
            self.tiles[name] = tile
            layout.addWidget(tile, i // columns, i % columns)

    def show_progress(self, p: RunProgress) -> None:
        values = {
            "step": f"{p.step}/{p.total_steps}" if p.total_steps else DASH,
            "loss": format_number(p.loss),
            "val loss": format_number(p.val_loss),
            "val accuracy": DASH if p.val_accuracy is None else f"{100 * p.val_accuracy:.1f}%",
            "tokens/s": format_count(p.tokens_per_s),
            "elapsed": format_duration(p.elapsed_s) if p.total_steps else DASH,
            "ETA": format_duration(p.eta_s),
        }
        for name, tile in self.tiles.items():
            tile.set_text(values[name])
