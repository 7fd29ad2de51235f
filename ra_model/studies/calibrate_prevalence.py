"""Prevalence calibration: fit the between-man spread of focus_share to the prevalence of azoospermia.

The target is the ``prevalence`` stage of ``models/calibration_targets.csv``: the share of untreated men,
drawn around a phenotype preset (healthy: the general population), whose ejaculate holds no sperm even
in a centrifuged pellet (ejaculate concentration below the model's ``pellet_detection_limit``, derived from
the measurement: one sperm expected in the searched pellet; :func:`ra_model.model.semen.detection_limits`).
One spread is fitted, the SD of the logit of ``focus_share`` (the share of tubules holding germ cells,
``[variability.focus_share]`` in ``models/population.toml``, marked ``uncertain``); every other spread is
held at its documented value. The same men are simulated at every candidate spread (common random
numbers, seeded), so the simulated prevalence is a non-decreasing step function of the spread, and
bisection on it finds the smallest spread that reaches the target within the entry's fit range.

Men are simulated on the fast compiled path, untreated, from their own pre-equilibrated steady state:
the prevalence is read at the start of the run. This is a calibration target, so the prevalence it
reproduces is never quoted as a validation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ra_model.errors import InvalidValueError, SimulationFailedError, UnknownNameError
from ra_model.model import columns as C
from ra_model.model.semen import AZOOSPERMIA, CATEGORIES
from ra_model.model.source import model_dir
from ra_model.studies.clinical import proportion_ci
from ra_model.studies.population import HISTOLOGY, Population, draw_patients, load_population
from ra_model.studies.sweep import run_sweep

log = logging.getLogger(__name__)

#: Target stage fitted here.
STAGE = "prevalence"
#: Name of the sweep metric (:func:`baseline_azoospermia`).
METRIC = "baseline_azoospermia"
#: The variability entry fitted here.
FITTED = "focus_share"
#: Report column: the target's id in the target file.
TARGET = "target"
#: Report column: the published (or assumed) prevalence.
PUBLISHED = "published_or_assumed"
#: Report column: the simulated prevalence at the fitted spread.
SIMULATED = "simulated"
#: Report columns: the simulated prevalence's 95% Wilson interval (sampling of the virtual men).
CI_LOW, CI_HIGH = "ci_low", "ci_high"


@dataclass(frozen=True, kw_only=True)
class PrevalenceFit:
    """Result of a prevalence calibration.

    Attributes:
        fitted: Fitted log_sd (SD of the logit) per fitted entry.
        report: One row per target: target, group, published_or_assumed, simulated, ci_low, ci_high,
            n, source.
        trace: One row per evaluated spread: log_sd and the simulated prevalence.
        n_per_histology: Men simulated per evaluation (named like the population fit's, for write_back).
    """

    fitted: dict[str, float]
    report: pd.DataFrame
    trace: pd.DataFrame
    n_per_histology: int


def read_prevalence_targets(path: Path | None = None) -> pd.DataFrame:
    """Return the ``prevalence`` stage rows of the calibration targets table.

    Raises:
        InvalidValueError: If the table has no such rows, or a row's value is not a fraction in (0, 1).
    """
    path = path or model_dir() / "calibration_targets.csv"
    table = pd.read_csv(path)
    rows = table[table["stage"] == STAGE].reset_index(drop=True)
    if rows.empty:
        raise InvalidValueError(f"{path}: no targets of stage {STAGE!r}; add an azoospermia-prevalence row")
    for _, row in rows.iterrows():
        if not 0 < float(row["value"]) < 1:
            raise InvalidValueError(f"{path}: target {row['id']!r} value {row['value']!r} is not a fraction in (0, 1)")
    return rows


def baseline_azoospermia(table: pd.DataFrame) -> float:
    """Sweep metric: 1.0 if the run's first row is azoospermic (``semen_category``), else 0.0."""
    return float(table[C.SEMEN_CATEGORY].iloc[0] == CATEGORIES[AZOOSPERMIA])


def azoospermic_at_baseline(samples: pd.DataFrame, *, n_classes: int = 8, workers: int | None = 1) -> np.ndarray:
    """Return, per man of a samples table, whether his untreated ejaculate holds no sperm (pellet search).

    The men run on the sweep engine's fast path for one untreated day from their own steady state; the
    metric is their semen category at the start (:func:`baseline_azoospermia`: the cut-offs of
    :mod:`ra_model.model.semen`, azoospermia below the model's derived ``pellet_detection_limit``).

    Args:
        samples: Rows from :func:`ra_model.studies.population.draw_patients` (one histology or several).
        n_classes: Focus classes of the testis.
        workers: Worker processes of the sweep (1: in this process).

    Returns:
        Boolean array, one per row, in the samples' order.

    Raises:
        SimulationFailedError: If any man's simulation failed (the first failure is named).
    """
    table = run_sweep(
        samples,
        metrics={METRIC: baseline_azoospermia},
        t_end_d=1.0,
        fast=True,
        n_classes=n_classes,
        workers=workers,
        progress=False,
    ).set_index("sample_id")
    failed = table[table["status"] != "ok"]
    if len(failed):
        raise SimulationFailedError(
            f"{len(failed)} of {len(table)} men failed in the prevalence calibration; first "
            f"{failed.index[0]}: {failed['message'].iloc[0]}"
        )
    flags: np.ndarray = table.loc[samples["sample_id"], METRIC].to_numpy(dtype=float) == 1.0
    return flags


def calibrate_prevalence(
    *,
    population: Population | None = None,
    targets: pd.DataFrame | None = None,
    n: int = 4000,
    seed: int = 1,
    n_classes: int = 8,
    bisections: int = 10,
) -> PrevalenceFit:
    """Fit the SD of the logit of focus_share so that the untreated prevalence of azoospermia hits the target.

    Args:
        population: Variability to start from; defaults to ``models/population.toml``.
        targets: Target rows; defaults to the ``prevalence`` stage of the target file (one row, whose
            ``scenario`` names the phenotype the men are drawn around, e.g. ``healthy untreated``).
        n: Virtual men per evaluation.
        seed: Population seed (the same men at every spread).
        n_classes: Focus classes of the testis.
        bisections: Bisection steps after the bracket is found (the spread's resolution is
            (fit_upper - fit_lower) / 2**bisections).

    Returns:
        The fit, its report and the evaluated spreads.

    Raises:
        InvalidValueError: If the entry is not marked uncertain, there is not exactly one target, or the
            target is outside what the fit range can reach.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidValueError(f"n = {n!r}; use a whole number of men >= 1 (thousands for a 1% prevalence)")
    population = population or load_population()
    targets = read_prevalence_targets() if targets is None else targets
    if FITTED not in population.variability:
        raise UnknownNameError("variability parameter", FITTED, population.variability)
    entry = population.variability[FITTED]
    if not entry.uncertain:
        raise InvalidValueError(f"variability of {FITTED!r} is not marked uncertain; only uncertain entries are fitted")
    if len(targets) != 1:
        raise InvalidValueError(f"the prevalence fit takes exactly one target row, not {len(targets)}")
    target = targets.iloc[0]
    histology = str(target["scenario"]).split()[0]
    want = float(target["value"])
    trace: list[dict[str, float]] = []

    def prevalence(log_sd: float) -> float:
        candidate = population.with_log_sd({FITTED: log_sd})
        men = draw_patients(candidate, histology, list(range(n)), seed=seed)
        value = float(azoospermic_at_baseline(men, n_classes=n_classes).mean())
        trace.append({"log_sd": log_sd, "prevalence": value})
        log.info("focus_share logit SD %.4g: prevalence %.4f", log_sd, value)
        return value

    lo, hi = entry.fit_lower, entry.fit_upper
    p_lo, p_hi = prevalence(lo), prevalence(hi)
    if not p_lo <= want <= p_hi:
        raise InvalidValueError(
            f"target prevalence {want:g} is outside what focus_share's fit range [{lo:g}, {hi:g}] gives "
            f"({p_lo:.4g} to {p_hi:.4g}); widen fit_lower/fit_upper in models/population.toml"
        )
    for _ in range(bisections):
        mid = 0.5 * (lo + hi)
        if prevalence(mid) >= want:
            hi = mid
        else:
            lo = mid
    fitted = round(hi, 4)
    simulated = prevalence(fitted)
    k = int(round(simulated * n))
    low, high = proportion_ci(k, n)
    report = pd.DataFrame(
        [
            {
                TARGET: target["id"],
                HISTOLOGY: histology,
                PUBLISHED: want,
                SIMULATED: simulated,
                CI_LOW: low,
                CI_HIGH: high,
                "n": n,
                "source": target["source"],
            }
        ]
    )
    return PrevalenceFit(
        fitted={FITTED: fitted},
        report=report,
        trace=pd.DataFrame(trace).sort_values("log_sd").reset_index(drop=True),
        n_per_histology=n,
    )


def fit_note(fit: PrevalenceFit) -> str:
    """Return the source note written beside the fitted spread."""
    row = fit.report.iloc[0]
    return (
        f"the prevalence of azoospermia around {row[HISTOLOGY]} ({row[PUBLISHED]:g}; "
        f"{fit.n_per_histology} men, simulated {row[SIMULATED]:.4f}, target {row[TARGET]})"
    )


def prevalence_check(*, histology: str, n: int, seed: int = 2, n_classes: int = 8) -> tuple[float, float, float]:
    """Return the untreated prevalence of azoospermia among ``n`` men drawn around ``histology``, with its interval.

    A different seed from the fit's gives other men, for checks beside the fit.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidValueError(f"n = {n!r}; use a whole number of men >= 1")
    men = draw_patients(load_population(), histology, list(range(n)), seed=seed)
    k = int(azoospermic_at_baseline(men, n_classes=n_classes).sum())
    low, high = proportion_ci(k, n)
    return k / n, low, high
