"""Experiment files: schema errors, every shipped experiment at reduced size checked independently, CLI, calibration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ra_model.cli import main
from ra_model.errors import InvalidValueError, RAModelError, UnknownNameError
from ra_model.studies import clinical
from ra_model.studies.experiments import experiments_dir, list_experiments, load_experiment, run_experiment

EXPERIMENTS = experiments_dir()


def _run(name: str) -> object:
    return run_experiment(load_experiment(EXPERIMENTS / f"{name}.toml", reduced=True), workers=1, progress=False)


# --------------------------------------------------------------------------- schema
SIMPLE = """description = "What if CYP26 were twice as active?"
phenotype = "maturation_arrest"
regimens = ["20 mg bid for 180 d"]   # one run per entry; "none" = untreated
t_end_d = 365.0
output_step_d = 1.0
[overrides]                          # optional; parameter id = value
cyp26_expr = 10.0
"""


def test_contract_single_form_loads_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "what_if.toml"
    path.write_text(SIMPLE, encoding="utf-8")
    exp = load_experiment(path)
    assert (exp.id, exp.kind, exp.phenotype, dict(exp.overrides)) == (
        "what_if",
        "single",
        "maturation_arrest",
        {"cyp26_expr": 10.0},
    )
    assert [str(r.regimen) for r in exp.runs] == ["20 mg bid for 180 d"]


@pytest.mark.parametrize(
    ("edit", "error", "words"),
    [
        (lambda s: "colour = 'red'\n" + s, InvalidValueError, ["unknown key 'colour'"]),
        (lambda s: s.replace("t_end_d", "t_end"), InvalidValueError, ["unknown key 't_end'", "t_end_d"]),
        (
            lambda s: s.replace('"maturation_arrest"', '"maturation_arest"'),
            UnknownNameError,
            ["phenotype", "maturation_arrest"],
        ),
        (lambda s: s.replace("cyp26_expr =", "cyp26_exp ="), UnknownNameError, ["overrides.cyp26_exp", "cyp26_expr"]),
        (
            lambda s: s.replace("20 mg bid for 180 d", "20 mg twice for 180 d"),
            InvalidValueError,
            ["regimens[0]", "cannot be parsed"],
        ),
    ],
)
def test_bad_files_name_file_key_and_fix(tmp_path: Path, edit, error, words) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(edit(SIMPLE), encoding="utf-8")
    with pytest.raises(error) as info:
        load_experiment(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_histology_mix_must_sum_to_one(tmp_path: Path) -> None:
    text = (EXPERIMENTS / "jessup2025.toml").read_text(encoding="utf-8")
    path = tmp_path / "mix.toml"
    path.write_text(text.replace("sertoli_cell_only = 0.2", "sertoli_cell_only = 0.3"), encoding="utf-8")
    with pytest.raises(InvalidValueError) as info:
        load_experiment(path)
    assert (
        str(path) in str(info.value)
        and "population.histology_mix" in str(info.value)
        and "add up to 1" in str(info.value)
    )


def test_every_shipped_experiment_loads_and_has_a_description() -> None:
    experiments = list_experiments()
    ids = {e.id for e in experiments}
    assert {"jessup2025", "dose_duration", "case_report_10mg", "vad_rescue", "aldh1a_inhibition", "adherence"} <= ids
    assert all(e.description for e in experiments)


# --------------------------------------------------------------------------- experiments at reduced size
def test_jessup2025_reduced() -> None:
    result = _run("jessup2025")
    summary = result.summary.set_index(["cohort", "group"])
    exp = result.experiment
    for cohort, size in exp.cohorts.items():
        overall = summary.loc[(cohort, "overall")]
        assert overall["n"] <= size
        assert overall["ci_low"] <= overall["rate"] <= overall["ci_high"]
    # Sertoli-cell-only men have no germ cells: none can respond (brief 1), whatever the drug does
    assert summary.loc[("virtual", "sertoli_cell_only"), "responders"] == 0
    # the smaller cohort is the first men of the larger one
    assert (result.results["enrolled_trial"] <= result.results["enrolled_virtual"]).all()
    comparison = result.tables["comparison"]
    assert set(comparison["group"]) == {"overall", "maturation_arrest"}
    row = comparison[comparison["group"] == "overall"].iloc[0]
    assert (row["published_ci_low"], row["published_ci_high"]) == pytest.approx((0.2187, 0.5449), abs=5e-4)


def test_dose_duration_reduced_is_monotone_in_dose() -> None:
    result = _run("dose_duration")
    s = result.summary
    assert len(s) == 2 * 2 * 2
    daily = {"10 mg od": 10, "20 mg bid": 40}
    for (h, duration), cells in s.groupby(["histology", "duration_d"]):
        by_dose = cells.assign(mg=cells["dose"].map(daily)).sort_values("mg")
        responders = by_dose["responders"].to_numpy()
        assert (np.diff(responders) >= 0).all(), (h, duration, by_dose)
    # the same men in every cell: eligibility does not depend on the arm
    assert s.groupby("histology")["n"].nunique().max() == 1


def test_case_report_10mg_reduced() -> None:
    from ra_model.model.source import read_parameter_table

    result = _run("case_report_10mg")
    s = result.summary.set_index("run")
    treated, untreated = s.loc["10 mg od for 180 d"], s.loc["no drug"]
    assert np.isnan(untreated["first_motile_d"]) and not untreated["responder"]
    # the drug reaches the arrested germ line: daily sperm production rises many-fold over untreated
    production = result.results.groupby("run")["daily_sperm_production_M_per_d"].max()
    assert production["10 mg od for 180 d"] > 10 * production["no drug"]
    # but sperm reach the ejaculate only above the saturable duct loss (Vmax_duct_loss, Mcell/h; Silber 2000):
    # the man responds exactly when his production passes it. In the median mosaic man of the issue-15
    # maturation_arrest preset 10 mg od stays below it (the case report's man responded; see the report)
    threshold_per_d = read_parameter_table()["Vmax_duct_loss"].value * 24
    assert bool(treated["responder"]) == (production["10 mg od for 180 d"] > threshold_per_d)
    if treated["responder"]:
        # sperm need most of a spermatogenic cycle plus transit to reach the ejaculate (brief 1, 5)
        assert 30 <= treated["first_motile_d"] <= 120
    else:
        assert np.isnan(treated["first_motile_d"])


def test_vad_rescue_reduced() -> None:
    result = _run("vad_rescue")
    table = result.results
    before = table[table["time_d"] < 30]
    assert before["ejaculate_concentration_M_per_mL"].max() < 1e-3
    assert before["amount_RS6"].max() < 1e-3 * table["amount_RS6"].max()
    s = result.summary.iloc[0]
    assert s["first_motile_d"] > 30 + 30  # the restarted wave needs spermatogenesis time after repletion

    # stages fill in order: spermatocytes before round spermatids before the epididymis
    def first_above(col: str, frac: float = 0.1) -> float:
        v = table[col].to_numpy()
        return float(table["time_d"].to_numpy()[np.argmax(v >= frac * v.max())])

    assert first_above("amount_SC6") < first_above("amount_RS6") < first_above("amount_CAUDA")


def test_aldh1a_inhibition_reduced_suppresses_then_recovers() -> None:
    result = _run("aldh1a_inhibition")
    t = result.results
    base = float(t["ejaculate_concentration_M_per_mL"].iloc[0])
    during = t[(t["time_d"] > 120) & (t["time_d"] <= 181)]["ejaculate_concentration_M_per_mL"]
    end = float(t["ejaculate_concentration_M_per_mL"].iloc[-1])
    assert during.max() < 0.05 * base
    assert end == pytest.approx(base, rel=0.1)


def test_adherence_reduced_counts_doses_and_drug() -> None:
    s = _run("adherence").summary.set_index("run")
    full, stopped, missed, none = (
        s.loc[k] for k in ("full course (6 months)", "stopped at 2 months", "misses 1 dose in 4", "no drug")
    )
    assert (full["doses_given"], stopped["doses_given"]) == (360, 120)
    # a missed dose still fires the event (dose 0 mg); the drug actually given is 3/4 of the full course.
    # Mass balance: 120 d after the last dose nearly all absorbed drug has reached the elimination
    # ledger, so the drug-derived part of the ledger scales with the doses taken.
    excess = lambda r: r["eliminated_retinoid_nmol"] - none["eliminated_retinoid_nmol"]  # noqa: E731
    assert excess(missed) / excess(full) == pytest.approx(0.75, rel=0.01)
    assert excess(stopped) / excess(full) == pytest.approx(1 / 3, rel=0.01)
    assert stopped["last_motile_d"] < full["last_motile_d"]


def test_sensitivity_files_dispatch(tmp_path: Path, monkeypatch) -> None:
    path = EXPERIMENTS / "ma_response_sensitivity.toml"
    if not path.exists():
        pytest.skip("experiments/ma_response_sensitivity.toml not written yet (issue 4)")
    exp = load_experiment(path, reduced=True)
    assert exp.kind == "sensitivity"
    import ra_model.studies.sensitivity as sensitivity

    calls = []

    def fake(p, **kw):
        calls.append((p, kw))
        return pd.DataFrame({"parameter": ["cyp26_expr"], "rank": [1]})

    monkeypatch.setattr(sensitivity, "run_sensitivity_file", fake)
    result = run_experiment(exp, work_dir=tmp_path, workers=1, progress=False)
    assert calls[0][0] == path and calls[0][1]["reduced"] is True
    assert result.summary["parameter"].tolist() == ["cyp26_expr"]


# --------------------------------------------------------------------------- CLI
def test_cli_run_writes_results_summary_figures_inputs(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(EXPERIMENTS / "case_report_10mg.toml"),
            "--out",
            str(out),
            "--reduced",
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    for name in (
        "results.csv",
        "summary.csv",
        "summary.json",
        "inputs.json",
        "timecourse.png",
        "case_report_10mg.toml",
    ):
        assert (out / name).exists(), name
    inputs = json.loads((out / "inputs.json").read_text(encoding="utf-8"))
    assert inputs["model_hash"] and inputs["package_version"] and "cyp26_expr" in inputs["parameters"]
    assert inputs["scenario_text"] == (EXPERIMENTS / "case_report_10mg.toml").read_text(encoding="utf-8")
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["run"]) == {"10 mg od for 180 d", "no drug"}
    assert main(["experiments"]) == 0
    assert "jessup2025" in capsys.readouterr().out


def test_cli_bad_file_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(SIMPLE + "colour = 1\n", encoding="utf-8")
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2


# --------------------------------------------------------------------------- errors
def test_errors_are_ra_model_errors() -> None:
    assert issubclass(InvalidValueError, RAModelError)
    assert clinical.ResponseRule().consecutive == 2


def test_compare_published_keeps_a_count_with_no_simulated_men() -> None:
    """A published group no man of a cohort belongs to still gets its row (sim_n 0), never silently dropped."""
    from ra_model.studies.experiments import Published, compare_published

    summary = pd.DataFrame(
        {
            "cohort": ["trial", "trial", "virtual"],
            "group": ["overall", "maturation_arrest", "overall"],
            "n": [3, 3, 10],
            "responders": [1, 1, 4],
            "rate": [1 / 3, 1 / 3, 0.4],
            "ci_low": [0.06, 0.06, 0.17],
            "ci_high": [0.79, 0.79, 0.69],
        }
    )
    published = [
        Published(group="maturation_arrest", responders=6, n=11, source="s"),
        Published(group="overall", responders=11, n=30, source="s", cohort="virtual"),
    ]
    table = compare_published(summary, published)
    assert list(zip(table["cohort"], table["group"], table["sim_n"], strict=True)) == [
        ("trial", "maturation_arrest", 3),
        ("virtual", "maturation_arrest", 0),
        ("virtual", "overall", 10),
    ]
    missing = table.iloc[1]
    assert np.isnan(missing["sim_rate"]) and not missing["published_in_sim_ci"]


def test_a_changed_experiment_into_the_same_out_is_refused_until_fresh(tmp_path: Path, capsys) -> None:
    """Issue 14's repro: the regimen edited to one 1 mg dose must not return the 20 mg bid responders."""
    original = tmp_path / "jessup.toml"
    shutil.copy(EXPERIMENTS / "jessup2025.toml", original)
    changed = tmp_path / "jessup_1mg.toml"
    text = original.read_text(encoding="utf-8")
    text = text.replace('regimen = "20 mg bid for 180 d"', 'regimen = "1 mg od x 1 doses"')
    changed.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    common = ["--out", str(out), "--reduced", "--workers", "1", "--no-progress"]
    assert main(["run", str(original), *common]) == 0
    first = pd.read_csv(out / "summary.csv")
    capsys.readouterr()
    assert main(["run", str(changed), *common]) == 2
    err = capsys.readouterr().err
    assert "--fresh" in err and "Traceback" not in err
    assert main(["run", str(changed), *common, "--fresh"]) == 0
    again = pd.read_csv(out / "summary.csv")
    alone = tmp_path / "alone"
    assert main(["run", str(changed), "--out", str(alone), "--reduced", "--workers", "1", "--no-progress"]) == 0
    pd.testing.assert_frame_equal(again, pd.read_csv(alone / "summary.csv"))
    assert first["responders"].sum() > 0 and again["responders"].sum() == 0  # one 1 mg dose restarts nobody
    assert list(out.glob("sweep/replaced-*"))  # the old results were set aside, not deleted
