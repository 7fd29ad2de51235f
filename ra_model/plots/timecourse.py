"""Figures: the standard time-course panel and the foci figure, drawn from results tables (never runs the model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ra_model.errors import InvalidValueError
from ra_model.model import columns as C
from ra_model.plots.canvas import subplots

#: The panels of the standard figure (defined with the column names).
STANDARD_PANELS = C.STANDARD_PANELS
#: Title of the foci figure.
FOCI_TITLE = "Foci: tubules holding sperm, and the chance surgery finds sperm"
#: The foci figure's lines: column -> (legend text, line style). Each table keeps one colour.
FOCI_LINES: dict[str, tuple[str, str]] = {
    C.TUBULES_WITH_SPERM: ("tubules holding sperm", "-"),
    C.RETRIEVAL_CONVENTIONAL_TESE: ("conventional TESE finds sperm", "--"),
    C.RETRIEVAL_MICRO_TESE: ("micro-TESE finds sperm", ":"),
}


def plot_timecourse(tables: pd.DataFrame | Sequence[pd.DataFrame], *, labels: Sequence[str] | None = None) -> Figure:
    """Draw the standard six-panel time course with dose markers.

    Args:
        tables: One results table from ``simulate``, or several to overlay.
        labels: Legend labels, one per table; defaults to phenotype and regimen.

    Returns:
        The figure (the caller saves or shows it).
    """
    frames = [tables] if isinstance(tables, pd.DataFrame) else list(tables)
    names = list(labels) if labels else [_label(t) for t in frames]
    fig, axes = subplots(2, 3, figsize=(13, 7), sharex=True, layout="constrained")
    for ax, (column, title, log_scale) in zip(axes.flat, STANDARD_PANELS, strict=True):
        for frame, name in zip(frames, names, strict=True):
            if column == C.PLASMA_ISOTRETINOIN and _sub_daily(frame):
                _plot_daily_band(ax, frame, column, label=name)
                continue
            y = frame[column]
            if log_scale:
                y = y.clip(lower=_log_floor(frames))  # display only: log axes cannot show zero
            ax.plot(frame[C.TIME_D], y, label=name)
        note = _plasma_note(frames) if column == C.PLASMA_ISOTRETINOIN else None
        if log_scale:
            ax.set_yscale("log")
            limit = frames[0].attrs.get("motile_detection_limit_M_per_mL")
            if limit:
                ax.axhline(limit, color="grey", ls=":", lw=1)
                ax.annotate("detection limit (motile)", (0, limit), fontsize=7, color="grey", va="bottom")
        if column in FRACTION_PANELS:
            ax.set_ylim(0.0, 1.02)  # shares: the whole 0-1 range, so a small wiggle looks small
        elif not log_scale:
            ax.set_ylim(bottom=0.0)
        ax.set_title(title, fontsize=10)
        if note:
            box = {"facecolor": "white", "alpha": 0.8, "lw": 0}
            ax.text(0.02, 0.97, note, transform=ax.transAxes, fontsize=7, color="dimgrey", va="top", bbox=box)
        ax.grid(alpha=0.3)
    # dose markers and the dosing period, from every table that has doses (an untreated run has none)
    doses = sorted({d for frame in frames for d in frame.attrs.get("dose_times_d", [])})
    if doses:
        ax0 = axes.flat[0]
        ax0.plot(doses, [0.0] * len(doses), "|", color="k", ms=8, label="doses")
        first, last = min(doses), max(doses)
        for ax in axes.flat:
            ax.axvspan(first, last, color="orange", alpha=0.12, lw=0)
    _mark_changes(axes, frames)
    for ax in axes[1]:
        ax.set_xlabel("time (days)")
    axes.flat[0].legend(fontsize=8, loc="center right")
    return fig


#: Note on the plasma panel when tables are sampled within the day.
PLASMA_BAND_NOTE = "line: daily mean; band: lowest to highest within the day"
#: Note on the plasma panel when a dosed table is sampled once per dosing interval or less often.
PLASMA_SAMPLED_NOTE = "one sample every {step:g} d ({doses:g} doses): the swing is not shown (use --step 1h)"


#: Panels that show a share (0-1): drawn on the whole range.
FRACTION_PANELS = frozenset({C.BTB_INTEGRITY, C.SPERMIATION_EFFICIENCY})
#: Colour of the lines that mark scheduled parameter changes.
CHANGE_COLOUR = "purple"


def _mark_changes(axes: Any, frames: Sequence[pd.DataFrame]) -> None:
    """Mark every scheduled parameter change (``attrs["changes"]``) with a dashed line, named on the atRA panel."""
    changes = sorted(
        {(float(t), str(name), float(value)) for f in frames for t, name, value in f.attrs.get("changes", ())}
    )
    for t_d, name, value in changes:
        for ax in axes.flat:
            ax.axvline(t_d, color=CHANGE_COLOUR, ls="--", lw=0.9, alpha=0.8)
        axes.flat[1].annotate(
            f"{name} = {value:g}",
            (t_d, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -2),
            textcoords="offset points",
            rotation=90,
            va="top",
            fontsize=7,
            color=CHANGE_COLOUR,
        )


def _log_floor(frames: Sequence[pd.DataFrame]) -> float:
    """Lowest value drawn on a log panel: a decade below the detection limit, so zero never looks detected."""
    limits = [
        float(f.attrs["motile_detection_limit_M_per_mL"])
        for f in frames
        if f.attrs.get("motile_detection_limit_M_per_mL")
    ]
    return min([1e-6, *(limit / 10.0 for limit in limits if limit > 0)])


def _steps_d(frame: pd.DataFrame) -> float:
    times = frame[C.TIME_D].to_numpy(dtype=float)
    return float(pd.Series(times).diff().median()) if len(times) > 1 else float("nan")


def _sub_daily(frame: pd.DataFrame) -> bool:
    """True when the table has several rows per day (the within-day swing of the drug can be drawn)."""
    return _steps_d(frame) < 0.5


def _plot_daily_band(ax: Axes, frame: pd.DataFrame, column: str, *, label: str) -> None:
    """Draw a sub-daily column as its daily mean with the day's lowest-to-highest band."""
    day = frame[C.TIME_D].to_numpy(dtype=float) // 1.0
    daily = frame.groupby(day)[column].agg(["mean", "min", "max"])
    (line,) = ax.plot(daily.index + 0.5, daily["mean"], label=label)
    ax.fill_between(daily.index + 0.5, daily["min"], daily["max"], color=line.get_color(), alpha=0.25, lw=0)


def _plasma_note(frames: Sequence[pd.DataFrame]) -> str | None:
    """Say on the plasma panel how it was drawn, so a sampling artefact is never read as the level."""
    dosed = [f for f in frames if len(f.attrs.get("dose_times_d", ())) > 1]
    if any(_sub_daily(f) for f in frames):
        text = PLASMA_BAND_NOTE
    elif dosed:
        frame = dosed[0]
        doses = frame.attrs["dose_times_d"]
        interval = float(pd.Series(list(doses)).diff().median())
        step = _steps_d(frame)
        if step < interval:
            return None
        text = PLASMA_SAMPLED_NOTE.format(step=step, doses=step / interval)
    else:
        return None
    return text


def plot_foci(
    tables: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    labels: Sequence[str] | None = None,
    title: str = FOCI_TITLE,
) -> Figure:
    """Draw the foci over time: tubule regions holding sperm and the chance surgery finds sperm.

    One axis from 0 to 1 with three lines per table: ``tubules_with_sperm`` (solid), the chance that
    a conventional TESE finds sperm (dashed) and that a micro-TESE does (dotted); each table has one
    colour, in the order :func:`plot_timecourse` uses. The dosing period is shaded. The figure is a
    :class:`matplotlib.figure.Figure` made without pyplot, so drawing it touches no global state.

    Args:
        tables: One results table from ``simulate``, or several to overlay.
        labels: Legend labels, one per table; defaults to phenotype and regimen.
        title: Figure title.

    Returns:
        The figure (the caller saves it, e.g. ``plot_foci(table).savefig("foci.png")``).

    Raises:
        InvalidValueError: If no table is given, the labels do not match the tables, or a table lacks
            ``time_d`` or one of the foci columns.
    """
    frames = [tables] if isinstance(tables, pd.DataFrame) else list(tables)
    if not frames:
        raise InvalidValueError("plot_foci got no results table; pass one or more tables returned by simulate")
    names = list(labels) if labels is not None else [_label(t) for t in frames]
    if len(names) != len(frames):
        raise InvalidValueError(f"plot_foci got {len(names)} labels for {len(frames)} tables; give one label per table")
    wanted = (C.TIME_D, *FOCI_LINES)
    for i, frame in enumerate(frames):
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise InvalidValueError(
                f"results table {i} has no column {missing[0]!r}; pass tables from simulate() of a model with "
                "the foci readouts (tubules_with_sperm, retrieval_conventional_TESE, retrieval_micro_TESE)"
            )
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.add_subplot()
    colours = [f"C{i % 10}" for i in range(len(frames))]
    for frame, name, colour in zip(frames, names, colours, strict=True):
        for column, (what, style) in FOCI_LINES.items():
            ax.plot(frame[C.TIME_D], frame[column], color=colour, ls=style, lw=1.8, label=f"{name}: {what}")
    doses = sorted({d for frame in frames for d in frame.attrs.get("dose_times_d", [])})
    if doses:
        ax.axvspan(min(doses), max(doses), color="orange", alpha=0.12, lw=0, label="treatment")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("time (days)")
    ax.set_ylabel("share of tubules / probability (0-1)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _label(frame: pd.DataFrame) -> str:
    regimen = frame.attrs.get("regimen") or "no drug"
    return f"{frame.attrs.get('phenotype', '?')}: {regimen}"
