"""The what-if explorer's figures: the standard time-course panels in Bokeh, what-if beside baseline.

:class:`Figures` builds one Bokeh figure per standard panel, all fed by two column data sources
(named ``whatif_source`` and ``baseline_source``, so a test can read them from the page), and
redraws them from two results tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from bokeh.layouts import gridplot
from bokeh.models import ColumnDataSource
from bokeh.models.annotations import BoxAnnotation, Span
from bokeh.plotting import figure

from ra_model.app.state import Scenario
from ra_model.model import columns as C

#: Floor for drawing concentrations on the log axis (display only; the table keeps zeros).
LOG_AXIS_FLOOR = 1e-6
#: The standard panels drawn in the page: (column, title, log scale); the same set as ra_model.plots.timecourse.
PANELS = C.STANDARD_PANELS


class Figures:
    """The standard panels as linked Bokeh figures: what-if (solid blue) over baseline (dashed grey).

    Attributes:
        whatif_source: Data of the what-if lines.
        baseline_source: Data of the baseline lines.
        grid: The figures laid out three to a row, sharing one time axis.
    """

    def __init__(self) -> None:
        """Build the empty figures."""
        self.whatif_source = ColumnDataSource(_empty_data(), name="whatif_source")
        self.baseline_source = ColumnDataSource(_empty_data(), name="baseline_source")
        self._windows: list[BoxAnnotation] = []
        self._limit = Span(location=1e-3, dimension="width", line_color="grey", line_dash="dotted")
        figures: list[Any] = []
        for column, title, log_scale in PANELS:
            fig = figure(  # type: ignore[call-arg]  # bokeh's stubs omit the figure options it accepts
                title=title,
                height=230,
                sizing_mode="stretch_width",
                y_axis_type="log" if log_scale else "linear",
                x_axis_label="time (days)",
                tools="pan,box_zoom,reset,save,hover",
                tooltips=[("day", "@time_d{0}"), ("value", f"@{{{column}}}{{0.000}}")],
            )
            if figures:
                fig.x_range = figures[0].x_range  # zoom and pan all panels together
            window = BoxAnnotation(left=0, right=0, fill_color="orange", fill_alpha=0.1, visible=False)
            fig.add_layout(window)
            self._windows.append(window)
            fig.line(
                C.TIME_D,
                column,
                source=self.baseline_source,
                color="#777777",
                line_dash="dashed",
                line_width=2,
                legend_label="baseline",
            )
            fig.line(C.TIME_D, column, source=self.whatif_source, color="#1f5fbf", line_width=2, legend_label="what-if")
            if log_scale:
                fig.add_layout(self._limit)
            fig.legend.location = "top_right"
            fig.legend.label_text_font_size = "8pt"
            figures.append(fig)
        self.grid = gridplot(figures, ncols=3, sizing_mode="stretch_width", toolbar_location="right")

    def draw(self, table: pd.DataFrame, baseline: pd.DataFrame) -> None:
        """Draw a what-if run and its baseline, with the what-if's treatment window and detection limit."""
        self.whatif_source.data = _plot_data(table)
        self.baseline_source.data = _plot_data(baseline)
        limit = table.attrs.get("motile_detection_limit_M_per_mL")
        if limit:
            self._limit.location = float(limit)
        doses = table.attrs.get("dose_times_d") or []
        for window in self._windows:
            if doses:
                window.update(left=float(min(doses)), right=float(max(doses)), visible=True)
            else:
                window.visible = False

    def clear_whatif(self) -> None:
        """Remove the what-if lines (after a failed run), keeping the baseline."""
        self.whatif_source.data = _empty_data()


def caption(whatif: Scenario, base: Scenario) -> str:
    """Return the Markdown caption that says which line is which run."""
    return (
        f"Solid blue: **what-if** ({whatif.label()}). Dashed grey: **baseline** ({base.label()}). "
        "Orange band: treatment. Dotted line: detection limit for motile sperm."
    )


def _plot_columns() -> list[str]:
    return [C.TIME_D, *(column for column, _, _ in PANELS)]


def _empty_data() -> dict[str, Any]:
    return {column: [] for column in _plot_columns()}


def _plot_data(table: pd.DataFrame) -> dict[str, Any]:
    data = {column: table[column].to_numpy(dtype=float) for column in _plot_columns()}
    for column, _, log_scale in PANELS:
        if log_scale:
            data[column] = np.maximum(data[column], LOG_AXIS_FLOOR)  # display only: log axes cannot show 0
    return data
