"""The parameter table, phenotypes, bad input and the command line."""

from __future__ import annotations

import pandas as pd
import pytest

from ra_model import InvalidValueError, RegimenParseError, SimulationFailedError, UnknownNameError, simulate
from ra_model.cli import main
from ra_model.engines.engine import Engine, SolverOptions
from ra_model.model import columns as C
from ra_model.model.phenotypes import load_phenotypes
from ra_model.model.source import default_sbml, read_parameter_table


def test_parameter_table_and_model_agree_both_ways(engine: Engine) -> None:
    table = read_parameter_table()
    assert set(table) == set(engine.defaults)
    for pid, info in table.items():
        assert info.value == pytest.approx(engine.defaults[pid], rel=1e-12), pid
        assert info.lower <= info.value <= info.upper
        assert info.source.strip()


def test_phenotypes_only_name_model_parameters(engine: Engine) -> None:
    names = set(load_phenotypes())
    assert {
        "healthy",
        "vitamin_a_deficient",
        "maturation_arrest",
        "maturation_arrest_meiotic",
        "hypospermatogenesis",
        "sertoli_cell_only",
    } <= names
    for preset in load_phenotypes().values():
        assert set(preset.parameters) | set(preset.scale) <= set(engine.defaults)
        assert set(preset.initial_amounts) <= set(engine.initial_amounts)
        assert preset.description and preset.rationale


def test_unknown_phenotype_lists_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="maturation_arrest"):
        simulate("maturation_arest")


def test_unknown_parameter_lists_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="cyp26_expr"):
        simulate("healthy", overrides={"cyp26_exp": 2.0})


@pytest.mark.parametrize(
    ("text", "error", "fragment"),
    [
        ("-20 mg bid for 10 d", RegimenParseError, "-20"),
        ("20 mg every 0 h for 10 d", RegimenParseError, "0"),
        ("20 mgg bid for 180 d", RegimenParseError, "^"),
        ("twenty mg bid", RegimenParseError, "^"),
    ],
)
def test_bad_regimen_text(text: str, error: type, fragment: str) -> None:
    with pytest.raises(error, match=None) as info:
        simulate("healthy", text)
    assert fragment in str(info.value)


def test_non_numeric_override_and_bad_horizon() -> None:
    with pytest.raises(InvalidValueError, match="not a number"):
        simulate("healthy", overrides={"cyp26_expr": "two"})  # type: ignore[dict-item]
    with pytest.raises(InvalidValueError, match="t_end_d"):
        simulate("healthy", t_end_d=-1)


def test_solver_failure_names_phenotype_regimen_and_time() -> None:
    starved = Engine(default_sbml(), options=SolverOptions(max_steps=3))
    with pytest.raises(SimulationFailedError, match=r"phenotype 'maturation_arrest'.*20 mg bid") as info:
        simulate("maturation_arrest", "20 mg bid for 30 d", t_end_d=30, preequilibrate=False, engine=starved)
    assert "t = " in str(info.value)


def test_cli_simulate_writes_table_and_plot(tmp_path) -> None:
    out, png = tmp_path / "run.csv", tmp_path / "run.png"
    code = main(
        [
            "simulate",
            "--phenotype",
            "maturation_arrest",
            "--regimen",
            "20 mg bid for 180 d",
            "--days",
            "200",
            "--out",
            str(out),
            "--plot",
            str(png),
        ]
    )
    assert code == 0
    table = pd.read_csv(out)
    assert table[C.DOSES_GIVEN].iloc[-1] == 360
    assert png.stat().st_size > 10_000


def test_cli_bad_input_exits_2(capsys) -> None:
    assert main(["simulate", "--phenotype", "nope", "--out", "x.csv"]) == 2
    assert "unknown phenotype" in capsys.readouterr().err


def test_cli_lists(capsys) -> None:
    assert main(["phenotypes"]) == 0
    assert "sertoli_cell_only" in capsys.readouterr().out
    assert main(["parameters", "--category", "pk"]) == 0
    assert "CL_iso" in capsys.readouterr().out


def test_cli_demo(tmp_path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "demo.png").exists()
    assert "motile sperm first present" in capsys.readouterr().out


def test_bad_scheduled_changes() -> None:
    from ra_model import ParameterChange

    with pytest.raises(InvalidValueError, match="t_d"):
        ParameterChange(t_d=0, parameter="retinol_plasma_uM", value=2.5)
    with pytest.raises(UnknownNameError, match="retinol_plasma_uM"):
        simulate("healthy", changes=[ParameterChange(t_d=5, parameter="retinol_plasma", value=2.5)], t_end_d=10)
    with pytest.raises(InvalidValueError, match="lengthen t_end_d"):
        simulate("healthy", changes=[ParameterChange(t_d=50, parameter="retinol_plasma_uM", value=2.5)], t_end_d=10)


def test_a_drained_pool_does_not_tighten_the_tolerance(engine: Engine) -> None:
    """libroadrunner rescales a scalar atol by each current amount (roadrunner#1349); we pin a vector.

    With the rescaling, a pool holding 1e-300 nmol gets a 1e-312 tolerance and CVODE stops at t = 0.
    """
    engine.fresh(initial_amounts={"Iso_p": 1e-300, "Gut_iso": 1e-310, "atRA_p": 1e-290})
    out = engine.simulate([0.0, 24.0], ["Iso_p"])
    assert out[-1, 1] > 0  # refilled from plasma: the run got past t = 0
    table = simulate(
        "healthy", "20 mg bid for 10 d", t_end_d=20, overrides={"R_endo_at": 0.0, "R_endo_cis": 0.0, "Vmax_aldh1a": 0.0}
    )
    assert table[C.DOSES_GIVEN].iloc[-1] == 20


def test_plot_marks_every_dose_even_when_the_first_table_is_untreated() -> None:
    from ra_model.plots.timecourse import plot_timecourse

    untreated = simulate("maturation_arrest", None, t_end_d=20, output_step_d=1)
    treated = simulate("maturation_arrest", "20 mg bid x 10 doses", t_end_d=20, output_step_d=1)
    fig = plot_timecourse([untreated, treated])
    markers = [line for line in fig.axes[0].get_lines() if line.get_label() == "doses"]
    assert len(markers) == 1 and len(markers[0].get_xdata()) == 10
