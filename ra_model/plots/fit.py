"""Figures of a fit: one profile-likelihood panel per fitted parameter, with its 95% interval and bounds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ra_model.plots.canvas import subplots


def plot_profiles(profiles: pd.DataFrame, parameters: pd.DataFrame, *, threshold: float, title: str = "") -> Figure:
    """Draw the profile likelihood of every fitted parameter.

    Each panel shows the likelihood ratio along the profile (log-scaled parameter axis), the 95% threshold,
    the fitted value, the 95% profile interval (shaded; an open end reaches the plausible range's bound) and
    the bounds of the plausible range (dashed).

    Args:
        profiles: Rows ``parameter``, ``value``, ``ratio`` (``StageFit.profiles``).
        parameters: One row per fitted parameter (``StageFit.parameters``): ``parameter``, ``unit``, ``fitted``,
            ``profile_lower``, ``profile_upper``, ``bound_lower``, ``bound_upper``, ``identifiable``.
        threshold: Likelihood ratio at the edge of the 95% interval.
        title: Figure title.
    """
    n = len(parameters)
    ncols = min(4, max(n, 1))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows + 0.6), squeeze=False, layout="constrained")
    for k, row in enumerate(parameters.to_dict("records")):
        ax = axes[k // ncols][k % ncols]
        path = profiles[profiles["parameter"] == row["parameter"]].sort_values("value")
        ax.plot(path["value"], path["ratio"], color="#4477aa", marker=".", ms=3, lw=1)
        ax.axhline(threshold, color="#cc6677", lw=0.8, ls=":")
        ax.axvline(row["fitted"], color="k", lw=0.8)
        low = row["profile_lower"] if np.isfinite(row["profile_lower"]) else row["bound_lower"]
        high = row["profile_upper"] if np.isfinite(row["profile_upper"]) else row["bound_upper"]
        ax.axvspan(low, high, color="#88ccee", alpha=0.3, lw=0)
        for bound in (row["bound_lower"], row["bound_upper"]):
            ax.axvline(bound, color="0.4", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(f"{row['parameter']} ({row['unit']})" if row["unit"] else str(row["parameter"]))
        ax.set_ylabel("likelihood ratio")
        verdict = "identifiable" if row["identifiable"] == "yes" else "not identifiable"
        ax.set_title(verdict, fontsize=9, color="k" if row["identifiable"] == "yes" else "#cc6677")
    for k in range(n, nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    if title:
        fig.suptitle(title)
    return fig
