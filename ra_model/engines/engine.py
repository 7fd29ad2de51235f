"""The simulation engine: the only module that touches libroadrunner.

It compiles SBML once and hands out fresh model states on demand. roadrunner's reset
semantics are a known trap (``reset()`` keeps parameters that events changed, ``resetAll()``
fires t = 0 events before new values can be set), so this module never resets: it records the
pristine values right after compilation (time, every parameter not defined by a rule, compartment
volumes, species amounts) and writes them all back before every run. That gives the same results
as reloading a saved state (``loadStateS``, tested) at a thousandth of its cost (10 ms per reload).
The model's dose event is armed here too. An event whose trigger is already true when the
run starts never fires, so a dose due at the current time is given directly and the event is
armed from the next dose on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import roadrunner

from ra_model.errors import InvalidValueError, SimulationFailedError, UnknownNameError
from ra_model.model import units
from ra_model.model.bounds import format_bytes
from ra_model.model.source import sbml_hash

#: A time that is never reached (hours); disarms the dose event. Matches ``t_never`` in the model.
T_NEVER_H = 1e9
#: Words in a libroadrunner error that mean an allocation failed (C++ ``std::bad_alloc``), not the solver.
_MEMORY_WORDS = ("bad_alloc", "memory allocation", "out of memory")


@dataclass(frozen=True, kw_only=True)
class SolverOptions:
    """CVODE settings.

    Attributes:
        rtol: Relative tolerance.
        atol: Absolute tolerance (amounts in nmol or Mcell).
        max_steps: Maximum internal steps between two output points.
    """

    rtol: float = 1e-8
    atol: float = 1e-12
    max_steps: int = 200_000

    def __post_init__(self) -> None:
        """Check tolerances are positive and small enough to mean something."""
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and 0 < value < 1):
                raise InvalidValueError(f"SolverOptions.{name} = {value!r}; use a number in (0, 1), e.g. 1e-8")
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise InvalidValueError(f"SolverOptions.max_steps = {self.max_steps!r}; use a positive integer")


@dataclass(frozen=True, kw_only=True)
class DosePlan:
    """Doses as the model's event sees them.

    Attributes:
        dose_mg: Amount per administration, mg.
        interval_h: Time between administrations, hours.
        n_doses: Number of administrations.
        first_dose_h: Time of the first administration, hours on the model clock.
        fed: Taken with food.
    """

    dose_mg: float
    interval_h: float
    n_doses: int
    first_dose_h: float
    fed: bool = False


class Engine:
    """A compiled model that can be reset to a pristine state and simulated many times."""

    def __init__(self, sbml: str, *, options: SolverOptions | None = None) -> None:
        """Compile SBML text.

        Args:
            sbml: SBML text (a ``str``, not a path).
            options: Solver settings; defaults to ``SolverOptions()``.

        Raises:
            SimulationFailedError: If libroadrunner cannot compile the SBML.
        """
        try:
            self._rr = roadrunner.RoadRunner(sbml)
        except RuntimeError as exc:
            raise SimulationFailedError(f"libroadrunner could not load the SBML: {exc}") from exc
        self.options = options or SolverOptions()
        #: Short hash of the compiled SBML, recorded with every results table for provenance.
        self.sbml_hash = sbml_hash(sbml)
        integrator = self._rr.integrator
        integrator.relative_tolerance = self.options.rtol
        integrator.maximum_num_steps = self.options.max_steps
        model = self._rr.model
        self.species_ids: tuple[str, ...] = tuple(model.getFloatingSpeciesIds())
        # A scalar absolute tolerance is rescaled by libroadrunner to atol x |current amount| at
        # every simulate() call, so a drained pool (1e-300) gets an impossible tolerance and CVODE
        # fails (sys-bio/roadrunner#1349). A vector is used as given: one uniform atol per state
        # (the states are the species and any variables set by rate rules).
        n_states = len(self.species_ids) + int(model.getNumRateRules())
        integrator.setValue("absolute_tolerance", [self.options.atol] * n_states)
        self.parameter_ids: tuple[str, ...] = tuple(model.getGlobalParameterIds())
        self.compartment_ids: tuple[str, ...] = tuple(model.getCompartmentIds())
        rules = set(self._rr.getAssignmentRuleIds())
        self.settable_parameter_ids: tuple[str, ...] = tuple(p for p in self.parameter_ids if p not in rules)
        self.defaults: dict[str, float] = {
            p: float(self._rr[p]) for p in self.settable_parameter_ids + self.compartment_ids
        }
        self.initial_amounts: dict[str, float] = {s: float(self._rr[s]) for s in self.species_ids}
        gids = list(model.getGlobalParameterIds())
        self._settable_index = np.array([i for i, p in enumerate(gids) if p not in rules], dtype=np.int32)
        self._pristine_parameters = np.asarray(model.getGlobalParameterValues(), dtype=float)[self._settable_index]
        self._pristine_volumes = np.asarray(model.getCompartmentVolumes(), dtype=float)
        self._pristine_amounts = np.asarray(model.getFloatingSpeciesAmounts(), dtype=float)
        self._parameter_index = {p: i for i, p in enumerate(gids) if p not in rules}
        self._species_index = {s: i for i, s in enumerate(self.species_ids)}
        self._selections: list[str] = []
        #: Parameters of the current run that differ from the compiled defaults (named in solver errors).
        self._changed: dict[str, float] = {}
        self._species_units: dict[str, str] | None = None

    # ------------------------------------------------------------------ state
    def fresh(
        self,
        *,
        parameters: Mapping[str, float] | None = None,
        initial_amounts: Mapping[str, float] | None = None,
    ) -> None:
        """Return the model to its freshly compiled state, then apply overrides.

        This is the one function that owns "a fresh model with these overrides".

        Args:
            parameters: Parameter or compartment values by id.
            initial_amounts: Species amounts by id (nmol, or Mcell for germ cells).

        Raises:
            UnknownNameError: For an id the model does not have (with close matches).
            InvalidValueError: For a non-finite value.
        """
        model = self._rr.model
        model.setTime(0.0)
        model.setGlobalParameterValues(self._settable_index, self._pristine_parameters)
        model.setCompartmentVolumes(np.arange(self._pristine_volumes.size, dtype=np.int32), self._pristine_volumes)
        model.setFloatingSpeciesAmounts(np.arange(self._pristine_amounts.size, dtype=np.int32), self._pristine_amounts)
        index, values = [], []
        self._changed = {}
        for name, value in (parameters or {}).items():
            if name not in self.defaults:
                raise UnknownNameError("parameter", name, self.defaults)
            number = _finite(name, value)
            if number != self.defaults[name]:
                self._changed[name] = number
            if name in self._parameter_index:
                index.append(self._parameter_index[name])
                values.append(number)
            else:  # a compartment volume
                self._rr[name] = number
        if index:
            model.setGlobalParameterValues(np.array(index, dtype=np.int32), np.array(values, dtype=float))
        if initial_amounts:
            self.set_amounts(initial_amounts)

    def set_amounts(self, amounts: Mapping[str, float]) -> None:
        """Set current species amounts.

        Raises:
            UnknownNameError: For an unknown species id.
            InvalidValueError: For a non-finite or negative amount.
        """
        index, values = [], []
        for name, value in amounts.items():
            if name not in self._species_index:
                raise UnknownNameError("species", name, self.initial_amounts)
            if _finite(name, value) < 0:
                raise InvalidValueError(f"species {name!r} amount {value!r} is negative; amounts must be >= 0")
            index.append(self._species_index[name])
            values.append(float(value))
        if index:
            self._rr.model.setFloatingSpeciesAmounts(np.array(index, dtype=np.int32), np.array(values, dtype=float))

    def amounts(self) -> dict[str, float]:
        """Return current species amounts by id."""
        values = self._rr.model.getFloatingSpeciesAmounts()
        return dict(zip(self.species_ids, (float(v) for v in values), strict=True))

    def species_units(self) -> dict[str, str]:
        """Return each species' amount unit as pint-parseable text (read from the compiled SBML once)."""
        if self._species_units is None:
            self._species_units = units.species_units(self._rr.getSBML())
        return self._species_units

    def get(self, name: str) -> float:
        """Return the current value of a parameter, species or assignment-rule variable."""
        try:
            return float(self._rr[name])
        except RuntimeError as exc:
            raise UnknownNameError("model variable", name, self.defaults | self.initial_amounts) from exc

    def set_parameter(self, name: str, value: float) -> None:
        """Set a parameter mid-run (for scheduled changes such as vitamin A repletion)."""
        if name not in self.defaults:
            raise UnknownNameError("parameter", name, self.defaults)
        self._rr[name] = _finite(name, value)
        self._changed[name] = float(value)

    def rates_of_change(self) -> dict[str, float]:
        """Return d(amount)/dt of every species at the current state, by id (per hour)."""
        values = self._rr.getRatesOfChange()
        return dict(zip(self.species_ids, (float(v) for v in values[: len(self.species_ids)]), strict=True))

    @property
    def time_h(self) -> float:
        """Current model time, hours."""
        return float(self._rr.model.getTime())

    # ------------------------------------------------------------------ dosing
    def arm_doses(self, plan: DosePlan) -> None:
        """Load a dosing plan into the model's self-rescheduling dose event.

        A dose due at or before the current model time is given here, directly, because an
        event whose trigger is already true at the start of a run never fires.

        Args:
            plan: The doses to give.
        """
        now = self.time_h
        rr = self._rr
        rr["dose_mg"] = plan.dose_mg
        rr["dose_interval_h"] = plan.interval_h
        rr["n_doses"] = float(plan.n_doses)
        rr["fed"] = 1.0 if plan.fed else 0.0
        rr["doses_given"] = 0.0
        if plan.n_doses <= 0:
            rr["t_next_dose"] = T_NEVER_H
            return
        if plan.first_dose_h <= now:
            rr["Gut_iso"] = float(rr["Gut_iso"]) + plan.dose_mg * float(rr["nmol_per_mg_iso"])
            rr["doses_given"] = 1.0
            rr["t_next_dose"] = plan.first_dose_h + plan.interval_h if plan.n_doses > 1 else T_NEVER_H
        else:
            rr["t_next_dose"] = plan.first_dose_h

    # ------------------------------------------------------------------ running
    def simulate(self, times_h: Sequence[float], selections: Sequence[str]) -> np.ndarray:
        """Integrate from the current state through the given output times.

        Args:
            times_h: Increasing output times, hours; the first is the current model time.
            selections: Ids to record; ``"time"`` is always the first column.

        Returns:
            An array of shape (len(times_h), 1 + len(selections)).

        Raises:
            SimulationFailedError: If CVODE fails; the message gives the time reached.
        """
        times = [float(t) for t in times_h]
        wanted = ["time", *selections]
        if wanted != self._selections:  # setting selections costs more than a short simulation
            self._rr.timeCourseSelections = wanted
            self._selections = wanted
        try:
            result = self._rr.simulate(times=times)
        except MemoryError as exc:
            raise self._out_of_memory(len(times), len(wanted)) from exc
        except RuntimeError as exc:
            if any(word in str(exc).lower() for word in _MEMORY_WORDS):
                raise self._out_of_memory(len(times), len(wanted)) from exc
            raise SimulationFailedError(
                f"the solver failed at t = {self.time_h / 24:.3f} d (integrating {times[0] / 24:g} to "
                f"{times[-1] / 24:g} d{self._changed_text()}): {exc}. Check those parameter values first; "
                "if they are right, try tighter solver tolerances (SolverOptions)."
            ) from exc
        return np.asarray(result, dtype=float)

    def _changed_text(self) -> str:
        """Return ``", with parameters a=1, b=2 changed from the model's defaults"`` (or nothing)."""
        if not self._changed:
            return ", all parameters at the model's defaults"
        items = [f"{k}={v:g}" for k, v in self._changed.items()]
        shown = ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")
        return f", with parameters {shown} changed from the model's defaults"

    def _out_of_memory(self, n_times: int, n_columns: int) -> SimulationFailedError:
        """Return the error for a run that ran out of memory: the size, and that it is not the solver's fault."""
        size = format_bytes(n_times * n_columns * 8.0)
        return SimulationFailedError(
            f"ran out of memory recording {n_times:,} output times x {n_columns} columns ({size} for the result "
            f"alone) at t = {self.time_h / 24:.3f} d; this is not a solver problem: use a coarser output step or "
            "fewer days, or free memory"
        )


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise InvalidValueError(f"{name} = {value!r} is not a number")
    if not math.isfinite(value):
        raise InvalidValueError(f"{name} = {value!r} is not finite")
    return float(value)
