"""What the sweep modules share: the table's column names and statuses, solver tolerances, one sweep's settings.

The runner (:mod:`ra_model.studies.sweep`) and the output folder (:mod:`ra_model.studies.sweep_store`) both
import from here; this module imports neither. Every name is also importable from
:mod:`ra_model.studies.sweep`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ra_model.studies.metrics import Metric

#: Required input column: a unique, stable string id per sample.
SAMPLE_ID = "sample_id"
#: Optional input column: phenotype preset name for this sample (overrides the sweep default).
PHENOTYPE = "phenotype"
#: Optional input column: regimen text for this sample, "" for no drug (overrides the sweep default).
REGIMEN = "regimen"
#: Prefix of input columns copied to the output untouched.
META_PREFIX = "meta_"
#: Output column: "ok" or "failed" (solver failure, metric error, or NaN/inf in the simulation table).
STATUS = "status"
#: Output column: the solver's (or metric's) message for a failed sample, "" when ok.
MESSAGE = "message"
#: Status values.
STATUS_OK = "ok"
STATUS_FAILED = "failed"

#: Solver of the exact path of a sweep: discrete doses, CVODE at rtol 1e-6. Against an rtol 1e-10
#: reference the largest relative error on any observable is about 1e-4 (benchmarks/bench_sweep.py),
#: inside the 1e-3 a sweep needs, at about 60% of the cost of ``simulate()``'s default rtol 1e-8.
SWEEP_RTOL = 1e-6
#: Absolute tolerance of the exact path (nmol or Mcell per state). 1e-12 left errors of 2e-3 on
#: daily sperm production where it is near 1e-9 million/day; 1e-13 brings them under 1e-3 at the
#: same cost (measured on 12 benchmark men; 1e-14 costs 20% more).
SWEEP_ATOL = 1e-13


@dataclass(frozen=True, kw_only=True)
class SweepSettings:
    """What every sample of one sweep shares (picklable, sent to workers).

    Attributes:
        phenotype: Default phenotype preset.
        regimen: Default regimen text, or None for no drug.
        t_end_d: Simulated time per sample, days.
        output_step_d: Output spacing, days.
        metrics: The metric functions with their names, in the caller's order.
        fast: The fast path instead of exact discrete dosing.
        rtol: Relative tolerance of the exact path.
        model: Resolved path of an SBML file simulated instead of the shipped model, or None.
        model_hash: Hash of the simulated model's SBML.
        force_model: Run ``model`` although it fails the SBML unit check (``run_sweep(force_model=True)``).
        split: The exact path on the split model.
        n_classes: Focus classes the shipped model's testis is built from (every path runs N classes).
        parameter_columns: The samples' parameter columns, in their order.
        meta_columns: The samples' ``meta_`` pass-through columns.
    """

    phenotype: str
    regimen: str | None
    t_end_d: float
    output_step_d: float
    metrics: tuple[tuple[str, Metric], ...]
    fast: bool
    rtol: float
    model: str | None
    model_hash: str
    split: bool
    parameter_columns: tuple[str, ...]
    meta_columns: tuple[str, ...]
    n_classes: int = 1
    force_model: bool = False
