"""Parameter uncertainty of a cohort: posterior draws rerun the cohort, the band sits beside the sampling interval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ra_model.cli import main
from ra_model.errors import InvalidValueError
from ra_model.studies import abc_population as A
from ra_model.studies import uncertainty as U
from ra_model.studies.experiments import experiments_dir, load_experiment, run_experiment
from ra_model.studies.population import load_population

MEDIAN = "focus_share.median.hypospermatogenesis"
SPREAD = "testis_penetration.log_sd"

#: A cohort small enough for a test: hypospermatogenesis and maturation arrest, 3 men, 60 days, one focus class.
COHORT = """
description = "a tiny cohort for the uncertainty tests"
kind = "cohort"
regimen = "20 mg bid for 60 d"
t_end_d = 60.0
seed = 3
max_screen_factor = 3.0

[population]
histology_mix = { hypospermatogenesis = 0.5, maturation_arrest = 0.5 }

[cohorts]
small = 4

[sampling]
every_d = 30
last_d = 60

[response]
consecutive = 1
screen = true
"""


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(COHORT, encoding="utf-8")
    return path


@pytest.fixture
def posterior(tmp_path: Path) -> Path:
    """Two particles far apart: a histology median five times the preset's, and the preset's with a wide spread."""
    path = tmp_path / "posterior.csv"
    rows = [{MEDIAN: 0.1, SPREAD: 0.2, A.WEIGHT: 0.5}, {MEDIAN: 0.02, SPREAD: 1.4, A.WEIGHT: 0.5}]
    A.write_posterior(pd.DataFrame(rows), path, header=["test posterior"])
    return path


def test_draws_rerun_the_cohort_with_their_values_and_a_killed_run_resumes(cohort: Path, posterior: Path) -> None:
    exp = load_experiment(cohort)
    out = cohort.parent / "out"
    point = run_experiment(exp, work_dir=out / "sweep", workers=1, progress=False)
    post = A.read_posterior(posterior)
    found = U.run_uncertainty(exp, point, n_draws=2, posterior=post, out_dir=out / U.DRAWS_DIR, seed=5, workers=1)
    table = found.table
    assert list(table.columns) == list(U.COLUMNS) and table.attrs["units"][U.BAND_LOW] == "fraction"
    assert found.reused == 0 and (table[U.DRAWS] == 2).all()
    # the point estimate's columns are the cohort summary's, unchanged
    summary = point.summary.set_index(["cohort", "group"])
    for _, row in table.iterrows():
        assert row[U.RATE] == summary.loc[(row[U.COHORT], row[U.GROUP]), "rate"]
        assert row[U.CI_LOW] <= row[U.RATE] <= row[U.CI_HIGH]
        assert row[U.BAND_LOW] <= row[U.BAND_MEDIAN] <= row[U.BAND_HIGH]
    # each draw's band ends are the percentiles of the draws' own rates
    draws = found.draws
    for (cohort_name, group), rates in draws.groupby(["cohort", "group"])["rate"]:
        row = table[(table[U.COHORT] == cohort_name) & (table[U.GROUP] == group)].iloc[0]
        assert row[U.BAND_HIGH] == pytest.approx(np.percentile(rates.dropna(), 97.5))
    # each draw ran with its own values: its population file holds them, its men were drawn from it
    expected = post.draw(2, seed=5)
    for i, values in enumerate(expected):
        folder = out / U.DRAWS_DIR / f"draw-{i:03d}"
        record = json.loads((folder / U.DRAW_RECORD).read_text(encoding="utf-8"))
        assert record["values"] == pytest.approx(values)
        population = load_population(folder / U.DRAW_POPULATION)
        assert population.value(MEDIAN) == pytest.approx(values[MEDIAN])
        assert population.value(SPREAD) == pytest.approx(values[SPREAD])
    assert set(draws[MEDIAN]) == {v[MEDIAN] for v in expected}
    # rerun: every finished draw is read back
    again = U.run_uncertainty(exp, point, n_draws=2, posterior=post, out_dir=out / U.DRAWS_DIR, seed=5, workers=1)
    assert again.reused == 2
    pd.testing.assert_frame_equal(again.table, table)
    # a draw killed before it finished (no record yet) is run again, resuming its sweep; the other is read back
    (out / U.DRAWS_DIR / "draw-001" / U.DRAW_RECORD).unlink()
    resumed = U.run_uncertainty(exp, point, n_draws=2, posterior=post, out_dir=out / U.DRAWS_DIR, seed=5, workers=1)
    assert resumed.reused == 1
    pd.testing.assert_frame_equal(resumed.table, table)


def test_the_band_is_the_percentiles_of_the_draws() -> None:
    point = pd.DataFrame(
        [{"cohort": "c", "group": "overall", "n": 10, "responders": 3, "rate": 0.3, "ci_low": 0.1, "ci_high": 0.6}]
    )
    rates = [0.1, 0.2, 0.4, 0.5, np.nan]  # a draw with no enrolled man of the group has no rate
    per_draw = pd.DataFrame({U.DRAW: range(5), "cohort": "c", "group": "overall", "rate": rates})
    row = U.uncertainty_table(point, per_draw).iloc[0]
    assert row[U.BAND_LOW] == pytest.approx(0.1 + 0.075 * 0.1)  # linear interpolation over the 4 finite rates
    assert row[U.BAND_MEDIAN] == pytest.approx(0.3) and row[U.BAND_HIGH] == pytest.approx(0.5 - 0.075 * 0.1)
    assert row[U.DRAWS] == 4 and row[U.RATE] == 0.3


@pytest.mark.parametrize("n", [0, -1, 2.5, True, "3"])
def test_a_bad_number_of_draws_is_refused(n: object) -> None:
    with pytest.raises(InvalidValueError, match="whole number of posterior draws"):
        U.check_draws(n)


@pytest.mark.parametrize("n", ["0", "-3", "2.5", "ten"])
def test_the_command_refuses_a_bad_n(cohort: Path, n: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["run", str(cohort), "--out", str(cohort.parent / "o"), "--uncertainty", n])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--uncertainty" in err and "Traceback" not in err


def test_the_command_refuses_a_non_cohort(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    single = experiments_dir() / "case_report_10mg.toml"
    assert load_experiment(single).kind != "cohort"
    code = main(["run", str(single), "--out", str(tmp_path / "o"), "--uncertainty", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "kind = 'cohort'" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "content",
    [None, "", f"{MEDIAN},{A.WEIGHT}\n0.02,-1\n", f"nobody.log_sd,{A.WEIGHT}\n1,1\n"],
    ids=["missing", "empty", "negative-weight", "unknown-column"],
)
def test_the_command_refuses_a_bad_posterior(
    cohort: Path, content: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cohort.parent / "posterior.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code = main(["run", str(cohort), "--out", str(cohort.parent / "o"), "--uncertainty", "2", "--posterior", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "posterior file" in err and "Traceback" not in err
    assert not (cohort.parent / "o").exists()  # refused before anything ran


def test_the_command_writes_the_band_table_and_figure(cohort: Path, posterior: Path) -> None:
    out = cohort.parent / "run"
    args = ["run", str(cohort), "--out", str(out), "--uncertainty", "2", "--posterior", str(posterior)]
    assert main([*args, "--workers", "1", "--no-progress"]) == 0
    table = pd.read_csv(out / "uncertainty.csv")
    assert list(table.columns) == list(U.COLUMNS)
    assert {"overall", "hypospermatogenesis", "maturation_arrest"} <= set(table[U.GROUP])
    assert (out / "uncertainty.png").stat().st_size > 10_000
    per_draw = pd.read_csv(out / "uncertainty_draws.csv")
    assert set(per_draw[U.DRAW]) == {0, 1}
    # a draw whose men of a histology all had sperm at baseline enrols none of them: that group's band has fewer draws
    counted = per_draw.groupby(U.GROUP)[U.DRAW].nunique()
    assert table.set_index(U.GROUP)[U.DRAWS].to_dict() == {g: int(counted.get(g, 0)) for g in table[U.GROUP]}


def test_the_shipped_posterior_applies_to_the_shipped_population() -> None:
    posterior = A.read_posterior()
    population = load_population()
    assert posterior.parameters and all(population.value(name) >= 0 for name in posterior.parameters)
    assert any(line.startswith("fitted to (targets):") for line in posterior.header)
    assert any("pop_response_ma" in line for line in posterior.header if line.startswith("checks"))


def test_draws_run_on_a_dask_scheduler_give_the_local_workers_numbers(cohort: Path, posterior: Path) -> None:
    distributed = pytest.importorskip("distributed")
    args = ["run", str(cohort), "--uncertainty", "2", "--posterior", str(posterior), "--no-progress"]
    assert main([*args, "--out", str(cohort.parent / "local"), "--workers", "1"]) == 0
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None
    ) as cluster:
        assert main([*args, "--out", str(cohort.parent / "dask"), "--scheduler", cluster.scheduler_address]) == 0
    for name in ("summary.csv", "uncertainty.csv", "uncertainty_draws.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(cohort.parent / "dask" / name), pd.read_csv(cohort.parent / "local" / name), check_exact=True
        )


def test_an_unreachable_scheduler_stops_the_run_with_its_address(
    cohort: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = "tcp://127.0.0.1:9"  # the discard port: nothing listens there
    assert main(["run", str(cohort), "--out", str(cohort.parent / "o"), "--scheduler", address, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert address in err and "--scheduler" in err and "Traceback" not in err
