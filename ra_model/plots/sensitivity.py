"""Figures for sensitivity results: index bar charts with confidence intervals and tornado plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ra_model.plots.canvas import subplots


def index_figures(indices: pd.DataFrame, *, title: str = "") -> dict[str, Figure]:
    """Draw one index bar chart per metric of a sensitivity table.

    Args:
        indices: A table from :mod:`ra_model.studies.sensitivity` with a ``metric`` column.
        title: Title prefix (e.g. phenotype and regimen); the metric is appended.

    Returns:
        Figures keyed ``indices_<metric>``, the file stem they are saved under.
    """
    return {
        f"indices_{metric}": plot_indices(indices, metric=metric, title=f"{title}: {metric}" if title else metric)
        for metric in indices["metric"].unique()
    }


def plot_indices(indices: pd.DataFrame, *, metric: str, title: str = "") -> Figure:
    """Draw a horizontal bar chart of Sobol (S1 and ST) or Morris (mu*) indices with 95 % intervals.

    Args:
        indices: A table from :mod:`ra_model.studies.sensitivity` (Sobol or Morris columns).
        metric: Which metric's rows to draw.
        title: Figure title.
    """
    rows = indices[indices["metric"] == metric]
    sobol = "ST" in rows.columns
    key = "ST" if sobol else "mu_star"
    rows = rows.sort_values(key)
    y = np.arange(len(rows))
    fig, ax = subplots(figsize=(7, 0.45 * len(rows) + 1.6))
    if sobol:
        ax.barh(y + 0.2, rows["ST"], height=0.4, xerr=rows["ST_conf"], label="total (ST)", color="#4477aa")
        ax.barh(y - 0.2, rows["S1"], height=0.4, xerr=rows["S1_conf"], label="first order (S1)", color="#88ccee")
        ax.set_xlabel("Sobol index (95 % interval)")
        ax.legend(loc="lower right")
    else:
        ax.barh(y, rows["mu_star"], xerr=rows["mu_star_conf"], color="#4477aa")
        ax.set_xlabel("Morris mu* (mean |elementary effect|, 95 % interval)")
    ax.set_yticks(y, rows["parameter"])
    ax.axvline(0, color="k", lw=0.5)
    ax.set_title(title or metric)
    fig.tight_layout()
    return fig


def plot_tornado(local: pd.DataFrame, *, metric: str, title: str = "") -> Figure:
    """Draw a tornado plot of local sensitivities: the metric at p(1-h) and p(1+h) around its base value.

    Args:
        local: A table from :func:`ra_model.studies.sensitivity.local_sensitivities`.
        metric: Which metric's rows to draw.
        title: Figure title.
    """
    rows = local[local["metric"] == metric].copy()
    rows["span"] = (rows["high"] - rows["low"]).abs()
    rows = rows.sort_values("span")
    base = float(rows["base"].iloc[0])
    y = np.arange(len(rows))
    fig, ax = subplots(figsize=(7, 0.45 * len(rows) + 1.6))
    ax.barh(y, rows["low"] - base, left=base, color="#cc6677", label="parameter - step")
    ax.barh(y, rows["high"] - base, left=base, color="#117733", label="parameter + step")
    labels = [f"{p} (S = {s:.2g})" for p, s in zip(rows["parameter"], rows["normalised_sensitivity"], strict=True)]
    ax.set_yticks(y, labels)
    ax.axvline(base, color="k", lw=0.8)
    ax.set_xlabel(metric)
    ax.legend(loc="lower right")
    ax.set_title(title or f"local sensitivity of {metric}")
    fig.tight_layout()
    return fig
