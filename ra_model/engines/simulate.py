"""Run a scenario (phenotype, regimen, overrides, scheduled changes, horizon) into one tidy results table."""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
import pandas as pd

from ra_model.engines.engine import T_NEVER_H, DosePlan, Engine
from ra_model.errors import InvalidValueError, SimulationFailedError, UnknownNameError
from ra_model.model import columns as C
from ra_model.model import semen
from ra_model.model.bounds import check_run_size, format_bytes, output_bytes
from ra_model.model.classes import check_n_classes
from ra_model.model.domain import check_combination, check_value, check_values
from ra_model.model.phenotypes import Phenotype, classes_of, get_phenotype, per_class_ids
from ra_model.model.regimen import Regimen
from ra_model.model.source import default_sbml

log = logging.getLogger(__name__)

#: Species that count cumulatively (ledgers) and so never reach a steady state.
LEDGER_SPECIES = ("Eliminated",)
#: Length of one pre-equilibration block, days; up to MAX_PREEQ_BLOCKS are run.
PREEQ_BLOCK_D = 1000.0
MAX_PREEQ_BLOCKS = 6
#: Largest relative change of any state over the last pre-equilibration year that counts as steady.
PREEQ_RTOL = 1e-6
#: Floor below which amounts count as zero in the steady-state test (nmol or Mcell).
PREEQ_FLOOR = 1e-9


@dataclass(frozen=True, kw_only=True)
class ParameterChange:
    """A parameter set to a new value part-way through a run (e.g. vitamin A repletion).

    The value is checked against the parameter's physical domain on construction
    (:mod:`ra_model.model.domain`); regimen inputs such as ``dose_mg`` may change, constants may not.

    Attributes:
        t_d: Time of the change, days from the start of the run (> 0).
        parameter: Parameter id.
        value: New value.
    """

    t_d: float
    parameter: str
    value: float

    def __post_init__(self) -> None:
        """Check the time is after the start and the value is inside the parameter's physical domain."""
        if not (isinstance(self.t_d, int | float) and math.isfinite(self.t_d) and self.t_d > 0):
            raise InvalidValueError(f"ParameterChange.t_d = {self.t_d!r}; use a time in days > 0")
        if isinstance(self.value, bool) or not isinstance(self.value, int | float) or not math.isfinite(self.value):
            raise InvalidValueError(f"ParameterChange.value for {self.parameter!r} = {self.value!r} is not a number")
        check_value(self.parameter, self.value, where=f"ParameterChange at day {self.t_d:g}", scheduled=True)


#: The species a dose goes into (the gut depot); only drug ever enters it.
DOSE_SPECIES = "Gut_iso"


def untreated(engine: Engine) -> dict[str, float]:
    """Return the parameter values that disarm a dose event armed in the compiled model itself.

    The shipped model's dose event is unarmed (``t_next_dose`` never comes); a model file that carries a
    regimen (a scenario export, or the generic export with the dose values written in) is armed as
    loaded. Pre-equilibration finds the untreated steady state, so it runs with the event disarmed.

    Returns:
        ``{"t_next_dose": T_NEVER_H}`` for an armed model, else an empty dict (the cache key is unchanged).
    """
    if engine.defaults.get("t_next_dose", T_NEVER_H) < T_NEVER_H:
        return {"t_next_dose": T_NEVER_H}
    return {}


def file_dose_amount(engine: Engine) -> float:
    """Return the drug in the compiled model's gut at t = 0, nmol: a model file's own dose at t = 0.

    The gut depot holds only drug, so whatever a model holds there at t = 0 is a dose: the scenario
    export writes a dose due at t = 0 as the gut's initial amount, and SBML simulators (libroadrunner
    included) fire a dose event whose trigger is true at t = 0 (``t_next_dose = 0``, ``initialValue =
    false``) when the file is loaded. Pre-equilibration replaces every amount by the untreated steady
    state; :func:`simulate` adds this amount back, so the file's first dose is given, and given once.
    For the shipped model it is 0.
    """
    return float(engine.initial_amounts.get(DOSE_SPECIES, 0.0))


def default_engine(n_classes: int = 1) -> Engine:
    """Return the process-wide engine for the shipped model, compiled on first use.

    Args:
        n_classes: Tubule-focus classes the testis is built from (:func:`ra_model.model.source.default_sbml`);
            one engine is kept per number of classes.

    Raises:
        InvalidValueError: If ``n_classes`` is not a whole number from 1 to ``MAX_CLASSES``.
    """
    return _default_engine(check_n_classes(n_classes))


@lru_cache(maxsize=4)
def _default_engine(n_classes: int) -> Engine:
    return Engine(default_sbml(n_classes))


def engine_classes(engine: Engine) -> int:
    """Return how many focus classes a compiled model has (1 for the published model)."""
    return classes_of(engine.defaults)


class _HasDefaults(Protocol):
    @property
    def defaults(self) -> dict[str, float]: ...


def check_engine_or_classes(engine: _HasDefaults | None, n_classes: int | None) -> None:
    """Refuse ``n_classes`` given together with an engine (of any path): its classes are compiled in.

    Raises:
        InvalidValueError: If both are given.
    """
    if engine is not None and n_classes is not None:
        raise InvalidValueError(
            f"n_classes = {n_classes!r} was given with engine=: an engine's focus classes are compiled into it "
            f"(this one has {classes_of(engine.defaults)}); give engine= alone, or n_classes= alone for the "
            "shipped model built from that many classes"
        )


_PREEQ_CACHE: OrderedDict[tuple[object, ...], dict[str, float]] = OrderedDict()
_PREEQ_CACHE_SIZE = 256


def steady_state_amounts(
    engine: Engine,
    parameters: Mapping[str, float],
    initial_amounts: Mapping[str, float],
) -> dict[str, float]:
    """Return the untreated steady state of a parameter set, by simulating without drug.

    Results are cached per engine and parameter set.

    Args:
        engine: The compiled model.
        parameters: Parameter overrides (phenotype and user).
        initial_amounts: Species amounts to start from.

    Returns:
        Species amounts at steady state (ledger species reset to zero).

    Raises:
        SimulationFailedError: If no steady state is reached within the pre-equilibration limit.
    """
    key = (id(engine), tuple(sorted(parameters.items())), tuple(sorted(initial_amounts.items())))
    if key in _PREEQ_CACHE:
        _PREEQ_CACHE.move_to_end(key)
        return dict(_PREEQ_CACHE[key])
    engine.fresh(parameters=parameters, initial_amounts=initial_amounts)
    ids = [s for s in engine.species_ids if s not in LEDGER_SPECIES]
    change = math.inf
    for block in range(MAX_PREEQ_BLOCKS):
        t0 = engine.time_h
        t_end = t0 + PREEQ_BLOCK_D * 24
        out = engine.simulate([t0, t_end - 365 * 24, t_end], ids)
        before, after = out[1, 1:], out[2, 1:]
        scale = np.maximum(np.maximum(np.abs(before), np.abs(after)), PREEQ_FLOOR)
        change = float(np.max(np.abs(after - before) / scale))
        if change < PREEQ_RTOL:
            log.debug("pre-equilibrated in %d block(s) of %g d", block + 1, PREEQ_BLOCK_D)
            break
    else:
        raise SimulationFailedError(
            f"no steady state after {MAX_PREEQ_BLOCKS * PREEQ_BLOCK_D:g} d without drug (last-year change "
            f"{change:.2e}); the parameter set may oscillate. Run with preequilibrate=False to inspect it."
        )
    state = clean_amounts(engine.amounts(), atol=engine.options.atol)
    for ledger in LEDGER_SPECIES:
        if ledger in state:  # a derived model (the fast path's retinoid core) may have no ledger
            state[ledger] = 0.0
    _PREEQ_CACHE[key] = dict(state)
    if len(_PREEQ_CACHE) > _PREEQ_CACHE_SIZE:
        _PREEQ_CACHE.popitem(last=False)
    return state


def clean_amounts(amounts: Mapping[str, float], *, atol: float) -> dict[str, float]:
    """Return solver amounts with round-off in drained pools set to zero.

    CVODE leaves values below its absolute tolerance in drained pools (e.g. -1e-68 nmol in the gut);
    they are zero to the solver, and ``Engine.set_amounts`` rejects anything negative.

    Raises:
        SimulationFailedError: An amount is more negative than the tolerance: the solver went wrong.
    """
    wrong = {k: v for k, v in amounts.items() if v <= -atol}
    if wrong:
        name, value = next(iter(wrong.items()))
        raise SimulationFailedError(
            f"the solver failed: species {name!r} reached a negative amount ({value:.3g}; {len(wrong)} species "
            "below zero); the parameter values make the system numerically unstable, check them against "
            "their plausible ranges (ra-model parameters)"
        )
    return {k: (0.0 if v < 0.0 else v) for k, v in amounts.items()}


def simulate(
    phenotype: str | Phenotype = "healthy",
    regimen: Regimen | str | None = None,
    *,
    t_end_d: float = 365.0,
    overrides: Mapping[str, float] | None = None,
    changes: Sequence[ParameterChange] = (),
    output_step_d: float = 1.0,
    preequilibrate: bool = True,
    include_species: bool = False,
    engine: Engine | None = None,
    n_classes: int | None = None,
) -> pd.DataFrame:
    """Simulate a phenotype under a dosing regimen.

    The run starts from the phenotype's untreated steady state (unless ``preequilibrate`` is
    False, when it starts from the model's written initial amounts), gives every dose of the
    regimen as a discrete event, and applies scheduled parameter changes at their times.

    With ``n_classes`` = N >= 2 the testis is built from N tubule-focus classes
    (:mod:`ra_model.model.classes`): the observables are the testis's (summed or niche-weighted), the
    phenotype applies to every class (:meth:`Phenotype.for_classes`), and the class parameters
    (``F3__ra_local``, ``F1__niche_share``) may be overridden or changed like any other.

    Args:
        phenotype: Preset name or a ``Phenotype``.
        regimen: A ``Regimen``, its text form (``"20 mg bid for 180 d"``), or None for no drug.
        t_end_d: Simulated time, days (> 0).
        overrides: Parameter values by id, applied on top of the phenotype.
        changes: Parameter changes during the run.
        output_step_d: Spacing of output rows, days (> 0). Change times are added as rows; a row at the
            time of a change or a dose reports the values just after it (the convention of SBML simulators:
            COPASI, tellurium and AMICI report an event's effect at its own time).
        preequilibrate: Start from the untreated steady state of this parameter set.
        include_species: Add one column per species amount (nmol or Mcell), named ``amount_<id>``.
        engine: A compiled model; defaults to the shipped model, compiled once per process.
        n_classes: Build the shipped model from this many focus classes (:func:`default_engine`, compiled
            once per process and number); None or 1 is the published one-class model. Not with ``engine``,
            whose classes are compiled in.

    Returns:
        One row per output time; columns from ``ra_model.model.columns``. ``df.attrs`` holds
        ``units``, ``phenotype``, ``regimen``, ``overrides``, ``changes``, ``dose_times_d``,
        ``motile_detection_limit_M_per_mL``, the semen category limits (``pellet_detection_limit_M_per_mL``,
        ``fresh_detection_limit_M_per_mL``, ``oligozoospermia_limit_M_per_mL``), ``model_hash`` and ``solver``.

    Raises:
        UnknownNameError: Unknown phenotype or parameter (with close matches).
        InvalidValueError: Bad horizon or step, a run above the size limits (``ra_model.model.domain``), an
            override, change or combination of values outside the physical domain (niche shares that do
            not add up to 1 included), a bad ``n_classes``, or ``n_classes`` given with ``engine``.
        RegimenParseError: Regimen text that cannot be parsed.
        SimulationFailedError: The solver failed (the message names the phenotype, regimen, overrides and
            changes; ``exc.partial`` holds the rows computed before), or memory ran out (the message says so,
            with the size).
    """
    check_engine_or_classes(engine, n_classes)
    engine = engine or default_engine(1 if n_classes is None else n_classes)
    n = engine_classes(engine)
    observables = [o.model_id for o in C.OBSERVABLES]
    species = list(engine.species_ids) if include_species else []
    selections = ["doses_given", *observables, *species]
    n_columns = len(selections) + 3  # time, the motile-sperm flag and the semen category
    preset, regimen, user = resolve_scenario(
        engine,
        phenotype,
        regimen,
        t_end_d=t_end_d,
        output_step_d=output_step_d,
        overrides=overrides,
        columns=n_columns,
        extra_rows=len(changes),
    )
    for change in changes:
        if not isinstance(change, ParameterChange):
            raise InvalidValueError(
                f"changes contains {change!r} ({type(change).__name__}); give "
                "ParameterChange(t_d=..., parameter=..., value=...) objects"
            )
    for name in (c.parameter for c in changes):  # checked up front: changes apply mid-run
        if name not in engine.defaults:
            raise unknown_parameter(engine, name)
    for change in changes:
        if change.t_d >= t_end_d:
            raise InvalidValueError(
                f"change of {change.parameter!r} at day {change.t_d:g} is not before the end of the run "
                f"({t_end_d:g} d); lengthen t_end_d or move the change"
            )
    parameters = preset.resolve(engine.defaults) | user
    later = dict(parameters)
    for t_d in sorted({c.t_d for c in changes}):  # the values in force after the changes at each time, together
        later.update({c.parameter: c.value for c in changes if c.t_d == t_d})
        check_combination(
            later, fed=bool(regimen.fed) if regimen else False, where=f"after the change at day {t_d:g}", n_classes=n
        )
    limits = semen.limits_from(engine.defaults | later)  # the values in force at the end, checked before the run

    context = run_context(preset.name, regimen, user, changes)
    try:
        if preequilibrate:
            start = steady_state_amounts(engine, parameters | untreated(engine), preset.initial_amounts)
            if regimen is None:  # a model file's own dose at t = 0 (file_dose_amount) survives
                start[DOSE_SPECIES] = start.get(DOSE_SPECIES, 0.0) + file_dose_amount(engine)
        else:
            start = dict(engine.initial_amounts) | dict(preset.initial_amounts)
    except SimulationFailedError as exc:
        raise SimulationFailedError(f"{context}: pre-equilibration failed: {exc}") from exc
    engine.fresh(parameters=parameters, initial_amounts=start)
    if regimen is not None:
        engine.arm_doses(dose_plan(regimen))

    cuts = sorted({c.t_d for c in changes})
    blocks: list[np.ndarray] = []
    bounds = [0.0, *cuts, float(t_end_d)]
    try:
        grid = np.unique(np.concatenate([output_grid_d(t_end_d, output_step_d), cuts]))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            for change in changes:
                if change.t_d == a:
                    engine.set_parameter(change.parameter, change.value)
            times = grid[(grid >= a) & (grid <= b)]
            try:
                block = engine.simulate([float(t) * 24 for t in times], selections)
            except SimulationFailedError as exc:
                partial = _table(np.vstack(blocks), species) if blocks else None
                raise SimulationFailedError(f"{context}: {exc}", partial=partial) from exc
            if blocks:  # the row at a change time reports the values after it, as SBML simulators do
                blocks[-1] = blocks[-1][:-1]
            blocks.append(block)
        table = _table(np.vstack(blocks), species)
        limit = engine.get("motile_detection_limit")
        table[C.MOTILE_SPERM_PRESENT] = table[C.MOTILE_CONCENTRATION] >= limit
        table[C.SEMEN_CATEGORY] = semen.semen_category(table[C.EJACULATE_CONCENTRATION], **limits)
    except MemoryError as exc:
        rows = t_end_d / output_step_d + 1 + len(cuts)
        raise SimulationFailedError(
            f"{context}: ran out of memory holding {rows:,.0f} output rows x {n_columns} columns (about "
            f"{format_bytes(output_bytes(rows, n_columns))} at its peak); this is not a solver problem: use a "
            "coarser output_step_d, fewer days or include_species=False, or free memory"
        ) from exc
    table.attrs.update(
        units=dict(C.UNITS) | {f"amount_{s}": engine.species_units()[s] for s in species},
        phenotype=preset.name,
        regimen=str(regimen) if regimen else None,
        overrides=user,
        changes=[(c.t_d, c.parameter, c.value) for c in changes],
        dose_times_d=C.DoseTimes(t / 24 for t in regimen.dose_times_h()) if regimen else C.DoseTimes(),
        motile_detection_limit_M_per_mL=limit,
        **semen.limit_attrs(limits),
        model_hash=engine.sbml_hash,
        solver={"rtol": engine.options.rtol, "atol": engine.options.atol},
    )
    return table


#: Columns of a ``simulate()`` table without species: time, doses given, the observables, the motile flag and
#: the semen category.
TABLE_COLUMNS = 4 + len(C.OBSERVABLES)


def resolve_scenario(
    engine: Engine,
    phenotype: str | Phenotype,
    regimen: Regimen | str | None,
    *,
    t_end_d: float,
    output_step_d: float,
    overrides: Mapping[str, float] | None,
    columns: int = TABLE_COLUMNS,
    extra_rows: int = 0,
) -> tuple[Phenotype, Regimen | None, dict[str, float]]:
    """Check a scenario's inputs against a compiled model before anything runs.

    The horizon and output step are checked against the size limits, and every override against its
    parameter's physical domain (:mod:`ra_model.model.domain`), alone and together with the preset's values.

    Args:
        engine: The compiled model (its parameter and species names).
        phenotype: Preset name or a ``Phenotype``.
        regimen: A ``Regimen``, its text, or None.
        t_end_d: Simulated time, days.
        output_step_d: Output spacing, days.
        overrides: Parameter values by id, on top of the phenotype.
        columns: Columns of the output table (for the memory estimate of the size check).
        extra_rows: Output rows beyond the regular grid (e.g. scheduled changes).

    Returns:
        The phenotype preset (written for the engine's focus classes, :meth:`Phenotype.for_classes`), the
        parsed regimen (or None) and the user's overrides as a dict of floats.

    Raises:
        UnknownNameError: Unknown phenotype, parameter, or species in the preset (with close matches).
        InvalidValueError: Bad horizon or step, a run too large, or an override outside its domain.
        RegimenParseError: Regimen text that cannot be parsed.
    """
    if not isinstance(phenotype, str | Phenotype):
        raise InvalidValueError(
            f"phenotype = {phenotype!r} ({type(phenotype).__name__}); give a preset name such as "
            "'maturation_arrest' or a Phenotype"
        )
    if regimen is not None and not isinstance(regimen, str | Regimen):
        raise InvalidValueError(
            f"regimen = {regimen!r} ({type(regimen).__name__}); give regimen text such as '20 mg bid for 180 d', "
            "a Regimen, or None for no drug"
        )
    if overrides is not None and not isinstance(overrides, Mapping):
        raise InvalidValueError(
            f"overrides = {overrides!r} ({type(overrides).__name__}); give a mapping such as {{'cyp26_expr': 2.0}}"
        )
    preset = get_phenotype(phenotype) if isinstance(phenotype, str) else phenotype
    n_classes = engine_classes(engine)
    preset = preset.for_classes(n_classes)  # ids that exist per class apply to every class
    if isinstance(regimen, str):
        regimen = Regimen.parse(regimen)
    check_positive_days("t_end_d", t_end_d)
    check_positive_days("output_step_d", output_step_d)
    check_run_size(t_end_d, output_step_d, columns=columns, extra_rows=extra_rows)
    if regimen is not None and regimen.start_d >= t_end_d:
        log.warning(
            "regimen %r starts on day %g, at or after the end of the run (t_end_d = %g): no dose is given; "
            "lengthen t_end_d or start the regimen earlier",
            str(regimen),
            regimen.start_d,
            t_end_d,
        )
    user = dict(overrides or {})
    for name in user:
        if name not in engine.defaults:
            raise unknown_parameter(engine, name)
    user = check_values(user, where="overrides")
    for name in [*preset.parameters, *preset.scale]:
        if name not in engine.defaults:
            raise unknown_parameter(engine, name, f"phenotype {preset.name!r}")
    for name in preset.initial_amounts:
        if name not in engine.initial_amounts:
            raise UnknownNameError("species", name, engine.initial_amounts, where=f"phenotype {preset.name!r}")
    check_combination(
        preset.resolve(engine.defaults) | user,
        fed=bool(regimen.fed) if regimen else False,
        where=f"phenotype {preset.name!r} with overrides" if user else f"phenotype {preset.name!r}",
        n_classes=n_classes,
    )
    return preset, regimen, user


def unknown_parameter(engine: Engine, name: str, where: str = "") -> UnknownNameError:
    """Return the error for a parameter the engine lacks; for a class id (``F9__ra_local``), name the classes it has.

    Args:
        engine: The compiled model.
        name: The unknown name.
        where: Where the name came from (a phenotype), or empty.
    """
    prefix, sep, base = name.partition("__")
    if sep and prefix[:1] == "F" and prefix[1:].isdigit() and base in per_class_ids():
        n = engine_classes(engine)
        built = "one class, so no class ids" if n == 1 else f"focus classes F1 to F{n}"
        where = (
            f"{where or 'this model'} (it has {built}; build the testis from more classes with n_classes, --classes)"
        )
    return UnknownNameError("parameter", name, engine.defaults, where=where)


def run_context(
    phenotype: str, regimen: Regimen | None, overrides: Mapping[str, float], changes: Sequence[ParameterChange] = ()
) -> str:
    """Return the words that name a run in an error: phenotype, regimen, the user's overrides and changes."""
    text = f"phenotype {phenotype!r}, regimen {str(regimen) if regimen else 'none'!r}"
    if overrides:
        text += ", overrides " + _listing([f"{k}={v:g}" for k, v in overrides.items()])
    if changes:
        text += ", changes " + _listing([f"{c.parameter}={c.value:g} at day {c.t_d:g}" for c in changes])
    return text


def _listing(items: Sequence[str], limit: int = 8) -> str:
    """Join at most ``limit`` items, saying how many there are in all when some are left out."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"


def dose_plan(regimen: Regimen) -> DosePlan:
    """Return the engine's dosing plan for a regimen (the one place a ``Regimen`` becomes doses)."""
    return DosePlan(
        dose_mg=regimen.dose_per_administration_mg,
        interval_h=regimen.interval_h,
        n_doses=regimen.number_of_doses,
        first_dose_h=regimen.start_d * 24,
        fed=regimen.fed,
    )


def output_grid_d(t_end_d: float, output_step_d: float) -> np.ndarray:
    """Return the output times of a run, days: every ``output_step_d`` from 0, and ``t_end_d`` itself.

    ``simulate`` adds the times of scheduled changes to these.
    """
    grid = np.arange(0.0, t_end_d + 0.5 * output_step_d, output_step_d)
    grid = grid[grid <= t_end_d + 1e-9]
    if grid[-1] < t_end_d:
        grid = np.append(grid, t_end_d)
    return grid


def _table(data: np.ndarray, species: Sequence[str]) -> pd.DataFrame:
    names = [C.TIME_D, C.DOSES_GIVEN, *(o.column for o in C.OBSERVABLES), *(f"amount_{s}" for s in species)]
    frame = pd.DataFrame(data, columns=names)
    frame[C.TIME_D] = frame[C.TIME_D] / 24.0
    frame[C.DOSES_GIVEN] = frame[C.DOSES_GIVEN].round().astype(int)
    return frame


def check_positive_days(name: str, value: float) -> None:
    """Raise ``InvalidValueError`` naming ``name`` unless ``value`` is a finite number of days > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InvalidValueError(f"{name} = {value!r}; use a finite number of days > 0")
