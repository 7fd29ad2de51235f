"""Sensitivity analysis of any sweep metric: Sobol indices and Morris screening (SALib), local sensitivities.

Global methods draw a SALib design over parameter ranges (:mod:`ra_model.studies.design`), run it through
:func:`ra_model.studies.sweep.run_sweep` and analyse each metric column with SALib. Local sensitivities are
normalised central finite differences at one parameter point, ``S = (dY / Y) / (dp / p)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ra_model.errors import InvalidValueError
from ra_model.studies.design import ParameterRange, make_design
from ra_model.studies.metrics import Metric
from ra_model.studies.sweep import STATUS, STATUS_OK, run_sweep

if TYPE_CHECKING:
    import distributed

log = logging.getLogger(__name__)

#: Columns of a Sobol index table.
SOBOL_COLUMNS = ("metric", "parameter", "S1", "S1_conf", "ST", "ST_conf")
#: Columns of a Morris table.
MORRIS_COLUMNS = ("metric", "parameter", "mu", "mu_star", "mu_star_conf", "sigma")
#: Columns of a local sensitivity table.
LOCAL_COLUMNS = ("metric", "parameter", "value", "base", "low", "high", "normalised_sensitivity")
#: Confidence level of the intervals (bootstrap in SALib).
CONFIDENCE = 0.95


@dataclass(frozen=True, kw_only=True)
class GlobalSensitivity:
    """The result of a global sensitivity run.

    Attributes:
        method: ``"sobol"`` or ``"morris"``.
        indices: One row per metric and parameter (``SOBOL_COLUMNS`` or ``MORRIS_COLUMNS``).
        sweep: The sweep table the indices were computed from.
        notes: What was done to the data (e.g. censoring) per metric.
    """

    method: str
    indices: pd.DataFrame
    sweep: pd.DataFrame
    notes: dict[str, str] = field(default_factory=dict)


def _sampling_space(samples: pd.DataFrame) -> tuple[dict[str, Any], np.ndarray]:
    problem = samples.attrs.get("problem")
    if not problem:
        raise InvalidValueError(
            "the samples have no SALib problem in attrs; draw them with ra_model.studies.design.make_design"
        )
    logs = samples.attrs.get("log", [False] * len(problem["names"]))
    columns = []
    for name, log_space in zip(problem["names"], logs, strict=True):
        values = samples[name].to_numpy(dtype=float)
        columns.append(np.log10(values) if log_space else values)
    return problem, np.column_stack(columns)


def _metric_vector(sweep: pd.DataFrame, column: str, fill_nan: float | None) -> np.ndarray:
    failed = int((sweep[STATUS] != STATUS_OK).sum())
    if failed:
        raise InvalidValueError(
            f"{failed} sample(s) failed, so sensitivity indices of {column!r} cannot be computed; "
            "see the message column and narrow the ranges"
        )
    values = pd.to_numeric(sweep[column].astype("Float64"), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    missing = np.isnan(values)
    if missing.any():
        if fill_nan is None:
            raise InvalidValueError(
                f"metric {column!r} is NaN for {int(missing.sum())} sample(s); give a fill value (for a time to an "
                "event that never happens, the end of the run: a censored time)"
            )
        values = np.where(missing, fill_nan, values)
    return values


def sobol_indices(
    samples: pd.DataFrame, values: Sequence[float] | np.ndarray, *, metric: str = "y", seed: int = 0
) -> pd.DataFrame:
    """Return first-order and total Sobol indices with 95 % bootstrap intervals (SALib).

    Args:
        samples: A ``make_design(..., design="sobol")`` table, in its original order.
        values: The metric for each sample.
        metric: Name for the ``metric`` column.
        seed: Seed of the bootstrap.
    """
    from SALib.analyze import sobol

    problem, _ = _sampling_space(samples)
    y = np.asarray(values, dtype=float)
    if y.shape[0] != len(samples):
        raise InvalidValueError(f"{y.shape[0]} metric values for {len(samples)} samples")
    if np.ptp(y) == 0:
        zeros = np.zeros(len(problem["names"]))
        res: Mapping[str, Any] = {"S1": zeros, "S1_conf": zeros, "ST": zeros, "ST_conf": zeros}
        log.warning("metric %r does not vary over the design; all indices are 0", metric)
    else:
        res = sobol.analyze(problem, y, calc_second_order=False, conf_level=CONFIDENCE, seed=seed)
    return pd.DataFrame(
        {
            "metric": metric,
            "parameter": problem["names"],
            "S1": res["S1"],
            "S1_conf": res["S1_conf"],
            "ST": res["ST"],
            "ST_conf": res["ST_conf"],
        },
        columns=list(SOBOL_COLUMNS),
    )


def morris_indices(
    samples: pd.DataFrame, values: Sequence[float] | np.ndarray, *, metric: str = "y", seed: int = 0
) -> pd.DataFrame:
    """Return Morris elementary-effect statistics (mu, mu*, its 95 % interval, sigma) from SALib.

    Elementary effects are per unit of the sampling space (log10 units for log-sampled ranges).
    """
    from SALib.analyze import morris

    problem, x = _sampling_space(samples)
    y = np.asarray(values, dtype=float)
    if y.shape[0] != len(samples):
        raise InvalidValueError(f"{y.shape[0]} metric values for {len(samples)} samples")
    res = morris.analyze(problem, x, y, conf_level=CONFIDENCE, num_levels=4, seed=seed)
    return pd.DataFrame(
        {
            "metric": metric,
            "parameter": problem["names"],
            "mu": res["mu"],
            "mu_star": res["mu_star"],
            "mu_star_conf": res["mu_star_conf"],
            "sigma": res["sigma"],
        },
        columns=list(MORRIS_COLUMNS),
    )


def global_sensitivity(
    ranges: Sequence[ParameterRange],
    *,
    method: str,
    metrics: Mapping[str, Metric],
    n: int,
    seed: int,
    phenotype: str = "healthy",
    regimen: str | None = None,
    t_end_d: float,
    output_step_d: float = 1.0,
    fixed: Mapping[str, float] | None = None,
    fill_nan: Mapping[str, float] | None = None,
    workers: int | None = None,
    client: distributed.Client | str | None = None,
    fast: bool = False,
    out_dir: Path | None = None,
    fresh: bool = False,
    progress: bool = True,
    n_classes: int = 1,
) -> GlobalSensitivity:
    """Run a Sobol or Morris design through the sweep engine and analyse every metric column.

    Args:
        ranges: Parameters to vary.
        method: ``"sobol"`` (``n`` base samples, a power of 2; ``n * (d + 2)`` runs) or ``"morris"``
            (``n`` trajectories; ``n * (d + 1)`` runs).
        metrics: Metric functions by name (yes/no metrics are analysed as 0/1).
        n: Design size (see ``method``).
        seed: Seed of the design and the bootstrap.
        phenotype: Phenotype preset.
        regimen: Regimen text, or None.
        t_end_d: Simulated time, days.
        output_step_d: Output spacing, days.
        fixed: Parameter values shared by all samples.
        fill_nan: Value per metric column to use where the metric is NaN (e.g. a censored time).
        workers: Local worker processes (see ``run_sweep``).
        client: Dask client or scheduler address.
        fast: Use the sweep fast path.
        out_dir: Folder for the sweep's chunks (resumable, see ``run_sweep``).
        fresh: Set ``out_dir``'s earlier results aside and start over (see ``run_sweep``).
        progress: Show a progress bar.
        n_classes: Tubule-focus classes the testis is built from (see ``run_sweep``; 1 = homogeneous).

    Raises:
        InvalidValueError: Unknown method, failed samples, or NaN metrics without a fill value.
    """
    if method not in ("sobol", "morris"):
        raise InvalidValueError(f"unknown sensitivity method {method!r}; use 'sobol' or 'morris'")
    samples = make_design(ranges, design=method, n=n, seed=seed, fixed=fixed)
    sweep = run_sweep(
        samples,
        metrics=metrics,
        phenotype=phenotype,
        regimen=regimen,
        t_end_d=t_end_d,
        output_step_d=output_step_d,
        out_dir=out_dir,
        fresh=fresh,
        workers=workers,
        client=client,
        fast=fast,
        progress=progress,
        n_classes=n_classes,
    )
    inputs = set(samples.columns)
    metric_columns = [c for c in sweep.columns if c not in inputs and c not in (STATUS, "message")]
    analyse = sobol_indices if method == "sobol" else morris_indices
    tables = []
    notes: dict[str, str] = {}
    for column in metric_columns:
        fill = (fill_nan or {}).get(column)
        y = _metric_vector(sweep, column, fill)
        if fill is not None and np.isnan(sweep[column].astype("Float64").to_numpy(dtype=float, na_value=np.nan)).any():
            notes[column] = f"NaN replaced by {fill:g} (censored) in {int(np.sum(y == fill))} sample(s)"
        tables.append(analyse(samples, y, metric=column, seed=seed))
    return GlobalSensitivity(method=method, indices=pd.concat(tables, ignore_index=True), sweep=sweep, notes=notes)


def local_sensitivities(
    parameters: Sequence[str],
    *,
    metrics: Mapping[str, Metric],
    point: Mapping[str, float] | None = None,
    rel_step: float = 0.05,
    phenotype: str = "healthy",
    regimen: str | None = None,
    t_end_d: float,
    output_step_d: float = 1.0,
    workers: int | None = 1,
    fast: bool = False,
    progress: bool = False,
) -> pd.DataFrame:
    """Return normalised local sensitivities ``(dY/Y)/(dp/p)`` by central differences at a point.

    Args:
        parameters: Parameter ids to perturb (each by ``+-rel_step`` relative).
        metrics: Metric functions by name (numeric).
        point: Parameter values of the base point on top of the phenotype (default: the phenotype).
        rel_step: Relative step (0 < rel_step < 1).
        phenotype: Phenotype preset.
        regimen: Regimen text, or None.
        t_end_d: Simulated time, days.
        output_step_d: Output spacing, days.
        workers: Local worker processes.
        fast: Use the sweep fast path.
        progress: Show a progress bar.

    Returns:
        ``LOCAL_COLUMNS``: the base metric, the metric at ``p (1 - h)`` and ``p (1 + h)``, and the
        normalised sensitivity (NaN where the base metric is 0 or NaN).

    Raises:
        InvalidValueError: A bad step, no parameters, or a parameter whose base value is 0.
    """
    from ra_model.engines.simulate import default_engine
    from ra_model.model.phenotypes import get_phenotype

    if not (0 < rel_step < 1):
        raise InvalidValueError(f"rel_step = {rel_step!r}; use a relative step in (0, 1), e.g. 0.05")
    if not parameters:
        raise InvalidValueError("no parameters given for local sensitivities")
    base_values = get_phenotype(phenotype).resolve(default_engine().defaults) | dict(point or {})
    rows: list[dict[str, Any]] = [{"sample_id": "base"}]
    for name in parameters:
        if name not in base_values:
            from ra_model.errors import UnknownNameError

            raise UnknownNameError("parameter", name, base_values)
        value = base_values[name]
        if value == 0:
            raise InvalidValueError(f"{name} is 0 at this point; a relative sensitivity is undefined there")
        rows.append({"sample_id": f"{name}-low", "meta_parameter": name, name: value * (1 - rel_step)})
        rows.append({"sample_id": f"{name}-high", "meta_parameter": name, name: value * (1 + rel_step)})
    names = list(dict.fromkeys([*(point or {}), *parameters]))
    samples = pd.DataFrame(rows)
    for name in names:
        default = base_values[name]
        samples[name] = samples[name].fillna(default) if name in samples else default
    samples["meta_parameter"] = samples["meta_parameter"].fillna("")
    sweep = run_sweep(
        samples,
        metrics=metrics,
        phenotype=phenotype,
        regimen=regimen,
        t_end_d=t_end_d,
        output_step_d=output_step_d,
        workers=workers,
        fast=fast,
        progress=progress,
    )
    sweep = sweep.set_index("sample_id")
    out = []
    metric_columns = [c for c in sweep.columns if c not in samples.columns and c not in (STATUS, "message")]
    for column in metric_columns:
        base = float(sweep.at["base", column])  # type: ignore[arg-type]
        for name in parameters:
            low = float(sweep.at[f"{name}-low", column])  # type: ignore[arg-type]
            high = float(sweep.at[f"{name}-high", column])  # type: ignore[arg-type]
            sens = (high - low) / (2 * rel_step * base) if base and math.isfinite(base) else math.nan
            out.append(
                {
                    "metric": column,
                    "parameter": name,
                    "value": base_values[name],
                    "base": base,
                    "low": low,
                    "high": high,
                    "normalised_sensitivity": sens,
                }
            )
    return pd.DataFrame(out, columns=list(LOCAL_COLUMNS))


# --------------------------------------------------------------------------- experiment files
def run_sensitivity_experiment(
    spec: Mapping[str, Any],
    *,
    out_dir: Path | None,
    reduced: bool = False,
    workers: int | None = None,
    progress: bool = True,
    where: str = "sensitivity spec",
    fresh: bool = False,
    plugins: Collection[str] = (),
    n_classes: int = 1,
    client: distributed.Client | str | None = None,
) -> dict[str, Any]:
    """Run a ``kind = "sensitivity"`` spec: the design, the sweep, the indices and a ranking.

    Figures are the caller's: :func:`ra_model.plots.sensitivity.index_figures` draws them from ``indices``.

    Args:
        spec: The parsed TOML (see :func:`ra_model.studies.design.parse_sweep_spec` for the keys).
        out_dir: Folder for ``indices.csv``, ``sweep.parquet`` and the resumable chunks; None writes
            nothing.
        reduced: Use ``n_reduced`` (quick run).
        workers: Local worker processes.
        progress: Show a progress bar.
        where: The file name for messages.
        fresh: Set the earlier results in ``out_dir / "chunks"`` aside and start over (see ``run_sweep``).
        plugins: Modules whose ``"module:function"`` metrics may be imported and run (user code runs
            only when its module is named here; see :func:`ra_model.studies.metrics.resolve_metric`).
        n_classes: Tubule-focus classes the testis is built from (see ``run_sweep``; 1 = homogeneous).
        client: A Dask client or scheduler address to run the sweep on (None: local worker processes).

    Returns:
        A summary: ``title`` (phenotype and regimen), ``method``, ``n_runs``, ``rank_by``, ``ranking``
        (parameters, most influential first, by ST for Sobol or mu* for Morris), ``indices`` (the table)
        and ``files``.
    """
    from ra_model.studies.design import parse_sweep_spec
    from ra_model.studies.metrics import resolve_metric

    parsed = parse_sweep_spec(spec, where=where, reduced=reduced)
    if parsed.kind != "sensitivity":
        raise InvalidValueError(f"{where}, key kind: {parsed.kind!r}; a sensitivity run needs kind = 'sensitivity'")
    metrics = {name: resolve_metric(name, where=f"{where}, key metrics", plugins=plugins) for name in parsed.metrics}
    result = global_sensitivity(
        parsed.ranges,
        method=parsed.design,
        metrics=metrics,
        n=parsed.n,
        seed=parsed.seed,
        phenotype=parsed.phenotype,
        regimen=parsed.regimen,
        t_end_d=parsed.t_end_d,
        output_step_d=parsed.output_step_d,
        fixed=parsed.fixed,
        fill_nan=parsed.fill_nan,
        workers=workers,
        fast=parsed.fast,
        out_dir=out_dir / "chunks" if out_dir is not None else None,
        fresh=fresh,
        progress=progress,
        n_classes=n_classes,
        client=client,
    )
    rank_by = parsed.rank_by or parsed.metrics[0]
    key = "ST" if parsed.design == "sobol" else "mu_star"
    ranked = result.indices[result.indices["metric"] == rank_by].sort_values(key, ascending=False)
    files: list[str] = []
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        result.indices.to_csv(out_dir / "indices.csv", index=False)
        result.sweep.to_parquet(out_dir / "sweep.parquet", index=False)
        files += [str(out_dir / "indices.csv"), str(out_dir / "sweep.parquet")]
    responders = result.sweep.get("responder")
    return {
        "description": parsed.description,
        "title": f"{parsed.phenotype}, {parsed.regimen}",
        "method": parsed.design,
        "n_runs": len(result.sweep),
        "rank_by": rank_by,
        "ranking": list(ranked["parameter"]),
        "responder_fraction": float(responders.astype(float).mean()) if responders is not None else None,
        "notes": result.notes,
        "indices": result.indices,
        "files": files,
    }


def run_sensitivity_file(
    path: Path,
    *,
    out_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    reduced: bool = False,
    fresh: bool = False,
    plugins: Collection[str] = (),
    n_classes: int = 1,
    client: distributed.Client | str | None = None,
) -> pd.DataFrame:
    """Run a sensitivity spec file (the hook ``ra-model run`` calls); return the index table, ranked.

    The table gains a ``rank`` column (1 = most influential on ``rank_by``); ``fresh`` starts the
    folder's sweep over (see ``run_sweep``); ``plugins`` as in :func:`run_sensitivity_experiment`.
    ``n_classes`` is the scenario file's ``classes`` key, read and checked by
    :func:`ra_model.studies.experiments.load_experiment`; the key is left out of the spec here. ``client``
    runs the sweep on Dask (a client or a scheduler address; None: local worker processes).
    """
    from ra_model.studies.design import read_spec

    spec = {k: v for k, v in read_spec(path).items() if k != "classes"}  # a scenario-file key, passed as n_classes
    summary = run_sensitivity_experiment(
        spec,
        out_dir=out_dir,
        reduced=reduced,
        workers=workers,
        progress=progress,
        where=str(path),
        fresh=fresh,
        plugins=plugins,
        n_classes=n_classes,
        client=client,
    )
    indices: pd.DataFrame = summary["indices"].copy()
    rank = {p: i + 1 for i, p in enumerate(summary["ranking"])}
    indices["rank"] = indices["parameter"].map(rank)
    return indices
