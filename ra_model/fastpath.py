"""The fast path for sweeps: exact doses first, then the dose train replaced by its mean infusion.

The idea: isotretinoin kinetics are linear and fast (hours) while spermatogenesis moves in weeks, and
most of the cost of an exact run is CVODE restarting after each of the 360 doses (about 110 steps per
dose); the mean input as a constant infusion into the gut depot costs a few hundred steps for the year.
The catch, measured in ``benchmarks/bench_sweep.py``: the steep RA gates respond to the swings of
testis RA between doses, not to its mean, so peak concentrations can be far off. Use it for rough
screens only (README, Performance).

``simulate_fast`` therefore gives the first ``exact_days`` of doses as discrete events (the rise to
the periodic regime, where the nonlinear CYP26 feedback and the steep gates act), then sets a constant
input ``dose / interval`` into ``Gut_iso`` until the end of the dosing period (the time the dose after
the last would have been due), then simulates the washout; the switches are scheduled parameter changes
of :func:`ra_model.simulate.simulate`, run on an engine with looser tolerances.

The infusion needs one extra model input that the published model does not carry. It is added here,
in memory, as a delimited block appended to the model source (its default of zero leaves every result
of the model unchanged); the fast engine is compiled from that text, once per process.

The error this introduces is measured by ``benchmarks/bench_sweep.py`` against a tight-tolerance
exact reference and bounded by ``tests/test_fastpath.py``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import pandas as pd

from ra_model import columns as C
from ra_model.engine import Engine, SolverOptions
from ra_model.errors import InvalidValueError
from ra_model.model import ANTIMONY_FILE, antimony_to_sbml, model_dir
from ra_model.phenotypes import Phenotype
from ra_model.regimen import Regimen
from ra_model.simulate import ParameterChange, output_grid_d, simulate

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
    if isinstance(regimen, str):
        regimen = Regimen.parse(regimen)
    if not (math.isfinite(exact_days) and exact_days >= 0):
        raise InvalidValueError(f"exact_days = {exact_days!r}; use a number of days >= 0")

    # The first doses stay discrete events; the rest becomes a constant infusion, switched on and off
    # as scheduled parameter changes of simulate().
    exact_part = regimen
    changes: list[ParameterChange] = []
    switch_h = stop_h = math.nan
    rate = 0.0
    if regimen is not None and regimen.number_of_doses > 0:
        interval = regimen.interval_h
        n_total = regimen.number_of_doses
        n_exact = min(n_total, max(1, math.ceil(exact_days * 24.0 / interval - 1e-9)))
        if n_exact < n_total:
            exact_part = dataclasses.replace(regimen, duration_d=None, n_doses=n_exact)
            first = regimen.start_d * 24.0
            switch_h = first + n_exact * interval
            stop_h = first + n_total * interval
            rate = regimen.dose_per_administration_mg * engine.get("nmol_per_mg_iso") / interval
            changes = [
                ParameterChange(t_d=t_h / 24.0, parameter=INFUSION_PARAMETER, value=value)
                for t_h, value in ((switch_h, rate), (stop_h, 0.0))
                if t_h / 24.0 < t_end_d
            ]
    table = simulate(
        phenotype,
        exact_part,
        t_end_d=t_end_d,
        overrides=overrides,
        changes=changes,
        output_step_d=output_step_d,
        engine=engine,
    )
    # back to the output grid (simulate adds rows at the switch times) and to the whole regimen
    table = table[np.isin(table[C.TIME_D], output_grid_d(t_end_d, output_step_d))].reset_index(drop=True)
    dose_times_h = np.asarray(regimen.dose_times_h() if regimen else (), dtype=float)
    table[C.DOSES_GIVEN] = np.searchsorted(dose_times_h, table[C.TIME_D].to_numpy() * 24.0, side="right")
    table.attrs.update(
        regimen=str(regimen) if regimen else None,
        dose_times_d=[t / 24 for t in dose_times_h],
        fast_path={
            "exact_days": exact_days,
            "switch_to_infusion_d": switch_h / 24 if math.isfinite(switch_h) else None,
            "infusion_stop_d": stop_h / 24 if math.isfinite(stop_h) else None,
            "infusion_nmol_per_h": rate,
        },
    )
    return table
