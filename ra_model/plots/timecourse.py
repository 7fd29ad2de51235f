"""Figures: the standard time-course panel, drawn from a results table (never runs the model)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ra_model.model import columns as C  # noqa: E402

#: The panels of the standard figure (defined with the column names).
STANDARD_PANELS = C.STANDARD_PANELS


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
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True, layout="constrained")
    for ax, (column, title, log_scale) in zip(axes.flat, STANDARD_PANELS, strict=True):
        for frame, name in zip(frames, names, strict=True):
            y = frame[column]
            if log_scale:
                y = y.clip(lower=1e-6)  # display only: log axes cannot show zero
            ax.plot(frame[C.TIME_D], y, label=name)
        if log_scale:
            ax.set_yscale("log")
            limit = frames[0].attrs.get("motile_detection_limit_M_per_mL")
            if limit:
                ax.axhline(limit, color="grey", ls=":", lw=1)
                ax.annotate("detection limit (motile)", (0, limit), fontsize=7, color="grey", va="bottom")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    # dose markers and the dosing period, from every table that has doses (an untreated run has none)
    doses = sorted({d for frame in frames for d in frame.attrs.get("dose_times_d", [])})
    if doses:
        ax0 = axes.flat[0]
        ax0.plot(doses, [0.0] * len(doses), "|", color="k", ms=8, label="doses")
        first, last = min(doses), max(doses)
        for ax in axes.flat:
            ax.axvspan(first, last, color="orange", alpha=0.12, lw=0)
    for ax in axes[1]:
        ax.set_xlabel("time (days)")
    axes.flat[0].legend(fontsize=8, loc="upper right")
    return fig


def _label(frame: pd.DataFrame) -> str:
    regimen = frame.attrs.get("regimen") or "no drug"
    return f"{frame.attrs.get('phenotype', '?')}: {regimen}"
