"""Figure of a cohort's rates with both their sampling interval and their parameter-uncertainty band.

One job: draw :func:`ra_model.studies.uncertainty.uncertainty_table` (a table; nothing is simulated here). Bars are
the response rates at the point estimate, black whiskers their Wilson 95% interval (sampling of the virtual
men), and a wide shaded box with a dot at its median the 2.5-97.5% band of the rate over posterior draws
(the uncertainty of the population parameters). Figures are :class:`matplotlib.figure.Figure` objects made
without pyplot, so importing this module switches no backend.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ra_model.studies import uncertainty as U


def plot_uncertainty(table: pd.DataFrame) -> Figure:
    """Bars of each cohort's rates by group, with sampling whiskers and the parameter band beside them.

    Args:
        table: :func:`ra_model.studies.uncertainty.uncertainty_table`'s columns.

    Returns:
        One panel per cohort.
    """
    cohorts = list(dict.fromkeys(table[U.COHORT]))
    fig = Figure(figsize=(4.2 * max(len(cohorts), 1) + 1.0, 5.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(len(cohorts), 1), sharey=True, squeeze=False)[0])
    for ax, cohort in zip(axes, cohorts, strict=False):
        part = table[table[U.COHORT] == cohort].reset_index(drop=True)
        x = np.arange(len(part))
        rate = part[U.RATE].to_numpy(dtype=float)
        ax.bar(x, rate, 0.5, color="tab:blue", alpha=0.8, zorder=2)
        low, high = part[U.CI_LOW].to_numpy(dtype=float), part[U.CI_HIGH].to_numpy(dtype=float)
        ax.errorbar(
            x - 0.08, rate, yerr=np.vstack([rate - low, high - rate]), fmt="none", ecolor="k", capsize=4, zorder=4
        )
        band_low, band_high = part[U.BAND_LOW].to_numpy(dtype=float), part[U.BAND_HIGH].to_numpy(dtype=float)
        for xi, lo, hi in zip(x, band_low, band_high, strict=True):
            if np.isfinite(lo) and np.isfinite(hi):
                ax.fill_between([xi + 0.02, xi + 0.22], lo, hi, color="tab:orange", alpha=0.45, lw=0, zorder=3)
        ax.plot(x + 0.12, part[U.BAND_MEDIAN].to_numpy(dtype=float), "o", color="tab:red", ms=4, zorder=5)
        labels = [f"{g.replace('_', ' ')}\nn={n}" for g, n in zip(part[U.GROUP], part[U.N_MEN], strict=True)]
        ax.set_xticks(x, labels, fontsize=8)
        draws = int(part[U.DRAWS].max()) if len(part) else 0
        ax.set_title(f"cohort {cohort!r} ({draws} posterior draws)", fontsize=10)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("responders (share of enrolled men)")
    handles = [
        Patch(color="tab:blue", alpha=0.8, label="rate at the point estimate"),
        Patch(facecolor="none", edgecolor="k", label="whisker: sampling 95% CI (Wilson)"),
        Patch(color="tab:orange", alpha=0.45, label="box: parameter band (2.5-97.5% over draws), dot: median"),
    ]
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=3, frameon=False)
    return fig


def close(fig: Figure) -> None:
    """Release a figure's memory (a pyplot-free figure needs no registry; its canvas is dropped)."""
    fig.clear()
