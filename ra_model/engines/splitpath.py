"""The exact path for sweeps: every dose in libroadrunner on the model without its germ-cell chain, the chain compiled.

Why it is exact, and why it is faster than the whole model in libroadrunner (measured in
``benchmarks/bench_sweep.py``):

1. CVODE's cost per step grows steeply with the number of states (its finite-difference Jacobian
   takes one rate evaluation per state): 180 days of twice-daily doses cost about 160 ms on the
   54-state model and about 30 ms on the 9-state retinoid core (65 ms on the 14-state *split core*
   below, with its half-hour records), although the smaller models take as many steps: the doses
   set the step size, not the germ cells.
2. The split core (:func:`split_core_sbml`) is the shipped model without the germ-cell chain (stem
   cells to cauda): the retinoids, isotretinoin and 4-oxo-isotretinoin, STRA8 and the tight
   junctions, every state that follows the doses within hours, plus one added variable, the
   running integral of the spermiation gate (one per focus class when the testis is built from
   classes: every class's STRA8 is kept and every class's gate integrated). It is simulated dose
   by dose at the sweep tolerance, recording its signals every half hour, until the washout has
   brought it back to its untreated steady state.
3. The chain is a feed-forward cascade driven by slow signals (STRA8 and the junctions, half-lives
   of a day or more) and one fast one per focus class, the spermiation gate.
   :func:`ra_model.engines.germline.integrate_driven` integrates it on the half-hour grid from the
   recorded head states, with each gate's interpolant inside each step corrected to the exact mean
   that its recorded integral gives.

Nothing is repeated or extrapolated (that is the fast path, :mod:`ra_model.engines.fastpath`). The
chain, the head the core keeps, the fast input whose integral it carries and the observables read
from the chain all come from the model's germ-line table (:mod:`ra_model.engines.germline_table`);
the compiled chain's rates are checked against libroadrunner's when an engine is built.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import libsbml
import numpy as np
import pandas as pd

from ra_model.engines.engine import Engine, SolverOptions
from ra_model.engines.fastpath import (
    check_germline_equations,
    core_sbml,
    germline_observables,
    prepare_split_run,
    split_table,
)
from ra_model.engines.germline import default_kernel, kernel_for
from ra_model.engines.germline_table import GermlineTable, read_germline
from ra_model.engines.simulate import (
    LEDGER_SPECIES,
    PREEQ_FLOOR,
    check_engine_or_classes,
    dose_plan,
    output_grid_d,
)
from ra_model.errors import ModelBuildError, SimulationFailedError
from ra_model.model import columns as C
from ra_model.model.classes import check_n_classes
from ra_model.model.phenotypes import Phenotype
from ra_model.model.regimen import Regimen
from ra_model.model.source import default_sbml

log = logging.getLogger(__name__)

#: Variable added to the split core: the integral of the fast input (the spermiation gate) since t = 0, hours
#: (with focus classes, one per class: ``F1__spermiation_gate_integral``, ..., see :func:`gate_integral`).
GATE_INTEGRAL = "spermiation_gate_integral"
#: Spacing of the grid on which the core is recorded and the chain integrated, hours.
SPLIT_GRID_H = 0.5
#: Longest step of the chain's integration, hours (record steps are split to this).
CHAIN_STEP_H = 0.25
#: Hours after the last dose for which the core is recorded every ``SPLIT_GRID_H``; then every
#: ``WASHOUT_GRID_H`` (the signals are smooth).
FINE_AFTER_H = 48.0
#: Spacing of the core's records in the washout, hours.
WASHOUT_GRID_H = 2.0
#: Longest sub-step of mature spermatids and the caput, hours.
GATE_SUBSTEP_H = 1.0 / 32.0
#: After the last dose the core is simulated until no amount differs from its untreated steady
#: state by more than this (relative), then held there.
SETTLED_RTOL = 1e-7
#: Length of one washout chunk, hours.
WASHOUT_CHUNK_H = 240.0
#: Head states turning over slower than this at the model's defaults (per hour: a half-life above about 5 days)
#: are integrated by the compiled kernel from the recorded inputs instead of being carried by the split core:
#: they move little within a dosing interval, and each state fewer in the core makes every CVODE step cheaper
#: (Sertoli competence, t1/2 30 d: the core about 12% faster). The fast ones (4-oxo-isotretinoin, STRA8, the
#: open junctions) follow the doses within hours and stay in the core.
SLOW_HEAD_PER_H = 1.0 / (7 * 24)


def __getattr__(name: str) -> Any:
    """``CHAIN_SPECIES``: the shipped model's germ-cell chain (read from its SBML on first use)."""
    if name == "CHAIN_SPECIES":
        return default_kernel().table.chain
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fast_inputs(table: GermlineTable) -> tuple[str, ...]:
    """Return the ids of the fast inputs whose running integrals the split core carries (the spermiation gates).

    Raises:
        ModelBuildError: If no germ-line state reads a fast input.
    """
    if not table.fast_inputs:
        raise ModelBuildError("the model's germ line has no fast input (a gate feeding a saturable stage)")
    return tuple(table.inputs[k] for k in table.fast_inputs)


def fast_input(table: GermlineTable) -> str:
    """Return the id of the first fast input (the only one with one focus class)."""
    return fast_inputs(table)[0]


def gate_integral(gate: str) -> str:
    """Return the id of the split core's running integral of a fast input (``spermiation_gate_integral``)."""
    return f"{gate}_integral"


def chain_observables(table: GermlineTable) -> tuple[str, ...]:
    """Return the observables that read the chain's states (computed from the chain, not the core)."""
    chain = set(table.chain)
    return tuple(name for name, states in table.observable_states.items() if states & chain)


def slow_head_states(full: Engine, table: GermlineTable) -> tuple[str, ...]:
    """Return the head states that turn over slower than :data:`SLOW_HEAD_PER_H` at the model's defaults.

    A head state's turnover is the sum of its loss reactions' rates over its amount, at the model's
    initial (healthy steady) state. A state with no amount there counts as fast.
    """
    full.fresh()
    slow = []
    for name in table.head:
        amount = full.get(name)
        losses = {t.reaction for t in table.terms_of(name, "q")}
        if amount > 0 and losses and sum(full.get(r) for r in losses) / amount < SLOW_HEAD_PER_H:
            slow.append(name)
    return tuple(slow)


def split_core_sbml(sbml: str, *, kernel_heads: Sequence[str] = ()) -> str:
    """Return the split core: the model without the germ-cell chain, plus each fast input's running integral.

    One rate rule per fast input (:func:`gate_integral`): the spermiation gate's with one class,
    every class's with focus classes.

    Args:
        sbml: SBML text of the full model.
        kernel_heads: Head states left out of the core too (:func:`slow_head_states`): the compiled
            kernel integrates them from the recorded inputs.

    Raises:
        ModelBuildError: If the model's germ line cannot be read, or it has no fast input given by
            an assignment rule.
    """
    table = read_germline(sbml)
    doc = libsbml.readSBMLFromString(core_sbml(sbml, drop=[*table.chain, *kernel_heads]))
    model = doc.getModel()
    for gate in fast_inputs(table):
        if model.getAssignmentRuleByVariable(gate) is None:
            raise ModelBuildError(f"the model has no assignment rule {gate!r}; the split path needs one")
        name = gate_integral(gate)
        if model.getElementBySId(name) is not None:
            raise ModelBuildError(f"the model already has an element {name!r}; the split path adds it")
        parameter = model.createParameter()
        parameter.setId(name)
        parameter.setValue(0.0)
        parameter.setConstant(False)
        rule = model.createRateRule()
        rule.setVariable(name)
        rule.setMath(libsbml.parseL3Formula(gate))
    return str(libsbml.writeSBMLToString(doc))


class SplitEngine:
    """The full model (for names, defaults and the equation check) plus its compiled split core."""

    def __init__(self, sbml: str | None = None, *, options: SolverOptions | None = None) -> None:
        """Compile the full model and its split core, and check the chain's equations against the model.

        Args:
            sbml: SBML text of the full model; defaults to the shipped model.
            options: Solver settings of the core (default ``SolverOptions()``).

        Raises:
            ModelBuildError: If the model cannot be split, a germ-line rate law is outside the
                kernel's form, or the kernel's rates differ from the model's.
        """
        text = sbml if sbml is not None else default_sbml()
        #: The compiled germ line, read from this model.
        self.kernel = kernel_for(text)
        #: Observables computed from the chain's states (the rest are read from the core).
        self.chain_observables = chain_observables(self.kernel.table)
        self.options = options or SolverOptions()
        self.full = Engine(text, options=self.options)
        #: Slow head states the kernel integrates (not carried by the core).
        self.kernel_heads = slow_head_states(self.full, self.kernel.table)
        self.core = Engine(split_core_sbml(text, kernel_heads=self.kernel_heads), options=self.options)
        self.sbml_hash = self.full.sbml_hash
        self.core_observables = [o for o in C.OBSERVABLES if o.model_id not in self.chain_observables]
        check_germline_equations(self.full, self.kernel)

    @property
    def defaults(self) -> dict[str, float]:
        """Parameter and compartment defaults of the full model."""
        return self.full.defaults


def split_engine(rtol: float = 1e-6, atol: float = 1e-13, n_classes: int = 1) -> SplitEngine:
    """Return a process-wide split engine for the shipped model at these tolerances.

    Args:
        rtol: Relative tolerance of the core.
        atol: Absolute tolerance of the core.
        n_classes: Tubule-focus classes the testis is built from (:func:`ra_model.model.source.default_sbml`).

    Raises:
        InvalidValueError: If ``n_classes`` is not a whole number from 1 to ``MAX_CLASSES``.
    """
    return _split_engine(rtol, atol, check_n_classes(n_classes))


@lru_cache(maxsize=4)
def _split_engine(rtol: float, atol: float, n_classes: int) -> SplitEngine:
    sbml = default_sbml(n_classes) if n_classes > 1 else None
    return SplitEngine(sbml, options=SolverOptions(rtol=rtol, atol=atol))


def simulate_split(
    phenotype: str | Phenotype = "healthy",
    regimen: Regimen | str | None = None,
    *,
    t_end_d: float = 365.0,
    overrides: Mapping[str, float] | None = None,
    output_step_d: float = 1.0,
    engine: SplitEngine | None = None,
    n_classes: int | None = None,
) -> pd.DataFrame:
    """Simulate like :func:`ra_model.simulate.simulate`, every dose exactly, on the split model.

    With ``n_classes`` = N the testis is built from N focus classes, as ``simulate(...,
    n_classes=N)`` does: the core carries every class's STRA8 and one gate integral per class, and
    every class's chain is compiled.

    Args:
        phenotype: Preset name or a ``Phenotype``.
        regimen: A ``Regimen``, its text, or None for no drug.
        t_end_d: Simulated time, days (> 0).
        overrides: Parameter values by id, on top of the phenotype.
        output_step_d: Spacing of output rows, days (> 0).
        engine: A :class:`SplitEngine`; defaults to :func:`split_engine`.
        n_classes: Build the shipped model from this many focus classes (not with ``engine``).

    Returns:
        The same columns and ``attrs`` as ``simulate()``; ``attrs["solver"]`` says ``split``.

    Raises:
        UnknownNameError: Unknown phenotype or parameter.
        InvalidValueError: Bad horizon or step, a bad ``n_classes``, or ``n_classes`` with ``engine``.
        SimulationFailedError: The core's solver failed.
    """
    check_engine_or_classes(engine, n_classes)
    engine = engine or split_engine(n_classes=1 if n_classes is None else n_classes)
    core, kernel = engine.core, engine.kernel
    scenario = prepare_split_run(
        engine.full,
        core,
        phenotype,
        regimen,
        t_end_d=t_end_d,
        output_step_d=output_step_d,
        overrides=overrides,
        path="split path",
        table=kernel.table,
    )
    regimen, steady, context = scenario.regimen, scenario.steady, scenario.context

    t_end_h = float(t_end_d) * 24.0
    out_h = output_grid_d(t_end_d, output_step_d) * 24.0
    doses = regimen.dose_times_h() if regimen is not None else ()
    grid = _grid(t_end_h, tuple(out_h.tolist()), doses)
    integrals = [gate_integral(kernel.inputs[k]) for k in kernel.fast]
    carried = [k for k, name in enumerate(kernel.upstream) if name not in engine.kernel_heads]
    heads = [kernel.upstream[k] for k in carried]
    signals = [*kernel.inputs, *heads, *integrals, *(o.model_id for o in engine.core_observables)]
    signals += list(core.species_ids)
    species_cols = slice(len(signals) - len(core.species_ids), len(signals))
    core.fresh(parameters=scenario.core_parameters, initial_amounts=steady)
    constant = np.array([core.get(name) for name in signals])
    record = np.tile(constant, (grid.size, 1))
    held_from = 0  # rows from here on hold the untreated steady state (all of them without doses)
    if doses:
        held_from = grid.size
        core.arm_doses(dose_plan(regimen))  # type: ignore[arg-type]
        steady_cols = [k for k, s in enumerate(core.species_ids) if s not in LEDGER_SPECIES]
        target = np.array([steady[core.species_ids[k]] for k in steady_cols])
        last_dose = max(doses)
        t, row = 0.0, 0
        while t < t_end_h:
            hi = min(max(last_dose, t + WASHOUT_CHUNK_H) if t < last_dose else t + WASHOUT_CHUNK_H, t_end_h)
            j = int(np.searchsorted(grid, hi, side="right"))
            try:
                block = core.simulate(grid[row:j].tolist(), signals)
            except SimulationFailedError as exc:
                raise SimulationFailedError(f"{context}: {exc}") from exc
            record[row:j] = block[:, 1:]
            if grid[j - 1] > last_dose:  # washout: stop once every state is back (the block decays)
                lo = max(row, int(np.searchsorted(grid, last_dose, side="right")))
                block_states = record[lo:j, species_cols][:, steady_cols]
                scale = np.maximum(np.maximum(np.abs(block_states), np.abs(target)), PREEQ_FLOOR)
                back = np.flatnonzero(np.max(np.abs(block_states - target) / scale, axis=1) < SETTLED_RTOL)
                if back.size:
                    held_from = lo + int(back[0])
                    record[held_from:] = constant
                    break
            t, row = float(grid[j - 1]), j - 1

    pvec = kernel.parameter_vector(scenario.values)
    n_in, n_up = len(kernel.inputs), len(heads)
    inputs = np.ascontiguousarray(record[:, :n_in])
    upstream = np.full((grid.size, len(kernel.upstream)), np.nan)  # NaN: a head state the kernel integrates
    upstream[:, carried] = record[:, n_in : n_in + n_up]
    n_fast = len(integrals)
    integral = record[:, n_in + n_up : n_in + n_up + n_fast].T
    steps = np.diff(grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        gate_mean = np.where(steps > 0, np.diff(integral, axis=1) / steps, np.nan)
    gate_mean[:, max(held_from - 1, 0) :] = np.nan  # held rows carry no integral
    x_start = np.array([scenario.start[s] for s in kernel.species])
    x0 = kernel.steady_state(inputs[0], pvec, x_start)
    x0[carried] = upstream[0, carried]
    fine = kernel.refine_driven(grid, inputs, upstream, gate_mean, CHAIN_STEP_H)
    states = kernel.integrate_driven(fine[0], fine[1], pvec, x0, fine[2], fine[3], GATE_SUBSTEP_H)
    rows = np.searchsorted(grid, out_h)
    fine_rows = np.searchsorted(fine[0], out_h)
    from_chain = germline_observables(kernel, states[fine_rows], fine[1][fine_rows], scenario.values)
    first_core = n_in + n_up + n_fast
    observables = {o.model_id: record[rows, first_core + k] for k, o in enumerate(engine.core_observables)}
    observables |= {name: from_chain[name] for name in engine.chain_observables}
    return split_table(
        scenario,
        out_h,
        doses,
        observables,
        model_hash=engine.sbml_hash,
        solver={"rtol": core.options.rtol, "atol": core.options.atol, "split": True, "grid_h": SPLIT_GRID_H},
    )


@lru_cache(maxsize=16)
def _grid(t_end_h: float, out_h: tuple[float, ...], doses: tuple[float, ...]) -> np.ndarray:
    """Return the split path's record grid, hours, with the output and dose times.

    Every ``SPLIT_GRID_H`` until ``FINE_AFTER_H`` after the last dose, then every ``WASHOUT_GRID_H``.
    """
    fine_until = min(t_end_h, max(doses) + FINE_AFTER_H) if doses else 0.0
    grid = np.unique(
        np.concatenate(
            [
                np.arange(0.0, fine_until, SPLIT_GRID_H),
                np.arange(fine_until, t_end_h, WASHOUT_GRID_H),
                [t_end_h],
                out_h,
                [t for t in doses if t < t_end_h],
            ]
        )
    )
    grid.setflags(write=False)
    return grid
