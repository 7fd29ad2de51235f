"""The fast path: its split model, its compiled germ line, and its error against the exact path (not timed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ra_model.engines import germline
from ra_model.engines.engine import Engine
from ra_model.engines.fastpath import FastEngine, core_sbml, extrapolate_limit, fast_engine, simulate_fast
from ra_model.engines.simulate import dose_plan, simulate
from ra_model.errors import InvalidValueError, ModelBuildError, UnknownNameError
from ra_model.model import columns as C
from ra_model.model.regimen import Regimen
from ra_model.model.source import ANTIMONY_FILE, antimony_to_sbml, default_sbml, model_dir
from ra_model.studies.metrics import peak_ejaculate_concentration, responder, time_to_first_motile_sperm_d

PHENOTYPE = "maturation_arrest"
REGIMEN = "20 mg bid for 180 d"
CORE = ("Gut_iso", "Iso_c", "Iso_p", "atRA_p", "ROL_t", "RAL_t", "atRA_t", "cisRA_t", "CYP26")
# Men around maturation arrest. The last is just above the ejaculate threshold (peak ~0.05 M/mL against
# ~40 for the one-class preset; its cyp26_expr was found by bisection on the model of issue 15): there
# the caput passes only the small excess of the spermiation flux over the
# duct loss, so a 0.1% error in that flux is a 1% error in the peak. A germ-line scheme that followed
# the spermiation gate linearly between half-hour grid points was 1.4% off here.
POINTS = [
    {},
    {"cyp26_expr": 8.0, "stra6_expr": 0.2},
    {
        "stra6_expr": 0.5484,
        "aldh1a_expr": 0.185,
        "cyp26_expr": 1.6,
        "F_fasted": 0.2447,
        "CL_iso": 7.6611,
        "testis_penetration": 0.2456,
        "k_iso_t": 0.1051,
        "Kd_rar_at": 0.2314,
        "f_free_ra": 0.0264,
        "K_sperm_ra": 0.8167,
        "Vmax_duct_loss": 0.8147,
        "k_cyp26_deg": 0.0292,
    },
]


def test_the_core_is_the_model_without_the_germ_line() -> None:
    core = Engine(core_sbml(default_sbml()))
    assert core.species_ids == CORE
    full = Engine(default_sbml())
    plan = dose_plan(Regimen.parse("20 mg bid for 10 d"))
    times = [0.0, 30.0, 100.0, 250.0, 400.0]
    for engine in (core, full):
        engine.fresh()
        engine.arm_doses(plan)
    a = core.simulate(times, list(CORE))
    b = full.simulate(times, list(CORE))
    # the germ line feeds nothing back: the retinoid core is the same with or without it
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_the_compiled_germ_line_is_checked_against_the_model() -> None:
    fast_engine()  # builds and checks the shipped model
    text = (model_dir() / ANTIMONY_FILE).read_text(encoding="utf-8")
    edited = text.replace("J_ep2: EP2 -> EP3; k_ep * EP2", "J_ep2: EP2 -> EP3; k_ep * EP2 * EP2 / (1 + EP2)")
    assert edited != text
    with pytest.raises(ModelBuildError, match="'EP2'.*edited"):
        FastEngine(antimony_to_sbml(edited))


def _values() -> dict[str, float]:
    return dict(fast_engine().defaults) | {"TJ_total": 1.0}


def _signals(iso: float, occupancy: float, ra_signal: float, spermiation_gate: float) -> np.ndarray:
    """The kernel's inputs by name (competence target 1, the healthy value), in the kernel's order."""
    named = {
        "Iso_c": iso,
        "RAR_occupancy": occupancy,
        "competence_target": 1.0,
        "RA_signal": ra_signal,
        "spermiation_gate": spermiation_gate,
    }
    assert set(named) == set(germline.INPUTS), germline.INPUTS
    return np.array([named[name] for name in germline.INPUTS])


def test_linear_stage_is_exact_against_its_closed_form() -> None:
    # 4-oxo-isotretinoin with constant plasma 13-cis-RA: x(t) = x* + (x0 - x*) exp(-q t)
    values = _values()
    p = germline.parameter_vector(values)
    iso = 300.0
    signals = _signals(iso, 0.3, 0.6, 0.2)
    times = np.linspace(0.0, 200.0, 401)
    x0 = germline.steady_state(signals, p, np.ones(germline.N_STATES))
    x0[0] = 50.0
    states = germline.integrate(times, np.tile(signals, (times.size, 1)), p, x0)
    q = values["CL_oxo"] / values["oxo_space"]
    target = values["f_oxo"] * values["CL_iso"] * iso / values["plasma_c"] / q
    np.testing.assert_allclose(states[:, 0], target + (50.0 - target) * np.exp(-q * times), rtol=1e-12)


def test_stem_cells_follow_the_logistic_closed_form() -> None:
    values = _values()
    p = germline.parameter_vector(values)
    signals = _signals(200.0, 0.3, 0.6, 0.2)
    x0 = germline.steady_state(signals, p, np.ones(germline.N_STATES))
    stra8_rel = x0[germline.SPECIES.index("STRA8")] / values["STRA8_ref"]
    competence = x0[germline.SPECIES.index("SCOMP")] / values["SCOMP_ref"]
    k, n = values["K_diff_stra8"], values["n_diff"]
    gate = competence * (1 + k**n) * stra8_rel**n / (k**n + stra8_rel**n)
    a = values["r_ssc"] - values["k_diff"] * gate
    b = values["r_ssc"] / (values["stem_niche"] * values["focus_share"])
    ssc = germline.SPECIES.index("SSC")
    x0[ssc] = 10.0
    times = np.linspace(0.0, 6000.0, 601)
    states = germline.integrate(times, np.tile(signals, (times.size, 1)), p, x0)
    expected = a * 10.0 * np.exp(a * times) / (a + b * 10.0 * (np.exp(a * times) - 1.0))
    np.testing.assert_allclose(states[:, ssc], expected, rtol=1e-10)
    assert states[-1, ssc] == pytest.approx(a / b, rel=1e-3)  # the stable point steady_state returns


def test_steady_state_is_a_fixed_point_of_the_integrator() -> None:
    p = germline.parameter_vector(_values())
    signals = _signals(250.0, 0.45, 0.9, 0.6)
    x0 = germline.steady_state(signals, p, np.ones(germline.N_STATES))
    states = germline.integrate(np.linspace(0.0, 5000.0, 2001), np.tile(signals, (2001, 1)), p, x0)
    np.testing.assert_allclose(states[-1], x0, rtol=1e-9, atol=1e-12)
    assert x0[germline.SPECIES.index("CAUDA")] > 0


def test_without_drug_the_fast_path_is_the_steady_state() -> None:
    exact = simulate(PHENOTYPE, None, t_end_d=60)
    fast = simulate_fast(PHENOTYPE, None, t_end_d=60)
    for o in C.OBSERVABLES:
        np.testing.assert_allclose(fast[o.column], exact[o.column], rtol=1e-5, atol=1e-9, err_msg=o.column)


@pytest.mark.parametrize("point", POINTS, ids=["preset", "high-cyp26", "near-threshold"])
def test_fast_path_stays_within_its_bounds(point: dict[str, float]) -> None:
    exact = simulate(PHENOTYPE, REGIMEN, t_end_d=365, overrides=point)
    fast = simulate_fast(PHENOTYPE, REGIMEN, t_end_d=365, overrides=point)
    assert fast.attrs["fast_path"]["periodic_from_d"] is not None  # the shortcut was taken
    assert responder(fast) == responder(exact)
    assert abs(time_to_first_motile_sperm_d(fast) - time_to_first_motile_sperm_d(exact)) <= 0.1
    assert peak_ejaculate_concentration(fast) == pytest.approx(peak_ejaculate_concentration(exact), rel=5e-3)
    for o in C.OBSERVABLES:
        x, y = fast[o.column].to_numpy(), exact[o.column].to_numpy()
        floor = max(1e-3 * float(np.max(np.abs(y))), 1e-9)
        assert float(np.max(np.abs(x - y) / np.maximum(np.abs(y), floor))) < 1e-2, o.column


def test_a_short_regimen_is_simulated_dose_by_dose() -> None:
    # three days of doses never become periodic: every dose goes through the solver
    exact = simulate(PHENOTYPE, "20 mg bid for 3 d", t_end_d=40)
    fast = simulate_fast(PHENOTYPE, "20 mg bid for 3 d", t_end_d=40)
    assert fast.attrs["fast_path"]["periodic_from_d"] is None
    assert list(fast[C.DOSES_GIVEN]) == list(exact[C.DOSES_GIVEN])
    for column in (C.PLASMA_ISOTRETINOIN, C.TESTIS_ATRA, C.STRA8, C.BTB_INTEGRITY):
        np.testing.assert_allclose(fast[column], exact[column], rtol=1e-3, err_msg=column)


def test_extrapolation_finds_the_limit_of_geometric_modes() -> None:
    # x_n = x* + sum_i c_i v_i rho_i^n: with m modes, m + 2 iterates determine x* exactly
    rng = np.random.default_rng(3)
    limit = rng.uniform(1.0, 100.0, 9)
    modes = rng.normal(size=(3, 9))
    rhos = np.array([0.61, 0.37, 0.18])
    iterates = np.array([limit + (rhos**n) @ modes for n in range(5)])
    np.testing.assert_allclose(extrapolate_limit(iterates, floor=1e-9), limit, rtol=1e-9)
    # a sequence that does not converge (constant steps) has no limit to find
    drift = np.array([limit + n * modes[0] for n in range(5)])
    assert extrapolate_limit(drift, floor=1e-9) is None


def test_periodic_shortcut_agrees_with_every_dose_simulated() -> None:
    full = simulate_fast(PHENOTYPE, REGIMEN, t_end_d=250, periodic=False)
    short = simulate_fast(PHENOTYPE, REGIMEN, t_end_d=250)
    info = short.attrs["fast_path"]
    assert 5 < info["exact_intervals"] < 20 and info["washout_exact_until_d"] > 180.5
    # the periodic state was extrapolated, and the transient cut short was added back: without
    # that correction the core signals are 1.6e-3 off in the days after the jump
    assert info["extrapolated"]
    for o in C.OBSERVABLES:
        np.testing.assert_allclose(short[o.column], full[o.column], rtol=3e-4, atol=1e-9, err_msg=o.column)
    assert list(short[C.DOSES_GIVEN].iloc[[0, 1, 179, 180, 249]]) == [1, 3, 359, 360, 360]


def test_bad_input_is_named() -> None:
    with pytest.raises(UnknownNameError, match="cyp26_exp"):
        simulate_fast(PHENOTYPE, REGIMEN, overrides={"cyp26_exp": 2.0})
    with pytest.raises(InvalidValueError, match="t_end_d"):
        simulate_fast(PHENOTYPE, REGIMEN, t_end_d=-1.0)
    assert math.isfinite(fast_engine().core.options.rtol)
