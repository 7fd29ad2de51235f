"""Semen categories: the cut-offs, the results-table column on every engine path, the trial's screen and responder rule.

Every expected category is worked out here from the measurement parameters in ``models/parameters.csv`` (read
with the csv module), never copied from the code's output: a detection limit is the concentration at which one
sperm is expected in what the laboratory examines (the model's assignment rules).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ra_model.engines.engine import Engine
from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.model import columns as C
from ra_model.model.semen import semen_category
from ra_model.studies import clinical

PARAMETERS = Path(__file__).resolve().parents[1] / "models" / "parameters.csv"


def _parameter(name: str) -> float:
    with PARAMETERS.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["id"] == name:
                return float(row["value"])
    raise AssertionError(f"{name} is not in {PARAMETERS}")


# one sperm in the examined fresh volume (uL: 1e3 sperm per million/mL), or in the searched pellet (mL: 1e6)
FRESH = 1 / (_parameter("examined_volume_fresh_uL") * 1e3)
PELLET = 1 / (_parameter("pellet_fraction_examined") * _parameter("ejaculate_volume_mL") * 1e6)
OLIGO = _parameter("oligozoospermia_limit")
MOTILE = PELLET
LIMITS = {"pellet": PELLET, "fresh": FRESH, "oligo": OLIGO}


def _expected(conc: float) -> str:
    """The category by the written rule: below the pellet limit none, below the fresh limit pellet only, ..."""
    if conc < PELLET:
        return "azoospermia"
    if conc < FRESH:
        return "cryptozoospermia"
    if conc < OLIGO:
        return "oligozoospermia"
    return "normal"


def test_the_limits_are_ordered_and_the_who_limit_is_15() -> None:
    assert 0 < PELLET < FRESH < OLIGO
    assert OLIGO == 15.0  # WHO 2010 lower reference limit, million/mL


@pytest.mark.parametrize(
    ("limit", "below", "at_and_above"),
    [
        (PELLET, "azoospermia", "cryptozoospermia"),
        (FRESH, "cryptozoospermia", "oligozoospermia"),
        (OLIGO, "oligozoospermia", "normal"),
    ],
    ids=["pellet", "fresh", "oligo"],
)
def test_category_at_and_around_each_cut_off(limit: float, below: str, at_and_above: str) -> None:
    conc = [limit * (1 - 1e-9), limit, limit * (1 + 1e-9)]
    assert semen_category(conc, **LIMITS).tolist() == [below, at_and_above, at_and_above]
    # a value exactly at a limit belongs to the higher category, whatever the other limits are
    assert semen_category(np.nextafter(limit, 0.0), **LIMITS).item() == below


def test_category_far_from_the_cut_offs_and_shapes() -> None:
    conc = np.array([[0.0, PELLET / 10, math.sqrt(PELLET * FRESH)], [math.sqrt(FRESH * OLIGO), 10 * OLIGO, 1e6]])
    got = semen_category(conc, **LIMITS)
    assert got.shape == conc.shape
    assert got.tolist() == [[_expected(c) for c in row] for row in conc]
    assert semen_category([math.nan], **LIMITS).tolist() == [None]
    # limits per row broadcast against one row of visits per man
    per_man = semen_category(
        [[FRESH, FRESH]], pellet=np.array([[PELLET]]), fresh=np.array([[FRESH * 2]]), oligo=np.array([[OLIGO]])
    )
    assert per_man.tolist() == [["cryptozoospermia", "cryptozoospermia"]]


@pytest.mark.parametrize(
    "limits",
    [
        {"pellet": FRESH, "fresh": PELLET, "oligo": OLIGO},
        {"pellet": PELLET, "fresh": 2 * OLIGO, "oligo": OLIGO},
        {"pellet": 0.0, "fresh": FRESH, "oligo": OLIGO},
        {"pellet": PELLET, "fresh": math.nan, "oligo": OLIGO},
        {"pellet": True, "fresh": FRESH, "oligo": OLIGO},
    ],
    ids=["pellet-above-fresh", "fresh-above-oligo", "zero", "nan", "bool"],
)
def test_bad_limits_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(InvalidValueError, match="limit"):
        semen_category([1.0], **limits)


# ------------------------------------------------------------------------------ the column on every path


def _check_column(table: pd.DataFrame, label: str) -> None:
    assert C.SEMEN_CATEGORY in table.columns
    assert table.attrs["units"][C.SEMEN_CATEGORY]
    conc = table[C.EJACULATE_CONCENTRATION].to_numpy(dtype=float)
    assert table[C.SEMEN_CATEGORY].tolist() == [_expected(c) for c in conc]
    assert set(table[C.SEMEN_CATEGORY]) == {label}
    assert table.attrs["pellet_detection_limit_M_per_mL"] == pytest.approx(PELLET, rel=1e-12)
    assert table.attrs["fresh_detection_limit_M_per_mL"] == pytest.approx(FRESH, rel=1e-12)
    assert table.attrs["motile_detection_limit_M_per_mL"] == pytest.approx(MOTILE, rel=1e-12)
    assert table.attrs["oligozoospermia_limit_M_per_mL"] == OLIGO


@pytest.mark.parametrize(("phenotype", "label"), [("healthy", "normal"), ("sertoli_cell_only_complete", "azoospermia")])
def test_whole_model_column(engine: Engine, phenotype: str, label: str) -> None:
    from ra_model.engines.simulate import simulate

    _check_column(simulate(phenotype, None, t_end_d=30, output_step_d=5, engine=engine), label)


@pytest.mark.parametrize(("phenotype", "label"), [("healthy", "normal"), ("sertoli_cell_only_complete", "azoospermia")])
def test_fast_and_split_path_columns(phenotype: str, label: str) -> None:
    from ra_model.engines.fastpath import simulate_fast
    from ra_model.engines.splitpath import simulate_split

    _check_column(simulate_fast(phenotype, None, t_end_d=30, output_step_d=5), label)
    _check_column(simulate_split(phenotype, None, t_end_d=30, output_step_d=5), label)


def test_an_overridden_limit_moves_the_category(engine: Engine) -> None:
    from ra_model.engines.simulate import simulate

    table = simulate("healthy", None, t_end_d=10, output_step_d=5, engine=engine)
    above = float(table[C.EJACULATE_CONCENTRATION].max()) * 2  # a WHO limit above every concentration of the run
    moved = simulate(
        "healthy", None, t_end_d=10, output_step_d=5, engine=engine, overrides={"oligozoospermia_limit": above}
    )
    assert set(moved[C.SEMEN_CATEGORY]) == {"oligozoospermia"}
    assert moved.attrs["oligozoospermia_limit_M_per_mL"] == above
    # the detection limits follow the measurement: ten times the examined volume, a tenth of the fresh limit
    wider = simulate("healthy", None, t_end_d=10, engine=engine, overrides={"examined_volume_fresh_uL": 0.1})
    assert wider.attrs["fresh_detection_limit_M_per_mL"] == pytest.approx(1 / (0.1 * 1e3), rel=1e-12)
    # ... and cannot be set themselves (they are derived) ...
    with pytest.raises(UnknownNameError, match="pellet_detection_limit"):
        simulate("healthy", None, t_end_d=10, engine=engine, overrides={"pellet_detection_limit": FRESH * 2})
    # ... nor put out of order: a fresh count examining more than the searched pellet holds
    with pytest.raises(InvalidValueError, match="out of order"):
        simulate("healthy", None, t_end_d=10, engine=engine, overrides={"examined_volume_fresh_uL": 5000.0})


def test_semen_analyses_record_the_limits(engine: Engine) -> None:
    from ra_model.engines.simulate import simulate

    table = simulate("healthy", None, t_end_d=30, output_step_d=10, engine=engine)
    got = clinical.semen_analyses(table, visit_days=[0, 30])
    assert got["pellet_detection_limit_M_per_mL"] == pytest.approx(PELLET, rel=1e-12)
    assert got["fresh_detection_limit_M_per_mL"] == pytest.approx(FRESH, rel=1e-12)
    assert got["oligozoospermia_limit_M_per_mL"] == OLIGO


# ------------------------------------------------------------------------------ the trial's screen and rule

DAYS = [0, 30, 60, 90, 120]
#: Concentrations inside each category, half-way (on a log scale) between its limits.
CRYPTO = math.sqrt(PELLET * FRESH)
OLIGOZOO = math.sqrt(FRESH * OLIGO)


def _results(men: list[tuple[list[float], list[float]]]) -> pd.DataFrame:
    """A sweep-like table: per man (motile, concentration) at each visit, and the model's limits."""
    data: dict[str, list[float]] = {}
    for j, day in enumerate(DAYS):
        data[f"semen.motile_d{day:g}"] = [motile[j] for motile, _ in men]
        data[f"semen.conc_d{day:g}"] = [conc[j] for _, conc in men]
    frame = pd.DataFrame(data)
    frame["semen.detection_limit_M_per_mL"] = MOTILE
    frame["semen.pellet_detection_limit_M_per_mL"] = PELLET
    frame["semen.fresh_detection_limit_M_per_mL"] = FRESH
    frame["semen.oligozoospermia_limit_M_per_mL"] = OLIGO
    frame["status"] = "ok"
    return frame


def test_limits_of_the_synthetic_men_are_where_the_tests_need_them() -> None:
    assert PELLET <= CRYPTO < FRESH <= OLIGOZOO < OLIGO
    assert MOTILE <= CRYPTO / 2  # half the sperm motile is still motile sperm present
    assert MOTILE <= PELLET  # an azoospermic man's first motile sperm are in the pellet


def test_a_cryptozoospermic_man_is_enrolled_and_responds_only_when_his_category_improves_twice() -> None:
    m, fresh_m = CRYPTO / 2, OLIGOZOO / 2  # motile sperm present either way, in the pellet or in a fresh count
    men = [
        # sperm only in the pellet throughout: motile sperm present on every visit, no response
        ([m] * 5, [CRYPTO] * 5),
        # sperm in a fresh count on day 60 only: no response
        ([m, m, fresh_m, m, m], [CRYPTO, CRYPTO, OLIGOZOO, CRYPTO, CRYPTO]),
        # sperm in a fresh count on days 90 and 120: responds, from day 90
        ([m, m, m, fresh_m, fresh_m], [CRYPTO, CRYPTO, CRYPTO, OLIGOZOO, OLIGOZOO]),
        # alternating: better on days 30 and 90 only, never two in a row
        ([m, fresh_m, m, fresh_m, m], [CRYPTO, OLIGOZOO, CRYPTO, OLIGOZOO, CRYPTO]),
        # sperm in a fresh count at baseline (oligozoospermia): not enrolled
        ([fresh_m] * 5, [OLIGOZOO] * 5),
    ]
    got = clinical.classify(_results(men), clinical.ResponseRule(consecutive=2, screen=True))
    baseline = [_expected(conc[0]) for _, conc in men]
    assert got["baseline_semen_category"].tolist() == baseline
    assert baseline[:4] == ["cryptozoospermia"] * 4 and baseline[4] == "oligozoospermia"
    assert got["eligible"].tolist() == [True, True, True, True, False]
    assert got["responder"].tolist() == [False, False, True, False, False]
    assert got["time_to_response_d"].iloc[2] == 90
    summary = clinical.response_summary(got).iloc[0]
    assert (summary["n"], summary["eligible_cryptozoospermic"], summary["responders"]) == (4, 4, 1)
    # without the screen the oligozoospermic man is enrolled, but a man who does not improve never responds
    unscreened = clinical.classify(_results(men), clinical.ResponseRule(screen=False))
    assert unscreened["eligible"].all()
    assert unscreened["responder"].tolist() == [False, False, True, False, False]


def test_an_azoospermic_man_with_pellet_motile_sperm_on_two_visits_responds() -> None:
    pellet_conc = PELLET * 2  # sperm in the pellet only: cryptozoospermia, better than azoospermia
    assert _expected(pellet_conc) == "cryptozoospermia"
    motile = max(MOTILE, pellet_conc / 2)
    men = [
        ([0, 0, motile, motile, 0], [0, 0, pellet_conc, pellet_conc, 0]),  # two in a row from day 60
        ([0, motile, 0, motile, 0], [0, pellet_conc, 0, pellet_conc, 0]),  # never two in a row
        ([0, 0, MOTILE / 2, MOTILE / 2, 0], [0, 0, pellet_conc, pellet_conc, 0]),  # sperm, but too few motile
    ]
    got = clinical.classify(_results(men), clinical.ResponseRule(consecutive=2))
    assert got["baseline_semen_category"].tolist() == ["azoospermia"] * 3
    assert got["eligible"].tolist() == [True, True, True]
    assert got["responder"].tolist() == [True, False, False]
    assert got["time_to_response_d"].iloc[0] == 60
    summary = clinical.response_summary(got).iloc[0]
    assert (summary["n"], summary["eligible_cryptozoospermic"], summary["responders"]) == (3, 0, 1)


def test_a_failed_man_is_not_eligible_and_old_results_are_refused() -> None:
    men = [([0] * 5, [0] * 5), ([0] * 5, [0] * 5)]
    frame = _results(men)
    frame.loc[1, "status"] = "failed"
    for column in frame.columns:
        if column.startswith("semen."):
            frame.loc[1, column] = math.nan
    got = clinical.classify(frame, clinical.ResponseRule())
    assert got["eligible"].tolist() == [True, False]
    assert got["baseline_semen_category"].iloc[1] is None or pd.isna(got["baseline_semen_category"].iloc[1])
    with pytest.raises(InvalidValueError, match="fresh_detection_limit"):
        clinical.classify(frame.drop(columns="semen.fresh_detection_limit_M_per_mL"), clinical.ResponseRule())
