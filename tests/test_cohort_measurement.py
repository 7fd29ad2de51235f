"""Cohort endpoints on simulated semen analyses (issue 16): derived detection limits, seeding, the two-analysis
baseline, responders on consecutive analyses, the spread over measurement draws, the crypto- and oligozoospermia
presets.

Expected numbers are derived here: detection limits from the volumes (one sperm expected), chances from the
Poisson and log-normal laws (Gauss-Hermite quadrature), responder chances from a recursion over visits.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ra_model.engines.engine import Engine
from ra_model.errors import InvalidValueError
from ra_model.model import columns as C
from ra_model.model import semen
from ra_model.studies import clinical, semen_analysis
from ra_model.studies.experiments.cohort import (
    N_DRAWS_MEDIAN,
    RATE_DRAWS_HIGH,
    RATE_DRAWS_LOW,
    RATE_DRAWS_MEDIAN,
    SPREAD_COLUMNS,
    enrolled_first,
    measurement_spread,
)
from ra_model.studies.experiments.reader import load_experiment
from ra_model.studies.population import HISTOLOGY, PATIENT_INDEX
from ra_model.studies.semen_analysis import MeasurementSettings, analyses, visit_analyses

Z = 4.0  # tolerance in standard errors
FOLLOW = [30.0, 60.0, 90.0, 120.0, 150.0, 180.0]
#: No between-ejaculate variation and a fixed motile fraction: only counting chance is left.
QUIET = {"cv_within_concentration": 0.0, "cv_within_volume": 0.0, "motile_fraction_cv": 0.0}
#: A 1 uL fresh count and an extended search of the whole pellet (the defaults are a routine 0.01 uL and 1/3000).
WHOLE = {"examined_volume_fresh_uL": 1.0, "pellet_fraction_examined": 1.0}


def _table(
    conc: list[list[float]], *, extra: dict[str, float] | None = None, histology: str = "hypospermatogenesis"
) -> pd.DataFrame:
    """A sweep-like table: one row per man, the model's concentration on day 0 and at each follow-up visit."""
    days = [0.0, *FOLLOW]
    data: dict[str, object] = {
        "sample_id": [f"{histology}-{i:05d}" for i in range(len(conc))],
        HISTOLOGY: histology,
        PATIENT_INDEX: list(range(len(conc))),
        "status": "ok",
    }
    for j, day in enumerate(days):
        data[f"{clinical.CONCENTRATION_PREFIX}{day:g}"] = [row[j] for row in conc]
        data[f"{clinical.MOTILE_PREFIX}{day:g}"] = [0.5 * row[j] for row in conc]
    frame = pd.DataFrame(data)
    for name, value in (extra or {}).items():
        frame[name] = value
    return frame


def _gauss_hermite_mean(f, sigma: float, n: int = 80) -> float:  # type: ignore[no-untyped-def]
    """E[f(M)] for M log-normal of mean 1 and log-SD sigma (probabilists' Gauss-Hermite)."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return float(np.sum(w * f(np.exp(sigma * x - 0.5 * sigma**2))) / math.sqrt(2 * math.pi))


# ---------------------------------------------------------------------------------------------- derived limits
@pytest.mark.parametrize(
    "values",
    [
        {},
        {"examined_volume_fresh_uL": 10.0},
        {"examined_volume_fresh_uL": 0.25, "ejaculate_volume_mL": 5.0},
        {"pellet_fraction_examined": 0.5, "ejaculate_volume_mL": 2.0},
    ],
    ids=["defaults", "10uL", "quarter-uL-5mL", "half-pellet-2mL"],
)
def test_detection_limits_are_one_expected_sperm_in_the_examined_volume(engine: Engine, values: dict) -> None:  # type: ignore[type-arg]
    engine.fresh(parameters=values)
    try:
        p = {name: engine.get(name) for name in semen.DETECTION_INPUTS}
        fresh = 1 / (p["examined_volume_fresh_uL"] * 1e-3 * 1e6)  # one sperm in the volume, mL x sperm per mL
        pellet = 1 / (p["pellet_fraction_examined"] * p["ejaculate_volume_mL"] * 1e6)
        # the model's assignment rules, the package's formula and the measurement settings agree
        assert engine.get("fresh_detection_limit") == pytest.approx(fresh, rel=1e-12)
        assert engine.get("pellet_detection_limit") == pytest.approx(pellet, rel=1e-12)
        assert engine.get("motile_detection_limit") == pytest.approx(pellet, rel=1e-12)
        assert semen.detection_limits(p) == pytest.approx(
            {"fresh_detection_limit": fresh, "pellet_detection_limit": pellet, "motile_detection_limit": pellet}
        )
        assert MeasurementSettings.from_parameters(values).detection_limits["fresh_detection_limit"] == pytest.approx(
            fresh
        )
    finally:
        engine.fresh()


def test_at_the_fresh_limit_one_sperm_is_expected_in_the_fresh_count() -> None:
    settings = MeasurementSettings.from_parameters(QUIET)
    limit = settings.detection_limits["fresh_detection_limit"]
    draws = semen_analysis.draw_analyses(np.full(20_000, limit), rng=np.random.default_rng(16), settings=settings)
    counts = draws["fresh_count"]
    assert abs(counts.mean() - 1.0) < Z * math.sqrt(1.0 / counts.size)  # Poisson of mean 1
    none = np.mean(counts == 0)
    assert abs(none - math.exp(-1)) < Z * math.sqrt(math.exp(-1) * (1 - math.exp(-1)) / counts.size)


def test_derived_limits_cannot_be_set_or_disagree() -> None:
    with pytest.raises(InvalidValueError, match="examined_volume_fresh_uL"):
        semen.detection_limits({"pellet_fraction_examined": 1.0, "ejaculate_volume_mL": 3.0})
    with pytest.raises(InvalidValueError, match="ejaculate_volume_mL = 0"):
        semen.detection_limits({"examined_volume_fresh_uL": 1, "pellet_fraction_examined": 1, "ejaculate_volume_mL": 0})
    # limits follow the inputs even if a stale derived value is handed in
    limits = semen.limits_from(
        {
            "examined_volume_fresh_uL": 2.0,
            "pellet_fraction_examined": 1.0,
            "ejaculate_volume_mL": 4.0,
            "oligozoospermia_limit": 15.0,
            "fresh_detection_limit": 0.1,
        }
    )
    assert limits == pytest.approx({"pellet": 1 / 4e6, "fresh": 1 / 2e3, "oligo": 15.0})


# ---------------------------------------------------------------------------------------------- seeding
def test_a_cohorts_analysis_is_the_mans_analysis_whatever_else_is_drawn() -> None:
    days = [clinical.SCREENING_DAY_D, 0.0, 30.0]
    conc = np.array([[3e-7, 3e-7, 0.02], [2.0, 2.0, 2.0], [0.0, 0.0, 1e-5]])
    ids = ["a-00001", "b-00002", "c-00003"]
    settings = MeasurementSettings.from_parameters()
    one = visit_analyses(conc, days, seed=7, man_ids=ids, settings=settings, redraws=20)
    again = visit_analyses(conc[[1, 0]], days, seed=7, man_ids=[ids[1], ids[0]], settings=settings, redraws=20)
    for i, man in enumerate(ids[:2]):
        alone = analyses(conc[i], days, seed=7, man_id=man)  # the per-man API: the same analyses
        assert [a.category for a in alone] == semen.category_labels(one.category_code[i]).tolist()
        assert [a.motile_seen for a in alone] == one.motile_seen[i].tolist()
        assert [a.fresh_count for a in alone] == one.fresh_count[i].tolist()
    assert (again.category_code[[1, 0]] == one.category_code[:2]).all()
    # the re-draws are the cohort's: the same men and seed give the same re-draws, a new seed new ones
    same = visit_analyses(conc, days, seed=7, man_ids=ids, settings=settings, redraws=20)
    assert (same.redraw_motile_seen == one.redraw_motile_seen).all()
    other = visit_analyses(conc, days, seed=8, man_ids=ids, settings=settings, redraws=20)
    assert not (other.fresh_count[1] == one.fresh_count[1]).all()  # a new seed, new counts (about 2,000 each)
    # man 0 expects about one sperm per ejaculate at baseline: his re-drawn categories vary between draws and seeds
    assert len({tuple(row) for row in one.redraw_category_code[:, 0]}) > 1
    assert not (other.redraw_category_code[:, 0] == one.redraw_category_code[:, 0]).all()
    # one analysis drawn alone (scalar calls) is the vectorised path's draw, bit for bit
    for k in range(50):
        for c in (0.0, 3e-7, 1e-4, 0.05, 20.0):
            alone = semen_analysis.draw_analyses(c, rng=np.random.default_rng(k), settings=settings)
            vector = semen_analysis.draw_analyses(np.array([c]), rng=np.random.default_rng(k), settings=settings)
            for key, value in alone.items():
                np.testing.assert_array_equal(value, vector[key][0], err_msg=key)


def test_re_draws_give_the_analyses_chances_of_motile_sperm_and_of_each_category() -> None:
    # two sperm expected in the ejaculate (pellet regime): categories by Poisson, motile sperm by the beta-binomial
    settings = MeasurementSettings.from_parameters({"cv_within_concentration": 0.0, "cv_within_volume": 0.0})
    n = 40_000
    c = 2.0 * settings.detection_limits["pellet_detection_limit"]
    codes, motile = semen_analysis.draw_presence(np.full(n, c), rng=np.random.default_rng(2), settings=settings)
    full = semen_analysis.draw_analyses(np.full(n, c), rng=np.random.default_rng(3), settings=settings)
    # P(no motile sperm) = sum_k Poisson(k; 2) E[(1 - f)^k], f ~ beta(a, b): E[(1 - f)^k] = B(a, b + k) / B(a, b)
    mean, cv = settings.motile_fraction, settings.motile_fraction_cv
    kappa = mean * (1 - mean) / (cv * mean) ** 2 - 1
    a, b = mean * kappa, (1 - mean) * kappa
    k = np.arange(0, 60)
    poisson = np.exp(-2.0 + k * math.log(2.0) - np.array([math.lgamma(x + 1) for x in k]))
    beta_moment = np.exp(
        np.array([math.lgamma(b + x) - math.lgamma(a + b + x) for x in k]) + math.lgamma(a + b) - math.lgamma(b)
    )
    p_none = float(np.sum(poisson * beta_moment))
    se = math.sqrt(p_none * (1 - p_none) / n)
    assert abs(np.mean(~motile) - p_none) < Z * se
    assert abs(np.mean(full["motile_seen"] == 0) - p_none) < Z * se
    assert abs(np.mean(codes == semen.AZOOSPERMIA) - math.exp(-2.0)) < Z * math.sqrt(math.exp(-2) / n)


# ---------------------------------------------------------------------------------------------- the baseline
def test_two_baseline_analyses_confirm_azoospermia_with_the_poisson_chance_squared() -> None:
    # Every man sits at the pellet detection limit: about one sperm expected in what the fresh count and the
    # pellet search examine together.
    n = 4000
    settings = MeasurementSettings.from_parameters()
    c = settings.detection_limits["pellet_detection_limit"]
    vf, volume, f = settings.examined_volume_fresh_mL, settings.ejaculate_volume_mL, settings.pellet_fraction_examined
    lam_fresh = c * 1e6 * vf  # sperm expected in the fresh count
    lam = c * 1e6 * (vf + f * (volume - vf))  # ... in the fresh count and the pellet search together
    assert lam == pytest.approx(1.0, rel=0.02)
    conc = np.full((n, 3), c)
    ids = [f"m-{i:05d}" for i in range(n)]
    days = [clinical.SCREENING_DAY_D, 0.0, 30.0]
    quiet = MeasurementSettings.from_parameters(QUIET)
    drawn = visit_analyses(conc, days, seed=3, man_ids=ids, settings=quiet)
    found = clinical.endpoints(drawn.category_code, drawn.motile_seen, clinical.ResponseRule())
    # without between-ejaculate variation: none seen with chance e^-lam per analysis, e^-2lam on both
    confirmed = np.mean(found.eligible & (found.baseline_code == semen.AZOOSPERMIA))
    p = math.exp(-2 * lam)
    assert abs(confirmed - p) < Z * math.sqrt(p * (1 - p) / n)
    # one analysis alone would call e^-lam of them azoospermic: the second analysis moves the rest to crypto
    one = np.mean(drawn.category_code[:, 1] == semen.AZOOSPERMIA)
    assert abs(one - math.exp(-lam)) < Z * math.sqrt(math.exp(-lam) * (1 - math.exp(-lam)) / n)
    # eligible: no sperm in the fresh count on both baseline analyses
    q = math.exp(-2 * lam_fresh)
    assert abs(np.mean(found.eligible) - q) < Z * math.sqrt(q * (1 - q) / n)
    # with the default spreads the total count c * V varies with CV cv_within_total_count (log-normal), so
    # P(none) = E[exp(-lam M)] per analysis, and the two analyses are independent
    sigma_t = math.sqrt(math.log1p(settings.cv_within_total_count**2))
    p_one = _gauss_hermite_mean(lambda m: np.exp(-lam * m), sigma_t)
    assert p_one > math.exp(-lam)  # variation makes an empty ejaculate likelier (Jensen)
    noisy = visit_analyses(conc, days, seed=4, man_ids=ids, settings=settings)
    got = clinical.endpoints(noisy.category_code, noisy.motile_seen, clinical.ResponseRule())
    both = np.mean(got.eligible & (got.baseline_code == semen.AZOOSPERMIA))
    assert abs(both - p_one**2) < Z * math.sqrt(p_one**2 * (1 - p_one**2) / n)


def test_sperm_in_a_fresh_count_on_either_baseline_analysis_excludes_a_man() -> None:
    codes = np.array(
        [
            [0, 0, 1, 1],  # azoospermic twice: enrolled, azoospermic baseline
            [1, 0, 1, 1],  # pellet sperm at screening only: enrolled, cryptozoospermic baseline
            [2, 0, 2, 2],  # a fresh count at screening: not enrolled
            [0, 2, 2, 2],  # a fresh count at baseline: not enrolled
            [-1, -1, -1, -1],  # failed to simulate
        ]
    )
    motile = np.where(codes > 0, 3, 0)
    found = clinical.endpoints(codes, motile, clinical.ResponseRule())
    assert found.eligible.tolist() == [True, True, False, False, False]
    assert found.baseline_code.tolist() == [0, 1, 2, 2, -1]
    assert found.responder.tolist() == [True, False, False, False, False]  # crypto needs a fresh count
    unscreened = clinical.endpoints(codes, motile, clinical.ResponseRule(screen=False))
    assert unscreened.eligible.tolist() == [True, True, True, True, False]


# ---------------------------------------------------------------------------------------------- responders
def test_responders_need_motile_sperm_in_a_better_category_on_two_consecutive_analyses() -> None:
    high, pellet_only = 10.0, 3e-6  # 10,000 sperm in the fresh count; ~9 sperm in the pellet, 0.003 in 1 uL
    men = [
        [0.0, 0.0, high, high, 0.0, 0.0, 0.0],  # azoospermic; sperm on days 60 and 90: responds from 60
        [0.0, high, 0.0, high, 0.0, high, 0.0],  # never two in a row
        [pellet_only] * 7,  # cryptozoospermic throughout: his category never improves
        [pellet_only, pellet_only, pellet_only, high, high, high, high],  # crypto, then fresh sperm: from 90
    ]
    table = _table(men, extra=QUIET | WHOLE | {"ejaculate_volume_mL": 3.0})
    measured, drawn = clinical.measure(table, seed=11)
    got = clinical.classify_measured(measured, drawn, clinical.ResponseRule())
    # the analyses hold what the rule reads: counts and categories per day, the screening analysis included
    assert measured[f"{clinical.ANALYSIS_CATEGORY_PREFIX}-14"].tolist()[:2] == ["azoospermia"] * 2
    assert (measured[f"{clinical.ANALYSIS_FRESH_PREFIX}60"].iloc[0]) > 9000
    assert got[clinical.ELIGIBLE].tolist() == [True, True, True, True]
    assert got[clinical.BASELINE_CATEGORY].tolist()[2:] == ["cryptozoospermia"] * 2
    assert got[clinical.RESPONDER].tolist() == [True, False, False, True]
    assert got[clinical.TIME_TO_RESPONSE_D].iloc[0] == 60 and got[clinical.TIME_TO_RESPONSE_D].iloc[3] == 90
    # a window that ends on day 60 loses the first man's second analysis
    windowed, wdrawn = clinical.measure(table, seed=11, window_d=(0.0, 60.0))
    assert not clinical.classify_measured(windowed, wdrawn, clinical.ResponseRule())[clinical.RESPONDER].iloc[0]


def _run_chance(s: float, n: int, k: int = 2) -> float:
    """P(at least k successes in a row among n independent trials of chance s), by recursion on the run length."""
    state = np.zeros(k + 1)  # state[j]: current run j (< k), state[k]: a run of k has happened
    state[0] = 1.0
    for _ in range(n):
        new = np.zeros(k + 1)
        new[k] = state[k]
        for j in range(k):
            new[0] += state[j] * (1 - s)
            new[j + 1] += state[j] * s
        state = new
    return float(state[k])


def test_the_spread_over_measurement_draws_is_the_binomial_spread_of_the_mens_chances(tmp_path: Path) -> None:
    # 300 azoospermic men (no sperm at baseline) whose follow-up ejaculates hold motile sperm seen with chance s
    # per analysis: each responds with the chance q of two positives in a row among six analyses.
    n = 300
    quiet = MeasurementSettings.from_parameters(QUIET | WHOLE)
    rest_mL = quiet.ejaculate_volume_mL - quiet.examined_volume_fresh_mL
    c = math.log(2) / (quiet.motile_fraction * rest_mL * 1e6)  # motile sperm in the pellet: Poisson of mean ln 2
    s = 0.5
    q = _run_chance(s, len(FOLLOW))
    table = _table([[0.0] + [c] * len(FOLLOW) for _ in range(n)], extra=QUIET | WHOLE)
    spec = tmp_path / "spread.toml"
    spec.write_text(
        'description = "spread"\nkind = "cohort"\nregimen = "20 mg bid for 180 d"\nt_end_d = 180.0\nseed = 5\n'
        "[population]\nhistology_mix = { hypospermatogenesis = 1.0 }\n"
        f"[cohorts]\nall = {n}\nten = 10\n[sampling]\nevery_d = 30\nlast_d = 180\n",
        encoding="utf-8",
    )
    exp = load_experiment(spec)
    measured, drawn = clinical.measure(table, seed=exp.seed, window_d=(0.0, exp.t_end_d))
    main = clinical.classify_measured(measured, drawn, exp.response)
    assert main[clinical.ELIGIBLE].all()
    rate = main[clinical.RESPONDER].mean()
    sd = math.sqrt(q * (1 - q) / n)
    assert abs(rate - q) < Z * sd
    spread = measurement_spread(measured, exp, redraws=200)
    row = spread["all"].set_index("group").loc["overall"]
    assert list(spread["all"].columns) == ["group", *SPREAD_COLUMNS]
    assert row[N_DRAWS_MEDIAN] == n  # every man is eligible in every draw
    assert abs(row[RATE_DRAWS_MEDIAN] - q) < 0.3 * sd + 1 / n  # the median of 200 draws sits at q
    # the 2.5-97.5% range is the binomial range of the men's chances: q -/+ 1.96 sd, within about 20%
    assert row[RATE_DRAWS_HIGH] - row[RATE_DRAWS_LOW] == pytest.approx(2 * 1.96 * sd, rel=0.25)
    assert row[RATE_DRAWS_LOW] <= rate <= row[RATE_DRAWS_HIGH]  # the analysis read is one of those draws
    # a small cohort enrols the first 10 eligible men of each draw
    assert spread["ten"].set_index("group").loc["overall", N_DRAWS_MEDIAN] == 10


def test_enrolment_takes_the_first_eligible_men_of_each_histology_in_every_draw() -> None:
    eligible = np.array([[True, False, True, True, True, True], [False, True, True, True, False, True]])
    histology = np.array(["a", "a", "a", "b", "b", "b"])
    got = enrolled_first(eligible, histology, {"a": 1, "b": 2})
    assert got.tolist() == [[True, False, False, True, True, False], [False, True, False, True, False, True]]


# ---------------------------------------------------------------------------------------------- the presets
def _baseline_analyses(phenotype: str, n: int = 200) -> pd.DataFrame:
    from ra_model.engines.fastpath import simulate_fast

    table = simulate_fast(phenotype, None, t_end_d=1, output_step_d=1, n_classes=8)
    c = float(table[C.EJACULATE_CONCENTRATION].iloc[0])
    return semen_analysis.analyses_table(
        np.full((n, 1), c), [0.0], seed=2025, man_ids=[f"{phenotype}-{i}" for i in range(n)]
    )


def test_a_cryptozoospermic_man_shows_sperm_in_the_pellet_in_some_analyses_and_none_in_others() -> None:
    got = _baseline_analyses("cryptozoospermia")
    pellet = got["pellet_count"].fillna(0) > 0
    assert 0.1 < pellet.mean() < 0.9
    assert (got["fresh_count"] == 0).mean() > 0.95  # rarely, if ever, in a fresh count
    assert set(got["semen_category"]) <= {"azoospermia", "cryptozoospermia", "oligozoospermia"}


def test_an_oligozoospermic_man_has_a_few_million_per_ml_that_vary_between_analyses() -> None:
    got = _baseline_analyses("oligozoospermia")
    measured = got["measured_concentration_M_per_mL"]
    assert 0.1 < measured.median() < 15
    assert (got["fresh_count"] > 0).all()
    assert measured.std() / measured.mean() > 0.25  # between-ejaculate CV 0.39 (Schwartz 1979)
    assert (got["semen_category"] == "oligozoospermia").mean() > 0.9
