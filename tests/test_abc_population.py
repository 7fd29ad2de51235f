"""The population ABC: recovers a known spread from a synthetic cohort; its problem, posterior file and command."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ra_model.cli import main
from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.model.source import model_dir
from ra_model.studies import abc_population as A
from ra_model.studies.experiments import Experiment, experiments_dir, load_experiment
from ra_model.studies.population import (
    draw_patients,
    dump_population,
    load_population,
    parse_value_id,
    value_id,
)

HYPO = "hypospermatogenesis"
SD_HYPO = value_id("focus_share", HYPO)
MEDIAN_HYPO = value_id("focus_share", HYPO, kind="median")


@pytest.fixture(scope="module")
def setting() -> Experiment:
    return load_experiment(experiments_dir() / "jessup2025.toml")


def _problem(setting: Experiment, targets: list[A.Target], parameters: tuple[str, ...] = (SD_HYPO,)) -> A.AbcProblem:
    population = load_population()
    return A.AbcProblem(
        parameters=parameters,
        priors={p: A.Prior(lower=0.5, upper=4.0, source="test") for p in parameters},
        targets=tuple(targets),
        mixes={},
        setting=setting,
        population=population,
    )


def _share_target(value: float, *, role: str = A.FIT, sd: float | None = 0.03) -> A.Target:
    return A.Target(
        id="share_hypo", role=role, statistic=A.AZOOSPERMIC_SHARE, group=HYPO, value=value, sd=sd, source="synthetic"
    )


def _retrieval_target(value: float) -> A.Target:
    return A.Target(
        id="micro_hypo", role=A.FIT, statistic=A.MICRO_TESE, group=HYPO, value=value, sd=0.01, source="synthetic"
    )


# --------------------------------------------------------------------------- recovery
@pytest.mark.slow
def test_abc_recovers_a_known_spread_from_a_synthetic_cohort(setting: Experiment, tmp_path: Path) -> None:
    """Synthetic men (seed 7) at a known within-histology spread of focus_share give the mean micro-TESE chance of
    untreated hypospermatogenesis men without sperm in a fresh count; the ABC, simulating other men (seed 16), must
    put the truth inside its 95% interval, which must be much narrower than the prior (minutes: slow; the command
    test below covers the plumbing)."""
    truth, men = 2.0, 200
    target = _retrieval_target(0.5)
    synthetic = A.CohortSimulator(
        _problem(setting, [target]), [target], A.SimulationSize(men=men, n_classes=1, seed=7, workers=1)
    )
    observed = synthetic({SD_HYPO: truth})["micro_hypo"]
    at_low = synthetic({SD_HYPO: 0.5})["micro_hypo"]
    at_high = synthetic({SD_HYPO: 4.0})["micro_hypo"]
    # a wider spread sends the men with many foci into the ejaculate, leaving those with few to retrieval
    assert at_low > observed > at_high
    problem = _problem(setting, [_retrieval_target(observed)])
    settings = A.AbcSettings(
        population_size=20, generations=3, size=A.SimulationSize(men=men, n_classes=1, seed=16, workers=1), seed=3
    )
    result = A.run_abc(problem, out_dir=tmp_path, settings=settings)
    summary = A.posterior_summary(result.posterior, problem.prior_box()).set_index(A.PARAMETER).loc[SD_HYPO]
    shown = f"observed {observed:.3f}; posterior {summary.to_dict()}; generations {result.generations.to_dict('list')}"
    assert summary[A.POST_LOW] <= truth <= summary[A.POST_HIGH], shown
    assert summary[A.POST_HIGH] - summary[A.POST_LOW] < 0.5 * (4.0 - 0.5), shown
    assert result.posterior[A.WEIGHT].sum() == pytest.approx(1.0)
    assert (tmp_path / "abc.db").is_file()
    assert result.generations["epsilon"].iloc[-1] == pytest.approx(1.0)  # the last generation samples the posterior


def test_the_same_candidate_gives_the_same_statistics(setting: Experiment) -> None:
    """Common random numbers: the men's draws depend only on seed, histology and index."""
    target = _share_target(0.5)
    simulator = A.CohortSimulator(
        _problem(setting, [target]), [target], A.SimulationSize(men=10, n_classes=1, workers=1)
    )
    assert simulator({SD_HYPO: 1.5}) == simulator({SD_HYPO: 1.5})


# --------------------------------------------------------------------------- the shipped problem
def test_the_shipped_problem_fits_no_check_and_keeps_the_trial_out() -> None:
    problem = A.load_problem()
    fitted, checks = {t.id for t in problem.fitted}, {t.id for t in problem.checks}
    assert fitted and checks and not fitted & checks
    assert {"pop_response_overall", "pop_response_ma"} <= checks  # the Jessup 2025 counts are checks, never fitted
    with (model_dir() / A.PROBLEM_FILE).open("rb") as handle:
        raw = tomllib.load(handle)
    assert len(raw["targets"]) == len(problem.targets)


def test_fitted_rows_shared_with_the_calibration_targets_have_their_values() -> None:
    table = pd.read_csv(model_dir() / "calibration_targets.csv").set_index("id")
    problem = A.load_problem()
    shared = [t for t in problem.targets if t.id in table.index]
    assert len(shared) >= 3
    for t in shared:
        assert t.value == pytest.approx(float(table.loc[t.id, "value"]), abs=1e-4), t.id


def test_spread_priors_are_the_fit_ranges_and_medians_carry_a_source() -> None:
    problem = A.load_problem()
    population = load_population()
    for name, prior in problem.priors.items():
        parameter, kind, _ = parse_value_id(name, population)
        if kind == "log_sd":
            entry = population.variability[parameter]
            assert (prior.lower, prior.upper) == (entry.fit_lower, entry.fit_upper)
        else:
            assert prior.lower < population.value(name) < prior.upper and prior.source.strip()


def test_a_bad_problem_file_is_refused(tmp_path: Path) -> None:
    text = (model_dir() / A.PROBLEM_FILE).read_text(encoding="utf-8")
    bad = tmp_path / "abc.toml"
    bad.write_text(text.replace('id = "pop_response_sco"\nrole = "fit"', 'id = "pop_response_sco"\nrole = "both"'))
    with pytest.raises(InvalidValueError, match="role = 'both'"):
        A.load_problem(bad)
    bad.write_text(text.replace('id = "testis_penetration.log_sd"', 'id = "CL_iso.log_sd"'))
    with pytest.raises(InvalidValueError, match="not marked uncertain"):
        A.load_problem(bad)
    bad.write_text(text.replace("sd = 0.025\n", "", 1))
    with pytest.raises(InvalidValueError, match="has sd = None"):
        A.load_problem(bad)


# --------------------------------------------------------------------------- population values
def test_a_histology_median_moves_only_that_histology_and_keeps_each_mans_z() -> None:
    base = load_population()
    moved = base.with_values({MEDIAN_HYPO: 0.1})
    assert base.value(MEDIAN_HYPO) == pytest.approx(0.02) and moved.value(MEDIAN_HYPO) == 0.1
    before = draw_patients(base, HYPO, range(20), seed=4)["focus_share"].to_numpy()
    after = draw_patients(moved, HYPO, range(20), seed=4)["focus_share"].to_numpy()
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    # the same z per man: every logit moves by logit(0.1) - logit(0.02)
    np.testing.assert_allclose(logit(after) - logit(before), logit(0.1) - logit(0.02), rtol=1e-9)
    other = draw_patients(moved, "sertoli_cell_only", range(5), seed=4)
    pd.testing.assert_frame_equal(other, draw_patients(base, "sertoli_cell_only", range(5), seed=4))


def test_a_changed_population_survives_its_file(tmp_path: Path) -> None:
    changed = load_population().with_values({SD_HYPO: 2.5, MEDIAN_HYPO: 0.03, "cyp26_expr.log_sd": 0.9})
    path = tmp_path / "population.toml"
    path.write_text(dump_population(changed), encoding="utf-8")
    again = load_population(path)
    assert again == changed
    assert again.value(SD_HYPO) == 2.5 and again.value("cyp26_expr.log_sd") == 0.9


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("focus_share.sd", InvalidValueError),
        ("focus_share.median", InvalidValueError),
        ("no_such_parameter.log_sd", UnknownNameError),
        ("focus_share.log_sd.no_such_histology", UnknownNameError),
    ],
)
def test_bad_value_names_are_refused(name: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        load_population().with_values({name: 1.0})


def test_a_median_outside_its_domain_is_refused() -> None:
    with pytest.raises(InvalidValueError, match="in \\(0, 1\\)"):
        load_population().with_values({MEDIAN_HYPO: 1.5})


# --------------------------------------------------------------------------- the posterior file
def _posterior(tmp_path: Path, rows: list[dict[str, float]]) -> Path:
    path = tmp_path / "posterior.csv"
    A.write_posterior(pd.DataFrame(rows), path, header=["test posterior", "fitted to: nothing"])
    return path


def test_a_posterior_file_round_trips_and_draws_in_proportion_to_its_weights(tmp_path: Path) -> None:
    path = _posterior(tmp_path, [{SD_HYPO: 1.0, A.WEIGHT: 1.0}, {SD_HYPO: 3.0, A.WEIGHT: 3.0}])
    posterior = A.read_posterior(path)
    assert posterior.header == ("test posterior", "fitted to: nothing")
    assert posterior.particles[A.WEIGHT].tolist() == [0.25, 0.75]
    draws = posterior.draw(4000, seed=1)
    share = np.mean([d[SD_HYPO] == 3.0 for d in draws])
    assert abs(share - 0.75) < 4 * math.sqrt(0.75 * 0.25 / 4000)
    assert posterior.draw(10, seed=1) == draws[:10]  # a larger N keeps the first draws


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([{SD_HYPO: 1.0}], "no 'weight' column"),
        ([{SD_HYPO: 1.0, A.WEIGHT: -1.0}], "finite number >= 0"),
        ([{SD_HYPO: math.nan, A.WEIGHT: 1.0}], "finite number >= 0"),
        ([{"focus_share.log_sd.nobody": 1.0, A.WEIGHT: 1.0}], "column 'focus_share.log_sd.nobody'"),
        ([{SD_HYPO: 1.0, A.WEIGHT: 0.0}], "weights sum to 0"),
    ],
)
def test_a_malformed_posterior_file_is_refused(tmp_path: Path, rows: list[dict[str, float]], match: str) -> None:
    with pytest.raises(InvalidValueError, match=match):
        A.read_posterior(_posterior(tmp_path, rows))


def test_a_missing_posterior_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidValueError, match="does not exist"):
        A.read_posterior(tmp_path / "nothing.csv")


@pytest.mark.parametrize("n", [0, -2, 1.5, True])
def test_a_bad_number_of_draws_is_refused(tmp_path: Path, n: object) -> None:
    posterior = A.read_posterior(_posterior(tmp_path, [{SD_HYPO: 1.0, A.WEIGHT: 1.0}]))
    with pytest.raises(InvalidValueError, match="whole number"):
        posterior.draw(n, seed=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("q", [0.025, 0.3, 0.5, 0.75, 0.975])
def test_weighted_quantiles_match_the_repeated_sample(q: float) -> None:
    """Integer weights are repetitions: (1, 2, 3, 5) weighted (1, 3, 2, 4) is 1, 2, 2, 2, 3, 3, 5, 5, 5, 5."""
    values, weights = np.array([3.0, 1.0, 5.0, 2.0]), np.array([2.0, 1.0, 4.0, 3.0])
    repeated = np.repeat(values, weights.astype(int))
    assert A.weighted_quantile(values, weights, q) == np.percentile(repeated, 100 * q, method="inverted_cdf")


# --------------------------------------------------------------------------- the command
def test_calibrate_abc_writes_posterior_report_and_checks(tmp_path: Path) -> None:
    """A tiny run of the command on a problem of untreated statistics (cheap): every file, checks apart."""
    problem = tmp_path / "abc.toml"
    problem.write_text(
        """
setting = "jessup2025"
parameters = [{ id = "focus_share.log_sd.hypospermatogenesis" }]
[mixes.two]
shares = { hypospermatogenesis = 0.5, sertoli_cell_only = 0.5 }
source = "test"
[[targets]]
id = "share"
role = "fit"
statistic = "azoospermic_share"
group = "hypospermatogenesis"
value = 0.8
sd = 0.05
source = "synthetic"
[[targets]]
id = "ratio"
role = "check"
statistic = "micro_over_conventional"
group = "two"
value = 1.22
source = "a check"
""",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    args = ["calibrate-abc", "--out", str(out), "--problem", str(problem), "--population-size", "4"]
    args += ["--generations", "2", "--men", "10", "--classes", "1", "--workers", "1", "--check-draws", "2"]
    assert main(args) == 0
    posterior = A.read_posterior(out / A.POSTERIOR_FILE)
    assert posterior.parameters == [SD_HYPO] and len(posterior.particles) == 4
    assert any("fitted to (targets): share = 0.8" in line for line in posterior.header)
    assert any("checks (never fitted): ratio = 1.22" in line for line in posterior.header)
    checks = pd.read_csv(out / "checks.csv")
    assert checks.set_index(A.TARGET)[A.ROLE].to_dict() == {"share": A.FIT, "ratio": A.CHECK}
    report = (out / "population_abc.md").read_text(encoding="utf-8")
    assert "## Targets fitted" in report and "## Checks kept out of the fit" in report
    assert report.index("| ratio |") > report.index("## Checks kept out of the fit")


def test_a_run_stopped_by_its_time_limit_is_provisional_and_resumes_to_temperature_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-minutes stops after a generation (the posterior says provisional); --resume carries on to 1."""
    problem = tmp_path / "abc.toml"
    problem.write_text(  # a histology's median moves the share a lot, so the first temperature is above 1
        'setting = "jessup2025"\n[[parameters]]\nid = "focus_share.median.hypospermatogenesis"\nlower = 0.002\n'
        'upper = 0.5\nscale = "loguniform"\nsource = "test"\n'
        '[[targets]]\nid = "share"\nrole = "fit"\nstatistic = "azoospermic_share"\ngroup = "hypospermatogenesis"\n'
        'value = 0.5\nsd = 0.01\nsource = "synthetic"\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    args = ["calibrate-abc", "--out", str(out), "--problem", str(problem), "--population-size", "4"]
    args += ["--generations", "3", "--men", "20", "--classes", "1", "--workers", "1", "--check-draws", "1"]
    assert main([*args, "--max-minutes", "0.0001"]) == 0  # past the limit after the first generation
    assert "provisional" in capsys.readouterr().err
    first = pd.read_csv(out / "generations.csv")
    assert list(first["t"]) == [0] and first["epsilon"].iloc[-1] > 1
    posterior = A.read_posterior(out / A.POSTERIOR_FILE)
    assert any("PROVISIONAL" in line for line in posterior.header)
    assert "**Provisional**" in (out / "population_abc.md").read_text(encoding="utf-8")
    # loading for a resume hands pyABC the temperatures it keeps only in memory (else its schedule restarts)
    import pyabc  # type: ignore[import-untyped]

    name = "focus_share.median.hypospermatogenesis"
    fresh = pyabc.ABCSMC(
        lambda _: {"share": 0.5},
        pyabc.Distribution(**{name: pyabc.RV("uniform", 0.002, 0.5)}),
        pyabc.IndependentNormalKernel(var=[0.01], keys=["share"]),
        eps=pyabc.Temperature(),
        acceptor=pyabc.StochasticAcceptor(),
    )
    A._load_for_resume(fresh, out / "abc.db", names=[name], observed={"share": 0.5})
    assert fresh.eps.temperatures == {0: pytest.approx(first["epsilon"].iloc[0])}
    assert main([*args, "--resume"]) == 0
    assert "provisional" not in capsys.readouterr().err
    again = pd.read_csv(out / "generations.csv")
    # carried on from generation 0 (not a new run from the prior) and stopped at temperature 1, by generation 2
    assert list(again["t"]) == list(range(len(again))) and 2 <= len(again) <= 3
    assert again["epsilon"].iloc[-1] == pytest.approx(1.0) and (again["epsilon"].iloc[:-1] > 1).all()
    assert (again["epsilon"].diff().dropna() <= 0).all()  # the schedule carried on: never above the last temperature
    assert again["epsilon"].iloc[0] == pytest.approx(first["epsilon"].iloc[0])  # the same first generation
    assert any("the particles sample the posterior" in line for line in A.read_posterior(out / A.POSTERIOR_FILE).header)


def test_resume_without_a_database_or_with_another_problem_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["calibrate-abc", "--out", str(tmp_path / "none"), "--resume", "--men", "2", "--classes", "1"]) == 2
    err = capsys.readouterr().err
    assert "abc.db" in err and "without --resume" in err and "Traceback" not in err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_candidate_that_fails_stops_the_run_naming_its_error_and_the_kept_database(
    tmp_path: Path, workers: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On pyABC's worker processes a failure killed a worker and said only 'At least one worker is dead'."""

    def broken(self: A.CohortSimulator, values: dict[str, float]) -> dict[str, float]:
        raise InvalidValueError("models/parameters.csv: columns must be id, value, ...")

    monkeypatch.setattr(A.CohortSimulator, "__call__", broken)  # forked workers inherit it
    out = tmp_path / "out"
    args = ["calibrate-abc", "--out", str(out), "--population-size", "2", "--generations", "1", "--men", "2"]
    assert main([*args, "--classes", "1", "--workers", workers]) == 1
    err = capsys.readouterr().err
    assert "columns must be id, value" in err and "abc.db" in err and "Traceback" not in err
    assert "worker is dead" not in err
    assert "columns must be id, value" in (out / A.ERRORS_FILE).read_text(encoding="utf-8")


@pytest.mark.parametrize("flag", [["--men", "0"], ["--generations", "x"]])
def test_calibrate_abc_refuses_bad_sizes(tmp_path: Path, flag: list[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["calibrate-abc", "--out", str(tmp_path), *flag])
    assert stop.value.code == 2
