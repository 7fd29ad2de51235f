"""The what-if explorer's figures: the standard time-course panels and the foci panel in Bokeh, what-if beside baseline.

:class:`Figures` builds one Bokeh figure per standard panel and one foci panel (tubule regions holding
sperm and the chance that surgery finds sperm), all fed by two column data sources (named
``whatif_source`` and ``baseline_source``, so a test can read them from the page), and redraws them
from two results tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from bokeh.layouts import gridplot
from bokeh.models import ColumnDataSource, Range1d
from bokeh.models.annotations import BoxAnnotation, Span
from bokeh.plotting import figure

from ra_model.app.state import FOCI_COLUMNS, Scenario, foci_table
from ra_model.model import columns as C

#: Floor for drawing concentrations on the log axis (display only; the table keeps zeros).
LOG_AXIS_FLOOR = 1e-6
#: The standard panels drawn in the page: (column, title, log scale); the same set as ra_model.plots.timecourse.
PANELS = C.STANDARD_PANELS
#: Title of the foci panel, in words a student understands.
FOCI_TITLE = "Foci: tubules holding sperm, and the chance surgery finds sperm"
#: The foci panel's lines: column -> (legend label, colour).
FOCI_LINES: dict[str, tuple[str, str]] = {
    C.TUBULES_WITH_SPERM: ("tubules holding sperm", "#1b9e77"),
    C.RETRIEVAL_CONVENTIONAL_TESE: ("conventional TESE finds sperm", "#d95f02"),
    C.RETRIEVAL_MICRO_TESE: ("micro-TESE finds sperm", "#7570b3"),
}


class Figures:
    """The standard panels as linked Bokeh figures: what-if (solid blue) over baseline (dashed grey).

    Attributes:
        whatif_source: Data of the what-if lines (the standard panels' columns and :data:`FOCI_COLUMNS`).
        baseline_source: Data of the baseline lines.
        grid: The standard figures laid out three to a row, sharing one time axis.
        foci: The foci panel (0-1 axis, same time axis): tubule regions holding sperm and the chance a
            conventional TESE or a micro-TESE finds sperm, what-if solid and baseline dashed.
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
        self.foci = self._foci_figure(x_range=figures[0].x_range)

    def _foci_figure(self, *, x_range: Any) -> Any:
        """Build the foci panel on the shared time axis: one line per foci column for each run."""
        tooltips = [("day", "@time_d{0}")] + [
            (label, f"@{{{column}}}{{0.000}}") for column, (label, _) in FOCI_LINES.items()
        ]
        fig = figure(  # type: ignore[call-arg]  # bokeh's stubs omit the figure options it accepts
            title=FOCI_TITLE,
            height=300,
            sizing_mode="stretch_width",
            x_range=x_range,
            y_range=Range1d(start=-0.02, end=1.02),
            x_axis_label="time (days)",
            y_axis_label="share of tubules / probability (0-1)",
            tools="pan,box_zoom,reset,save,hover",
            tooltips=tooltips,
            name="foci_figure",
        )
        window = BoxAnnotation(left=0, right=0, fill_color="orange", fill_alpha=0.1, visible=False)
        fig.add_layout(window)
        self._windows.append(window)
        for column, (label, colour) in FOCI_LINES.items():
            fig.line(
                C.TIME_D,
                column,
                source=self.baseline_source,
                color=colour,
                line_dash="dashed",
                line_width=1.5,
                line_alpha=0.7,
                legend_label="baseline (dashed)",
            )
            fig.line(C.TIME_D, column, source=self.whatif_source, color=colour, line_width=2.5, legend_label=label)
        fig.legend.location = "center_right"
        fig.legend.label_text_font_size = "8pt"
        fig.legend.click_policy = "hide"
        return fig

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
    return [C.TIME_D, *(column for column, _, _ in PANELS), *FOCI_COLUMNS]


def _empty_data() -> dict[str, Any]:
    return {column: [] for column in _plot_columns()}


def _plot_data(table: pd.DataFrame) -> dict[str, Any]:
    data = {column: table[column].to_numpy(dtype=float) for column, _, _ in PANELS}
    foci = foci_table(table)  # a model without the foci readouts draws no foci lines instead of failing
    data.update({column: foci[column].to_numpy(dtype=float) for column in (C.TIME_D, *FOCI_COLUMNS)})
    for column, _, log_scale in PANELS:
        if log_scale:
            data[column] = np.maximum(data[column], LOG_AXIS_FLOOR)  # display only: log axes cannot show 0
    return data
