"""The sweeps' exact path on the split model: its core, its sub-steps, its error against a tight reference."""

from __future__ import annotations

import libsbml
import numpy as np
import pytest

from ra_model.engines import germline
from ra_model.engines.engine import Engine, SolverOptions
from ra_model.engines.simulate import simulate, steady_state_amounts
from ra_model.engines.splitpath import CHAIN_SPECIES, GATE_INTEGRAL, simulate_split, split_core_sbml, split_engine
from ra_model.model import columns as C
from ra_model.model.source import default_sbml

PHENOTYPE = "maturation_arrest"
REGIMEN = "20 mg bid for 180 d"
#: Men around the maturation-arrest preset: a good, a middling and a poor responder (whose
#: ejaculate stays within a few orders of magnitude of zero, where relative errors are hardest).
MEN = (
    {},
    {"stra6_expr": 0.5, "aldh1a_expr": 0.3, "cyp26_expr": 3.0, "CL_iso": 20.0},
    {"stra6_expr": 0.2, "aldh1a_expr": 0.1, "cyp26_expr": 8.0, "testis_penetration": 0.05},
)


def max_rel_error(table, ref) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Largest relative error over all times per observable (floored at 1e-6 of its largest value and 1e-9)."""
    errors = {}
    for o in C.OBSERVABLES:
        x, y = table[o.column].to_numpy(float), ref[o.column].to_numpy(float)
        floor = max(1e-6 * float(np.max(np.abs(y))), 1e-9)
        errors[o.column] = float(np.max(np.abs(x - y) / np.maximum(np.abs(y), floor)))
    return errors


@pytest.fixture(scope="module")
def references() -> list:  # type: ignore[type-arg]
    engine = Engine(default_sbml(), options=SolverOptions(rtol=1e-10, atol=1e-14))
    return [simulate(PHENOTYPE, REGIMEN, overrides=m, engine=engine) for m in MEN]


def test_split_core_keeps_the_fast_head_and_adds_the_gate_integral() -> None:
    model = libsbml.readSBMLFromString(split_core_sbml(default_sbml())).getModel()
    species = {model.getSpecies(i).getId() for i in range(model.getNumSpecies())}
    assert {"Oxo", "STRA8", "TJ_open", "TJ_sealed", "Iso_c", "atRA_t"} <= species
    assert not species & set(CHAIN_SPECIES)
    rule = model.getRateRuleByVariable(GATE_INTEGRAL)
    assert rule is not None and libsbml.formulaToL3String(rule.getMath()) == "spermiation_gate"


def test_gate_integral_is_the_time_integral_of_the_gate() -> None:
    """Untreated, the gate is constant, so its integral over 10 days is 240 h times the gate."""
    engine = split_engine()
    core = engine.core
    core.fresh(initial_amounts=steady_state_amounts(core, {}, {}))
    out = core.simulate([0.0, 240.0], ["spermiation_gate", GATE_INTEGRAL])
    assert out[1, 2] == pytest.approx(240.0 * out[0, 1], rel=1e-9)


def test_refine_keeps_each_steps_gate_mean_and_interpolates_slow_signals_linearly() -> None:
    rng = np.random.default_rng(3)
    times = np.array([0.0, 0.5, 1.0, 3.0, 3.5])
    inputs = rng.uniform(0.1, 1.0, size=(5, len(germline.INPUTS)))
    upstream = rng.uniform(0.1, 1.0, size=(5, len(germline.UPSTREAM)))
    means = np.array([0.4, 0.7, np.nan, 0.5])
    ft, fin, fup, fgm = germline.refine_driven(times, inputs, upstream, means, 0.25)
    assert list(np.round(ft, 12)) == [0.0, 0.25, 0.5, 0.75, 1.0, *np.arange(1.25, 3.01, 0.25), 3.25, 3.5]
    for i, (a, b) in enumerate(zip(times[:-1], times[1:], strict=True)):
        inside = (ft >= a) & (ft < b)
        if not np.isnan(means[i]):  # the sub-steps' means average to the step's exact mean
            steps = inside[:-1]  # sub-step k runs from ft[k] to ft[k + 1]
            assert np.sum(fgm[steps] * np.diff(ft)[steps]) == pytest.approx(means[i] * (b - a), rel=1e-12)
        for col in range(len(germline.UPSTREAM)):  # linear between the recorded rows
            expected = np.interp(ft[inside], times, upstream[:, col])
            np.testing.assert_allclose(fup[inside, col], expected, rtol=1e-12)
    np.testing.assert_allclose(fin[np.isin(ft, times), 3], inputs[:, 3], rtol=1e-12)


def test_split_path_matches_a_tight_reference_on_every_observable(references: list) -> None:  # type: ignore[type-arg]
    """Bound 5e-4 (the target is 1e-3; measured about 1.5e-4). Without the chain's sub-steps the
    ejaculate error on these men is about 7e-4, so the bound catches their loss."""
    worst: dict[str, float] = {}
    for overrides, ref in zip(MEN, references, strict=True):
        table = simulate_split(PHENOTYPE, REGIMEN, overrides=overrides, engine=split_engine())
        assert list(table.columns) == list(ref.columns)
        assert table[C.DOSES_GIVEN].iloc[-1] == 360
        assert (table[C.MOTILE_SPERM_PRESENT] == ref[C.MOTILE_SPERM_PRESENT]).all()
        for name, err in max_rel_error(table, ref).items():
            worst[name] = max(worst.get(name, 0.0), err)
    assert max(worst.values()) < 5e-4, worst


def test_untreated_split_run_stays_at_the_whole_models_steady_state() -> None:
    table = simulate_split(PHENOTYPE, None, t_end_d=60.0, engine=split_engine())
    whole = simulate(PHENOTYPE, None, t_end_d=60.0)
    for o in C.OBSERVABLES:
        np.testing.assert_allclose(table[o.column], whole[o.column], rtol=1e-5, atol=1e-12, err_msg=o.column)


def test_split_path_refuses_unknown_overrides() -> None:
    from ra_model.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="cyp26_exp"):
        simulate_split(PHENOTYPE, REGIMEN, overrides={"cyp26_exp": 2.0}, engine=split_engine())
