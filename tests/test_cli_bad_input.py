"""Bad input through the command line and the API: one-line messages naming the value, never a traceback.

Each CLI case runs ``ra-model`` in-process and asserts the exit code (2 for bad input), that stderr has
no traceback and that it names the offending value. Domain and size cases are in test_domain.py, scenario
files in test_experiments_bad_input.py, sweep folders in test_sweep_reliability.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ra_model import InvalidValueError, ParameterChange, simulate
from ra_model.cli import main


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def test_out_inside_a_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder", encoding="utf-8")
    code, err = _run(["simulate", "--days", "10", "--out", str(blocker / "run.csv")], capsys)
    assert code == 2
    assert "Traceback" not in err
    assert str(blocker) in err and "--out" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (a full disk)")
def test_full_disk_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["simulate", "--days", "10", "--out", "/dev/full"], capsys)
    assert code == 2
    assert "Traceback" not in err
    assert "disk" in err


def test_sweep_spec_that_is_not_utf8_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "latin1.toml"
    spec.write_bytes('description = "caf\xe9"\n'.encode("latin-1"))
    from ra_model.studies.design import load_sweep_spec

    with pytest.raises(InvalidValueError, match="UTF-8"):
        load_sweep_spec(spec)


def test_an_unexpected_error_is_one_line_and_says_it_is_a_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ra_model.cli.core as core

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(core, "_print_summary", broken)
    code, err = _run(["simulate", "--days", "5", "--out", str(tmp_path / "run.csv")], capsys)
    assert code == 3
    assert "Traceback" not in err
    assert "ZeroDivisionError: boom" in err and "bug" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: simulate("healthy", 20, t_end_d=5), "regimen = 20"),  # type: ignore[arg-type]
        (lambda: simulate(7, None, t_end_d=5), "phenotype = 7"),  # type: ignore[arg-type]
        (lambda: simulate("healthy", None, t_end_d=5, overrides=[("cyp26_expr", 2.0)]), "overrides = "),  # type: ignore[arg-type]
        (
            lambda: simulate(
                "healthy",
                None,
                t_end_d=5,
                changes=[{"t_d": 1, "parameter": "cyp26_expr", "value": 2.0}],  # type: ignore[list-item]
            ),
            "ParameterChange(t_d=",
        ),
    ],
    ids=["regimen-int", "phenotype-int", "overrides-list", "changes-dicts"],
)
def test_wrong_types_in_the_api_name_the_value_and_the_fix(call: object, named: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        call()  # type: ignore[operator]
    assert named in str(info.value)


def test_a_parameter_change_object_is_still_accepted() -> None:
    table = simulate("healthy", None, t_end_d=3, changes=[ParameterChange(t_d=1.0, parameter="cyp26_expr", value=2.0)])
    assert len(table) == 4


def test_a_regimen_that_starts_after_the_horizon_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="ra_model"):
        table = simulate("healthy", "20 mg od for 10 d from day 30", t_end_d=20)
    assert table["doses_given"].max() == 0
    assert "no dose is given" in caplog.text and "day 30" in caplog.text


def test_an_sbml_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "latin1.xml"
    model.write_bytes('<?xml version="1.0"?><sbml><!-- caf\xe9 --></sbml>'.encode("latin-1"))
    code, err = _run(["simulate", "--days", "5", "--model", str(model), "--out", str(tmp_path / "run.csv")], capsys)
    assert code == 2
    assert "Traceback" not in err and "UTF-8" in err and str(model) in err
