"""One policy for the value axes that carry a unit: accuracy in percent, memory in MB.

Accuracy is drawn in percent everywhere (a fraction of the engine, times 100) on an
axis that never leaves 0..100: a single validation point does not stretch it below
zero. A memory axis never spans less than MIN_MEMORY_RANGE_MB, so a few kilobytes of
allocator noise do not fill the plot as a spike, never goes below zero, and shows
plain megabytes (no scaling prefix such as "(x0.001)" beside the unit).
"""

from __future__ import annotations

import pyqtgraph as pg

MIN_PERCENT_RANGE = 10.0  # percentage points: the narrowest accuracy axis
MIN_MEMORY_RANGE_MB = 16.0
PERCENT_TITLE = "accuracy (%)"
MEMORY_TITLE = "memory (MB)"


def as_percent(fraction: float | None) -> float | None:
    """An accuracy of the engine (a fraction) as the plots and tables show it."""
    return None if fraction is None else 100.0 * fraction


def percent_axis(plot: pg.PlotItem) -> pg.PlotItem:
    """The left axis shows a percentage (title it PERCENT_TITLE): auto-ranged inside 0..100, at least
    MIN_PERCENT_RANGE wide."""
    plot.setLimits(yMin=0.0, yMax=100.0, minYRange=MIN_PERCENT_RANGE)
    plot.getAxis("left").enableAutoSIPrefix(False)
    return plot


def memory_axis(plot: pg.PlotItem) -> pg.PlotItem:
    """The left axis shows megabytes (title it MEMORY_TITLE): from zero up, at least MIN_MEMORY_RANGE_MB
    wide, never rescaled."""
    plot.setLimits(yMin=0.0, minYRange=MIN_MEMORY_RANGE_MB)
    plot.getAxis("left").enableAutoSIPrefix(False)
    return plot


def free_axis(plot: pg.PlotItem) -> pg.PlotItem:
    """Lift a percent or memory policy (an axis that shows another quantity now)."""
    plot.setLimits(yMin=None, yMax=None, minYRange=None)
    return plot
