"""Cross-check with COPASI: simulate the exported SBML in COPASI (basico) and compare it with ``simulate()``.

COPASI (LSODA) is an independent implementation of SBML semantics and of the ODE solve: agreement on
every observable shows that the export carries the whole scenario and that our engine does what the
SBML says. Known basico traps handled here: importing it switches the process locale to "C" (we restore
the character-type locale so text files keep their UTF-8 default); it looks elements up by display name
(we ask for SBML ids); it returns a truncated table on integration failure instead of raising (we check
the row count); ``output_event`` duplicates rows (we leave it off).
"""

from __future__ import annotations

import locale
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from ra_model.errors import InvalidValueError, SimulationFailedError
from ra_model.model import columns as C
from ra_model.model.phenotypes import Phenotype
from ra_model.model.regimen import Regimen

log = logging.getLogger(__name__)

#: COPASI solver tolerances for the cross-check (LSODA; amounts in nmol or Mcell).
COPASI_RTOL = 1e-8
COPASI_ATOL = 1e-12
#: Agreement required on every observable at every output time: |ours - COPASI| <= RTOL * |ours| + FLOOR.
AGREEMENT_RTOL = 1e-3
#: Absolute floor, in each observable's own unit. Both solvers integrate amounts with an absolute
#: tolerance of 1e-12 (nmol or Mcell); observables divide amounts by volumes of at least 0.04 L or multiply
#: them by at most 24, so solver noise on a value that is truly zero is below about 1e-9. The floor is
#: six orders of magnitude below the smallest value that matters (the motile-sperm detection limit,
#: 1e-3 million/mL; plasma and testis retinoids are around 0.1-10 nM or ng/mL), so it only forgives
#: differences between two numbers that are both zero for every purpose.
AGREEMENT_FLOOR = 1e-9


@lru_cache(maxsize=1)
def _basico() -> ModuleType:
    saved = locale.setlocale(locale.LC_CTYPE)
    import basico

    locale.setlocale(locale.LC_CTYPE, saved)  # basico sets "C"; keep UTF-8 as Python's default text encoding
    module: ModuleType = basico
    return module


def simulate_copasi(
    sbml: str,
    *,
    t_end_d: float,
    output_step_d: float = 1.0,
    rtol: float = COPASI_RTOL,
    atol: float = COPASI_ATOL,
) -> pd.DataFrame:
    """Simulate SBML text in COPASI from t = 0 and return the observables on a regular grid.

    Args:
        sbml: SBML text (the model's time unit must be the hour, as in the export).
        t_end_d: Simulated time, days.
        output_step_d: Output spacing, days; ``t_end_d`` must be a whole number of steps.
        rtol: LSODA relative tolerance.
        atol: LSODA absolute tolerance.

    Returns:
        Columns ``time_d``, ``doses_given`` and one per observable (``ra_model.model.columns`` names).

    Raises:
        InvalidValueError: Bad horizon or step.
        SimulationFailedError: If COPASI cannot load the model or returns fewer rows than asked
            (its way of reporting an integration failure).
    """
    steps = t_end_d / output_step_d
    if not (math.isfinite(steps) and steps >= 1 and abs(steps - round(steps)) < 1e-9):
        raise InvalidValueError(
            f"t_end_d = {t_end_d!r} must be a positive whole number of output steps of {output_step_d!r} d"
        )
    basico = _basico()
    model = basico.load_model_from_string(sbml)
    if model is None:
        raise SimulationFailedError("COPASI could not load the SBML")
    try:
        basico.set_task_settings(
            basico.T.TIME_COURSE,
            {"method": {"Relative Tolerance": rtol, "Absolute Tolerance": atol, "Max Internal Steps": 1_000_000}},
            model=model,
        )
        result: Any = basico.run_time_course(
            duration=t_end_d * 24.0,
            intervals=int(round(steps)),
            use_sbml_id=True,
            output_event=False,
            model=model,
        )
    finally:
        basico.remove_datamodel(model)
    expected = int(round(steps)) + 1
    if result is None or len(result) != expected:
        got = 0 if result is None else len(result)
        reached = 0.0 if result is None or got == 0 else float(result.index[-1]) / 24
        raise SimulationFailedError(
            f"COPASI returned {got} of {expected} rows (integration stopped near day {reached:g}); "
            "see COPASI's message above"
        )
    ids = ["doses_given", *(o.model_id for o in C.OBSERVABLES)]
    missing = [i for i in ids if i not in result.columns]
    if missing:
        raise SimulationFailedError(f"COPASI's result lacks {', '.join(missing)}")
    table = pd.DataFrame({C.TIME_D: result.index.to_numpy(dtype=float) / 24.0})
    table[C.DOSES_GIVEN] = np.round(result["doses_given"].to_numpy(dtype=float)).astype(int)
    for obs in C.OBSERVABLES:
        table[obs.column] = result[obs.model_id].to_numpy(dtype=float)
    return table


def reexport_with_copasi(sbml: str) -> str:
    """Return what COPASI's own SBML export (Level 3 Version 2) makes of SBML text.

    It is not the same model: COPASI writes every species as a concentration (``hasOnlySubstanceUnits``
    false) and drops the species' conversion factors, while keeping rules such as ``testis_atRA = atRA_t /
    testis`` that read them as amounts, and the unit check fails. ``engine_from_file`` refuses such a file.

    Raises:
        SimulationFailedError: If COPASI cannot load the model or write it.
    """
    basico = _basico()
    model = basico.load_model_from_string(sbml)
    if model is None:
        raise SimulationFailedError("COPASI could not load the SBML")
    try:
        text = basico.model_io.save_model_to_string(type="sbml", sbml_level=3, sbml_version=2, model=model)
    finally:
        basico.remove_datamodel(model)
    if not text:
        raise SimulationFailedError("COPASI could not write the model as SBML L3V2")
    return str(text)


@dataclass(frozen=True)
class ObservableAgreement:
    """How closely two simulators agree on one observable.

    Attributes:
        column: Results column (``ra_model.model.columns``).
        max_scaled_error: max over times of |ours - theirs| / (rtol * |ours| + floor); agreement is <= 1.
        max_relative_error: max over times of |ours - theirs| / max(|ours|, floor).
        worst_time_d: Time of the largest scaled error.
        ours: Our value at that time.
        theirs: The other simulator's value at that time.
    """

    column: str
    max_scaled_error: float
    max_relative_error: float
    worst_time_d: float
    ours: float
    theirs: float

    @property
    def ok(self) -> bool:
        """True when every time point is within tolerance."""
        return self.max_scaled_error <= 1.0


@dataclass(frozen=True)
class Agreement:
    """Agreement of COPASI with ``simulate()`` for one scenario.

    Attributes:
        phenotype: Phenotype name.
        regimen: Regimen text, or ``"none"``.
        observables: One entry per named observable (and the dose count).
        rtol: Relative tolerance used.
        floor: Absolute floor used.
    """

    phenotype: str
    regimen: str
    observables: tuple[ObservableAgreement, ...]
    rtol: float
    floor: float

    @property
    def ok(self) -> bool:
        """True when every observable agrees."""
        return all(o.ok for o in self.observables)

    @property
    def worst(self) -> ObservableAgreement:
        """The observable with the largest scaled error."""
        return max(self.observables, key=lambda o: o.max_scaled_error)

    def describe(self) -> str:
        """One line: scenario, pass/fail and the worst observable."""
        w = self.worst
        return (
            f"{self.phenotype} / {self.regimen}: {'agree' if self.ok else 'DISAGREE'}; worst {w.column} "
            f"relative error {w.max_relative_error:.1e} (day {w.worst_time_d:g}: ours {w.ours:.6g}, "
            f"COPASI {w.theirs:.6g})"
        )


def compare_tables(
    ours: pd.DataFrame,
    theirs: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    rtol: float = AGREEMENT_RTOL,
    floor: float = AGREEMENT_FLOOR,
) -> tuple[ObservableAgreement, ...]:
    """Compare two results tables on the same time grid, column by column.

    Raises:
        InvalidValueError: If the time grids differ.
    """
    if len(ours) != len(theirs) or not np.allclose(ours[C.TIME_D], theirs[C.TIME_D], rtol=0, atol=1e-9):
        raise InvalidValueError(
            f"the two tables have different time grids ({len(ours)} and {len(theirs)} rows); use the same "
            "t_end_d and output_step_d"
        )
    out = []
    for column in columns or [C.DOSES_GIVEN, *(o.column for o in C.OBSERVABLES)]:
        a = ours[column].to_numpy(dtype=float)
        b = theirs[column].to_numpy(dtype=float)
        diff = np.abs(a - b)
        scaled = diff / (rtol * np.abs(a) + floor)
        relative = diff / np.maximum(np.abs(a), floor)
        i = int(np.argmax(scaled))
        out.append(
            ObservableAgreement(
                column=column,
                max_scaled_error=float(scaled[i]),
                max_relative_error=float(relative.max()),
                worst_time_d=float(ours[C.TIME_D].iloc[i]),
                ours=float(a[i]),
                theirs=float(b[i]),
            )
        )
    return tuple(out)


def copasi_agreement(
    phenotype: str | Phenotype = "healthy",
    regimen: Regimen | str | None = None,
    *,
    t_end_d: float = 365.0,
    output_step_d: float = 1.0,
    rtol: float = AGREEMENT_RTOL,
    floor: float = AGREEMENT_FLOOR,
) -> Agreement:
    """Export a scenario, run it in COPASI and compare it with ``simulate()`` on every observable.

    Args:
        phenotype: Preset name or ``Phenotype``.
        regimen: Regimen or its text; None for no drug.
        t_end_d: Simulated time, days.
        output_step_d: Output spacing, days.
        rtol: Relative tolerance of the agreement.
        floor: Absolute floor of the agreement (each observable's unit).

    Returns:
        The agreement per observable.

    Raises:
        SimulationFailedError: If either simulator fails.
    """
    from ra_model.engines.simulate import simulate
    from ra_model.interop.sbml_export import export_sbml

    sbml = export_sbml(phenotype=phenotype, regimen=regimen, annotate=False)
    ours = simulate(phenotype, regimen, t_end_d=t_end_d, output_step_d=output_step_d)
    theirs = simulate_copasi(sbml, t_end_d=t_end_d, output_step_d=output_step_d)
    name = phenotype if isinstance(phenotype, str) else phenotype.name
    return Agreement(
        phenotype=name,
        regimen=str(regimen) if regimen is not None else "none",
        observables=compare_tables(ours, theirs, rtol=rtol, floor=floor),
        rtol=rtol,
        floor=floor,
    )
