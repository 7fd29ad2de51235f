"""Parameter uncertainty of a cohort's rates: the cohort rerun over draws from the population posterior.

One job: draw ``N`` particles from the population posterior (:func:`ra_model.studies.abc_population.read_posterior`,
weighted resampling, seeded), apply each to the experiment's population
(:meth:`ra_model.studies.population.Population.with_values`), rerun the cohort for each draw on the sweep engine
(each draw in its own folder, so a killed run resumes: a finished draw is read back, an unfinished one resumes
its sweep), and set beside every rate of the point estimate (the cohort at the population as shipped) its
binomial sampling interval and the 2.5-97.5 percentile band of the same rate over the draws.

The draws change only the population values the posterior holds (spreads and histology medians); the men,
seed, regimen, visits and responder rule are the experiment's. The band is the spread of the rate over the
parameters' uncertainty, each draw's rate still carrying its own sampling noise; with few draws its ends are
the extreme draws (10 draws: the 2.5th and 97.5th percentiles interpolate between the two lowest and the two
highest rates).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ra_model.errors import InvalidValueError
from ra_model.studies.abc_population import Posterior
from ra_model.studies.experiments import Experiment, ExperimentResult, run_experiment
from ra_model.studies.population import dump_population

if TYPE_CHECKING:
    import distributed

log = logging.getLogger(__name__)

#: Folder (inside the run's output folder) holding one sub-folder per draw.
DRAWS_DIR = "uncertainty"
#: A draw's record: its values and what it was run from; written last, so it marks a finished draw.
DRAW_RECORD = "draw.json"
#: A draw's summary table (the cohort's response rates at the draw).
DRAW_SUMMARY = "summary.csv"
#: The variability file of a draw (the experiment's population with the draw's values).
DRAW_POPULATION = "population.toml"

# Columns of the uncertainty table (:func:`uncertainty_table`); units in ``attrs["units"]``.
#: Cohort name (the experiment's ``[cohorts]``).
COHORT = "cohort"
#: ``overall`` or a histology.
GROUP = "group"
#: Enrolled men at the point estimate.
N_MEN = "n"
#: Responders at the point estimate.
RESPONDERS = "responders"
#: Response rate at the point estimate (the population as shipped), 0-1.
RATE = "rate"
#: Wilson 95% interval of the point estimate's rate (sampling of the virtual men), low end.
CI_LOW = "ci_low"
#: Wilson 95% interval of the point estimate's rate, high end.
CI_HIGH = "ci_high"
#: 2.5th percentile of the rate over the posterior draws (parameter uncertainty), 0-1.
BAND_LOW = "param_band_p2_5"
#: Median of the rate over the posterior draws, 0-1.
BAND_MEDIAN = "param_band_p50"
#: 97.5th percentile of the rate over the posterior draws, 0-1.
BAND_HIGH = "param_band_p97_5"
#: Posterior draws with enrolled men of the group (the band is taken over them).
DRAWS = "posterior_draws"
#: The table's columns, in order.
COLUMNS: tuple[str, ...] = (
    COHORT,
    GROUP,
    N_MEN,
    RESPONDERS,
    RATE,
    CI_LOW,
    CI_HIGH,
    BAND_LOW,
    BAND_MEDIAN,
    BAND_HIGH,
    DRAWS,
)
#: Unit of every column of the uncertainty table.
UNITS: dict[str, str] = {
    COHORT: "name",
    GROUP: "name",
    N_MEN: "men",
    RESPONDERS: "men",
    RATE: "fraction",
    CI_LOW: "fraction",
    CI_HIGH: "fraction",
    BAND_LOW: "fraction",
    BAND_MEDIAN: "fraction",
    BAND_HIGH: "fraction",
    DRAWS: "count",
}
#: Column of the per-draw table naming the draw (0, 1, ...).
DRAW = "draw"
#: The cohort summary's columns read here (as :func:`ra_model.studies.clinical.response_summary` names them).
_SUMMARY_COLUMNS = (COHORT, GROUP, N_MEN, RESPONDERS, RATE, CI_LOW, CI_HIGH)


def check_draws(n: object) -> int:
    """Return ``n`` as a number of posterior draws, or say why it is not one.

    Raises:
        InvalidValueError: ``n`` is not a whole number >= 1.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InvalidValueError(f"--uncertainty {n!r}: give a whole number of posterior draws >= 1, e.g. 10")
    return int(n)


def require_cohort(experiment: Experiment) -> None:
    """Refuse an experiment that is not a cohort (only cohorts draw men from the population).

    Raises:
        InvalidValueError: Naming the file and its kind.
    """
    if experiment.kind != "cohort":
        raise InvalidValueError(
            f"{experiment.path}: --uncertainty reruns a cohort over posterior draws of its population, but this is "
            f"a {experiment.kind!r} experiment; use it with a kind = 'cohort' file (e.g. experiments/jessup2025.toml)"
        )


@dataclass(frozen=True, kw_only=True)
class UncertaintyResult:
    """What an uncertainty run produced.

    Attributes:
        table: One row per cohort and group: :data:`COLUMNS` (``attrs["units"]``).
        draws: One row per draw, cohort and group: :data:`DRAW`, the draw's population values, and the
            summary's ``n``, ``responders``, ``rate``.
        reused: Draws read back from an earlier run instead of run again.
    """

    table: pd.DataFrame
    draws: pd.DataFrame
    reused: int


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _record(experiment: Experiment, values: Mapping[str, float], population_text: str) -> dict[str, object]:
    """Return what identifies a draw's run: its values, the experiment's text and the population file's text."""
    return {
        "values": {k: float(v) for k, v in sorted(values.items())},
        "experiment_sha256": _digest(experiment.text),
        "population_sha256": _digest(population_text),
    }


def run_draw(
    experiment: Experiment,
    values: Mapping[str, float],
    folder: Path,
    *,
    workers: int | None,
    progress: bool,
    fresh: bool,
    client: distributed.Client | str | None = None,
) -> tuple[pd.DataFrame, bool]:
    """Run (or read back) the cohort at one posterior draw.

    The draw's population (the experiment's, with ``values`` applied) is written to ``folder/population.toml``
    and the experiment is run with it, its sweep in ``folder/sweep`` (a killed draw resumes there). The
    summary and then the record (:data:`DRAW_RECORD`) are written last; a folder whose record matches is read
    back without running. The men run on ``client`` (Dask) when given, else on ``workers`` local processes.

    Returns:
        The draw's summary table and whether it was read back.
    """
    population = experiment.population().with_values(values)
    text = dump_population(population)
    record = _record(experiment, values, text)
    summary_path, record_path = folder / DRAW_SUMMARY, folder / DRAW_RECORD
    if not fresh and record_path.is_file() and summary_path.is_file():
        try:
            old = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = None
        if old == record:
            return pd.read_csv(summary_path), True
        log.info("%s holds another draw or experiment; running it again", folder)
    folder.mkdir(parents=True, exist_ok=True)
    record_path.unlink(missing_ok=True)
    (folder / DRAW_POPULATION).write_text(text, encoding="utf-8")
    variant = dataclasses.replace(experiment, variability_file=folder / DRAW_POPULATION)
    result = run_experiment(
        variant, work_dir=folder / "sweep", workers=workers, progress=progress, fresh=fresh, client=client
    )
    result.summary.to_csv(summary_path, index=False)
    record_path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return result.summary, False


def run_uncertainty(
    experiment: Experiment,
    point: ExperimentResult,
    *,
    n_draws: int,
    posterior: Posterior,
    out_dir: Path,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    fresh: bool = False,
    client: distributed.Client | str | None = None,
) -> UncertaintyResult:
    """Rerun a cohort over ``n_draws`` posterior draws and set the band of each rate beside the point estimate.

    Args:
        experiment: A ``cohort`` experiment.
        point: Its result at the population as shipped (the point estimate).
        n_draws: Posterior draws (weighted resampling with replacement; the first k draws are the same
            whatever ``n_draws``, so a larger N reuses a smaller run's draws).
        posterior: The population posterior.
        out_dir: Folder for the draws (``draw-000``, ``draw-001``, ...).
        seed: Seed of the resampling.
        workers: Sweep worker processes per draw (None: all cores).
        progress: Show each draw's progress bar.
        fresh: Run every draw again, setting earlier sweep results aside.
        client: A Dask client or scheduler address (``tcp://host:port``) to run every draw's men on (None:
            ``workers`` local processes). The sweep engine's chunks make each draw resumable either way.

    Returns:
        The table, the per-draw rates and how many draws were read back.

    Raises:
        InvalidValueError: Not a cohort, a bad number of draws, or posterior values that do not fit the
            experiment's population.
    """
    require_cohort(experiment)
    n_draws = check_draws(n_draws)
    draws = posterior.draw(n_draws, seed=seed)
    base = experiment.population()
    for name in posterior.parameters:  # every value applies before any cohort runs
        base.value(name)
    rows, reused = [], 0
    for i, values in enumerate(draws):
        folder = out_dir / f"draw-{i:03d}"
        log.info("posterior draw %d of %d: %s", i + 1, n_draws, values)
        summary, again = run_draw(
            experiment, values, folder, workers=workers, progress=progress, fresh=fresh, client=client
        )
        reused += again
        frame = summary[[c for c in (COHORT, GROUP, N_MEN, RESPONDERS, RATE) if c in summary.columns]].copy()
        frame.insert(0, DRAW, i)
        for name, value in values.items():
            frame[name] = value
        rows.append(frame)
    per_draw = pd.concat(rows, ignore_index=True)
    return UncertaintyResult(table=uncertainty_table(point.summary, per_draw), draws=per_draw, reused=reused)


def uncertainty_table(point: pd.DataFrame, per_draw: pd.DataFrame) -> pd.DataFrame:
    """Set each rate of the point estimate beside its band over the draws.

    Args:
        point: The point estimate's summary (``cohort``, ``group``, ``n``, ``responders``, ``rate``, ``ci_low``,
            ``ci_high``).
        per_draw: The draws' rates (:data:`DRAW`, ``cohort``, ``group``, ``rate``).

    Returns:
        :data:`COLUMNS`, one row per row of ``point``, with ``attrs["units"]``.

    Raises:
        InvalidValueError: The point summary lacks a column this table needs.
    """
    missing = [c for c in _SUMMARY_COLUMNS if c not in point.columns]
    if missing:
        raise InvalidValueError(f"the cohort summary has no column {missing[0]!r}; it is not a cohort's summary")
    rows = []
    for _, p in point.iterrows():
        same = per_draw[(per_draw[COHORT] == p[COHORT]) & (per_draw[GROUP] == p[GROUP])]
        rates = same[RATE].to_numpy(dtype=float)
        rates = rates[np.isfinite(rates)]
        low, mid, high = np.percentile(rates, [2.5, 50, 97.5]) if rates.size else (math.nan,) * 3
        rows.append(
            {
                COHORT: p[COHORT],
                GROUP: p[GROUP],
                N_MEN: int(p[N_MEN]),
                RESPONDERS: int(p[RESPONDERS]),
                RATE: float(p[RATE]),
                CI_LOW: float(p[CI_LOW]),
                CI_HIGH: float(p[CI_HIGH]),
                BAND_LOW: float(low),
                BAND_MEDIAN: float(mid),
                BAND_HIGH: float(high),
                DRAWS: int(rates.size),
            }
        )
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table.attrs["units"] = dict(UNITS)
    return table
