"""Sperm retrieval readouts: the per-man metric against the model's formula, the cohort summary, the cohort's table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ra_model.cli import main
from ra_model.engines.simulate import simulate
from ra_model.errors import InvalidValueError
from ra_model.model import columns as C
from ra_model.model.source import model_dir
from ra_model.studies import clinical, retrieval
from ra_model.studies.experiments import experiments_dir, load_experiment, run_experiment
from ra_model.studies.population import HISTOLOGY

EXPERIMENTS = experiments_dir()
#: Readout keys of the per-man metric without visits.
KEYS = (
    retrieval.MICRO_TESE_BASELINE,
    retrieval.MICRO_TESE_END,
    retrieval.CONVENTIONAL_TESE_BASELINE,
    retrieval.CONVENTIONAL_TESE_END,
)
#: Probability columns of the summary (0-1 where defined).
MEANS = (*KEYS,)
#: Expected-count columns of the summary (0 to n).
EXPECTED = (
    retrieval.EXPECTED_FOUND_MICRO_TESE_BASELINE,
    retrieval.EXPECTED_FOUND_MICRO_TESE_END,
    retrieval.EXPECTED_FOUND_CONVENTIONAL_TESE_BASELINE,
    retrieval.EXPECTED_FOUND_CONVENTIONAL_TESE_END,
)


def _parameter(name: str) -> float:
    """Return a parameter's value as models/parameters.csv gives it (read here, not through the package)."""
    table = pd.read_csv(model_dir() / "parameters.csv").set_index("id")
    return float(table.loc[name, "value"])


# --------------------------------------------------------------------------- the per-man metric
def test_no_germ_cells_means_no_sperm_to_retrieve() -> None:
    table = simulate("sertoli_cell_only_complete", "20 mg bid for 30 d", t_end_d=40)
    got = retrieval.retrieval_readouts(table, visit_days=(0.0, 30.0))
    assert set(got) == {*KEYS, retrieval.MICRO_TESE_LAST_VISIT, retrieval.CONVENTIONAL_TESE_LAST_VISIT}
    assert all(value == 0.0 for value in got.values()), got


@pytest.mark.parametrize("focus_share", [None, 0.05])
def test_healthy_man_matches_the_sampling_formula(focus_share: float | None) -> None:
    """A healthy focus holds ``sample_spermatids`` mature spermatids per sample, so a germ-cell sample shows sperm
    with probability 1 - exp(-sample_spermatids); micro-TESE picks germ-cell tubules with odds micro_tese_selection."""
    overrides = {} if focus_share is None else {"focus_share": focus_share}
    table = simulate("healthy", None, t_end_d=20, overrides=overrides)
    got = retrieval.retrieval_readouts(table)
    f = _parameter("focus_share") if focus_share is None else focus_share
    selection = _parameter("micro_tese_selection")
    show = 1 - math.exp(-_parameter("sample_spermatids"))
    p_micro = selection * f / (1 - f + selection * f) * show
    micro = 1 - (1 - p_micro) ** _parameter("micro_tese_samples")
    conventional = 1 - (1 - f * show) ** _parameter("tese_samples")
    assert got[retrieval.MICRO_TESE_BASELINE] == pytest.approx(micro, rel=1e-9)
    assert got[retrieval.MICRO_TESE_END] == pytest.approx(micro, rel=1e-9)
    assert got[retrieval.CONVENTIONAL_TESE_BASELINE] == pytest.approx(conventional, rel=1e-9)
    assert got[retrieval.CONVENTIONAL_TESE_END] == pytest.approx(conventional, rel=1e-9)


def test_readouts_take_baseline_end_and_last_visit_from_the_table() -> None:
    t = np.arange(0.0, 11.0)
    table = pd.DataFrame({C.TIME_D: t, C.RETRIEVAL_MICRO_TESE: t / 10, C.RETRIEVAL_CONVENTIONAL_TESE: t / 20})
    got = retrieval.retrieval_readouts(table, visit_days=[0, 4.5])
    assert got == pytest.approx(
        {
            retrieval.MICRO_TESE_BASELINE: 0.0,
            retrieval.MICRO_TESE_END: 1.0,
            retrieval.MICRO_TESE_LAST_VISIT: 0.45,
            retrieval.CONVENTIONAL_TESE_BASELINE: 0.0,
            retrieval.CONVENTIONAL_TESE_END: 0.5,
            retrieval.CONVENTIONAL_TESE_LAST_VISIT: 0.225,
        }
    )
    with pytest.raises(InvalidValueError, match="day 12 is outside"):
        retrieval.retrieval_readouts(table, visit_days=[0, 12])
    with pytest.raises(InvalidValueError, match=C.RETRIEVAL_MICRO_TESE):
        retrieval.retrieval_readouts(table.drop(columns=[C.RETRIEVAL_MICRO_TESE]))
    with pytest.raises(InvalidValueError, match="not day 0"):
        retrieval.retrieval_readouts(table.iloc[1:])


# --------------------------------------------------------------------------- the summary
def test_summary_groups_eligible_men_by_histology_and_response() -> None:
    men = pd.DataFrame(
        {
            HISTOLOGY: ["a", "a", "a", "b", "b", "c"],
            clinical.ELIGIBLE: [True, True, True, True, False, False],
            clinical.RESPONDER: [True, False, False, False, False, False],
            retrieval.column(retrieval.MICRO_TESE_BASELINE): [0.5, 0.2, 0.4, 0.1, 0.9, 0.9],
            retrieval.column(retrieval.MICRO_TESE_END): [0.9, 0.3, 0.5, 0.1, 0.9, 0.9],
            retrieval.column(retrieval.CONVENTIONAL_TESE_BASELINE): [0.1, 0.0, 0.2, 0.0, 0.5, 0.5],
            retrieval.column(retrieval.CONVENTIONAL_TESE_END): [0.3, 0.1, 0.1, 0.0, 0.5, 0.5],
        }
    )
    table = retrieval.retrieval_summary(men, by=HISTOLOGY)
    assert list(table.columns) == list(retrieval.SUMMARY_COLUMNS)
    keys = list(zip(table[retrieval.HISTOLOGY], table[retrieval.GROUP], table[retrieval.N_MEN], strict=True))
    r, nr = retrieval.RESPONDERS, retrieval.NON_RESPONDERS
    assert keys == [("overall", r, 1), ("overall", nr, 3), ("a", r, 1), ("a", nr, 2), ("b", r, 0), ("b", nr, 1),
                    ("c", r, 0), ("c", nr, 0)]  # fmt: skip
    row = table.set_index([retrieval.HISTOLOGY, retrieval.GROUP]).loc[("a", nr)]
    assert row[retrieval.MICRO_TESE_BASELINE] == pytest.approx(0.3)
    assert row[retrieval.MICRO_TESE_END] == pytest.approx(0.4)
    assert row[retrieval.MICRO_TESE_CHANGE] == pytest.approx(0.1)
    assert row[retrieval.CONVENTIONAL_TESE_END] == pytest.approx(0.1)
    assert row[retrieval.EXPECTED_FOUND_MICRO_TESE_END] == pytest.approx(0.8)
    assert row[retrieval.EXPECTED_FOUND_CONVENTIONAL_TESE_BASELINE] == pytest.approx(0.2)
    overall = table.set_index([retrieval.HISTOLOGY, retrieval.GROUP]).loc[("overall", nr)]
    assert overall[retrieval.EXPECTED_FOUND_MICRO_TESE_BASELINE] == pytest.approx(0.7)  # the ineligible b, c left out
    empty = table.set_index([retrieval.HISTOLOGY, retrieval.GROUP]).loc[("c", nr)]
    assert np.isnan(empty[retrieval.MICRO_TESE_END]) and empty[retrieval.EXPECTED_FOUND_MICRO_TESE_END] == 0.0
    with pytest.raises(InvalidValueError, match="'responder'"):
        retrieval.retrieval_summary(men.drop(columns=[clinical.RESPONDER]), by=HISTOLOGY)


# --------------------------------------------------------------------------- the cohort
def _check_table(table: pd.DataFrame, enrolled: pd.DataFrame) -> None:
    """The retrieval table's columns, ranges, and its means recomputed from the men's own readouts."""
    assert list(table.columns) == ["cohort", *retrieval.SUMMARY_COLUMNS]
    for name in MEANS:
        values = table[name].dropna()
        assert ((values >= 0) & (values <= 1)).all(), name
    for name in EXPECTED:
        assert ((table[name] >= 0) & (table[name] <= table[retrieval.N_MEN] + 1e-12)).all(), name
    for key in KEYS:
        column = enrolled[retrieval.column(key)]
        assert ((column >= 0) & (column <= 1)).all(), key
    responded = enrolled[clinical.RESPONDER].astype(bool)
    for group, men in ((retrieval.RESPONDERS, enrolled[responded]), (retrieval.NON_RESPONDERS, enrolled[~responded])):
        row = table[(table[retrieval.HISTOLOGY] == "overall") & (table[retrieval.GROUP] == group)].iloc[0]
        assert row[retrieval.N_MEN] == len(men)
        expected = men[retrieval.column(retrieval.MICRO_TESE_END)].sum()
        assert row[retrieval.EXPECTED_FOUND_MICRO_TESE_END] == pytest.approx(expected)


def test_tiny_cohort_with_two_classes_writes_the_retrieval_table(tmp_path: Path, capsys) -> None:
    text = (EXPERIMENTS / "pre_micro_tese.toml").read_text(encoding="utf-8")
    assert "\nclasses = 8" in text
    path = tmp_path / "tiny.toml"
    path.write_text(text.replace("\nclasses = 8", "\nclasses = 2"), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--reduced", "--workers", "1", "--no-progress"]) == 0
    assert "sperm retrieval" in capsys.readouterr().out
    table = pd.read_csv(out / "retrieval.csv")
    results = pd.read_csv(out / "results.csv")
    _check_table(table, results[results["enrolled_virtual"]])
    assert json.loads((out / "inputs.json").read_text(encoding="utf-8"))["n_classes"] == 2
    provenance = json.loads((out / "sweep" / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["run_settings"]["n_classes"] == 2
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert len(summary["retrieval"]) == len(table)
    assert not any(c.startswith(f"{retrieval.METRIC}.") for c in pd.read_csv(out / "failures.csv").columns)


def test_pre_micro_tese_reduced_compares_non_responders_per_histology() -> None:
    exp = load_experiment(EXPERIMENTS / "pre_micro_tese.toml", reduced=True)
    assert exp.kind == "cohort" and exp.n_classes == 8 and exp.regimen == "20 mg bid for 180 d"
    assert set(exp.histology_mix) == {"maturation_arrest", "hypospermatogenesis", "sertoli_cell_only"}
    result = run_experiment(exp, workers=1, progress=False)
    table = result.tables["retrieval"]
    _check_table(table, result.results[result.results["enrolled_virtual"]])
    non = table[table[retrieval.GROUP] == retrieval.NON_RESPONDERS]
    assert set(non[retrieval.HISTOLOGY]) == {"overall", *exp.histology_mix}
    scheduled = result.results[result.results["enrolled_virtual"]]
    assert (scheduled[retrieval.column(retrieval.MICRO_TESE_LAST_VISIT)] >= 0).all()
