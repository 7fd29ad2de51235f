"""pyPESTO on the PEtab problem: it simulates the conditions as the engine does, recovers known parameters from
synthetic data made with the model (a closed loop) within their profile intervals, and refuses bad input clearly.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import petab.v1 as petab
import pytest

from ra_model.cli import main
from ra_model.engines.engine import Engine
from ra_model.engines.simulate import simulate, steady_state_amounts
from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.interop.petab_export import build_petab_problem
from ra_model.model import columns as C
from ra_model.model.regimen import Regimen
from ra_model.studies.fit_pk import (
    HEALTHY_CONDITION,
    PK_OBSERVABLE,
    PROFILE_RATIO_95,
    fit_stage,
    profile_interval,
    read_pk_data,
    roadrunner_objective,
    stage_problem,
)

#: Synthetic truth, away from the table values (ka_fasted 0.79 /h, CL_iso 4.5 L/h, plasma_c 44.5 L).
TRUTH = {"ka_fasted": 1.3, "CL_iso": 3.2, "plasma_c": 28.0}
#: Sampling times of the synthetic arms, hours, and the log-SD of their noise.
TIMES_H = (1.0, 2.0, 4.0, 8.0, 12.0, 24.0, 48.0)
SD_LOG = 0.05
ARMS = {"fasted_20mg_single": (20.0, False), "fed_40mg_single": (40.0, True)}


@pytest.fixture(scope="module")
def problem() -> petab.Problem:
    return build_petab_problem().problem()


def _excess(engine: Engine, overrides: dict[str, float], dose_mg: float, fed: bool) -> pd.Series:
    """Baseline-corrected plasma isotretinoin of a healthy man after one dose, hourly, from the engine."""
    table = simulate(
        "healthy",
        Regimen(dose_mg=dose_mg, n_doses=1, fed=fed),
        t_end_d=max(TIMES_H) / 24,
        output_step_d=1 / 24,
        overrides=overrides,
        engine=engine,
    )
    conc = table[C.PLASMA_ISOTRETINOIN] - table[C.PLASMA_ISOTRETINOIN].iloc[0]
    return pd.Series(conc.to_numpy(), index=np.round(table[C.TIME_D].to_numpy() * 24, 6))


def test_pypesto_simulates_the_arms_as_the_engine_does_at_other_volumes(problem: petab.Problem, engine: Engine) -> None:
    # the volumes are compartments set by the condition table: pyPESTO's roadrunner backend must apply them
    values = {"plasma_c": 25.0, "periph": 70.0}
    sub = stage_problem(problem, stage="pk", estimate=list(values), fixed={"CL_iso": 3.0})
    objective = roadrunner_objective(sub)
    simulations = objective(np.log10(list(values.values())), return_dict=True)["simulation_results"]
    for arm, (dose, fed) in ARMS.items():
        expected = _excess(engine, values | {"CL_iso": 3.0}, dose, fed)
        sim = simulations[arm]
        for t, value in zip(sim[:, 0], sim[:, 1], strict=True):
            if t in expected.index and t > 0:
                assert value == pytest.approx(expected[t], rel=2e-3), (arm, t)


def test_the_healthy_condition_is_at_steady_state_when_it_is_measured(problem: petab.Problem, engine: Engine) -> None:
    away = {"R_endo_cis": 10.0, "Vmax_aldh1a": 0.5, "k_cyp26_syn": 0.001}
    sub = stage_problem(problem, stage="healthy", estimate=list(away))
    objective = roadrunner_objective(sub)
    sim = objective(np.log10(list(away.values())), return_dict=True)["simulation_results"][HEALTHY_CONDITION]
    model = dict(zip(list(sim.colnames)[1:], sim[-1, 1:], strict=True))
    state = steady_state_amounts(engine, away, {})
    testis = engine.defaults["testis"]
    assert model["obs_CYP26"] == pytest.approx(state["CYP26"], rel=1e-4)
    assert model["obs_testis_retinal"] == pytest.approx(state["RAL_t"] / testis, rel=1e-4)
    assert model["obs_testis_atRA"] == pytest.approx(state["atRA_t"] / testis, rel=1e-4)
    assert model["obs_plasma_13cisRA"] == pytest.approx(state["Iso_c"] / engine.defaults["plasma_c"], rel=1e-4)


def test_pypesto_recovers_known_pk_parameters_from_synthetic_data(problem: petab.Problem, engine: Engine) -> None:
    rng = np.random.default_rng(20)
    rows = []
    for arm, (dose, fed) in ARMS.items():
        truth = _excess(engine, TRUTH, dose, fed)
        for t in TIMES_H:
            noisy = float(truth[t]) * math.exp(SD_LOG * rng.standard_normal())
            rows.append(
                {
                    petab.OBSERVABLE_ID: PK_OBSERVABLE.id,
                    petab.SIMULATION_CONDITION_ID: arm,
                    petab.TIME: t,
                    petab.MEASUREMENT: noisy,
                    petab.DATASET_ID: f"synthetic_{arm}_{t:g}h",
                }
            )
    synthetic = petab.Problem(
        model=problem.model,
        condition_df=problem.condition_df,
        measurement_df=pd.DataFrame(rows),
        observable_df=problem.observable_df,
        parameter_df=problem.parameter_df,
    )
    fit = fit_stage(
        synthetic,
        stage="pk",
        estimate=list(TRUTH),
        fixed={PK_OBSERVABLE.noise_parameter: SD_LOG},
        n_starts=3,
        seed=0,
        checks=False,
        engine=engine,
    )
    table = fit.parameters.set_index("parameter")
    for name, true in TRUTH.items():
        row = table.loc[name]
        assert row["identifiable"] == "yes", name
        assert row["profile_lower"] <= true <= row["profile_upper"], (name, true, row.to_dict())
        assert row["fitted"] == pytest.approx(true, rel=0.1), name
        assert row["profile_lower"] < row["fitted"] < row["profile_upper"]
    assert set(fit.targets["id"]) == {r[petab.DATASET_ID] for r in rows}
    assert (fit.targets["model_over_value"].between(0.8, 1.25)).all()


def test_a_profile_interval_is_where_the_ratio_crosses_the_threshold() -> None:
    # a Gaussian profile on the log scale: the 95% interval is exp(mu -+ 1.96 s)
    mu, s = math.log(2.0), 0.1
    values = np.exp(np.linspace(mu - 5 * s, mu + 5 * s, 401))
    ratio = np.exp(-((np.log(values) - mu) ** 2) / (2 * s**2))
    low, high = profile_interval(pd.DataFrame({"value": values, "ratio": ratio}), best=2.0)
    z = math.sqrt(-2 * math.log(PROFILE_RATIO_95))
    assert z == pytest.approx(1.959964, rel=1e-5)
    assert low == pytest.approx(math.exp(mu - z * s), rel=1e-4)
    assert high == pytest.approx(math.exp(mu + z * s), rel=1e-4)
    # a profile that never falls below the threshold on one side is open there
    flat = pd.DataFrame({"value": values, "ratio": np.where(values > 2.0, 1.0, ratio)})
    assert math.isnan(profile_interval(flat, best=2.0)[1])


def test_a_missing_data_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_such_pk_data.csv"
    with pytest.raises(InvalidValueError, match="not found"):
        read_pk_data(missing)
    assert main(["fit", "pk", "--data", str(missing), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err
    assert main(["fit", "healthy", "--pk-from", str(missing), "--out", str(tmp_path / "out")]) == 2
    assert str(missing) in capsys.readouterr().err


def test_bad_pk_data_rows_are_named(tmp_path: Path) -> None:
    data = read_pk_data()
    bad = data.copy()
    bad.loc[0, "role"] = "fitted"
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(InvalidValueError, match=str(data.loc[0, "id"])):
        read_pk_data(path)


def test_an_unknown_parameter_or_stage_to_fit_is_named(problem: petab.Problem) -> None:
    with pytest.raises(UnknownNameError, match="ka_fasted"):
        fit_stage(problem, stage="pk", estimate=["ka_fastd"], n_starts=1)
    with pytest.raises(UnknownNameError, match="'pk'"):
        fit_stage(problem, stage="pkk", n_starts=1)
    with pytest.raises(UnknownNameError, match="CL_isoo"):
        fit_stage(problem, stage="pk", estimate=["ka_fasted"], fixed={"CL_isoo": 3.0}, n_starts=1)
    with pytest.raises(InvalidValueError, match="n_starts"):
        fit_stage(problem, stage="pk", n_starts=0)
