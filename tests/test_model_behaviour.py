"""What the model must show (issue 2): each test asserts numbers derived independently of the code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ra_model import ParameterChange, Phenotype, Regimen, simulate
from ra_model.engines.engine import Engine
from ra_model.model import columns as C
from ra_model.model.phenotypes import load_phenotypes
from ra_model.model.source import default_sbml

WHO_LOWER_REFERENCE_M_PER_ML = 15.0  # WHO lower reference limit for sperm concentration
TESTIS_G = 40.0  # two testes of about 20 g (brief 2, step 5)
DSP_PER_G = (3.0, 8.5)  # million per gram per day (Biol Reprod 1980; brief 2, step 5)
RETINOID_POOLS = ("Gut_iso", "Iso_c", "Iso_p", "Oxo", "atRA_p", "atRA_t", "cisRA_t")
DRUG_ONLY = {"R_endo_at": 0.0, "R_endo_cis": 0.0, "Vmax_aldh1a": 0.0}


def _peak(table):
    conc = table[C.PLASMA_ISOTRETINOIN].to_numpy()
    excess = conc - conc[0]
    i = int(np.argmax(excess))
    return excess[i], table[C.TIME_D].iloc[i] * 24, excess


# ---------------------------------------------------------------- healthy steady state
def test_healthy_converges_to_a_steady_state_from_a_perturbed_start(engine: Engine) -> None:
    start = dict(engine.initial_amounts)
    perturbed = {k: v * (0.5 if i % 2 else 1.8) for i, (k, v) in enumerate(start.items()) if k != "Eliminated"}
    preset = Phenotype(name="healthy_perturbed", description="", rationale="", initial_amounts=perturbed)
    table = simulate(preset, None, t_end_d=730, preequilibrate=False, include_species=True, output_step_d=5)
    year1 = table[table[C.TIME_D] == 365].iloc[0]
    year2 = table.iloc[-1]
    for species in engine.species_ids:
        if species == "Eliminated":  # cumulative ledger: check its rate instead
            continue
        a, b = year1[f"amount_{species}"], year2[f"amount_{species}"]
        assert abs(b - a) <= 0.01 * max(abs(a), abs(b)), species
    t = table[C.TIME_D].to_numpy()
    ledger = table["amount_Eliminated"].to_numpy()
    rate_early = np.polyfit(t[(t >= 365) & (t <= 450)], ledger[(t >= 365) & (t <= 450)], 1)[0]
    rate_late = np.polyfit(t[t >= 640], ledger[t >= 640], 1)[0]
    assert rate_late == pytest.approx(rate_early, rel=0.01)


def test_healthy_semen_and_production_in_published_ranges() -> None:
    table = simulate("healthy", None, t_end_d=30)
    assert table[C.EJACULATE_CONCENTRATION].min() >= WHO_LOWER_REFERENCE_M_PER_ML
    low, high = (d * TESTIS_G for d in DSP_PER_G)
    assert low <= table[C.DAILY_SPERM_PRODUCTION].iloc[-1] <= high
    assert bool(table[C.MOTILE_SPERM_PRESENT].all())


def test_healthy_relative_readouts_are_one() -> None:
    """The derived reference constants match the current healthy steady state (rerun calibrate if not)."""
    row = simulate("healthy", None, t_end_d=1).iloc[0]
    for column in (C.CYP26_ACTIVITY, C.ALDH1A_ACTIVITY, C.STRA8):
        assert row[column] == pytest.approx(1.0, rel=1e-3), column


def test_healthy_endogenous_retinoids_match_brief() -> None:
    row = simulate("healthy", None, t_end_d=1).iloc[0]
    assert row[C.PLASMA_ATRA] == pytest.approx(4.5, rel=0.01)  # Berggren Soderlund 2002
    assert row[C.PLASMA_ISOTRETINOIN] / 0.30044 == pytest.approx(5.5, rel=0.01)  # 13-cis-RA, nM
    assert row[C.TESTIS_13CIS] == pytest.approx(0.26, rel=0.01)  # Nya-Ngatchou 2013


# ---------------------------------------------------------------- pharmacokinetics
@pytest.mark.parametrize(
    ("dose_mg", "fed", "cmax", "tmax_range"),
    [
        (20, False, 150.0, (1.0, 4.0)),  # conventional 20 mg fasted: Cmax 150, Tmax 2.75 h (1-4 h, Khoo 1982)
        (40, True, 369.0, (4.5, 8.3)),  # Absorica 40 mg fed: Cmax 369, Tmax 6.4 h (+-30%)
    ],
)
def test_single_dose_cmax_tmax_and_half_life(dose_mg: float, fed: bool, cmax: float, tmax_range) -> None:
    table = simulate("healthy", Regimen(dose_mg=dose_mg, n_doses=1, fed=fed), t_end_d=10, output_step_d=1 / 96)
    peak, tmax_h, excess = _peak(table)
    assert 0.75 * cmax <= peak <= 1.25 * cmax
    assert tmax_range[0] <= tmax_h <= tmax_range[1]
    t_h = table[C.TIME_D].to_numpy() * 24
    late = (t_h >= 72) & (t_h <= 168)
    slope = np.polyfit(t_h[late], np.log(excess[late]), 1)[0]
    assert 10.0 <= math.log(2) / -slope <= 30.0


def test_one_compartment_limit_is_the_bateman_curve(engine: Engine) -> None:
    """With distribution, isomerisation and penetration off, the drug's excess over baseline is Bateman.

    Endogenous 13-cis-RA input and its exchange with atRA and the testis are then independent of the
    drug, so the excess over the pre-dose level is the linear one-compartment oral curve.
    """
    off = {"Q_iso": 0.0, "f_isom": 0.0, "PS_cis_in": 0.0}
    table = simulate("healthy", "20 mg od x 1 doses", t_end_d=4, output_step_d=1 / 48, overrides=off)
    dose_nmol = 20 * engine.defaults["nmol_per_mg_iso"]
    F, ka = engine.defaults["F_fasted"], engine.defaults["ka_fasted"]
    V, k = engine.defaults["plasma_c"], engine.defaults["CL_iso"] / engine.defaults["plasma_c"]
    t = table[C.TIME_D].to_numpy() * 24
    bateman_nM = F * dose_nmol * ka / (V * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))
    plasma = table[C.PLASMA_ISOTRETINOIN].to_numpy()
    simulated_nM = (plasma - plasma[0]) / 0.30044
    np.testing.assert_allclose(simulated_nM[1:], bateman_nM[1:], rtol=1e-5)


def test_drug_mass_balance_at_every_output_time(engine: Engine) -> None:
    table = simulate(
        "healthy", "20 mg bid for 10 d, fed", t_end_d=20, output_step_d=0.25, overrides=DRUG_ONLY, include_species=True
    )
    dosed = table[C.DOSES_GIVEN].to_numpy() * 20 * engine.defaults["nmol_per_mg_iso"]
    body = sum(table[f"amount_{s}"].to_numpy() for s in RETINOID_POOLS)
    eliminated = table["amount_Eliminated"].to_numpy()
    assert dosed[-1] == pytest.approx(20 * 20 * engine.defaults["nmol_per_mg_iso"])
    np.testing.assert_allclose(body + eliminated, dosed, rtol=1e-6, atol=1e-9 * dosed[-1])


# ---------------------------------------------------------------- dosing and state isolation
@pytest.mark.parametrize(
    ("text", "expected"),
    [("20 mg bid for 180 d", 360), ("10 mg od for 30 d from day 7", 30), ("40 mg every 36 h x 5 doses", 5)],
)
def test_every_dose_is_given(text: str, expected: int) -> None:
    regimen = Regimen.parse(text)
    assert regimen.number_of_doses == expected
    table = simulate("healthy", regimen, t_end_d=200, overrides=DRUG_ONLY, include_species=True)
    assert table[C.DOSES_GIVEN].iloc[-1] == expected
    # independent of the event's own counter: the drug mass that actually went in
    delivered = sum(table[f"amount_{s}"].iloc[-1] for s in RETINOID_POOLS) + table["amount_Eliminated"].iloc[-1]
    per_dose = regimen.dose_per_administration_mg * 3328.45  # nmol per mg, MW 300.44
    assert delivered / per_dose == pytest.approx(expected, rel=1e-6)
    first = regimen.dose_times_h()[0] / 24
    assert table.loc[table[C.TIME_D] < first, C.DOSES_GIVEN].eq(0).all()


def test_no_state_leaks_between_runs() -> None:
    fresh_engine = Engine(default_sbml())
    alone = simulate("maturation_arrest", "20 mg bid for 30 d", t_end_d=60, engine=fresh_engine)
    busy_engine = Engine(default_sbml())
    simulate("healthy", "40 mg od for 90 d, fed", t_end_d=100, overrides={"cyp26_expr": 3.0}, engine=busy_engine)
    simulate("vitamin_a_deficient", None, t_end_d=10, engine=busy_engine)
    after = simulate("maturation_arrest", "20 mg bid for 30 d", t_end_d=60, engine=busy_engine)
    np.testing.assert_array_equal(after.to_numpy(), alone.to_numpy())


# ---------------------------------------------------------------- phenotypes
def test_vitamin_a_deficiency_and_repletion() -> None:
    deficient = simulate("vitamin_a_deficient", None, t_end_d=30)
    limit = deficient.attrs["motile_detection_limit_M_per_mL"]
    assert deficient[C.EJACULATE_CONCENTRATION].max() < 1e-3 * WHO_LOWER_REFERENCE_M_PER_ML
    assert not deficient[C.MOTILE_SPERM_PRESENT].any()
    table = _repletion()
    assert table[C.EJACULATE_CONCENTRATION].iloc[-1] >= WHO_LOWER_REFERENCE_M_PER_ML
    present = table.loc[table[C.MOTILE_CONCENTRATION] >= limit, C.TIME_D]
    assert present.iloc[0] - REPLETION_D >= 14  # weeks, not days


REPLETION_D = 20.0


def _repletion():
    return simulate(
        "vitamin_a_deficient",
        None,
        t_end_d=400,
        changes=[ParameterChange(t_d=REPLETION_D, parameter="retinol_plasma_uM", value=2.5)],
    )


def test_repletion_delay_is_spermatogenesis_plus_transit() -> None:
    table = _repletion()
    limit = table.attrs["motile_detection_limit_M_per_mL"]
    present = table.loc[table[C.MOTILE_CONCENTRATION] >= limit, C.TIME_D]
    assert 35 <= present.iloc[0] - REPLETION_D <= 120  # spermatogenesis (64-74 d) plus transit (12-20 d)


@pytest.fixture(scope="module")
def arrest_runs():
    untreated = simulate("maturation_arrest", None, t_end_d=540)
    treated = simulate("maturation_arrest", "20 mg bid for 180 d", t_end_d=540)
    return untreated, treated


def test_maturation_arrest_is_azoospermic_untreated(arrest_runs) -> None:
    untreated, _ = arrest_runs
    assert not untreated[C.MOTILE_SPERM_PRESENT].any()


def test_maturation_arrest_responds_to_20_mg_bid(arrest_runs) -> None:
    untreated, treated = arrest_runs
    day150 = treated[C.TIME_D] == 150
    base = untreated.iloc[0]
    on = treated[day150].iloc[0]
    assert on[C.TESTIS_ATRA] > 1.5 * base[C.TESTIS_ATRA]
    assert on[C.STRA8] > 2 * base[C.STRA8]
    assert on[C.BTB_INTEGRITY] < base[C.BTB_INTEGRITY] - 0.05  # more remodelling
    assert on[C.SPERMIATION_EFFICIENCY] > base[C.SPERMIATION_EFFICIENCY] + 0.1  # graded gate: leaky untreated
    assert treated[C.MOTILE_SPERM_PRESENT].any()


def test_maturation_arrest_first_sperm_not_before_a_month(arrest_runs) -> None:
    _, treated = arrest_runs
    first = treated.loc[treated[C.MOTILE_SPERM_PRESENT], C.TIME_D].iloc[0]
    assert 30 <= first <= 180


def test_maturation_arrest_returns_toward_untreated_after_stopping(arrest_runs) -> None:
    untreated, treated = arrest_runs
    peak = treated[C.EJACULATE_CONCENTRATION].max()
    end = treated.iloc[-1]
    assert end[C.EJACULATE_CONCENTRATION] < 0.01 * peak
    assert end[C.STRA8] == pytest.approx(untreated.iloc[-1][C.STRA8], rel=0.02)
    assert end[C.TESTIS_ATRA] == pytest.approx(untreated.iloc[-1][C.TESTIS_ATRA], rel=0.02)


def test_a_sealed_barrier_blocks_meiosis() -> None:
    """Preleptotene cells cross only where RA opens the BTB: no remodelling, no ejaculated sperm."""
    table = simulate("healthy", "20 mg bid for 180 d", t_end_d=365, output_step_d=5, overrides={"k_tj_open": 0.0})
    assert table[C.BTB_INTEGRITY].min() == pytest.approx(1.0)
    assert not table[C.MOTILE_SPERM_PRESENT].any()


@pytest.mark.parametrize("phenotype", ["maturation_arrest_meiotic", "sertoli_cell_only"])
@pytest.mark.parametrize("regimen", [None, "10 mg od for 180 d", "20 mg bid for 180 d", "40 mg bid for 180 d"])
def test_no_sperm_at_any_dose(phenotype: str, regimen: str | None) -> None:
    table = simulate(phenotype, regimen, t_end_d=365, output_step_d=5)
    assert not table[C.MOTILE_SPERM_PRESENT].any()
    assert table[C.EJACULATE_CONCENTRATION].max() < table.attrs["motile_detection_limit_M_per_mL"]


@pytest.mark.parametrize("phenotype", list(load_phenotypes()))
@pytest.mark.parametrize("regimen", [None, "20 mg bid for 180 d", "0.5 mg/kg/day od for 90 d, 70 kg"])
def test_nothing_goes_negative(engine: Engine, phenotype: str, regimen: str | None) -> None:
    table = simulate(phenotype, regimen, t_end_d=300, output_step_d=2, include_species=True)
    numeric = table.drop(columns=[C.MOTILE_SPERM_PRESENT, C.SEMEN_CATEGORY])
    # CVODE round-off in drained pools stays below its absolute tolerance; anything larger is a bug.
    assert numeric.to_numpy().min() >= -10 * engine.options.atol


# ---------------------------------------------------------------- the ejaculate threshold (Silber 2000)
def test_hypospermatogenesis_makes_sperm_but_is_azoospermic_untreated() -> None:
    table = simulate("hypospermatogenesis", None, t_end_d=60, output_step_d=5)
    assert table[C.DAILY_SPERM_PRODUCTION].min() > 1.0  # all stages present, a few million a day
    assert not table[C.MOTILE_SPERM_PRESENT].any()


@pytest.mark.parametrize("niche_scale", [0.15, 0.3, 1.0])
def test_above_the_threshold_the_ejaculate_carries_the_excess(engine: Engine, niche_scale: float) -> None:
    """Steady state: sperm released beyond the saturated duct loss pass the epididymis unchanged.

    released R = daily production x spermiation efficiency / 24 (Mcell/h); cauda inflow = R - Vmax;
    cauda content = inflow / k_cauda; concentration = ejaculate_fraction x cauda / volume.
    """
    p = engine.defaults
    table = simulate("healthy", None, t_end_d=10, overrides={"stem_niche": niche_scale * p["stem_niche"]})
    row = table.iloc[-1]
    released = row[C.DAILY_SPERM_PRODUCTION] * row[C.SPERMIATION_EFFICIENCY] / 24
    assert released > p["Vmax_duct_loss"]
    expected = p["ejaculate_fraction"] * (released - p["Vmax_duct_loss"]) / p["k_cauda"] / p["ejaculate_volume_mL"]
    assert row[C.EJACULATE_CONCENTRATION] == pytest.approx(expected, rel=2e-3)
