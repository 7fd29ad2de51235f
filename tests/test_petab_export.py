"""The PEtab export: the linter accepts it, its tables hold the expected ids, its SBML is `ra-model export sbml`'s.

The reconstructed PK points are recomputed here from the label numbers by the rule their source column states.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import petab.v1 as petab
import pytest
from scipy.optimize import brentq

from ra_model.cli import main
from ra_model.interop.petab_export import FILES, MODEL_FILE, YAML_FILE, build_petab_problem
from ra_model.model.source import read_parameter_table
from ra_model.studies.calibration import STAGE_PARAMETERS, read_targets
from ra_model.studies.fit_pk import CHECK, FIT, HEALTHY_CONDITION, SUMMARY, petab_id, read_pk_data


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("petab") / "problem"
    assert main(["export", "petab", str(out)]) == 0
    return out


def test_the_export_passes_petablint(exported: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "petab.petablint", str(exported / YAML_FILE)],
        cwd=exported.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Not OK" not in run.stdout + run.stderr
    assert sorted(p.name for p in exported.iterdir()) == sorted(FILES)


def test_the_tables_hold_the_expected_ids(exported: Path) -> None:
    problem = petab.Problem.from_yaml(exported / YAML_FILE)
    data = read_pk_data()
    healthy = [t for t in read_targets() if t.stage == "healthy"]
    # one condition per study arm (fitted and check arms) and the healthy steady state
    assert set(problem.condition_df.index) == set(data["arm"]) | {HEALTHY_CONDITION}
    # measurements: every fit row and healthy target once, never a summary or check row
    measured = list(problem.measurement_df[petab.DATASET_ID])
    assert sorted(measured) == sorted([*data.loc[data["role"] == FIT, "id"], *(t.id for t in healthy)])
    assert not set(measured) & set(data.loc[data["role"].isin([SUMMARY, CHECK]), "id"])
    # estimated: exactly what `ra-model calibrate` fits in these stages, log10, bounds from the parameter table
    table = read_parameter_table()
    fitted = {petab_id(n): n for stage in ("pk", "healthy") for n in STAGE_PARAMETERS[stage]}
    estimated = problem.parameter_df[problem.parameter_df[petab.ESTIMATE] == 1]
    assert set(estimated.index) == set(fitted)
    for pid, row in estimated.iterrows():
        info = table[fitted[pid]]
        assert row[petab.PARAMETER_SCALE] == petab.LOG10
        assert (row[petab.LOWER_BOUND], row[petab.UPPER_BOUND]) == pytest.approx((info.lower, info.upper))
        assert row[petab.NOMINAL_VALUE] == pytest.approx(info.value)
    # the rest fixed at their table values
    fixed = problem.parameter_df[problem.parameter_df[petab.ESTIMATE] == 0]
    for pid in ("f_oxo", "CL_oxo", "Km_aldh1a", "kcat_cyp26"):
        assert fixed.loc[pid, petab.NOMINAL_VALUE] == pytest.approx(table[pid].value)
    # the fitted volumes are compartments: every condition sets them to their parameters
    assert set(problem.condition_df["plasma_c"]) == {"V_plasma_c"}
    assert set(problem.condition_df["periph"]) == {"V_periph"}
    # the dose at t = 0 is in the gut, in nmol
    arm = problem.condition_df.loc["fed_40mg_single"]
    assert arm["Gut_iso"] == pytest.approx(40 * table["nmol_per_mg_iso"].value)
    # log-normal noise on every observable
    assert set(problem.observable_df[petab.OBSERVABLE_TRANSFORMATION]) == {petab.LOG}


def test_the_sbml_in_the_problem_is_the_sbml_export(exported: Path, tmp_path: Path) -> None:
    assert main(["export", "sbml", "--out", str(tmp_path / "model.xml")]) == 0
    assert (exported / MODEL_FILE).read_text(encoding="utf-8") == (tmp_path / "model.xml").read_text(encoding="utf-8")


def test_the_in_memory_problem_is_the_written_one(exported: Path) -> None:
    built = build_petab_problem()
    problem = petab.Problem.from_yaml(exported / YAML_FILE)
    pd.testing.assert_frame_equal(
        built.measurements.reset_index(drop=True),
        problem.measurement_df.reset_index(drop=True),
        check_dtype=False,
    )
    assert list(built.parameters.index) == list(problem.parameter_df.index)


def test_a_folder_that_is_not_empty_is_refused_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["export", "petab", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--force" in err and "Traceback" not in err
    assert main(["export", "petab", str(tmp_path), "--force"]) == 0
    assert (tmp_path / YAML_FILE).is_file() and (tmp_path / "notes.txt").is_file()


def _reconstruct(
    cmax: float, tmax_h: float, auc: float, rise_h: float, half_life_h: float = 16.0
) -> dict[float, float]:
    """The rules in pk_data.csv's source column, from the label's Cmax, Tmax and AUC and a terminal half-life.

    Down: linear up to Tmax, log-linear at lambda1 to 24 h, then the terminal half-life, with lambda1 such that
    the area is the label's AUC. Up: the first-order absorption curve exp(-lambda1 t) - exp(-ka t) with the ka that
    peaks at Tmax.
    """
    lz = math.log(2) / half_life_h

    def area(lam: float) -> float:
        c24 = cmax * math.exp(-lam * (24 - tmax_h))
        return cmax * tmax_h / 2 + (cmax - c24) / lam + c24 / lz - auc

    lam = brentq(area, 1e-3, 1.0)
    ka = brentq(lambda k: math.log(k / lam) / (k - lam) - tmax_h, lam * 1.0001, 50.0)

    def bateman(t: float) -> float:
        return math.exp(-lam * t) - math.exp(-ka * t)

    c24 = cmax * math.exp(-lam * (24 - tmax_h))
    return {
        rise_h: cmax * bateman(rise_h) / bateman(tmax_h),
        tmax_h: cmax,
        24.0: c24,
        48.0: c24 * 2 ** (-24 / half_life_h),
        72.0: c24 * 2 ** (-48 / half_life_h),
    }


@pytest.mark.parametrize(
    ("arm", "label"),
    [("fasted_20mg_single", (150.0, 2.75, 2480.0, 1.0)), ("fed_40mg_single", (369.0, 6.4, 6095.0, 3.0))],
)
def test_the_reconstructed_points_follow_from_the_label_numbers(
    arm: str, label: tuple[float, float, float, float]
) -> None:
    data = read_pk_data()
    summaries = data[(data["arm"] == arm) & (data["role"] == SUMMARY)].set_index("quantity")["value"]
    assert (summaries["cmax"], summaries["tmax"], summaries["auc"]) == label[:3]
    rows = data[(data["arm"] == arm) & (data["role"] == FIT)]
    expected = _reconstruct(*label)
    assert sorted(rows["time_h"]) == sorted(expected)
    for row in rows.itertuples(index=False):
        assert row.value == pytest.approx(expected[row.time_h], rel=5e-3), row.id
