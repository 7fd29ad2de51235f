"""The semen-analysis measurement model (issue 16, first part): counting chance, variability, seeding, bad input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ra_model.errors import InvalidValueError
from ra_model.model import columns as C
from ra_model.model.source import read_parameter_table
from ra_model.studies.semen_analysis import (
    MeasurementSettings,
    SemenAnalysis,
    analyses,
    analyses_table,
    draw_analyses,
    settings_for,
    simulate_semen_analysis,
)

N = 20_000  # draws per Monte-Carlo check
Z = 4.0  # tolerance in standard errors (a false failure about once in 16,000 checks)


def _settings(**changes: float) -> MeasurementSettings:
    return MeasurementSettings.from_parameters(changes)


def test_the_parameters_are_in_the_table_with_the_briefs_values() -> None:
    table = read_parameter_table()
    expected = {
        "cv_within_concentration": (0.39, "dimensionless", "nonneg"),  # brief 6: Schwartz 1979
        "cv_within_volume": (0.28, "dimensionless", "nonneg"),  # brief 6: Schwartz 1979
        "cv_within_total_count": (0.55, "dimensionless", "nonneg"),  # brief 6: Schwartz 1979
        "examined_volume_fresh_uL": (0.01, "uL", "positive"),
        "pellet_fraction_examined": (0.000333333, "dimensionless", "positive_fraction"),
        "motile_fraction_cv": (0.2, "dimensionless", "nonneg"),
    }
    for pid, (value, unit, dom) in expected.items():
        row = table[pid]
        assert (row.value, row.unit, row.domain, row.category) == (value, unit, dom, "readout"), pid
    for pid in ("cv_within_concentration", "cv_within_volume", "cv_within_total_count"):
        assert table[pid].source.startswith("Schwartz 1979"), pid
    # every figure of the brief's section on semen variability is in the table with its source
    sources = " ".join(table[pid].source for pid in ("cv_within_concentration", "cv_within_volume"))
    for figure in ("39%", "28%", "Leushuis 2009", "28-34%", "Keel 2006", "46%", "54%", "36 men", "220 ejaculates"):
        assert figure in sources, figure
    assert "55%" in table["cv_within_total_count"].source
    assert table["cv_within_concentration"].lower == 0.28 and table["cv_within_concentration"].upper == 0.55


def test_mean_and_cv_of_measured_concentration_match_lognormal_plus_poisson_counting() -> None:
    # 10 sperm expected in the examined fresh volume, so counting matters.
    settings = _settings()
    volume_uL = settings.examined_volume_fresh_uL
    c = 10 / (volume_uL * 1e3)  # million/mL x uL x 1e3 sperm = 10
    cv = 0.39
    expected_in_fresh = c * 1e6 * volume_uL * 1e-3  # sperm/mL x mL = 10
    # law of total variance: Var(X) = Var(c_e) + E[c_e] / V = (c cv)^2 + c / V, V in mL x 1e6
    expected_cv = math.sqrt(cv**2 + 1 / expected_in_fresh)  # 0.5021
    draws = draw_analyses(np.full(N, c), rng=np.random.default_rng(20240616), settings=settings)
    x = draws["measured_concentration_M_per_mL"]
    mean = x.mean()
    sd = x.std(ddof=1)
    se_mean = sd / math.sqrt(N)
    assert abs(mean - c) < Z * se_mean
    # SE of the sample CV by the delta method on the sample variance (fourth central moment) and the mean
    m4 = np.mean((x - mean) ** 4)
    se_var = math.sqrt((m4 - sd**4) / N)
    sample_cv = sd / mean
    se_cv = sample_cv * math.sqrt((se_var / (2 * sd**2)) ** 2 + (se_mean / mean) ** 2)
    assert se_cv < 0.01  # the check is sharp: about 0.004
    assert abs(sample_cv - expected_cv) < Z * se_cv


def test_without_counting_noise_the_cv_is_the_within_man_cv() -> None:
    c = 50.0  # 50,000 sperm in a 1 uL fresh count: counting CV 0.0045
    settings = _settings()
    draws = draw_analyses(np.full(N, c), rng=np.random.default_rng(7), settings=settings)
    x = draws["measured_concentration_M_per_mL"]
    expected_cv = math.sqrt(0.39**2 + 1 / (c * settings.examined_volume_fresh_uL * 1e3))
    assert abs(x.mean() - c) < Z * x.std() / math.sqrt(N)
    assert abs(x.std(ddof=1) / x.mean() - expected_cv) < 0.015  # SE of a log-normal CV of 0.39 here: about 0.0025


def test_volume_and_total_count_vary_with_schwartzs_cvs_the_abstinence_correlation_between_them() -> None:
    settings = _settings()
    draws = draw_analyses(np.full(N, 50.0), rng=np.random.default_rng(28), settings=settings)
    volume = draws["ejaculate_volume_mL"]
    total = draws["ejaculate_concentration_M_per_mL"] * volume
    # the correlation of the logs that turns 0.39 and 0.28 into 0.55: (s_t^2 - s_c^2 - s_v^2) / (2 s_c s_v)
    s_c, s_v, s_t = (math.sqrt(math.log1p(cv**2)) for cv in (0.39, 0.28, 0.55))
    rho = (s_t**2 - s_c**2 - s_v**2) / (2 * s_c * s_v)
    # concentration and volume each average to the model's; their product by exp(cov of the logs) more
    total_mean = 50.0 * 3.0 * math.exp(rho * s_c * s_v)
    for x, mean, cv in ((volume, settings.ejaculate_volume_mL, 0.28), (total, total_mean, 0.55)):
        assert abs(x.mean() - mean) < Z * x.std() / math.sqrt(N)
        # SE of a log-normal sample CV, about CV x sqrt((1 + 4 CV^2) / (2 N)) (delta method), plus counting
        assert abs(x.std(ddof=1) / x.mean() - cv) < Z * cv * math.sqrt((1 + 4 * cv**2) / (2 * N)) + 0.005
    assert 0.2 < rho < 0.26  # positive: volume and concentration rise together (abstinence, brief 6)
    logs = np.corrcoef(np.log(draws["ejaculate_concentration_M_per_mL"]), np.log(volume))[0, 1]
    assert abs(logs - rho) < Z * (1 - rho**2) / math.sqrt(N)
    with pytest.raises(InvalidValueError, match="cv_within_total_count = 0.9"):
        _settings(cv_within_total_count=0.9)  # more than both together at correlation 1 can give (0.72)


@pytest.mark.parametrize("k", [0.5, 1.0, 3.0])
def test_chance_of_seeing_no_sperm_is_poisson_in_the_whole_ejaculate(k: float) -> None:
    # an extended search of the whole pellet (the default examines a routine 1/3000 of it)
    settings = _settings(cv_within_concentration=0, cv_within_volume=0, pellet_fraction_examined=1.0)
    c = k / (3.0 * 1e6)  # 3 mL ejaculate, whole pellet searched: k sperm expected in drop + pellet
    assert c * settings.examined_volume_fresh_uL * 1e3 < 0.0011  # fresh count expected about 0 (at most 0.001)
    draws = draw_analyses(np.full(N, c), rng=np.random.default_rng(int(k * 10)), settings=settings)
    none_seen = (draws["fresh_count"] == 0) & (draws["pellet_count"] == 0)
    p = math.exp(-k)
    assert abs(none_seen.mean() - p) < Z * math.sqrt(p * (1 - p) / N)
    azoo = np.mean(draws["category_code"] == 0)
    assert azoo == none_seen.mean()


def test_searching_half_the_pellet_halves_its_expected_count() -> None:
    settings = _settings(cv_within_concentration=0, cv_within_volume=0, pellet_fraction_examined=0.5)
    c = 1.0 / 1e6  # 1 sperm per mL: 0.001 in the 1 uL fresh drop, 2.999 in the rest, 1.4995 searched
    draws = draw_analyses(np.full(N, c), rng=np.random.default_rng(3), settings=settings)
    none_seen = (draws["fresh_count"] == 0) & (draws["pellet_count"] == 0)
    p = math.exp(-(0.001 + 2.999 * 0.5))
    assert abs(none_seen.mean() - p) < Z * math.sqrt(p * (1 - p) / N)


def test_motile_sperm_seen_average_the_motile_fraction() -> None:
    draws = draw_analyses(np.full(N, 0.01), rng=np.random.default_rng(11), settings=_settings())  # 10 sperm in 1 uL
    fresh = draws["fresh_count"].astype(float)
    seen = np.where(fresh > 0, fresh, draws["pellet_count"])  # motile sperm are counted where sperm were seen
    motile = draws["motile_seen"].astype(float)
    assert (motile <= seen).all()
    counted = fresh > 0  # the rare pellet searches (none in 1 uL) count thousands of sperm: leave them out
    ratio = motile[counted].sum() / fresh[counted].sum()
    # per-draw motile/seen has SD about sqrt(0.1^2 + 0.25/10) = 0.19 (beta CV 0.2 around 0.5, binomial of ~10)
    assert abs(ratio - 0.5) < Z * 0.19 / math.sqrt(N)


def test_categories_follow_the_counts() -> None:
    settings = _settings(cv_within_concentration=0, examined_volume_fresh_uL=1.0, pellet_fraction_examined=1.0)
    rng = np.random.default_rng(5)
    assert simulate_semen_analysis(0.0, rng=rng, params=settings).category == "azoospermia"
    big = simulate_semen_analysis(100.0, rng=rng, params=settings)
    assert big.category == "normal" and big.pellet_count is None and big.fresh_count > 0
    assert simulate_semen_analysis(1.0, rng=rng, params=settings).category == "oligozoospermia"
    tiny = simulate_semen_analysis(1e-4, rng=rng, params=settings)  # 0.1 in the drop, 300 in the pellet
    if tiny.fresh_count == 0:
        assert tiny.category == "cryptozoospermia" and tiny.pellet_count and tiny.concentration_M_per_mL == 0


def test_same_seed_man_and_visit_give_the_same_analysis_whatever_else_is_drawn() -> None:
    days = [0.0, 30.0, 60.0]
    one = analyses([0.5, 2e-5, 20.0], days, seed=2025, man_id="man-7")
    assert one == analyses([0.5, 2e-5, 20.0], days, seed=2025, man_id="man-7")
    assert analyses([2e-5], [30.0], seed=2025, man_id="man-7") == [one[1]]  # other visits do not matter
    assert analyses([0.5, 2e-5, 20.0], days, seed=2026, man_id="man-7") != one  # a new seed, new draws
    assert analyses([0.5, 2e-5, 20.0], days, seed=2025, man_id="man-8") != one
    alone = analyses_table([[0.5, 2e-5, 20.0]], days, seed=2025, man_ids=["man-7"])
    crowd = analyses_table(
        [[1.0, 1.0, 1.0], [0.5, 2e-5, 20.0], [3.0, 3.0, 3.0]], days, seed=2025, man_ids=["a", "man-7", 12]
    )
    mine = crowd[crowd["man_id"] == "man-7"].reset_index(drop=True)
    assert mine["man_id"].tolist() == ["man-7"] * 3
    pd.testing.assert_frame_equal(alone.drop(columns="man_id"), mine.drop(columns="man_id"))
    assert alone["fresh_count"].tolist() == [a.fresh_count for a in one]


def test_a_table_is_read_at_the_visits_with_its_attrs() -> None:
    table = pd.DataFrame({C.TIME_D: [0.0, 30.0, 60.0], C.EJACULATE_CONCENTRATION: [0.0, 20.0, 40.0]})
    table.attrs["overrides"] = {"cv_within_concentration": 0.0, "dose_mg": 20.0, "examined_volume_fresh_uL": 1.0}
    table.attrs["oligozoospermia_limit_M_per_mL"] = 16.0
    settings = settings_for(table, None)
    assert settings.cv_within_concentration == 0 and settings.oligozoospermia_limit == 16
    assert settings_for(table, {"cv_within_concentration": 0.3}).cv_within_concentration == 0.3
    got = analyses(table, [0.0, 15.0], seed=1, man_id=3)
    assert got[0].category == "azoospermia"
    assert got[1].category == "oligozoospermia"  # 10 million/mL at day 15, 100,000 sperm counted
    assert abs(got[1].concentration_M_per_mL - 10.0) < 0.1
    with pytest.raises(InvalidValueError, match="day 90"):
        analyses(table, [90.0], seed=1, man_id=3)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: simulate_semen_analysis(-1.0, rng=np.random.default_rng(0)), "= -1.0"),
        (lambda: simulate_semen_analysis(math.nan, rng=np.random.default_rng(0)), "= nan"),
        (lambda: simulate_semen_analysis(1.0, rng=np.random.default_rng(0), volume_ml=0.0), "ejaculate_volume_mL = 0"),
        (lambda: _settings(cv_within_concentration=-0.1), "cv_within_concentration = -0.1"),
        (lambda: _settings(examined_volume_fresh_uL=0), "examined_volume_fresh_uL = 0"),
        (lambda: _settings(ejaculate_volume_mL=-2), "ejaculate_volume_mL = -2"),
        (lambda: _settings(motile_fraction_cv=1.5), "motile_fraction_cv = 1.5"),
        (lambda: _settings(cv_within_concentration=math.nan), "cv_within_concentration = nan"),
        (lambda: analyses([1.0, -2.0], [0, 30], seed=1, man_id=1), "= -2.0"),
        (lambda: analyses([1.0], [0, 30], seed=1, man_id=1), "one concentration per visit day"),
        (lambda: analyses([1.0], [math.nan], seed=1, man_id=1), "visit day = nan"),
        (lambda: analyses([1.0], [0], seed=-1, man_id=1), "seed = -1"),
        (lambda: analyses_table([[1.0, math.nan]], [0, 30], seed=1, man_ids=["x"]), "man 'x' on day 30 = nan"),
        (lambda: analyses_table([[1.0]], [0], seed=1, man_ids=["x", "x"]), "repeat"),
    ],
)
def test_bad_input_names_the_value(call, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidValueError, match=fragment.replace("(", r"\(")):
        call()


def test_an_incoherent_analysis_is_refused() -> None:
    with pytest.raises(InvalidValueError, match="pellet_count"):
        SemenAnalysis(1.0, 10_000, 3, 5, "oligozoospermia")
    with pytest.raises(InvalidValueError, match="use 'cryptozoospermia'"):
        SemenAnalysis(0.0, 0, 2, 1, "azoospermia")
    with pytest.raises(InvalidValueError, match="motile_seen = 5"):
        SemenAnalysis(0.0, 0, 2, 5, "cryptozoospermia")
    with pytest.raises(InvalidValueError, match="fresh_count = -1"):
        SemenAnalysis(0.0, -1, 0, 0, "azoospermia")
