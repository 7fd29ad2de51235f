"""Figures of experiments: cohort response rates, time to response, peak concentrations, grids, germ-cell stages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from ra_model.model import columns as C
from ra_model.plots.canvas import subplots

if TYPE_CHECKING:
    from ra_model.studies.experiments import ExperimentResult

#: Germ-cell stages of the model, as groups of species summed for the stage figure.
STAGES: dict[str, tuple[str, ...]] = {
    "stem (SSC)": ("SSC",),
    "differentiating spermatogonia": tuple(f"SG{i}" for i in range(1, 10)),
    "preleptotene": ("PL",),
    "spermatocytes": tuple(f"SC{i}" for i in range(1, 13)),
    "round spermatids": tuple(f"RS{i}" for i in range(1, 13)),
    "elongated spermatids": ("ES",),
    "epididymis": ("EP1", "EP2", "EP3", "CAUDA"),
}


#: Summary columns of the spread over measurement draws (see ra_model.studies.experiments.cohort).
_DRAWS_LOW, _DRAWS_HIGH = "rate_draws_p2_5", "rate_draws_p97_5"


def plot_response(summary: pd.DataFrame, comparison: pd.DataFrame | None = None) -> Figure:
    """Response rate per cohort and group with both intervals, and the published rates beside them.

    Each simulated bar carries the binomial 95% interval (black whisker) and, where the summary has it, the
    2.5-97.5 percentile spread of the rate over re-drawn semen analyses of the same men (a thick red bar
    just right of the whisker); published rates carry their Wilson interval.
    """
    groups = list(dict.fromkeys(summary["group"]))
    cohorts = list(dict.fromkeys(summary["cohort"]))
    n_series = len(cohorts) + (1 if comparison is not None and len(comparison) else 0)
    width = 0.8 / max(n_series, 1)
    fig, ax = subplots(figsize=(8, 4.5))
    x = np.arange(len(groups))
    spread_drawn = False
    for j, cohort in enumerate(cohorts):
        part = summary[summary["cohort"] == cohort].set_index("group").reindex(groups)
        rate = part["rate"].to_numpy(dtype=float)
        err = np.vstack([rate - part["ci_low"].to_numpy(dtype=float), part["ci_high"].to_numpy(dtype=float) - rate])
        bars = ax.bar(x + j * width, rate, width, yerr=err, capsize=3, label=f"simulated: {cohort} (binomial 95% CI)")
        _label_counts(ax, bars, part["responders"], part["n"])
        if _DRAWS_LOW in part and np.isfinite(part[_DRAWS_LOW].to_numpy(dtype=float)).any():
            low = part[_DRAWS_LOW].to_numpy(dtype=float)
            high = part[_DRAWS_HIGH].to_numpy(dtype=float)
            ax.vlines(
                x + j * width + width * 0.18,
                low,
                high,
                colors="tab:red",
                zorder=3,
                linewidth=4,
                label="_nolegend_" if spread_drawn else "spread over measurement draws (2.5-97.5%)",
            )
            spread_drawn = True
    if comparison is not None and len(comparison):
        pub = comparison.drop_duplicates("group").set_index("group").reindex(groups)
        rate = pub["published_rate"].to_numpy(dtype=float)
        err = np.vstack(
            [
                rate - pub["published_ci_low"].to_numpy(dtype=float),
                pub["published_ci_high"].to_numpy(dtype=float) - rate,
            ]
        )
        bars = ax.bar(
            x + len(cohorts) * width, rate, width, yerr=err, capsize=3, color="k", alpha=0.6, label="published"
        )
        _label_counts(ax, bars, pub["published_responders"], pub["published_n"])
    ax.set_xticks(x + width * (n_series - 1) / 2, [g.replace("_", " ") for g in groups], rotation=15)
    ax.set_ylabel("responders (share of enrolled men, 95% CI)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _label_counts(ax: Axes, bars: BarContainer, responders: pd.Series, n: pd.Series) -> None:
    """Write ``k/n`` at the foot of each bar (nothing where the group has no men in that series)."""
    for bar, k, total in zip(bars, responders.to_numpy(dtype=float), n.to_numpy(dtype=float), strict=True):
        if not np.isfinite(total) or total <= 0:
            continue
        ax.annotate(
            f"{k:.0f}/{total:.0f}",
            (bar.get_x() + bar.get_width() / 2, 0.0),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=6,
            rotation=90,
        )


def plot_time_to_response(curves: pd.DataFrame, *, cohort: str | None = None) -> Figure:
    """Cumulative share of men responding by visit day, per group."""
    fig, ax = subplots(figsize=(6.5, 4))
    part = curves if cohort is None else curves[curves["cohort"] == cohort]
    for group, g in part.groupby("group", sort=False):
        ax.step(g["day"], g["fraction_responded"], where="post", label=str(group).replace("_", " "))
    ax.set_xlabel("day of semen analysis")
    ax.set_ylabel("share responded (cumulative)")
    ax.set_ylim(0, 1)
    ax.set_title(f"time to response{'' if cohort is None else f' ({cohort})'}")
    if part.empty:
        _say_empty(ax, f"no men enrolled{'' if cohort is None else f' in the {cohort} cohort'}: nothing to follow")
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_peak_concentration(results: pd.DataFrame, *, column: str, by: str, mask: pd.Series | None = None) -> Figure:
    """Histogram of the peak sperm concentration (log scale) per group."""
    fig, ax = subplots(figsize=(6.5, 4))
    part = results if mask is None else results[mask]
    floor = 1e-6
    bins = [float(b) for b in np.logspace(-6, 2.5, 35)]
    for group, g in part.groupby(by, sort=True):
        ax.hist(
            np.maximum(g[column].to_numpy(dtype=float), floor), bins=bins, alpha=0.5, label=str(group).replace("_", " ")
        )
    ax.set_xscale("log")
    ax.set_xlabel("peak sperm concentration at visits (million/mL; values below 1e-6 drawn at 1e-6)")
    ax.set_ylabel("men")
    if part.empty:
        _say_empty(ax, f"0 of {len(results)} men eligible: no peak to show")
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _say_empty(ax: Axes, text: str) -> None:
    """Write why a panel is empty across its middle, so an empty panel never looks like a failed figure."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="dimgrey", wrap=True)


def plot_heatmap(summary: pd.DataFrame) -> Figure:
    """Response rate per dose x duration cell, one panel per histology."""
    histologies = list(dict.fromkeys(summary["histology"]))
    fig, axes = subplots(1, len(histologies), figsize=(5 * len(histologies), 4), squeeze=False)
    for ax, h in zip(axes[0], histologies, strict=True):
        part = summary[summary["histology"] == h]
        table = part.pivot(index="dose", columns="duration_d", values="rate")
        table = table.reindex(list(dict.fromkeys(part["dose"])))
        image = ax.imshow(table.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(table.shape[1]), [f"{d:g} d" for d in table.columns])
        ax.set_yticks(range(table.shape[0]), list(table.index))
        for (i, j), value in np.ndenumerate(table.to_numpy(dtype=float)):
            ax.text(j, i, "n/a" if np.isnan(value) else f"{value:.0%}", ha="center", va="center", color="w")
        ax.set_title(h.replace("_", " "))
        ax.set_xlabel("treatment duration")
        fig.colorbar(image, ax=ax, label="response rate")
    fig.tight_layout()
    return fig


def plot_germ_cells(results: pd.DataFrame, *, runs: Sequence[str] | None = None) -> Figure:
    """Germ cells per stage (Mcell, both testes) and ejaculate concentration over time, per run."""
    runs = list(runs or dict.fromkeys(results["run"]))
    fig, axes = subplots(len(runs), 2, figsize=(11, 3.2 * len(runs)), squeeze=False)
    for row, run in zip(axes, runs, strict=True):
        part = results[results["run"] == run]
        t = part[C.TIME_D]
        for stage, species in STAGES.items():
            cols = [f"amount_{s}" for s in species if f"amount_{s}" in part]
            if cols:
                row[0].plot(t, part[cols].sum(axis=1), label=stage)
        row[0].set_yscale("symlog", linthresh=1e-2)
        row[0].set_ylabel("germ cells (Mcell)")
        row[0].set_title(str(run))
        row[1].plot(t, part[C.EJACULATE_CONCENTRATION], label="ejaculate")
        row[1].plot(t, part[C.MOTILE_CONCENTRATION], label="motile")
        row[1].set_yscale("symlog", linthresh=1e-3)
        row[1].set_ylabel("million/mL")
        row[1].legend(fontsize=7)
    axes[-1][0].set_xlabel("day")
    axes[-1][1].set_xlabel("day")
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def experiment_figures(result: ExperimentResult) -> Mapping[str, Figure]:
    """Draw the figures an experiment asks for; returns figures by file stem."""
    exp = result.experiment
    figures: dict[str, Figure] = {}
    if exp.kind == "single":
        from ra_model.plots.timecourse import plot_timecourse

        if "timecourse" in exp.figures:
            labels = list(dict.fromkeys(result.results["run"]))
            tables = [result.results[result.results["run"] == r] for r in labels]
            figures["timecourse"] = plot_timecourse(tables, labels=labels)
        if "germ_cells" in exp.figures and exp.include_species:
            figures["germ_cells"] = plot_germ_cells(result.results)
    elif exp.kind == "cohort":
        if "response" in exp.figures:
            figures["response"] = plot_response(result.summary, result.tables.get("comparison"))
        if "time_to_response" in exp.figures:
            largest = max(exp.cohorts, key=lambda k: exp.cohorts[k])
            figures["time_to_response"] = plot_time_to_response(result.tables["time_to_response"], cohort=largest)
        if "peak_concentration" in exp.figures:
            largest = max(exp.cohorts, key=lambda k: exp.cohorts[k])
            from ra_model.studies.clinical import PEAK_AT_VISITS
            from ra_model.studies.population import HISTOLOGY

            figures["peak_concentration"] = plot_peak_concentration(
                result.results, column=PEAK_AT_VISITS, by=HISTOLOGY, mask=result.results[f"enrolled_{largest}"]
            )
    elif exp.kind == "grid" and "heatmap" in exp.figures:
        figures["heatmap"] = plot_heatmap(result.summary)
    elif exp.kind == "sensitivity":
        from ra_model.plots.sensitivity import index_figures

        figures.update(index_figures(result.summary))
    return figures


def close(figures: Mapping[str, Figure]) -> None:
    """Release figures' memory: pyplot-free figures are in no registry, so clearing them is all there is."""
    for fig in figures.values():
        fig.clear()
