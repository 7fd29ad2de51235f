"""What the experiment runners share: the result record, its provenance, and the cohort and grid sweep helpers."""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ra_model.engines.simulate import default_engine
from ra_model.errors import ExperimentFailedError
from ra_model.model.source import default_sbml, sbml_hash
from ra_model.studies import clinical, retrieval
from ra_model.studies.experiments.spec import Experiment

if TYPE_CHECKING:
    import distributed

#: Prefixes of the per-man readout columns a sweep adds (visits, retrieval): left out of the failures table.
READOUT_PREFIXES = (f"{clinical.METRIC}.", f"{retrieval.METRIC}.")


@dataclass(frozen=True, kw_only=True)
class ExperimentResult:
    """What an experiment produced.

    Attributes:
        experiment: The experiment that ran.
        results: The results table (time courses for ``single``; one row per man and arm otherwise).
        summary: One row per run, cohort x group or grid cell.
        tables: Further named tables (published comparison, curves, failures, ...).
        inputs: Provenance: model hash, package version, parameters, seed, scenario text.
    """

    experiment: Experiment
    results: pd.DataFrame
    summary: pd.DataFrame
    tables: Mapping[str, pd.DataFrame]
    inputs: Mapping[str, Any]


def inputs_record(experiment: Experiment, **extra: Any) -> dict[str, Any]:
    """Return the provenance of a run (written as ``inputs.json``).

    Args:
        experiment: The experiment that ran.
        **extra: Kind-specific entries (histology mix, spreads, visits, ...), added last.

    Returns:
        Experiment id and kind, reduced flag, focus classes and the hash of the model built from them,
        package version, solver tolerances, seed (cohort and grid), all default parameters (of the one-class
        model; class parameters keep their defaults), overrides, and the scenario file and text.
    """
    engine = default_engine()
    n_classes = experiment.n_classes
    try:
        version = importlib.metadata.version("ra_model")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "experiment": experiment.id,
        "kind": experiment.kind,
        "reduced": experiment.reduced,
        "n_classes": n_classes,
        "model_hash": engine.sbml_hash if n_classes == 1 else sbml_hash(default_sbml(n_classes)),
        "package_version": version,
        "solver": {"rtol": engine.options.rtol, "atol": engine.options.atol},
        "seed": experiment.seed if experiment.kind in ("cohort", "grid") else None,
        "parameters": dict(engine.defaults),
        "overrides": dict(experiment.overrides),
        "scenario_file": str(experiment.path),
        "scenario_text": experiment.text,
    } | extra


def regimen_for_weight(text: str | None, weight_kg: float) -> str:
    """Return a man's regimen text: weight-based (mg/kg) doses gain his body weight.

    Args:
        text: The experiment's regimen text, or None for no drug.
        weight_kg: The man's body weight.

    Returns:
        The text as :func:`ra_model.model.regimen.parse_optional` reads it (``""`` for no drug).
    """
    if text is None:
        return ""
    return f"{text}, {weight_kg:.1f} kg" if "mg/kg" in text else text


def sweep_visits(
    samples: pd.DataFrame,
    exp: Experiment,
    *,
    t_end_d: float,
    work_dir: Path | None,
    workers: int | None,
    progress: bool,
    fresh: bool = False,
    metrics: Mapping[str, Callable[[pd.DataFrame], Any]] | None = None,
    client: distributed.Client | str | None = None,
) -> pd.DataFrame:
    """Simulate every man of a samples table and read his semen analyses at the experiment's visits.

    Args:
        samples: One row per man (and arm): parameters and a ``regimen`` column.
        exp: The experiment (its visit days, output step and focus classes are used).
        t_end_d: Simulated time, days.
        work_dir: Folder for the sweep's Parquet chunks (rerunning resumes); None keeps nothing.
        workers: Worker processes (None = all cores, 1 = this process).
        progress: Show the sweep's progress bar.
        fresh: Set earlier results in ``work_dir`` aside instead of resuming from them.
        metrics: Further per-man metrics computed inside the sweep (only their numbers come back), by
            name, beside the semen analyses (e.g. :data:`ra_model.studies.retrieval.METRIC`).
        client: A Dask client or scheduler address to run the men on (None: local worker processes).

    Returns:
        The sweep table (:func:`ra_model.studies.sweep.run_sweep`) with the visit readouts in
        ``semen.*`` columns (:data:`ra_model.studies.clinical.METRIC`) and each further metric's
        columns; a man whose simulation fails keeps his row with status and message.
    """
    from ra_model.studies.sweep import run_sweep

    metric = functools.partial(clinical.semen_analyses, visit_days=exp.visit_days)
    return run_sweep(
        samples,
        metrics={clinical.METRIC: metric, **(metrics or {})},
        n_classes=exp.n_classes,
        t_end_d=t_end_d,
        output_step_d=exp.output_step_d,
        out_dir=work_dir,
        workers=workers,
        progress=progress,
        fresh=fresh,
        client=client,
    )


def apply_overrides(samples: pd.DataFrame, overrides: Mapping[str, float]) -> pd.DataFrame:
    """Add each override as a column of ``samples`` unless the men already carry that parameter (in place)."""
    for name, value in overrides.items():
        if name not in samples.columns:
            samples[name] = value
    return samples


def failures(results: pd.DataFrame) -> pd.DataFrame:
    """Return the men whose simulation failed, with their parameters and the solver message (no readout columns)."""
    failed = results[results["status"] != "ok"]
    keep = [c for c in failed.columns if not c.startswith(READOUT_PREFIXES)]
    return failed[keep].reset_index(drop=True)


def _inputs_text(row: Mapping[Any, Any]) -> str:
    """Return a failed man's inputs for a message: ``{cyp26_expr: 1e+300, ...}`` (4 significant digits)."""
    shown = {
        str(k): (f"{v:.4g}" if isinstance(v, float) else str(v))
        for k, v in row.items()
        if k not in ("status", "message", "sample_id")
    }
    return "{" + ", ".join(f"{k}: {v}" for k, v in shown.items()) + "}"


def require_some_success(exp: Experiment, raw: pd.DataFrame, inputs: Mapping[str, Any]) -> None:
    """Stop with the first failure's message when every man of a sweep failed.

    Without it the responder rule would be applied to a table with no visit readouts at all and
    complain about the visit days, which is not the cause.

    Args:
        exp: The experiment.
        raw: The sweep table (:func:`sweep_visits`).
        inputs: The provenance record, kept in the partial result.

    Raises:
        ExperimentFailedError: Every row failed; the message names the file, how many men failed, the
            first one's solver message and his parameters; ``partial`` holds the failures table.
    """
    if not len(raw) or (raw["status"] == "ok").any():
        return
    table = failures(raw)
    first = table.iloc[0]
    message = " ".join(str(first.get("message", "")).split()) or "no message"
    partial = ExperimentResult(
        experiment=exp, results=raw, summary=pd.DataFrame(), tables={"failures": table}, inputs=inputs
    )
    raise ExperimentFailedError(
        f"{exp.path}: every man failed to simulate ({len(table)} of {len(raw)}), so there is nothing to "
        f"summarise; the first, {first['sample_id']}, failed with: {message}; his inputs: "
        f"{_inputs_text(first.to_dict())}; check the overrides ({dict(exp.overrides) or 'none'}) and the "
        "parameter values for one the solver cannot handle (every failure is in the failures table)",
        partial=partial,
    )
