"""Focus classes on the compiled paths (issue 15): the split exact path and the fast path with N classes.

With N classes the germ line has one fast input per class (``F{k}__spermiation_gate``); the
sub-stepped block is every class's mature spermatids plus the shared caput, the split core carries
one gate integral per class, and ``run_sweep(n_classes=N)`` runs on either path.
"""

from __future__ import annotations

import libsbml
import numpy as np
import pandas as pd
import pytest

from ra_model.engines.engine import Engine, SolverOptions
from ra_model.engines.fastpath import fast_engine, simulate_fast
from ra_model.engines.germline import kernel_for
from ra_model.engines.germline_table import read_germline
from ra_model.engines.simulate import simulate, steady_state_amounts
from ra_model.engines.splitpath import gate_integral, simulate_split, split_core_sbml, split_engine
from ra_model.errors import InvalidValueError
from ra_model.model import columns as C
from ra_model.model.source import default_sbml
from ra_model.studies.sweep import run_sweep
from ra_model.studies.sweep_store import run_settings

PHENOTYPE = "maturation_arrest"
REGIMEN = "20 mg bid for 180 d"
#: Three classes that see very different local RA (a poor, a typical and a strong responder).
RA_LOCAL = {"F1__ra_local": 0.25, "F2__ra_local": 1.0, "F3__ra_local": 4.0}


def _max_rel_error(table: pd.DataFrame, ref: pd.DataFrame) -> dict[str, float]:
    """Largest relative error over all times per observable (floored at 1e-6 of its largest value and 1e-9)."""
    errors = {}
    for o in C.OBSERVABLES:
        x, y = table[o.column].to_numpy(float), ref[o.column].to_numpy(float)
        floor = max(1e-6 * float(np.max(np.abs(y))), 1e-9)
        errors[o.column] = float(np.max(np.abs(x - y) / np.maximum(np.abs(y), floor)))
    return errors


def _first_sperm_d(table: pd.DataFrame) -> float:
    present = table[table[C.MOTILE_SPERM_PRESENT]]
    return float(present[C.TIME_D].iloc[0]) if len(present) else float("nan")


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """The whole three-class model in libroadrunner at rtol 1e-10."""
    engine = Engine(default_sbml(3), options=SolverOptions(rtol=1e-10, atol=1e-14))
    return simulate(PHENOTYPE, REGIMEN, overrides=RA_LOCAL, engine=engine)


def test_every_class_has_its_fast_input_and_the_block_is_their_spermatids_and_the_caput() -> None:
    table = read_germline(default_sbml(3))
    assert [table.inputs[k] for k in table.fast_inputs] == [f"F{k}__spermiation_gate" for k in (1, 2, 3)]
    block = [table.species[k] for k in table.substepped]
    assert block == ["F1__ES", "F2__ES", "F3__ES", "EP1"]
    assert list(table.substepped) == list(range(table.substepped[0], table.substepped[-1] + 1))
    # the block comes after every class's chain and before the ducts downstream of the caput
    position = {s: k for k, s in enumerate(table.species)}
    assert max(position[f"F{k}__RS12"] for k in (1, 2, 3)) < position["F1__ES"]
    assert position["EP1"] < position["EP2"]
    assert {"F1__STRA8", "F2__STRA8", "F3__STRA8"} <= set(table.head)
    one = read_germline(default_sbml())
    assert one.fast_inputs == (one.fast_input,) and [one.species[k] for k in one.substepped] == ["ES", "EP1"]


def test_split_core_carries_one_gate_integral_per_class() -> None:
    model = libsbml.readSBMLFromString(split_core_sbml(default_sbml(2))).getModel()
    species = {model.getSpecies(i).getId() for i in range(model.getNumSpecies())}
    assert {"F1__STRA8", "F2__STRA8", "TJ_open", "Oxo"} <= species
    assert not species & {"F1__SSC", "F2__ES", "EP1", "CAUDA"}
    for k in (1, 2):
        rule = model.getRateRuleByVariable(gate_integral(f"F{k}__spermiation_gate"))
        assert libsbml.formulaToL3String(rule.getMath()) == f"F{k}__spermiation_gate"
    core = split_engine(n_classes=2).core
    core.fresh(
        parameters={"F1__ra_local": 0.5, "F2__ra_local": 3.0},
        initial_amounts=steady_state_amounts(core, {"F1__ra_local": 0.5, "F2__ra_local": 3.0}, {}),
    )
    names = [
        "F1__spermiation_gate",
        "F2__spermiation_gate",
        *(gate_integral(f"F{k}__spermiation_gate") for k in (1, 2)),
    ]
    out = core.simulate([0.0, 240.0], names)
    assert out[0, 1] != pytest.approx(out[0, 2], rel=1e-3)  # the classes' gates differ
    assert out[1, 3] == pytest.approx(240.0 * out[0, 1], rel=1e-9)
    assert out[1, 4] == pytest.approx(240.0 * out[0, 2], rel=1e-9)


def test_refine_keeps_every_fast_inputs_step_means() -> None:
    kernel = kernel_for(default_sbml(2))
    rng = np.random.default_rng(5)
    times = np.array([0.0, 0.5, 1.0, 3.0, 3.5])
    inputs = rng.uniform(0.1, 1.0, size=(5, len(kernel.inputs)))
    upstream = rng.uniform(0.1, 1.0, size=(5, len(kernel.upstream)))
    means = np.array([[0.4, 0.7, np.nan, 0.5], [0.2, 0.9, 0.3, np.nan]])
    ft, fin, _, fgm = kernel.refine_driven(times, inputs, upstream, means, 0.25)
    assert fgm.shape == (2, ft.size - 1)
    for f in range(2):
        for i, (a, b) in enumerate(zip(times[:-1], times[1:], strict=True)):
            steps = ((ft >= a) & (ft < b))[:-1]
            if not np.isnan(means[f, i]):
                assert np.sum(fgm[f, steps] * np.diff(ft)[steps]) == pytest.approx(means[f, i] * (b - a), rel=1e-12)
        column = kernel.fast[f]
        np.testing.assert_allclose(fin[np.isin(ft, times), column], inputs[:, column], rtol=1e-12)


def test_three_distinct_classes_on_both_compiled_paths_match_the_whole_model(reference: pd.DataFrame) -> None:
    split = simulate_split(PHENOTYPE, REGIMEN, overrides=RA_LOCAL, n_classes=3)
    errors = _max_rel_error(split, reference)
    assert max(errors.values()) < 5e-4, errors
    fast = simulate_fast(PHENOTYPE, REGIMEN, overrides=RA_LOCAL, n_classes=3)
    peak, peak_ref = fast[C.MOTILE_CONCENTRATION].max(), reference[C.MOTILE_CONCENTRATION].max()
    assert peak_ref > 0.0 and abs(peak / peak_ref - 1.0) < 1e-2
    assert abs(_first_sperm_d(fast) - _first_sperm_d(reference)) <= 1.0
    # the classes matter: with every class at the typical RA (no spread either) the answer differs
    same = simulate_split(PHENOTYPE, REGIMEN, n_classes=3, overrides={"local_ra_sd": 0.0})
    assert abs(same[C.MOTILE_CONCENTRATION].max() / peak_ref - 1.0) > 1e-2


def test_eight_identical_classes_on_the_compiled_paths_are_the_one_class_testis() -> None:
    # within the paths' own error (about 1e-4 against a tight reference): the larger core takes other steps.
    # The preset spreads local RA between the classes (local_ra_sd); without the spread they are identical
    same = {"local_ra_sd": 0.0}
    for path in (simulate_split, simulate_fast):
        one = path(PHENOTYPE, REGIMEN, t_end_d=300.0, overrides=same)
        many = path(PHENOTYPE, REGIMEN, t_end_d=300.0, n_classes=8, overrides=same)
        errors = _max_rel_error(many, one)
        assert max(errors.values()) < 1e-4, (path.__name__, errors)
        assert many.attrs["model_hash"] != one.attrs["model_hash"]


def test_classes_with_an_engine_are_refused() -> None:
    with pytest.raises(InvalidValueError, match="n_classes = 2 was given with engine="):
        simulate_split(PHENOTYPE, None, t_end_d=10.0, n_classes=2, engine=split_engine())
    with pytest.raises(InvalidValueError, match="n_classes = 2 was given with engine="):
        simulate_fast(PHENOTYPE, None, t_end_d=10.0, n_classes=2, engine=fast_engine())
    with pytest.raises(InvalidValueError, match="n_classes"):
        simulate_fast(PHENOTYPE, None, t_end_d=10.0, n_classes=0)


def test_sweep_with_classes_runs_on_the_compiled_paths() -> None:
    samples = pd.DataFrame({"sample_id": ["low", "high"], "F1__ra_local": [0.5, 2.0]})
    metrics = {"peak": lambda t: float(t[C.MOTILE_CONCENTRATION].max())}
    common = {"metrics": metrics, "phenotype": PHENOTYPE, "regimen": "20 mg bid for 90 d", "t_end_d": 200.0}
    common |= {"workers": 1, "progress": False}
    split = run_sweep(samples, n_classes=2, **common)  # type: ignore[arg-type]
    fast = run_sweep(samples, n_classes=2, fast=True, **common)  # type: ignore[arg-type]
    assert list(split["status"]) == ["ok", "ok"] and list(fast["status"]) == ["ok", "ok"]
    assert split.attrs["provenance"]["split"] is True and split.attrs["provenance"]["n_classes"] == 2
    assert fast.attrs["provenance"]["fast"] is True and fast.attrs["provenance"]["n_classes"] == 2
    direct = simulate_split(
        PHENOTYPE, "20 mg bid for 90 d", t_end_d=200.0, n_classes=2, overrides={"F1__ra_local": 2.0}
    )
    assert split["peak"].iloc[1] == pytest.approx(direct[C.MOTILE_CONCENTRATION].max(), rel=1e-12)
    np.testing.assert_allclose(fast["peak"], split["peak"], rtol=1e-2)
    assert split["peak"].iloc[1] > split["peak"].iloc[0]


def test_classes_are_part_of_the_run_settings() -> None:
    from ra_model.studies.sweep import _validate  # the settings a sweep resolves to

    samples = pd.DataFrame({"sample_id": ["a"]})
    metrics = {"dsp": lambda t: 0.0}
    args = (samples, metrics, PHENOTYPE, None, 30.0, 1.0, False, 8, 1e-6, None, True)
    one, two = _validate(*args, n_classes=1), _validate(*args, n_classes=2)
    assert run_settings(one)["n_classes"] == 1 and run_settings(two)["n_classes"] == 2
    assert two.split is True
