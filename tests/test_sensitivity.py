"""Sensitivity analysis gives known answers: analytic functions and metrics that depend on one parameter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.model import columns as C
from ra_model.studies.design import ParameterRange, default_ranges, make_design
from ra_model.studies.sensitivity import global_sensitivity, local_sensitivities, morris_indices, sobol_indices


def only_cyp26(table: pd.DataFrame) -> float:
    """An analytic metric of the run's own inputs (read back from attrs): depends on cyp26_expr alone."""
    return float(table.attrs["overrides"]["cyp26_expr"]) ** 2


def plasma_13cis_nM(table: pd.DataFrame) -> float:
    return float(table[C.PLASMA_ISOTRETINOIN].iloc[-1]) / 0.30044


def test_sobol_of_an_additive_function_matches_the_closed_form() -> None:
    # y = a + 2 b + 0 c with a, b ~ U(0, 1): V = 1/12 + 4/12, S1_a = 0.2, S1_b = 0.8, c = 0.
    ranges = [ParameterRange(name=n, lower=0.0, upper=1.0) for n in ("a", "b", "c")]
    samples = make_design(ranges, design="sobol", n=1024, seed=3)
    y = samples["a"] + 2 * samples["b"]
    table = sobol_indices(samples, y).set_index("parameter")
    assert table.loc["a", "S1"] == pytest.approx(0.2, abs=0.03)
    assert table.loc["b", "S1"] == pytest.approx(0.8, abs=0.03)
    assert table.loc["b", "ST"] == pytest.approx(0.8, abs=0.03)
    assert abs(table.loc["c", "ST"]) < 1e-12
    assert (table["S1_conf"] > 0).loc[["a", "b"]].all()


def test_morris_of_a_linear_function_gives_its_slopes() -> None:
    ranges = [ParameterRange(name=n, lower=0.0, upper=1.0) for n in ("a", "b", "c")]
    samples = make_design(ranges, design="morris", n=10, seed=3)
    y = 3 * samples["a"] - samples["b"]
    table = morris_indices(samples, y).set_index("parameter")
    assert table.loc["a", "mu_star"] == pytest.approx(3.0)
    assert table.loc["b", "mu"] == pytest.approx(-1.0)
    assert table.loc["c", "mu_star"] == 0.0


def test_sobol_through_the_sweep_pipeline_finds_the_one_parameter_that_matters() -> None:
    ranges = [
        ParameterRange(name="cyp26_expr", lower=1.0, upper=8.0),
        ParameterRange(name="stra6_expr", lower=0.2, upper=1.0),
    ]
    result = global_sensitivity(
        ranges,
        method="sobol",
        metrics={"only_cyp26": only_cyp26, "plasma_13cis": plasma_13cis_nM},
        n=16,
        seed=1,
        phenotype="maturation_arrest",
        t_end_d=1.0,
        workers=1,
        progress=False,
    )
    table = result.indices.set_index(["metric", "parameter"])
    assert table.loc[("only_cyp26", "cyp26_expr"), "ST"] == pytest.approx(1.0, abs=0.15)
    assert abs(table.loc[("only_cyp26", "stra6_expr"), "ST"]) < 1e-9
    # Plasma 13-cis-RA without drug is set by endogenous input and clearance; the testis does not
    # feed back on it measurably, so neither testis parameter explains its (tiny) variance.
    plasma = result.sweep["plasma_13cis"]
    assert plasma.std() / plasma.mean() < 1e-3
    assert len(result.sweep) == 16 * (2 + 2)


def test_local_sensitivity_of_a_power_law_is_its_exponent() -> None:
    table = local_sensitivities(
        ["cyp26_expr"], metrics={"y": only_cyp26}, phenotype="maturation_arrest", t_end_d=1.0, rel_step=0.01
    )
    # y = p^2: central difference of the normalised sensitivity is exactly 2 for a quadratic.
    assert table["normalised_sensitivity"].iloc[0] == pytest.approx(2.0, rel=1e-9)


def test_physical_domain_and_names_are_checked() -> None:
    from ra_model.studies.design import check_range

    with pytest.raises(InvalidValueError, match="negative"):
        check_range(ParameterRange(name="k_cyp26_deg", lower=-0.1, upper=0.1))
    with pytest.raises(InvalidValueError, match="fraction"):
        check_range(ParameterRange(name="f_oxo", lower=0.3, upper=1.2))
    with pytest.raises(UnknownNameError, match="cyp26_expr"):
        default_ranges(["cyp26_exp"])
    with pytest.raises(InvalidValueError, match="regimen"):
        check_range(ParameterRange(name="dose_mg", lower=0.0, upper=40.0))
    with pytest.raises(InvalidValueError, match="empty design"):
        make_design([], design="latin", n=4, seed=1)
    ranges = default_ranges(["cyp26_expr", "f_oxo"])
    assert ranges[0].log and not ranges[1].log  # 0.1-10 spans two decades; 0.3-0.7 does not
    for design, expected in (("grid", 9), ("random", 5), ("latin", 5), ("sobol", 16), ("morris", 12)):
        n = 3 if design == "grid" else (4 if design in ("sobol", "morris") else 5)
        table = make_design(ranges, design=design, n=n, seed=5)
        assert len(table) == expected
        assert table["cyp26_expr"].between(0.1, 10).all() and table["f_oxo"].between(0.3, 0.7).all()
        again = make_design(ranges, design=design, n=n, seed=5)
        pd.testing.assert_frame_equal(table, again)  # the seed makes it reproducible
    assert np.log10(make_design(ranges, design="grid", n=3, seed=0)["cyp26_expr"]).round(9).unique().tolist() == [
        -1.0,
        0.0,
        1.0,
    ]


SPEC = """
description = "tiny"
design = "latin"
n = 3
seed = 4
phenotype = "maturation_arrest"
t_end_d = 5.0
metrics = ["testis_atRA_auc", "ra_model.studies.metrics:responder"]
[parameters]
cyp26_expr = [2.0, 8.0]
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("cyp26_expr = [2.0, 8.0]", "cyp26_exp = [2.0, 8.0]"), "parameters.cyp26_exp.*did you mean 'cyp26_expr'"),
        (("cyp26_expr = [2.0, 8.0]", "k_cyp26_deg = [-0.1, 0.1]"), "parameters.k_cyp26_deg.*negative"),
        (("cyp26_expr = [2.0, 8.0]", "f_oxo = [0.3, 1.5]"), "parameters.f_oxo.*fraction"),
        (("cyp26_expr = [2.0, 8.0]", ""), "key parameters: empty design"),
        (('"testis_atRA_auc"', '"testis_atRA_aucc"'), "unknown metric 'testis_atRA_aucc'.*key metrics"),
    ],
)
def test_bad_specs_name_file_key_and_fix(tmp_path, change, message) -> None:  # type: ignore[no-untyped-def]
    from ra_model.cli import main

    spec = tmp_path / "bad.toml"
    spec.write_text(SPEC.replace(*change), encoding="utf-8")
    from ra_model.studies.design import load_sweep_spec

    with pytest.raises((InvalidValueError, UnknownNameError), match=message) as info:
        load_sweep_spec(spec)
    assert str(spec) in str(info.value)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--quiet"]) == 2


def test_sweep_command_writes_a_table_and_resumes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ra_model.cli import main

    spec = tmp_path / "ok.toml"
    spec.write_text(SPEC, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    table = pd.read_parquet(out / "sweep.parquet")
    assert len(table) == 3 and (table["status"] == "ok").all()
    assert {"testis_atRA_auc", "ra_model.studies.metrics:responder"} <= set(table.columns)
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1", "--quiet"]) == 0  # loads, no rerun
    pd.testing.assert_frame_equal(pd.read_parquet(out / "sweep.parquet"), table)
    assert not (out / "sweep.nc").exists()  # a Latin hypercube is no grid
    grid_spec = tmp_path / "grid.toml"
    grid_spec.write_text(SPEC.replace('design = "latin"', 'design = "grid"'), encoding="utf-8")
    assert main(["sweep", str(grid_spec), "--out", str(tmp_path / "grid"), "--workers", "1", "--quiet"]) == 0
    import xarray

    with xarray.open_dataset(tmp_path / "grid" / "sweep.nc", engine="scipy") as grid:
        assert dict(grid.sizes) == {"cyp26_expr": 3}


def test_plots_draw_one_bar_per_parameter_with_its_interval() -> None:
    import matplotlib.pyplot as plt

    from ra_model.plots.sensitivity import plot_indices, plot_tornado

    morris = pd.DataFrame(
        {"metric": "y", "parameter": ["a", "b", "c"], "mu_star": [3.0, 1.0, 0.0], "mu_star_conf": [0.2, 0.1, 0.0]}
    )
    ax = plot_indices(morris, metric="y").axes[0]
    widths = sorted(round(p.get_width(), 9) for p in ax.patches)
    assert widths == [0.0, 1.0, 3.0]  # one bar per parameter, the mu* values
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "b", "a"]  # ranked, largest on top
    local = pd.DataFrame(
        {
            "metric": "m",
            "parameter": ["p", "q"],
            "base": 10.0,
            "low": [9.0, 9.9],
            "high": [11.0, 10.1],
            "normalised_sensitivity": [2.0, 0.2],
        }
    )
    ax = plot_tornado(local, metric="m").axes[0]
    spans = sorted(round(p.get_width(), 9) for p in ax.patches)
    assert spans == [-1.0, -0.1, 0.1, 1.0]  # low and high bars around the base value
    plt.close("all")


def test_run_and_sensitivity_write_the_same_figures_for_one_file(tmp_path: Path) -> None:
    """Issue 17: `ra-model run` on a sensitivity file wrote no figures while `ra-model sensitivity` wrote three."""
    from ra_model.cli import main

    spec = tmp_path / "tiny_sensitivity.toml"
    spec.write_text(
        'kind = "sensitivity"\ndescription = "two parameters, briefly"\nmethod = "morris"\nn = 2\nseed = 1\n'
        'phenotype = "maturation_arrest"\nregimen = "20 mg bid for 20 d"\nt_end_d = 20.0\n'
        'metrics = ["peak_ejaculate_concentration", "testis_atRA_auc"]\n'
        "[parameters]\ncyp26_expr = [2.0, 10.0]\naldh1a_expr = [0.05, 0.5]\n",
        encoding="utf-8",
    )
    assert main(["sensitivity", str(spec), "--out", str(tmp_path / "s"), "--workers", "1", "--quiet"]) == 0
    assert main(["run", str(spec), "--out", str(tmp_path / "r"), "--workers", "1", "--no-progress"]) == 0
    by_sensitivity = sorted(p.name for p in (tmp_path / "s").glob("*.png"))
    by_run = sorted(p.name for p in (tmp_path / "r").glob("*.png"))
    # one index figure per metric, whichever command ran the file
    assert by_sensitivity == ["indices_peak_ejaculate_concentration.png", "indices_testis_atRA_auc.png"]
    assert by_run == by_sensitivity
