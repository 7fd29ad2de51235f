"""The fast path for sweeps: the retinoid core in libroadrunner until it is periodic, the germ line compiled.

Why it is fast, and why it stays exact (measured in ``benchmarks/bench_sweep.py``):

1. Nothing downstream of RAR occupancy (4-oxo-isotretinoin, STRA8, the tight junctions, the germ
   cells) feeds back to the retinoids. The model therefore splits into a *core* of 9 species
   (isotretinoin gut/plasma/peripheral, plasma atRA, testis retinol, retinal, atRA, 13-cis-RA,
   CYP26), which carries the doses and the CYP26 feedback, and a feed-forward *germ line* of 43
   species driven by four core signals. The core is derived from the shipped SBML with libsbml
   (:func:`core_sbml`), so it has one home: ``models/ra_testis.ant``. With N focus classes the core
   is the same 9 species; the germ line is every class's (and the shared ducts), driven by each
   class's RAR occupancy and gates.
2. Under a fixed regimen the core becomes periodic within a couple of weeks (its slow modes,
   peripheral isotretinoin and testis RA with CYP26, shrink by about 0.6 and 0.4 per 12-h
   interval). The core is simulated dose by dose, exactly, for a few intervals; the periodic state
   is then extrapolated from the states at mid-interval (minimal polynomial extrapolation,
   :func:`extrapolate_limit`) and one interval is simulated from it: if that interval reproduces
   its start to ``PERIODIC_RTOL`` it is the periodic orbit (otherwise more exact intervals follow,
   or the plain test that one exact interval repeats the previous one ends the search). The orbit
   is repeated until the end of dosing, with the part of the transient that the jump cut short
   added back to the signals (the last exact interval's difference from the orbit, decaying at the
   observed rate), and the washout is simulated exactly from the periodic state until the core is
   back at its untreated steady state. About 10 of 360 intervals go through the solver.
3. The germ line (:mod:`ra_model.engines.germline`) is integrated in compiled code on a half-hour grid from
   the recorded signals, stage by stage, with exponential steps; it is exact for constant rates and
   second order otherwise. Its equations are read from the model's SBML
   (:mod:`ra_model.engines.germline_table`), so an edit to the model is followed, and a rate law
   outside the kernel's form is refused with the species and reaction named.

The engine also refuses to run if the kernel's rates of change differ from libroadrunner's on the
full model (:func:`check_germline_equations`, run when a fast engine is built).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import libsbml
import numpy as np
import pandas as pd
from numba import njit

from ra_model.engines.engine import DosePlan, Engine, SolverOptions
from ra_model.engines.germline import GermlineKernel, kernel_for
from ra_model.engines.germline_table import GermlineTable, read_germline
from ra_model.engines.simulate import (
    PREEQ_FLOOR,
    check_engine_or_classes,
    clean_amounts,
    dose_plan,
    output_grid_d,
    resolve_scenario,
    run_context,
    steady_state_amounts,
)
from ra_model.errors import ModelBuildError, SimulationFailedError, UnknownNameError
from ra_model.model import columns as C
from ra_model.model import semen
from ra_model.model.classes import check_n_classes
from ra_model.model.phenotypes import Phenotype
from ra_model.model.regimen import Regimen
from ra_model.model.source import default_sbml

log = logging.getLogger(__name__)

#: Relative tolerance of the core solver on the fast path.
FAST_RTOL = 1e-7
#: Absolute tolerance of the core solver (nmol).
FAST_ATOL = 1e-12
#: Spacing of the grid on which the germ line is integrated and the core signals are recorded, hours.
GRID_H = 0.5
#: Grid spacing once the washout is smooth (``WASHOUT_FINE_H`` after the last dose interval), hours.
COARSE_GRID_H = 2.0
#: Hours after the last dose interval for which the fine grid is kept.
WASHOUT_FINE_H = 48.0
#: The core counts as periodic when one dosing interval changes no core amount by more than this
#: (relative; amounts below ``PREEQ_FLOOR`` nmol count as that floor).
PERIODIC_RTOL = 1e-5
#: Dosing intervals simulated exactly before periodicity is tested.
MIN_EXACT_INTERVALS = 4
#: Slow modes assumed by the extrapolation of the core's approach to its periodic state (the
#: core's Jacobian has three slow modes that the doses excite: peripheral isotretinoin, plasma
#: isotretinoin, testis RA with CYP26; per-interval multipliers about 0.6, 0.4 and 0.2).
EXTRAPOLATION_MODES = 3
#: Dosing intervals simulated exactly before the periodic state is extrapolated (the fast modes,
#: multipliers below 0.005 per interval, have died out by then).
EXTRAPOLATE_FROM = 6
#: The extrapolated periodic state is used only when the last exact state is within this of it
#: (relative): the germ line then sees the remaining transient cut short, a decaying error of
#: at most this size instead of a lasting one.
JUMP_RTOL = 0.1
#: After the last dose the core is simulated until no amount differs from its untreated steady
#: state by more than this (relative), then held there.
WASHOUT_RTOL = 1e-6
#: Length of one washout chunk, hours.
WASHOUT_CHUNK_H = 240.0
#: Dosing intervals simulated per solver call while waiting for periodicity.
CHUNK_INTERVALS = 2


def dropped_species(table: GermlineTable) -> tuple[str, ...]:
    """Return the species the fast path's core does not carry: the germ line, its conserved partners and ledgers."""
    return (*table.species, *table.derived, *table.ledgers)


def __getattr__(name: str) -> Any:
    """``DROPPED_SPECIES``: the species the shipped model's core does not carry (read from its SBML on first use)."""
    if name == "DROPPED_SPECIES":
        return dropped_species(read_germline(default_sbml()))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class FastPathInfo:
    """How a fast run was carried out (stored in ``table.attrs["fast_path"]``).

    Attributes:
        exact_intervals: Dosing intervals simulated dose by dose before the core was periodic.
        periodic_from_d: Day from which the last exact interval was repeated (None if never).
        washout_exact_until_d: Day until which the washout was simulated before the core was held
            at its untreated steady state (None if held from the end of dosing or not reached).
        extrapolated: The periodic state was extrapolated from the exact intervals (and checked
            by simulating one interval from it) rather than reached.
    """

    exact_intervals: int
    periodic_from_d: float | None
    washout_exact_until_d: float | None
    extrapolated: bool = False


def _names(ast: libsbml.ASTNode | None) -> set[str]:
    found: set[str] = set()
    stack = [ast]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        if node.isName():
            found.add(node.getName())
        stack.extend(node.getChild(k) for k in range(node.getNumChildren()))
    return found


def core_sbml(sbml: str, *, drop: Sequence[str] | None = None) -> str:
    """Return the retinoid core of a model: the SBML without the germ-line species.

    Species in ``drop`` (default: the model's germ line, :func:`dropped_species` of its table) are
    removed, with the reactions that then have no species
    or whose rate law reads a removed species, and (transitively) the assignment rules that read one.
    Reactions that consume a core species and produce a removed one keep their consumption.

    Args:
        sbml: SBML text of the full model.
        drop: Species to remove.

    Raises:
        ModelBuildError: If a species to drop is missing, or (default ``drop``) the model's germ line
            cannot be read.
    """
    if drop is None:
        drop = dropped_species(read_germline(sbml))
    doc = libsbml.readSBMLFromString(sbml)
    model = doc.getModel()
    if model is None:
        raise ModelBuildError("the SBML has no model; cannot derive the fast path's core")
    dropped = set(drop)
    for species in drop:
        if model.removeSpecies(species) is None:
            raise ModelBuildError(
                f"the model has no species {species!r}, which the fast path integrates separately; "
                "use the exact path for this model"
            )
    for i in reversed(range(model.getNumReactions())):
        reaction = model.getReaction(i)
        for refs in (reaction.getListOfReactants(), reaction.getListOfProducts()):
            for j in reversed(range(refs.size())):
                if refs.get(j).getSpecies() in dropped:
                    refs.remove(j)
        for j in reversed(range(reaction.getNumModifiers())):
            if reaction.getModifier(j).getSpecies() in dropped:
                reaction.removeModifier(j)
        empty = reaction.getNumReactants() + reaction.getNumProducts() == 0
        law = reaction.getKineticLaw()
        if empty or (law is not None and _names(law.getMath()) & dropped):
            model.removeReaction(i)
    changed = True
    while changed:
        changed = False
        for i in reversed(range(model.getNumRules())):
            rule = model.getRule(i)
            if _names(rule.getMath()) & dropped:
                variable = rule.getVariable()
                dropped.add(variable)
                model.removeRule(i)
                model.removeParameter(variable)
                changed = True
    return str(libsbml.writeSBMLToString(doc))


def fast_engine_options() -> SolverOptions:
    """Return the solver settings of the fast path's core."""
    return SolverOptions(rtol=FAST_RTOL, atol=FAST_ATOL)


class FastEngine:
    """The full model (for names, defaults and the equation check) plus its compiled retinoid core."""

    def __init__(self, sbml: str | None = None, *, options: SolverOptions | None = None) -> None:
        """Compile the full model and its core, and check the germ-line equations against the model.

        Args:
            sbml: SBML text of the full model; defaults to the shipped model.
            options: Solver settings of the core; defaults to :func:`fast_engine_options`.

        Raises:
            ModelBuildError: If the model cannot be split, a germ-line rate law is outside the
                kernel's form, or the kernel's rates differ from the model's.
        """
        text = sbml if sbml is not None else default_sbml()
        #: The compiled germ line, read from this model.
        self.kernel = kernel_for(text)
        self.full = Engine(text, options=options or fast_engine_options())
        core = core_sbml(text, drop=dropped_species(self.kernel.table))
        self.core = Engine(core, options=options or fast_engine_options())
        #: A second copy of the core, for the interval simulated from an extrapolated periodic state.
        self.probe = Engine(core, options=self.core.options)
        self.sbml_hash = self.full.sbml_hash
        self.options = self.core.options
        self.core_observables = [o for o in C.OBSERVABLES if o.model_id in self._core_names()]
        check_germline_equations(self.full, self.kernel)

    def _core_names(self) -> set[str]:
        names: set[str] = set()
        for o in C.OBSERVABLES:
            try:
                self.core.get(o.model_id)
            except UnknownNameError:
                continue
            names.add(o.model_id)
        return names

    @property
    def defaults(self) -> dict[str, float]:
        """Parameter and compartment defaults of the full model."""
        return self.full.defaults


def fast_engine(n_classes: int = 1) -> FastEngine:
    """Return the process-wide fast engine, compiled (and checked) on first use.

    Args:
        n_classes: Tubule-focus classes the testis is built from (:func:`ra_model.model.source.default_sbml`).

    Raises:
        InvalidValueError: If ``n_classes`` is not a whole number from 1 to ``MAX_CLASSES``.
    """
    return _fast_engine(check_n_classes(n_classes))


@lru_cache(maxsize=2)
def _fast_engine(n_classes: int) -> FastEngine:
    return FastEngine(default_sbml(n_classes) if n_classes > 1 else None)


def _random_state(engine: Engine, rng: np.random.Generator) -> dict[str, float]:
    return {
        s: float(v) * float(rng.uniform(0.3, 3.0)) + float(rng.uniform(0.0, 1.0))
        for s, v in engine.initial_amounts.items()
    }


def check_germline_equations(
    engine: Engine, kernel: GermlineKernel, *, n_states: int = 3, seed: int = 0, rtol: float = 1e-5
) -> None:
    """Check the compiled germ line against libroadrunner's rates of change and observables on the full model.

    At random states, the rates of change that the kernel implies (one step of 1e-7 h) and the
    observables it reports must equal libroadrunner's. The kernel is generated from the same SBML,
    so a failure means the table or the kernel misread the model.

    Args:
        engine: The full model.
        kernel: Its compiled germ line (:func:`ra_model.engines.germline.kernel_for` of the same SBML).
        n_states: Random states tried.
        seed: Seed of those states.
        rtol: Relative agreement required.

    Raises:
        ModelBuildError: Naming the first species or observable that differs.
    """
    rng = np.random.default_rng(seed)
    params = dict(engine.defaults)
    h = 1e-7
    for _ in range(n_states):
        amounts = _random_state(engine, rng)
        engine.fresh(parameters=params, initial_amounts=amounts)
        expected = engine.rates_of_change()
        signals = np.array([engine.get(name) for name in kernel.inputs])
        values = params | kernel.table.totals(amounts)
        pvec = kernel.parameter_vector(values)
        x0 = np.array([amounts[s] for s in kernel.species])
        states = kernel.integrate(np.array([0.0, h]), np.vstack([signals, signals]), pvec, x0)
        implied = (states[1] - states[0]) / h
        for k, species in enumerate(kernel.species):
            want = expected[species]
            if abs(implied[k] - want) > rtol * max(abs(want), 1e-3 * abs(x0[k]), 1e-9):
                raise ModelBuildError(
                    f"the compiled germ line gives d{species}/dt = {implied[k]:.6g}, the model {want:.6g}; "
                    "ra_model.engines.germline_table misread the model: use the exact path (and report it)"
                )
        reported = kernel.observables(states[:1], signals[None, :], pvec)
        for name, column in reported.items():
            want = engine.get(name)
            if abs(column[0] - want) > rtol * max(abs(want), 1e-12):
                raise ModelBuildError(
                    f"the compiled germ line's observable {name!r} is {column[0]:.6g}, the model's {want:.6g}; "
                    "ra_model.engines.germline_table misread the model: use the exact path (and report it)"
                )


def germline_observables(
    kernel: GermlineKernel, states: np.ndarray, inputs: np.ndarray, values: Mapping[str, float]
) -> dict[str, np.ndarray]:
    """Return the model's observables that read germ-line states, by model id, from integrated states.

    Args:
        kernel: The compiled germ line.
        states: Its states at some rows (m, n_states).
        inputs: The core signals at the same rows (m, n_inputs).
        values: Every parameter value the germ line reads (``SplitRun.values``).
    """
    return kernel.observables(states, inputs, kernel.parameter_vector(dict(values)))


@lru_cache(maxsize=16)
def _grid(
    t_end_h: float,
    out_h: tuple[float, ...],
    doses: tuple[float, ...],
    interval: float,
    fine_h: float,
    coarse_h: float,
    fine_after_h: float,
) -> np.ndarray:
    """Return the germ-line grid, hours.

    Fine while doses come and ``fine_after_h`` after the last dose interval, coarse once the washout
    is smooth, plus the output, dose and mid-interval times.
    """
    marks = [d + 0.5 * interval for d in doses]
    fine_until = min(t_end_h, (marks[-1] + fine_after_h) if doses else 0.0)
    grid = np.unique(
        np.concatenate(
            [
                np.arange(0.0, fine_until, fine_h),
                np.arange(fine_until, t_end_h, coarse_h),
                [t_end_h],
                out_h,
                [t for t in (*doses, *marks) if t < t_end_h],
            ]
        )
    )
    grid.setflags(write=False)
    return grid


def extrapolate_limit(iterates: np.ndarray, *, floor: float) -> np.ndarray | None:
    """Return the limit of a linearly converging vector sequence by minimal polynomial extrapolation.

    With ``m + 2`` iterates of a sequence whose error is a sum of ``m`` geometrically decaying
    modes, the limit is exact (Sidi, Ford & Smith 1986); with more modes or some nonlinearity it
    is an estimate to be checked.

    Args:
        iterates: Shape (m + 2, n), oldest first.
        floor: Components are scaled by their magnitude, at least this.

    Returns:
        The estimated limit, or None if the sequence does not determine one.
    """
    scale = np.maximum(np.abs(iterates[-1]), floor)
    diffs = np.diff(iterates, axis=0) / scale
    coef, *_ = np.linalg.lstsq(diffs[:-1].T, -diffs[-1], rcond=None)
    coef = np.append(coef, 1.0)
    total = float(coef.sum())
    if not math.isfinite(total) or abs(total) < 1e-9:
        return None
    limit = (coef / total) @ iterates[:-1]
    return limit if bool(np.all(np.isfinite(limit))) else None


@njit(cache=True)
def _tile(
    grid: np.ndarray, record: np.ndarray, is_out: np.ndarray, base: float, top: float, until: float, n_inputs: int
) -> None:
    """Fill the rows after ``top`` up to ``until`` by repeating the rows of (base, top].

    Phases run over (0, interval]; phase 0 is the profile's end (``top``), which the periodic
    state repeats. Linear interpolation in the profile (exact where phases hit profile times):
    the germ-line inputs (the first ``n_inputs`` columns) on every row; the other columns on output
    rows only (the species are not read again: the washout restarts from the state at ``top``).
    """
    interval = top - base
    first = np.searchsorted(grid, base, side="right")
    last = np.searchsorted(grid, top, side="right")
    prof_t = grid[first:last] - base
    n_cols = record.shape[1]
    for i in range(last, grid.size):
        if grid[i] > until:
            break
        offset = grid[i] - base
        phase = offset - (math.ceil(offset / interval - 1e-9) - 1.0) * interval
        r = np.searchsorted(prof_t, phase)
        if r == 0:
            left, right, t_left = last - 1, first, 0.0
        else:
            left, right, t_left = first + r - 1, first + r, prof_t[r - 1]
        w = (phase - t_left) / (prof_t[right - first] - t_left)
        n = n_cols if is_out[i] else n_inputs
        for c in range(n):
            record[i, c] = record[left, c] * (1.0 - w) + record[right, c] * w


def _decay_ratio(states: np.ndarray, limit: np.ndarray) -> float:
    """Per-interval decay of the distance to ``limit`` from the last two marks (clipped to [0, 0.99])."""
    scale = np.maximum(np.abs(limit), PREEQ_FLOOR)
    before, now = (states[0] - limit) / scale, (states[1] - limit) / scale
    norm = float(before @ before)
    return min(max(float(now @ before) / norm, 0.0), 0.99) if norm > 0.0 else 0.0


def _add_transient(
    grid: np.ndarray,
    record: np.ndarray,
    *,
    base: float,
    phases: np.ndarray,
    exact: np.ndarray,
    ratio: float,
    interval: float,
    until: float,
    n_signals: int,
) -> None:
    """Add the transient that the jump to the periodic state cut short back to the repeated signals.

    The last exact interval differed from the periodic profile by D(phase); j intervals after it
    the difference is taken to be D(phase) * ratio**j (the slowest mode's decay). Applied to the
    first ``n_signals`` columns (germ-line inputs and observables) of the rows after ``base``.
    """
    if ratio <= 0.0:
        return
    n_intervals = min(int(math.ceil(math.log(1e-12) / math.log(ratio))), int(math.ceil((until - base) / interval)))
    end = min(base + n_intervals * interval, until)
    rows = np.flatnonzero((grid > base) & (grid <= end))
    if rows.size == 0:
        return
    offset = grid[rows] - base
    j = np.ceil(offset / interval - 1e-9)
    phase = offset - (j - 1.0) * interval
    factor = ratio**j
    probe = (grid > base) & (grid <= base + interval)
    probe_phases = grid[probe] - base
    for col in range(n_signals):
        deviation = exact[:, col] - np.interp(phases, probe_phases, record[probe, col])
        record[rows, col] += factor * np.interp(phase, phases, deviation)


def _run_periodic(
    run: Callable[..., None],
    engine: FastEngine,
    parameters: Mapping[str, float],
    plan: DosePlan,
    grid: np.ndarray,
    record: np.ndarray,
    out_rows: np.ndarray,
    doses: tuple[float, ...],
    t_end_h: float,
    steady: Mapping[str, float],
    constant: np.ndarray,
    signals: list[str],
) -> FastPathInfo:
    """Fill ``record``: doses exactly until the core is periodic, the last interval repeated, the washout exactly.

    The core state is compared at mid-interval marks, one interval apart, from the species columns
    at the end of ``signals``. Once enough intervals are done, the periodic state is extrapolated
    from the marks so far (:func:`extrapolate_limit`) and one interval is simulated from it on
    ``engine.probe``; if that interval is periodic, it is the one repeated.
    """
    core = engine.core
    interval = plan.interval_h
    marks = [d + 0.5 * interval for d in doses]
    n_species = len(core.species_ids)
    species_cols = slice(len(signals) - n_species, len(signals))
    mark_rows = np.searchsorted(grid, marks)
    last_mark = marks[-1]  # mid-interval after the last dose: from here on there are no doses
    end_of_doses = min(last_mark, t_end_h)

    def change(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), PREEQ_FLOOR)))

    def probe(k: int) -> bool:
        """From mark k, jump to the extrapolated periodic state and simulate one interval from it.

        On success the remaining transient is added back to the signals (see :func:`_add_transient`).
        """
        iterates = record[mark_rows[k - EXTRAPOLATION_MODES - 1 : k + 1], species_cols]
        limit = extrapolate_limit(iterates, floor=PREEQ_FLOOR)
        if limit is None or bool(np.any(limit < 0.0)) or change(iterates[-1], limit) > JUMP_RTOL:
            return False
        last = slice(mark_rows[k - 1] + 1, mark_rows[k] + 1)  # the last exact interval's rows
        exact = record[last].copy()
        engine.probe.fresh(
            parameters=parameters, initial_amounts=dict(zip(core.species_ids, limit.tolist(), strict=True))
        )
        engine.probe.arm_doses(replace(plan, first_dose_h=doses[k + 1], n_doses=1))
        run(marks[k], marks[k + 1], engine.probe)
        if change(record[mark_rows[k + 1], species_cols], limit) >= PERIODIC_RTOL:
            return False
        record[mark_rows[k]] = exact[-1]  # the probe started there from the limit; the run was at the mark
        transient.update(
            base=marks[k],
            phases=grid[last] - marks[k - 1],
            exact=exact,
            ratio=_decay_ratio(iterates[-2:], limit),
        )
        return True

    transient: dict[str, Any] = {}
    t, k_done, periodic_at, extrapolated = 0.0, -1, -1, False
    while periodic_at < 0 and k_done + 1 < len(marks) and marks[k_done + 1] < t_end_h:
        k_next = min(k_done + CHUNK_INTERVALS, len(marks) - 1)
        while marks[k_next] >= t_end_h:
            k_next -= 1
        run(t, marks[k_next])
        t = marks[k_next]
        for k in range(max(k_done + 1, MIN_EXACT_INTERVALS), k_next + 1):
            now, before = record[mark_rows[k], species_cols], record[mark_rows[k - 1], species_cols]
            if change(now, before) < PERIODIC_RTOL:
                periodic_at = k
                break
        k_done = k_next
        can_jump = max(EXTRAPOLATE_FROM, EXTRAPOLATION_MODES + 1) <= k_done < len(marks) - 1
        can_jump = can_jump and marks[k_done + 1] < end_of_doses
        if periodic_at < 0 and can_jump and probe(k_done):
            k_done += 1
            periodic_at, extrapolated = k_done, True
    info = FastPathInfo(k_done + 1, None, None, extrapolated)
    if periodic_at >= 0 and marks[k_done] < end_of_doses:
        # repeat the interval before the last simulated mark until the end of dosing; the state at
        # last_mark is then the periodic state at that mark, where the washout starts
        top = marks[k_done]
        is_out = np.zeros(grid.size, dtype=np.bool_)
        is_out[out_rows] = True
        _tile(grid, record, is_out, top - interval, top, end_of_doses, len(engine.kernel.inputs))
        state = dict(zip(core.species_ids, record[mark_rows[k_done], species_cols].tolist(), strict=True))
        core.fresh(parameters=parameters, initial_amounts=clean_amounts(state, atol=core.options.atol))
        if transient:
            _add_transient(
                grid, record, interval=interval, until=end_of_doses, n_signals=species_cols.start, **transient
            )
        info = FastPathInfo(k_done + 1, top / 24.0, None, extrapolated)
        t = end_of_doses
    # the rest of the doses (if the core never became periodic) and the washout, exactly, in chunks,
    # until the core is back at its untreated steady state
    target = np.array([steady[s] for s in core.species_ids])
    while t < t_end_h:
        hi = min(t + WASHOUT_CHUNK_H, t_end_h) if t >= last_mark else min(last_mark, t_end_h)
        run(t, hi)
        if hi > last_mark:
            lo_row = int(np.searchsorted(grid, max(t, last_mark)))
            hi_row = int(np.searchsorted(grid, hi, side="right"))
            block = record[lo_row:hi_row, species_cols]
            scale = np.maximum(np.maximum(np.abs(block), np.abs(target)), PREEQ_FLOOR)
            settled = np.flatnonzero(np.max(np.abs(block - target) / scale, axis=1) < WASHOUT_RTOL)
            if settled.size:
                row = lo_row + int(settled[0])
                record[row + 1 :] = constant
                return FastPathInfo(info.exact_intervals, info.periodic_from_d, float(grid[row]) / 24.0, extrapolated)
        t = hi
    return info


def simulate_fast(
    phenotype: str | Phenotype = "healthy",
    regimen: Regimen | str | None = None,
    *,
    t_end_d: float = 365.0,
    overrides: Mapping[str, float] | None = None,
    output_step_d: float = 1.0,
    engine: FastEngine | None = None,
    periodic: bool = True,
    n_classes: int | None = None,
) -> pd.DataFrame:
    """Simulate like :func:`ra_model.simulate.simulate`, on the split model (see the module docstring).

    With ``n_classes`` = N the testis is built from N focus classes, as ``simulate(...,
    n_classes=N)`` does: the retinoid core is the same, and every class's germ line is compiled.

    Args:
        phenotype: Preset name or a ``Phenotype``.
        regimen: A ``Regimen``, its text, or None for no drug.
        t_end_d: Simulated time, days (> 0).
        overrides: Parameter values by id, on top of the phenotype.
        output_step_d: Spacing of output rows, days (> 0).
        engine: A :class:`FastEngine`; defaults to :func:`fast_engine`.
        periodic: Repeat the core's periodic interval instead of simulating every dose (the speed-up).
            With False every dose is simulated and only the germ-line integration differs from
            ``simulate()``.
        n_classes: Build the shipped model from this many focus classes (not with ``engine``).

    Returns:
        The same columns and ``attrs`` as ``simulate()``; ``attrs["fast_path"]`` is a
        :class:`FastPathInfo` as a dict.

    Raises:
        UnknownNameError: Unknown phenotype or parameter.
        InvalidValueError: Bad horizon or step, a bad ``n_classes``, or ``n_classes`` with ``engine``.
        SimulationFailedError: The core's solver failed.
    """
    check_engine_or_classes(engine, n_classes)
    engine = engine or fast_engine(1 if n_classes is None else n_classes)
    core = engine.core
    scenario = prepare_split_run(
        engine.full,
        core,
        phenotype,
        regimen,
        t_end_d=t_end_d,
        output_step_d=output_step_d,
        overrides=overrides,
        path="fast path",
        table=engine.kernel.table,
    )
    regimen, core_parameters, steady = scenario.regimen, scenario.core_parameters, scenario.steady
    context = scenario.context

    t_end_h = float(t_end_d) * 24.0
    out_h = output_grid_d(t_end_d, output_step_d) * 24.0
    kernel = engine.kernel
    signals = [*kernel.inputs, *(o.model_id for o in engine.core_observables), *core.species_ids]
    doses = regimen.dose_times_h() if regimen is not None else ()
    interval = regimen.interval_h if regimen is not None else math.inf
    grid = _grid(t_end_h, tuple(out_h.tolist()), doses, interval, GRID_H, COARSE_GRID_H, WASHOUT_FINE_H)
    record = np.full((grid.size, len(signals)), np.nan)
    info = FastPathInfo(exact_intervals=0, periodic_from_d=None, washout_exact_until_d=None)

    def run(lo: float, hi: float, on: Engine = core) -> None:
        """Simulate the core from lo to hi (hours), recording signals at the grid points in between."""
        i, j = int(np.searchsorted(grid, lo, side="left")), int(np.searchsorted(grid, hi, side="right"))
        inner = grid[i:j]
        head = [lo] if (inner.size == 0 or inner[0] > lo) else []
        tail = [hi] if (inner.size == 0 or inner[-1] < hi) else []
        try:
            block = on.simulate([*head, *inner.tolist(), *tail], signals)
        except SimulationFailedError as exc:
            raise SimulationFailedError(f"{context}: {exc}") from exc
        record[i:j] = block[len(head) : len(head) + inner.size, 1:]

    core.fresh(parameters=core_parameters, initial_amounts=steady)
    constant = np.array([core.get(name) for name in signals])
    record[grid <= 0.0] = constant
    if not doses:
        record[:] = constant
    else:
        plan = dose_plan(regimen)  # type: ignore[arg-type]
        core.arm_doses(plan)
        if not periodic:
            run(0.0, t_end_h)
        else:
            info = _run_periodic(
                run,
                engine,
                core_parameters,
                plan,
                grid,
                record,
                np.searchsorted(grid, out_h),
                doses,
                t_end_h,
                steady,
                constant,
                signals,
            )

    pvec = kernel.parameter_vector(scenario.values)
    x_start = np.array([scenario.start[s] for s in kernel.species])
    n_in = len(kernel.inputs)
    inputs = np.ascontiguousarray(record[:, :n_in])
    x0 = kernel.steady_state(inputs[0], pvec, x_start)
    states = kernel.integrate(grid, inputs, pvec, x0)
    rows = np.searchsorted(grid, out_h)
    from_germline = germline_observables(kernel, states[rows], inputs[rows], scenario.values)
    from_core = {o.model_id: record[rows, n_in + j] for j, o in enumerate(engine.core_observables)}
    return split_table(
        scenario,
        out_h,
        doses,
        from_core | from_germline,
        model_hash=engine.sbml_hash,
        solver={"rtol": core.options.rtol, "atol": core.options.atol, "fast_path": True, "grid_h": GRID_H},
        fast_path=info.__dict__,
    )


@dataclass(frozen=True)
class SplitRun:
    """A scenario checked and resolved for a split model (the fast path's or the split exact path's).

    Attributes:
        preset: The phenotype preset.
        regimen: The parsed regimen, or None.
        user: The user's parameter overrides.
        core_parameters: Phenotype and user values of the parameters the core has.
        start: Species amounts before pre-equilibration (the model's, with the preset's on top).
        steady: The core's untreated steady state.
        values: Every full-model parameter value, plus the germ line's conserved totals
            (``TJ_total``), as the germ line reads them.
        context: Scenario description for error messages.
    """

    preset: Phenotype
    regimen: Regimen | None
    user: dict[str, float]
    core_parameters: dict[str, float]
    start: dict[str, float]
    steady: dict[str, float]
    values: dict[str, float]
    context: str


def prepare_split_run(
    full: Engine,
    core: Engine,
    phenotype: str | Phenotype,
    regimen: Regimen | str | None,
    *,
    t_end_d: float,
    output_step_d: float,
    overrides: Mapping[str, float] | None,
    path: str,
    table: GermlineTable,
) -> SplitRun:
    """Check a scenario against the full model and pre-equilibrate the core without drug.

    Args:
        full: The full model (names and defaults).
        core: The core that will be simulated.
        phenotype: Preset name or a ``Phenotype``.
        regimen: A ``Regimen``, its text, or None for no drug.
        t_end_d: Simulated time, days.
        output_step_d: Spacing of output rows, days.
        overrides: Parameter values by id, on top of the phenotype.
        path: Name of the calling path, for error messages.
        table: The model's germ line (its conserved totals enter ``values``).

    Raises:
        UnknownNameError, InvalidValueError, RegimenParseError: As ``simulate.resolve_scenario``.
        SimulationFailedError: If the core reaches no steady state.
    """
    preset, parsed, user = resolve_scenario(
        full, phenotype, regimen, t_end_d=t_end_d, output_step_d=output_step_d, overrides=overrides
    )
    parameters = preset.resolve(full.defaults) | user
    semen.limits_from(dict(full.defaults) | parameters)  # the semen category limits, checked before the run
    core_parameters = {k: v for k, v in parameters.items() if k in core.defaults}
    start = dict(full.initial_amounts) | dict(preset.initial_amounts)
    context = f"{run_context(preset.name, parsed, user)} ({path})"
    try:
        steady = steady_state_amounts(core, core_parameters, {s: start[s] for s in core.species_ids})
    except SimulationFailedError as exc:
        raise SimulationFailedError(f"{context}: pre-equilibration failed: {exc}") from exc
    values = dict(full.defaults) | parameters
    values |= table.totals(start)
    return SplitRun(preset, parsed, user, core_parameters, start, steady, values, context)


def split_table(
    scenario: SplitRun,
    out_h: np.ndarray,
    doses: Sequence[float],
    observables: Mapping[str, np.ndarray],
    *,
    model_hash: str,
    solver: dict[str, Any],
    **attrs: Any,
) -> pd.DataFrame:
    """Return a split run's results as ``simulate()`` does: the same columns and ``attrs``.

    Args:
        scenario: The resolved scenario.
        out_h: Output times, hours.
        doses: Dose times, hours.
        observables: Every observable's values at the output times, by model id.
        model_hash: Hash of the full model.
        solver: Solver settings for ``attrs["solver"]``.
        attrs: Further ``attrs`` entries.
    """
    columns: dict[str, np.ndarray] = {
        C.TIME_D: out_h / 24.0,
        C.DOSES_GIVEN: np.searchsorted(np.asarray(doses, dtype=float), out_h, side="right"),
    }
    for o in C.OBSERVABLES:
        columns[o.column] = observables[o.model_id]
    limit = semen.detection_limits(scenario.values)["motile_detection_limit"]  # a derived quantity of the model
    columns[C.MOTILE_SPERM_PRESENT] = np.asarray(columns[C.MOTILE_CONCENTRATION]) >= limit
    limits = semen.limits_from(scenario.values)
    columns[C.SEMEN_CATEGORY] = semen.semen_category(columns[C.EJACULATE_CONCENTRATION], **limits)
    table = pd.DataFrame(columns)
    table.attrs.update(
        units=dict(C.UNITS),
        phenotype=scenario.preset.name,
        regimen=str(scenario.regimen) if scenario.regimen else None,
        overrides=scenario.user,
        changes=[],
        dose_times_d=C.DoseTimes(t / 24 for t in doses),
        motile_detection_limit_M_per_mL=limit,
        **semen.limit_attrs(limits),
        model_hash=model_hash,
        solver=solver,
        **attrs,
    )
    return table
