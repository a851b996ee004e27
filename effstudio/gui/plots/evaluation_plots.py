"""The Evaluate section's plots, one line per evaluated model (see :mod:`effstudio.gui.plots.model_curves`).

- length generalisation: accuracy at 1x, 2x, 4x, 8x the training maximum length (log axis of lengths);
  points reached only by extending a learned position table are hollow and the legend says so;
- accuracy by length bucket (or bits per character for language modelling);
- the reliability diagram: accuracy against confidence per confidence bin, the diagonal being perfect
  calibration, each model's ECE in the legend;
- robustness: accuracy against perturbation strength, one plot per kind of perturbation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QWidget

from effstudio.evaluate.results import Evaluation, LengthPoint
from effstudio.gui import theme
from effstudio.gui.plots.axes import PERCENT_TITLE, as_percent, free_axis, percent_axis
from effstudio.gui.plots.model_curves import ModelCurves, ModelLine
from effstudio.gui.plots.scaling import LogAxis
from effstudio.gui.tables import fixed_text


def _measure(points: Sequence[object]) -> str:
    """"accuracy" when any point has one, else "loss" (language modelling reports bits per character)."""
    return "accuracy" if any(getattr(p, "accuracy", None) is not None for p in points) else "loss"


def _label(measure: str) -> str:
    return "accuracy" if measure == "accuracy" else "bits per character"


def _shown(measure: str, value: float | None) -> float | None:
    """A value as drawn: accuracy in percent, as everywhere in the window; bits per character as they are."""
    return as_percent(value) if measure == "accuracy" else value


def _text(measure: str, value: float | None) -> str:
    return f"{fixed_text(as_percent(value), 1)}%" if measure == "accuracy" and value is not None else fixed_text(value, 3)


def _value_axis(plot: ModelCurves, measure: str) -> None:
    """Title and range policy of the left axis for ``measure``."""
    if measure == "accuracy":
        percent_axis(plot.plot_item)
        plot.plot_item.setLabel("left", PERCENT_TITLE, color=theme.SECONDARY)
    else:
        free_axis(plot.plot_item)
        plot.plot_item.setLabel("left", _label(measure), color=theme.SECONDARY)


def uses_extension(evaluation: Evaluation) -> bool:
    return any(point.extended for point in evaluation.length_generalisation)


def stops_at(points: Sequence[LengthPoint], measure: str) -> int | None:
    """The first length the model has no value for (a learned position table too short and not extended,
    or a model that cannot run that long)."""
    missing = [p.length for p in points if getattr(p, measure) is None]
    return min(missing) if missing else None


class LengthGeneralisationPlot(ModelCurves):
    """Accuracy against evaluated length, log scale in powers of two."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Length generalisation: accuracy at longer inputs than trained on", "input length (tokens)",
                         PERCENT_TITLE, axis_items={"bottom": LogAxis("bottom", powers_of_two=True)}, parent=parent)
        self.setMinimumHeight(260)

    def show_models(self, evaluations: Sequence[Evaluation]) -> None:
        every = [p for e in evaluations for p in e.length_generalisation]
        measure = _measure(every)
        _value_axis(self, measure)
        lines = []
        for index, evaluation in enumerate(evaluations):
            points = sorted(evaluation.length_generalisation, key=lambda p: p.length)
            if not points:
                continue
            legend = evaluation.model
            if uses_extension(evaluation):
                legend += " (positions extended: hollow)"
            stop = stops_at(points, measure)
            if stop is not None:
                legend += f" \u2014 none from {stop:,} tokens"
            tips = [f"{evaluation.model} at {p.length:,} tokens ({p.factor}\u00d7): {_label(measure)} "
                    f"{_text(measure, getattr(p, measure))}" + (", position table extended" if p.extended else "")
                    for p in points]
            lines.append(ModelLine(evaluation.model, index, [math.log10(max(p.length, 1)) for p in points],
                                   [_shown(measure, getattr(p, measure)) for p in points], tips,
                                   [p.extended for p in points],
                                   legend=legend))
        self.draw(lines)


class ByLengthPlot(ModelCurves):
    """Accuracy (or bits per character) per length bucket; the buckets, in order of length, on the x axis."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Accuracy by input length", "input length (tokens)", PERCENT_TITLE, parent=parent)

    def show_models(self, evaluations: Sequence[Evaluation]) -> None:
        buckets = sorted({(b.low, b.high, b.bucket) for e in evaluations for b in e.by_length})
        place = {name: i for i, (_low, _high, name) in enumerate(buckets)}
        measure = _measure([b for e in evaluations for b in e.by_length])
        _value_axis(self, measure)
        self.plot_item.getAxis("bottom").setTicks([[(i, name) for name, i in place.items()]])
        lines = []
        for index, evaluation in enumerate(evaluations):
            own = sorted(evaluation.by_length, key=lambda b: place[b.bucket])
            if not own:
                continue
            tips = [f"{evaluation.model}, lengths {b.bucket}: {_label(measure)} {_text(measure, getattr(b, measure))} "
                    f"({b.examples:,} examples)" for b in own]
            lines.append(ModelLine(evaluation.model, index, [place[b.bucket] for b in own],
                                   [_shown(measure, getattr(b, measure)) for b in own], tips))
        self.draw(lines)


class ReliabilityPlot(ModelCurves):
    """Accuracy against confidence per bin; on the dashed diagonal a model is perfectly calibrated."""

    def __init__(self, parent: QWidget | None = None):
        # top left: high accuracy at low confidence, where a model's points rarely are
        super().__init__("Reliability: accuracy against confidence", "confidence (%)", PERCENT_TITLE,
                         legend_offset=(8, 8), parent=parent)
        percent_axis(self.plot_item)

    def show_models(self, evaluations: Sequence[Evaluation]) -> None:
        lines = []
        for index, evaluation in enumerate(evaluations):
            bins = [b for b in evaluation.reliability if b.count > 0]
            if not bins:
                continue
            tips = [f"{evaluation.model}, confidence {b.low:.2f}\u2013{b.high:.2f}: mean confidence "
                    f"{100 * b.confidence:.1f}%, accuracy {100 * b.accuracy:.1f}% ({b.count:,} examples)" for b in bins]
            lines.append(ModelLine(evaluation.model, index, [100 * b.confidence for b in bins],
                                   [100 * b.accuracy for b in bins],
                                   tips, legend=f"{evaluation.model} (ECE {fixed_text(evaluation.ece, 3)})"))
        self.draw(lines)
        self.add_item(pg.PlotDataItem([0.0, 100.0], [0.0, 100.0], pen=theme.pen(theme.MUTED, 1.2, dashed=True)))
        self.plot_item.setXRange(0, 100, padding=0.03)
        self.plot_item.setYRange(0, 100, padding=0.03)


class RobustnessPlots(QWidget):
    """One plot per perturbation (token substitution, deletion, insertion; image noise, occlusion,
    rotation), accuracy against its strength, one line per model; ``plots`` by perturbation."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.row = QHBoxLayout(self)
        self.row.setContentsMargins(0, 0, 0, 0)
        self.plots: dict[str, ModelCurves] = {}

    def show_models(self, evaluations: Sequence[Evaluation]) -> None:
        kinds = list(dict.fromkeys(p.perturbation for e in evaluations for p in e.robustness))
        for name in [k for k in self.plots if k not in kinds]:
            self.plots.pop(name).deleteLater()
        for position, kind in enumerate(kinds):
            if kind not in self.plots:
                self.plots[kind] = ModelCurves(f"Robustness: {kind}", "perturbed (%)", PERCENT_TITLE,
                                               legend=position == 0, parent=self)
                percent_axis(self.plots[kind].plot_item)
                self.row.addWidget(self.plots[kind], 1)
            lines = []
            for index, evaluation in enumerate(evaluations):
                points = sorted((p for p in evaluation.robustness if p.perturbation == kind), key=lambda p: p.rate)
                if points:
                    tips = [f"{evaluation.model}, {kind} {p.rate:.0%}: accuracy {100 * p.accuracy:.1f}%" for p in points]
                    lines.append(ModelLine(evaluation.model, index, [100 * p.rate for p in points],
                                           [100 * p.accuracy for p in points], tips))
            self.plots[kind].draw(lines)
        # one accuracy scale for every perturbation, so that the plots compare at a glance
        ranges = [plot.value_range() for plot in self.plots.values() if plot.lines]
        if ranges:
            low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
            for plot in self.plots.values():
                plot.fit_y(low, high, legend_lines=len(evaluations))
