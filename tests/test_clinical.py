"""Clinical readouts: the responder rule on hand-made visit tables, and the binomial intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ra_model.studies import clinical


def test_first_response_needs_consecutive_visits() -> None:
    assert clinical.first_response([False, True, False, True, True]) == 3
    assert clinical.first_response([True, False, True, False]) is None
    assert clinical.first_response([True, False], consecutive=1) == 0
    assert clinical.first_response([]) is None


def _visits(rows: list[list[float]], days: list[float], limit: float = 0.001) -> pd.DataFrame:
    data = {}
    for j, day in enumerate(days):
        data[f"semen.motile_d{day:g}"] = [r[j] for r in rows]
        data[f"semen.conc_d{day:g}"] = [2 * r[j] for r in rows]
    frame = pd.DataFrame(data)
    frame["semen.detection_limit_M_per_mL"] = limit
    # the semen category cut-offs (million/mL): sperm in the pellet from 0.001, in a fresh count from 0.1
    frame["semen.pellet_detection_limit_M_per_mL"] = 0.001
    frame["semen.fresh_detection_limit_M_per_mL"] = 0.1
    frame["semen.oligozoospermia_limit_M_per_mL"] = 15.0
    frame["status"] = "ok"
    frame["meta_histology"] = ["a", "a", "b", "b", "b"][: len(rows)]
    return frame


def test_classify_hand_made_table() -> None:
    days = [0, 30, 60, 90, 120]
    table = _visits(
        [
            [0, 0, 0.01, 0.02, 0.0],  # two in a row from day 60: responder at 60
            [0, 0.01, 0, 0.01, 0],  # never two in a row
            [0.5, 0.5, 0.5, 0.5, 0.5],  # sperm at baseline: not eligible
            [0, 0, 0, 0, 0.002],  # only the last visit
            [0, 0.002, 0.003, 0, 0],  # responder at 30
        ],
        days,
    )
    got = clinical.classify(table, clinical.ResponseRule())
    assert got["eligible"].tolist() == [True, True, False, True, True]
    assert got["responder"].tolist() == [True, False, False, False, True]
    assert got["time_to_response_d"].iloc[0] == 60 and got["time_to_response_d"].iloc[4] == 30
    assert math.isnan(got["time_to_response_d"].iloc[1])
    # a window that ends on day 60 loses the first man's response (needs day 90 as well)
    windowed = clinical.classify(table, clinical.ResponseRule(), window_d=(0, 60))
    assert windowed["responder"].tolist() == [False, False, False, False, True]
    # a failed simulation is never eligible
    table.loc[1, "status"] = "failed"
    assert not clinical.classify(table, clinical.ResponseRule())["eligible"].iloc[1]
    summary = clinical.response_summary(got, by="meta_histology")
    overall = summary.iloc[0]
    assert (overall["n"], overall["responders"]) == (4, 2)
    assert summary.set_index("group").loc["b", "n"] == 2
    curve = clinical.time_to_response_curve(got)
    assert curve.set_index("day")["fraction_responded"].to_dict() == {0: 0, 30: 0.25, 60: 0.5, 90: 0.5, 120: 0.5}


def test_wilson_interval_matches_closed_form() -> None:
    k, n, z = 11, 30, stats.norm.ppf(0.975)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    low, high = clinical.proportion_ci(k, n)
    assert (low, high) == pytest.approx((centre - half, centre + half), rel=1e-9)
    assert (low, high) == pytest.approx((0.2187, 0.5449), abs=5e-4)  # published Wilson 95% CI for 11/30


def test_clopper_pearson_matches_beta_quantiles() -> None:
    low, high = clinical.proportion_ci(6, 11, method="exact")
    assert low == pytest.approx(stats.beta.ppf(0.025, 6, 6), rel=1e-9)
    assert high == pytest.approx(stats.beta.ppf(0.975, 7, 5), rel=1e-9)
    assert clinical.proportion_ci(0, 10, method="exact")[0] == 0.0


def test_semen_analyses_reads_visits(engine) -> None:
    from ra_model.engines.simulate import simulate

    table = simulate("maturation_arrest", "20 mg bid for 120 d", t_end_d=120, output_step_d=10, engine=engine)
    got = clinical.semen_analyses(table, visit_days=[0, 60, 120])
    assert got["motile_d120"] == pytest.approx(float(table["motile_concentration_M_per_mL"].iloc[-1]))
    assert got["peak_concentration_M_per_mL"] >= got["conc_d120"]
    assert np.isfinite(got["detection_limit_M_per_mL"])
    with pytest.raises(Exception, match="outside the simulated"):
        clinical.semen_analyses(table, visit_days=[150])
