"""Population calibration: fit the uncertain between-person spreads to the trial's response rates.

Targets are the ``population`` stage of ``models/calibration_targets.csv`` (response rate overall and
per histology, from the brief). Only variability entries marked ``uncertain`` in
``models/population.toml`` are fitted; no phenotype or man is special-cased: each candidate spread is
judged by simulating the same virtual men (common random numbers, seeded) under the trial's regimen,
visits and responder rule, read from an experiment file (default ``experiments/jessup2025.toml``).
The overall rate is the histology-mix-weighted mean of the per-histology rates among eligible men.

The fit is a coarse grid search (:func:`scipy.optimize.brute`) because response rates from a finite
cohort are step functions of the spread; it is meant to be re-run with larger cohorts when time allows.
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from scipy import optimize

from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.model.source import model_dir
from ra_model.studies import clinical
from ra_model.studies.experiments import (
    Experiment,
    experiments_dir,
    load_experiment,
    regimen_for_weight,
    sweep_visits,
)
from ra_model.studies.population import BODY_WEIGHT_KG, HISTOLOGY, POPULATION_FILE, Population, draw_patients

log = logging.getLogger(__name__)

#: Target stage fitted here.
STAGE = "population"
#: The experiment whose regimen, visits, rule and histology mix define the targets' setting.
DEFAULT_EXPERIMENT = "jessup2025"


@dataclass(frozen=True, kw_only=True)
class PopulationFit:
    """Result of a population calibration.

    Attributes:
        fitted: Fitted log_sd per parameter.
        report: One row per target: target, quantity, group, published, simulated, residual, weight, source.
        trace: One row per evaluated grid point: the spreads and the weighted sum of squares.
        n_per_histology: Candidates simulated per histology at each grid point.
    """

    fitted: dict[str, float]
    report: pd.DataFrame
    trace: pd.DataFrame
    n_per_histology: int


class FittedSpreads(Protocol):
    """What :func:`write_back` reads from a fit (this module's or the prevalence fit's)."""

    @property
    def fitted(self) -> dict[str, float]:
        """Fitted log_sd per parameter."""

    @property
    def n_per_histology(self) -> int:
        """Men simulated per histology at each evaluation."""


def read_population_targets(path: Path | None = None) -> pd.DataFrame:
    """Return the ``population`` stage rows of the calibration targets table."""
    path = path or model_dir() / "calibration_targets.csv"
    table = pd.read_csv(path)
    rows = table[table["stage"] == STAGE].reset_index(drop=True)
    if rows.empty:
        raise InvalidValueError(f"{path}: no targets of stage {STAGE!r}; add response-rate rows")
    return rows


def simulate_rates(
    experiment: Experiment,
    population: Population,
    *,
    n_per_histology: int,
    workers: int | None = 1,
) -> dict[str, float]:
    """Response rate among eligible men per histology, and the mix-weighted overall rate."""
    frames = [
        draw_patients(population, h, range(n_per_histology), seed=experiment.seed, overrides=experiment.overrides)
        for h in experiment.histology_mix
    ]
    samples = pd.concat(frames, ignore_index=True)
    samples["regimen"] = [regimen_for_weight(experiment.regimen, w) for w in samples[BODY_WEIGHT_KG]]
    raw = sweep_visits(samples, experiment, t_end_d=experiment.t_end_d, work_dir=None, workers=workers, progress=False)
    classified = clinical.classify(raw, experiment.response)
    rates: dict[str, float] = {}
    for h in experiment.histology_mix:
        group = classified[(classified[HISTOLOGY] == h) & classified[clinical.ELIGIBLE]]
        rates[h] = float(group[clinical.RESPONDER].mean()) if len(group) else math.nan
    weights = {h: w for h, w in experiment.histology_mix.items() if not math.isnan(rates[h])}
    total = sum(weights.values())
    rates["overall"] = sum(rates[h] * w for h, w in weights.items()) / total if total else math.nan
    return rates


def calibrate_population(
    *,
    parameters: Sequence[str] = ("cyp26_expr",),
    experiment: Experiment | None = None,
    population: Population | None = None,
    targets: pd.DataFrame | None = None,
    n_per_histology: int = 20,
    grid_points: int = 5,
    workers: int | None = 1,
) -> PopulationFit:
    """Fit the log_sd of uncertain variability entries to the population targets by a grid search.

    Args:
        parameters: Variability entries to fit; each must be marked ``uncertain``.
        experiment: The trial setting; defaults to ``experiments/jessup2025.toml``.
        population: Starting variability; defaults to the experiment's.
        targets: Target rows; defaults to the ``population`` stage of the target file.
        n_per_histology: Candidate men per histology per evaluation (small: a coarse fit).
        grid_points: Grid points per fitted parameter, spanning its fit_lower..fit_upper.
        workers: Worker processes for the sweeps.

    Returns:
        The fit: values, a report with residuals, and the evaluated grid.
    """
    experiment = experiment or load_experiment(experiments_dir() / f"{DEFAULT_EXPERIMENT}.toml")
    if experiment.kind != "cohort":
        raise InvalidValueError(
            f"{experiment.path}: the calibration needs a cohort experiment, not {experiment.kind!r}"
        )
    population = population or experiment.population()
    targets = read_population_targets() if targets is None else targets
    for name in parameters:
        if name not in population.variability:
            raise UnknownNameError("variability parameter", name, population.variability)
        if not population.variability[name].uncertain:
            raise InvalidValueError(
                f"variability of {name!r} is not marked uncertain; only uncertain entries are fitted"
            )
    groups = set(experiment.histology_mix) | {"overall"}
    for scenario in targets["scenario"]:
        if scenario not in groups:
            raise InvalidValueError(
                f"population target scenario {scenario!r} is not 'overall' or a histology of the mix"
            )
    trace: list[dict[str, float]] = []

    def objective(x: np.ndarray) -> float:
        values = dict(zip(parameters, np.atleast_1d(x).astype(float), strict=True))
        rates = simulate_rates(
            experiment, population.with_log_sd(values), n_per_histology=n_per_histology, workers=workers
        )
        sse = 0.0
        for _, t in targets.iterrows():
            sim = rates[t["scenario"]]
            sse += float(t["weight"]) * ((0.0 if math.isnan(sim) else sim) - float(t["value"])) ** 2
        trace.append(values | {f"rate_{k}": v for k, v in rates.items()} | {"weighted_sse": sse})
        log.info("population fit: %s -> SSE %.4f", values, sse)
        return sse

    ranges = tuple(
        slice(
            population.variability[p].fit_lower,
            population.variability[p].fit_upper + 1e-12,
            (population.variability[p].fit_upper - population.variability[p].fit_lower) / max(grid_points - 1, 1),
        )
        for p in parameters
    )
    best = np.atleast_1d(optimize.brute(objective, ranges, finish=None))
    fitted = {p: float(v) for p, v in zip(parameters, best, strict=True)}
    rates = simulate_rates(experiment, population.with_log_sd(fitted), n_per_histology=n_per_histology, workers=workers)
    rows = []
    for _, t in targets.iterrows():
        sim = rates[t["scenario"]]
        rows.append(
            {
                "target": t["id"],
                "quantity": t["quantity"],
                "group": t["scenario"],
                "published_or_assumed": float(t["value"]),
                "simulated": sim,
                "residual": sim - float(t["value"]),
                "weight": float(t["weight"]),
                "source": t["source"],
            }
        )
    return PopulationFit(
        fitted=fitted, report=pd.DataFrame(rows), trace=pd.DataFrame(trace), n_per_histology=n_per_histology
    )


def _with_note(match: re.Match[str], *, note: str) -> str:
    return f"{match.group(1)}{match.group(2)}{note}{match.group(3)}"


def write_back(
    fit: FittedSpreads, path: Path | None = None, *, note: str | None = None, by: str = "calibrate_population"
) -> list[str]:
    """Write fitted log_sd values into the variability file, with a note in each entry's source.

    Only the ``log_sd`` and ``source`` lines of the fitted entries are rewritten; the file is read
    immediately before writing.

    Args:
        fit: The fit (its ``fitted`` values and ``n_per_histology``).
        path: The variability file; defaults to the shipped one.
        note: What the values were fitted to, for the source note; defaults to the trial response rates.
        by: The fitting command named in the note.

    Returns:
        One line per change, ``parameter: old -> new``.
    """
    path = path or model_dir() / POPULATION_FILE
    text = path.read_text(encoding="utf-8")
    changes = []
    date = _dt.date.today().isoformat()
    for name, value in fit.fitted.items():
        header = re.search(rf"^\[variability\.{re.escape(name)}\]\s*$", text, flags=re.MULTILINE)
        if header is None:
            raise InvalidValueError(f"{path}: no [variability.{name}] entry to write {name} into")
        end = re.search(r"^\[", text[header.end() :], flags=re.MULTILINE)
        stop = header.end() + (end.start() if end else len(text) - header.end())
        block = text[header.end() : stop]
        old = re.search(r"^log_sd\s*=\s*([-+0-9.eE]+)", block, flags=re.MULTILINE)
        if old is None:
            raise InvalidValueError(f"{path}: [variability.{name}] has no log_sd line (a cv entry cannot be fitted)")
        block = block[: old.start()] + f"log_sd = {value:.4g}" + block[old.end() :]
        what = note or f"the trial response rates ({fit.n_per_histology} men per histology, coarse grid)"
        entry_note = f"; fitted {date} by {by} to {what}"
        block = re.sub(
            r'^(source\s*=\s*")(.*?)(?:; fitted \d{4}-\d\d-\d\d by [a-z_ -]+? to [^"]*)?(")',
            functools.partial(_with_note, note=entry_note),
            block,
            count=1,
            flags=re.MULTILINE,
        )
        text = text[: header.end()] + block + text[stop:]
        changes.append(f"{name}: log_sd {old.group(1)} -> {value:.4g}")
    path.write_text(text, encoding="utf-8")
    return changes


__all__ = ["PopulationFit", "calibrate_population", "read_population_targets", "simulate_rates", "write_back"]
