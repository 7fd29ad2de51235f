"""The what-if explorer's figures: the standard time-course panels and the foci panel in Bokeh, what-if beside baseline.

:class:`Figures` builds one Bokeh figure per standard panel and one foci panel (tubule regions holding
sperm and the chance that surgery finds sperm), fed by column data sources named ``whatif_source`` and
``baseline_source`` (every panel but the plasma one) and ``whatif_plasma_source`` and
``baseline_plasma_source`` (plasma drug by day: the day's mean and its lowest-to-highest band, from the
hourly rows of a treated run), so a test can read them from the page; it redraws them from two runs.

Every axis has a fixed, meaningful range: shares from 0 to 1, the other linear panels from 0, and the
ejaculate panel from a decade below the detection limit (read from the table, a derived model quantity)
to above the normal range, with the detection limits and the WHO lower limit drawn as dotted lines.
Legends sit outside the plotting area, so they never cover a curve. The panels carry no title: the page
puts each title beside a (?) that explains the panel (:data:`ra_model.app.guide.PANEL_HELP`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from bokeh.models import ColumnDataSource, Range1d
from bokeh.models.annotations import BoxAnnotation, Label, Legend, LegendItem, Span
from bokeh.plotting import figure

from ra_model.app.guide import PANEL_TITLES
from ra_model.app.state import (
    FOCI_COLUMNS,
    PLASMA_DAY_COLUMNS,
    PLASMA_DAY_MAX,
    PLASMA_DAY_MEAN,
    PLASMA_DAY_MIN,
    detection_limit,
    foci_table,
)
from ra_model.model import columns as C
from ra_model.model.semen import LIMIT_ATTRS

#: Floor for drawing concentrations on the log axis when a table names no detection limit (display only).
LOG_AXIS_FLOOR = 1e-6
#: The standard panels drawn in the page: (column, title, log scale); the same set as ra_model.plots.timecourse.
PANELS = C.STANDARD_PANELS
#: The line panels' y ranges: column -> (start, smallest end). The end grows to 1.08 x the highest value drawn.
#: Shares (0-1) stay at 0-1 (with :data:`SHARE_PAD` either side, so lines at 0 and 1 stay visible); STRA8
#: (1 = healthy) and testis atRA (7 nM healthy) keep the healthy level well inside.
Y_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        C.PLASMA_ISOTRETINOIN: (0.0, 50.0),
        C.TESTIS_ATRA: (0.0, 10.0),
        C.STRA8: (0.0, 1.5),
        C.BTB_INTEGRITY: (0.0, 1.0),
        C.SPERMIATION_EFFICIENCY: (0.0, 1.0),
    }
)
#: Panels that show a share (0 to 1): their range is 0-1 and never moves.
SHARE_PANELS: frozenset[str] = frozenset({C.BTB_INTEGRITY, C.SPERMIATION_EFFICIENCY})
#: Margin drawn beyond 0 and 1 on the share panels and the foci panel.
SHARE_PAD = 0.02
#: Smallest top of the ejaculate panel, million/mL: above the normal range (WHO lower limit 15).
EJACULATE_TOP_M_PER_ML = 300.0
#: The ejaculate panel's reference lines: attrs key -> (label, whether the label sits above the line); each is
#: drawn when the table has the key. Below the detection limit a grey zone says "none detectable".
EJACULATE_LINES: Mapping[str, tuple[str, bool]] = MappingProxyType(
    {
        LIMIT_ATTRS["pellet_detection_limit"]: ("detection limit", True),
        LIMIT_ATTRS["fresh_detection_limit"]: ("fresh count limit", True),
        LIMIT_ATTRS["oligozoospermia_limit"]: ("WHO lower limit", False),
    }
)
#: Text of the zone below the detection limit on the ejaculate panel.
NONE_DETECTABLE = "none detectable"
#: Title of the foci panel, in words a student understands.
FOCI_TITLE = PANEL_TITLES["foci"]
#: The foci panel's lines: column -> (legend label, colour).
FOCI_LINES: dict[str, tuple[str, str]] = {
    C.TUBULES_WITH_SPERM: ("tubules holding sperm", "#1b9e77"),
    C.RETRIEVAL_CONVENTIONAL_TESE: ("conventional TESE finds sperm", "#d95f02"),
    C.RETRIEVAL_MICRO_TESE: ("micro-TESE finds sperm", "#7570b3"),
}
_WHATIF_COLOUR = "#1f5fbf"
_BASELINE_COLOUR = "#777777"


class Figures:
    """The standard panels as linked Bokeh figures: what-if (solid blue) over baseline (dashed grey).

    Attributes:
        whatif_source: Data of the what-if lines (the standard panels' columns but plasma, and :data:`FOCI_COLUMNS`).
        baseline_source: Data of the baseline lines.
        whatif_plasma_source: The what-if run's plasma drug by day (:data:`PLASMA_DAY_COLUMNS`).
        baseline_plasma_source: The baseline run's plasma drug by day.
        panels: The standard figures by column, in :data:`PANELS` order, sharing one time axis.
        foci: The foci panel (0-1 axis, same time axis): tubule regions holding sperm and the chance a
            conventional TESE or a micro-TESE finds sperm, what-if solid and baseline dashed.
        limit_lines: The ejaculate panel's reference lines by attrs key (:data:`EJACULATE_LINES`).
    """

    def __init__(self) -> None:
        """Build the empty figures."""
        self.whatif_source = ColumnDataSource(_empty_data(), name="whatif_source")
        self.baseline_source = ColumnDataSource(_empty_data(), name="baseline_source")
        self.whatif_plasma_source = ColumnDataSource(_empty_plasma(), name="whatif_plasma_source")
        self.baseline_plasma_source = ColumnDataSource(_empty_plasma(), name="baseline_plasma_source")
        self._windows: list[BoxAnnotation] = []
        self.panels: dict[str, Any] = {}
        self.limit_lines: dict[str, Span] = {}
        self._limit_labels: dict[str, Label] = {}
        self._none_zone = BoxAnnotation(fill_color="grey", fill_alpha=0.15, line_alpha=0.0, visible=False)
        self._none_label = _label(1.0, NONE_DETECTABLE, above=False)
        x_range: Any = None
        for column, _, log_scale in PANELS:
            fig = self._panel(column, log_scale=log_scale, x_range=x_range)
            x_range = fig.x_range
            self.panels[column] = fig
        self.foci = self._foci_figure(x_range=x_range)

    def _panel(self, column: str, *, log_scale: bool, x_range: Any) -> Any:
        """Build one standard panel: baseline and what-if, the treatment window, a legend below the plot."""
        plasma = column == C.PLASMA_ISOTRETINOIN
        if plasma:
            tooltips = [
                ("day", "@time_d{0}"),
                ("mean", f"@{{{PLASMA_DAY_MEAN}}}{{0.0}}"),
                ("lowest", f"@{{{PLASMA_DAY_MIN}}}{{0.0}}"),
                ("highest", f"@{{{PLASMA_DAY_MAX}}}{{0.0}}"),
            ]
        else:
            tooltips = [("day", "@time_d{0}"), ("value", f"@{{{column}}}{{0.000}}")]
        options: dict[str, Any] = {
            "height": 250,
            "sizing_mode": "stretch_width",
            "y_axis_type": "log" if log_scale else "linear",
            "x_axis_label": "time (days)",
            "tools": "pan,box_zoom,reset,save,hover",
            "tooltips": tooltips,
            "y_range": Range1d(start=1e-7, end=EJACULATE_TOP_M_PER_ML) if log_scale else Range1d(start=0.0, end=1.0),
            "name": f"panel_{column}",
        }
        if x_range is not None:
            options["x_range"] = x_range  # zoom and pan all panels together
        fig = figure(**options)  # bokeh's figure accepts these options
        fig.toolbar.autohide = True
        window = BoxAnnotation(left=0, right=0, fill_color="orange", fill_alpha=0.1, visible=False)
        fig.add_layout(window)
        self._windows.append(window)
        if plasma:
            items = [
                self._band(fig, self.baseline_plasma_source, _BASELINE_COLOUR, "baseline", dashed=True),
                self._band(fig, self.whatif_plasma_source, _WHATIF_COLOUR, "what-if", dashed=False),
            ]
        else:
            base = fig.line(
                C.TIME_D,
                column,
                source=self.baseline_source,
                color=_BASELINE_COLOUR,
                line_dash="dashed",
                line_width=2,
            )
            what = fig.line(C.TIME_D, column, source=self.whatif_source, color=_WHATIF_COLOUR, line_width=2)
            items = [_item("baseline", [base]), _item("what-if", [what])]
        if column == C.STRA8:
            fig.add_layout(Span(location=1.0, dimension="width", line_color="green", line_dash="dotted"))
        if log_scale:
            fig.add_layout(self._none_zone)
            fig.add_layout(self._none_label)
            for key, (text, above) in EJACULATE_LINES.items():
                line = Span(location=1.0, dimension="width", line_color="grey", line_dash="dotted", visible=False)
                label = _label(1.0, text, above=above)
                fig.add_layout(line)
                fig.add_layout(label)
                self.limit_lines[key] = line
                self._limit_labels[key] = label
        legend = Legend(
            items=items,
            orientation="horizontal",
            label_text_font_size="8pt",
            margin=0,
            border_line_alpha=0.0,
        )
        legend.update(padding=2)
        fig.add_layout(legend, "below")
        return fig

    @staticmethod
    def _band(fig: Any, source: ColumnDataSource, colour: str, label: str, *, dashed: bool) -> LegendItem:
        """Draw a run's plasma drug: the day's range as a band, its mean as a line; one legend entry for both."""
        band = fig.varea(
            x=C.TIME_D, y1=PLASMA_DAY_MIN, y2=PLASMA_DAY_MAX, source=source, fill_color=colour, fill_alpha=0.35
        )
        mean = fig.line(
            C.TIME_D,
            PLASMA_DAY_MEAN,
            source=source,
            color=colour,
            line_width=2,
            line_dash="dashed" if dashed else "solid",
        )
        return _item(label, [mean, band])

    def _foci_figure(self, *, x_range: Any) -> Any:
        """Build the foci panel on the shared time axis: one line per foci column for each run."""
        tooltips = [("day", "@time_d{0}")] + [
            (label, f"@{{{column}}}{{0.000}}") for column, (label, _) in FOCI_LINES.items()
        ]
        fig = figure(  # type: ignore[call-arg]  # bokeh's stubs omit the figure options it accepts
            height=300,
            sizing_mode="stretch_width",
            x_range=x_range,
            y_range=Range1d(start=-SHARE_PAD, end=1.0 + SHARE_PAD),
            x_axis_label="time (days)",
            y_axis_label="share of tubules / probability (0-1)",
            tools="pan,box_zoom,reset,save,hover",
            tooltips=tooltips,
            name="foci_figure",
        )
        fig.toolbar.autohide = True
        window = BoxAnnotation(left=0, right=0, fill_color="orange", fill_alpha=0.1, visible=False)
        fig.add_layout(window)
        self._windows.append(window)
        items = []
        dashed = []
        for column, (label, colour) in FOCI_LINES.items():
            dashed.append(
                fig.line(
                    C.TIME_D,
                    column,
                    source=self.baseline_source,
                    color=colour,
                    line_dash="dashed",
                    line_width=1.5,
                    line_alpha=0.7,
                )
            )
            solid = fig.line(C.TIME_D, column, source=self.whatif_source, color=colour, line_width=2.5)
            items.append(_item(label, [solid]))
        items.append(_item("baseline (dashed)", dashed))
        fig.add_layout(Legend(items=items, label_text_font_size="8pt", click_policy="hide"), "right")
        return fig

    def draw(self, table: pd.DataFrame, baseline: pd.DataFrame, *, plasma: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        """Draw a what-if run and its baseline, with the what-if's treatment window and detection limits.

        Args:
            table: The what-if run's results table.
            baseline: The baseline run's results table.
            plasma: The two runs' plasma drug by day (:func:`ra_model.app.state.plasma_by_day`), what-if first.
        """
        self.whatif_source.data = _plot_data(table)
        self.baseline_source.data = _plot_data(baseline)
        self.whatif_plasma_source.data = _plasma_data(plasma[0])
        self.baseline_plasma_source.data = _plasma_data(plasma[1])
        for column, (start, end) in Y_RANGES.items():
            if column in SHARE_PANELS:
                _set_range(self.panels[column].y_range, start - SHARE_PAD, end + SHARE_PAD)
                continue
            if column == C.PLASMA_ISOTRETINOIN:
                highest = max(_highest(p, PLASMA_DAY_MAX) for p in plasma)
            else:
                highest = max(_highest(t, column) for t in (table, baseline))
            _set_range(self.panels[column].y_range, start, max(end, 1.08 * highest))
        floor = log_floor(table)
        bottom = floor / 3.0  # zero is drawn at the floor, inside the "none detectable" zone
        top = max(EJACULATE_TOP_M_PER_ML, 2.0 * max(_highest(t, C.EJACULATE_CONCENTRATION) for t in (table, baseline)))
        _set_range(self.panels[C.EJACULATE_CONCENTRATION].y_range, bottom, top)
        right = float(table[C.TIME_D].iloc[-1]) if C.TIME_D in table.columns and not table.empty else 0.0
        for key, line in self.limit_lines.items():
            value = float(table.attrs.get(key) or math.nan)
            shown = bottom < value < top
            line.visible = self._limit_labels[key].visible = shown
            if shown:
                line.location = value
                self._limit_labels[key].update(x=right, y=value)
        limit = detection_limit(table)
        self._none_zone.update(bottom=bottom, top=limit if limit > 0 else bottom, visible=limit > 0)
        self._none_label.update(x=right, y=limit, visible=limit > 0)
        doses = table.attrs.get("dose_times_d") or []
        for window in self._windows:
            if doses:
                window.update(left=float(min(doses)), right=float(max(doses)), visible=True)
            else:
                window.visible = False

    def clear_whatif(self) -> None:
        """Remove the what-if lines (after a failed run), keeping the baseline."""
        self.whatif_source.data = _empty_data()
        self.whatif_plasma_source.data = _empty_plasma()


def caption(whatif: str, base: str) -> str:
    """Return the Markdown caption that says which line is which run, given the two runs in words."""
    return (
        f"Solid blue: **what-if** ({whatif}). Dashed grey: **baseline** ({base}). Orange band: treatment. "
        "Hover over a (?) for what a panel shows."
    )


def log_floor(table: pd.DataFrame) -> float:
    """Return the lowest value drawn on the ejaculate panel: a decade below the table's detection limit.

    So a concentration of zero (drawn there) never looks detected; :data:`LOG_AXIS_FLOOR` when the table
    names no detection limit.
    """
    limit = detection_limit(table)
    return limit / 10.0 if limit > 0 else LOG_AXIS_FLOOR


def _item(label: str, renderers: list[Any]) -> LegendItem:
    return LegendItem(label=label, renderers=renderers)


def _label(y: float, text: str, *, above: bool) -> Label:
    """A small grey text at the right end of a horizontal line (moved to the run's last day when drawn)."""
    return Label(
        x=0.0,
        y=y,
        text=text,
        text_align="right",
        text_baseline="bottom" if above else "top",
        text_font_size="7pt",
        text_color="dimgrey",
        visible=False,
    )


def _set_range(y_range: Range1d, start: float, end: float) -> None:
    """Set a y range and what the reset tool returns to."""
    y_range.update(start=start, end=end, reset_start=start, reset_end=end)


def _highest(table: pd.DataFrame, column: str) -> float:
    if column not in table.columns or table.empty:
        return 0.0
    values = table[column].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else 0.0


def _line_columns() -> list[str]:
    panels = [column for column, _, _ in PANELS if column != C.PLASMA_ISOTRETINOIN]
    return [C.TIME_D, *panels, *FOCI_COLUMNS]


def _empty_data() -> dict[str, Any]:
    return {column: [] for column in _line_columns()}


def _empty_plasma() -> dict[str, Any]:
    return {column: [] for column in PLASMA_DAY_COLUMNS}


def _plasma_data(plasma_day: pd.DataFrame) -> dict[str, Any]:
    if plasma_day.empty:
        return _empty_plasma()
    return {column: plasma_day[column].to_numpy(dtype=float) for column in PLASMA_DAY_COLUMNS}


def _plot_data(table: pd.DataFrame) -> dict[str, Any]:
    data = {column: table[column].to_numpy(dtype=float) for column in _line_columns()[1:] if column in table.columns}
    foci = foci_table(table)  # a model without the foci readouts draws no foci lines instead of failing
    data.update({column: foci[column].to_numpy(dtype=float) for column in (C.TIME_D, *FOCI_COLUMNS)})
    for column, _, log_scale in PANELS:
        if log_scale and column in data:
            data[column] = np.maximum(data[column], log_floor(table))  # display only: log axes cannot show 0
    for column in _line_columns():
        data.setdefault(column, np.full(len(table), np.nan))
    return data
