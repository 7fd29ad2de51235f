"""The fast path for sweeps: exact doses first, then the dose train replaced by its mean infusion.

Why it works: isotretinoin kinetics are linear and fast (hours) while spermatogenesis moves in weeks.
After a few days of twice-daily dosing the drug and retinoid subsystem is periodic, and the germ-cell
chain only sees its average through slow filters (STRA8 turnover, 2-d compartments). Most of the cost
of an exact run is CVODE restarting after each of the 360 doses (about 110 steps per dose); the mean
input as a constant infusion into the gut depot costs a few hundred steps for the whole year.

``simulate_fast`` therefore gives the first ``exact_days`` of doses as discrete events (the rise to
the periodic regime, where the nonlinear CYP26 feedback and the steep gates act), then sets a constant
input ``dose / interval`` into ``Gut_iso`` until the end of the dosing period (the time the dose after
the last would have been due), then simulates the washout. It integrates at looser tolerances, which
the readouts (concentrations on a daily grid, a detection threshold) do not need.

The infusion needs one extra model input that the published model does not carry. It is added here,
in memory, as a delimited block appended to the model source (its default of zero leaves every result
of the model unchanged); the fast engine is compiled from that text, once per process.

The error this introduces is measured by ``benchmarks/bench_sweep.py`` against a tight-tolerance
exact reference and bounded by ``tests/test_fastpath.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import pandas as pd

from ra_model import columns as C
from ra_model.engine import DosePlan, Engine, SolverOptions
from ra_model.errors import InvalidValueError, SimulationFailedError
from ra_model.model import ANTIMONY_FILE, antimony_to_sbml, model_dir
from ra_model.phenotypes import Phenotype, get_phenotype
from ra_model.regimen import Regimen
from ra_model.simulate import steady_state_amounts

#: Days of exact, discrete dosing before the dose train is replaced by its mean infusion.
EXACT_DAYS = 4.0
#: Relative tolerance of the fast engine.
FAST_RTOL = 1e-6
#: Absolute tolerance of the fast engine (nmol or Mcell; the smallest readout that matters, the
#: motile-sperm detection limit, is about 0.02 Mcell in the cauda).
FAST_ATOL = 1e-10
#: Id of the infusion parameter added for the fast path (nmol/h into the gut depot).
INFUSION_PARAMETER = "fastpath_infusion_nmol_per_h"

#: The block appended to the model source for the fast path.
FAST_PATH_BLOCK = f"""
  // ---- fast path (issue 4): a constant oral input equivalent to the dose train (0 = off)
  unit fastpath_nmol_per_h = 1e-9 mole / 3600 second
  {INFUSION_PARAMETER} = 0; {INFUSION_PARAMETER} has fastpath_nmol_per_h
  J_fastpath_infusion: -> Gut_iso; {INFUSION_PARAMETER}
"""


def fast_engine_options() -> SolverOptions:
    """Return the solver settings of the fast path."""
    return SolverOptions(rtol=FAST_RTOL, atol=FAST_ATOL)


def fast_model_antimony(source: str | None = None) -> str:
    """Return the model's Antimony text with the fast-path infusion block appended to the model body.

    Args:
        source: Antimony text of the model; defaults to the shipped ``models/ra_testis.ant``.

    Raises:
        InvalidValueError: If the text has no closing ``end`` of the model.
    """
    text = source if source is not None else (model_dir() / ANTIMONY_FILE).read_text(encoding="utf-8")
    if INFUSION_PARAMETER in text:
        return text
    stripped = text.rstrip()
    if not stripped.endswith("end"):
        raise InvalidValueError("the model source does not end with 'end'; cannot append the fast-path block")
    return stripped[: -len("end")] + FAST_PATH_BLOCK + "end\n"


@lru_cache(maxsize=2)
def _fast_sbml(path: str, mtime_ns: int) -> str:
    return antimony_to_sbml(fast_model_antimony())


def fast_sbml() -> str:
    """Return the SBML of the fast-path model variant (cached until the model source changes)."""
    path = model_dir() / ANTIMONY_FILE
    return _fast_sbml(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=1)
def fast_engine() -> Engine:
    """Return the process-wide fast engine, compiled on first use."""
    return Engine(fast_sbml(), options=fast_engine_options())


def simulate_fast(
    phenotype: str | Phenotype = "healthy",
    regimen: Regimen | str | None = None,
    *,
    t_end_d: float = 365.0,
    overrides: Mapping[str, float] | None = None,
    output_step_d: float = 1.0,
    engine: Engine | None = None,
    exact_days: float = EXACT_DAYS,
) -> pd.DataFrame:
    """Simulate like :func:`ra_model.simulate.simulate`, with the dose train averaged after ``exact_days``.

    Args:
        phenotype: Preset name or a ``Phenotype``.
        regimen: A ``Regimen``, its text, or None for no drug.
        t_end_d: Simulated time, days (> 0).
        overrides: Parameter values by id, on top of the phenotype.
        output_step_d: Spacing of output rows, days (> 0).
        engine: An engine compiled from :func:`fast_sbml`; defaults to :func:`fast_engine`.
        exact_days: Days of discrete dosing before switching to the mean infusion (>= 0; a larger
            value is more exact and slower).

    Returns:
        The same columns and ``attrs`` as ``simulate()``; ``doses_given`` counts the scheduled doses
        up to each time, and ``attrs["fast_path"]`` records the switch time and infusion rate.

    Raises:
        UnknownNameError: Unknown phenotype or parameter.
        InvalidValueError: Bad horizon, step or ``exact_days``, or an engine without the infusion input.
        SimulationFailedError: The solver failed.
    """
    engine = engine or fast_engine()
    if INFUSION_PARAMETER not in engine.defaults:
        raise InvalidValueError(
            f"the engine has no {INFUSION_PARAMETER!r}; build it from ra_model.fastpath.fast_sbml() "
            "or call fast_engine()"
        )
    preset = get_phenotype(phenotype) if isinstance(phenotype, str) else phenotype
    if isinstance(regimen, str):
        regimen = Regimen.parse(regimen)
    for name, value in (("t_end_d", t_end_d), ("output_step_d", output_step_d)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise InvalidValueError(f"{name} = {value!r}; use a finite number of days > 0")
    if not (math.isfinite(exact_days) and exact_days >= 0):
        raise InvalidValueError(f"exact_days = {exact_days!r}; use a number of days >= 0")
    user = dict(overrides or {})
    parameters = preset.resolve(engine.defaults) | user
    context = f"phenotype {preset.name!r}, regimen {str(regimen) if regimen else 'none'!r} (fast path)"
    try:
        start = steady_state_amounts(engine, parameters, preset.initial_amounts)
    except SimulationFailedError as exc:
        raise SimulationFailedError(f"{context}: pre-equilibration failed: {exc}") from exc
    engine.fresh(parameters=parameters, initial_amounts=start)

    grid = np.arange(0.0, t_end_d + 0.5 * output_step_d, output_step_d)
    grid = grid[grid <= t_end_d + 1e-9]
    if grid[-1] < t_end_d:
        grid = np.append(grid, t_end_d)
    grid_h = grid * 24.0

    # Segments: (end time h, infusion rate nmol/h during the segment).
    segments: list[tuple[float, float]] = []
    dose_times_h: tuple[float, ...] = ()
    switch_h = stop_h = math.nan
    rate = 0.0
    if regimen is not None and regimen.number_of_doses > 0:
        dose_times_h = regimen.dose_times_h()
        interval = regimen.interval_h
        first = regimen.start_d * 24.0
        n_total = regimen.number_of_doses
        n_exact = min(n_total, max(1, math.ceil(exact_days * 24.0 / interval - 1e-9)))
        engine.arm_doses(
            DosePlan(
                dose_mg=regimen.dose_per_administration_mg,
                interval_h=interval,
                n_doses=n_exact,
                first_dose_h=first,
                fed=regimen.fed,
            )
        )
        if n_exact < n_total:
            switch_h = first + n_exact * interval
            stop_h = first + n_total * interval
            rate = regimen.dose_per_administration_mg * engine.get("nmol_per_mg_iso") / interval
            segments = [(switch_h, 0.0), (stop_h, rate)]  # then 0 to the end: the washout
    segments = [(t, r) for t, r in segments if 0.0 < t < grid_h[-1]]
    ends = [*segments, (float(grid_h[-1]), 0.0)]

    observables = [o.model_id for o in C.OBSERVABLES]
    blocks: list[np.ndarray] = []
    t_from = 0.0
    for t_to, segment_rate in ends:
        engine.set_parameter(INFUSION_PARAMETER, segment_rate)
        times = np.unique(np.concatenate([[t_from, t_to], grid_h[(grid_h > t_from) & (grid_h < t_to)]]))
        try:
            block = engine.simulate(times.tolist(), observables)
        except SimulationFailedError as exc:
            raise SimulationFailedError(f"{context}: {exc}") from exc
        keep = np.isin(times, grid_h)
        if blocks:
            keep[0] = False  # already recorded as the last row of the previous block
        blocks.append(block[keep])
        t_from = t_to
    data = np.vstack(blocks)
    if data.shape[0] != len(grid):
        raise SimulationFailedError(f"{context}: internal error, {data.shape[0]} rows for {len(grid)} output times")

    table = pd.DataFrame(data[:, 1:], columns=[o.column for o in C.OBSERVABLES])
    table.insert(0, C.TIME_D, grid)
    given = np.searchsorted(np.asarray(dose_times_h, dtype=float), grid_h, side="right")
    table.insert(1, C.DOSES_GIVEN, given.astype(int))
    limit = engine.get("motile_detection_limit")
    table[C.MOTILE_SPERM_PRESENT] = table[C.MOTILE_CONCENTRATION] >= limit
    table.attrs.update(
        units=dict(C.UNITS),
        phenotype=preset.name,
        regimen=str(regimen) if regimen else None,
        overrides=user,
        changes=[],
        dose_times_d=[t / 24 for t in dose_times_h],
        motile_detection_limit_M_per_mL=limit,
        model_hash=engine.sbml_hash,
        solver={"rtol": engine.options.rtol, "atol": engine.options.atol},
        fast_path={
            "exact_days": exact_days,
            "switch_to_infusion_d": switch_h / 24 if math.isfinite(switch_h) else None,
            "infusion_stop_d": stop_h / 24 if math.isfinite(stop_h) else None,
            "infusion_nmol_per_h": rate,
        },
    )
    return table
