"""`ra-model check`: the health report passes on the shipped model and fails on the problems it looks for."""

from __future__ import annotations

from pathlib import Path

import libsbml
import pytest

from ra_model.cli import main
from ra_model.interop.check import run_checks
from ra_model.interop.sbml_export import export_sbml


@pytest.fixture(scope="module")
def exported() -> str:
    return export_sbml()


def _write(doc: libsbml.SBMLDocument, path: Path) -> Path:
    libsbml.writeSBMLToFile(doc, str(path))
    return path


def _status(path: Path) -> dict[str, str]:
    return {r.name: r.status for r in run_checks(path, copasi=False)}


def test_shipped_model_passes_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    for item in (
        "SBML validation",
        "units",
        "MIRIAM annotations",
        "SBO terms",
        "parameter sources",
        "events",
        "COPASI agreement (quick)",
    ):
        assert f"[PASS] {item}" in out
    assert "OK: 0 of 7 checks failed" in out


def test_equality_trigger_fails_and_the_command_exits_non_zero(
    tmp_path: Path, exported: str, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = libsbml.readSBMLFromString(exported)
    doc.getModel().getEvent("E_dose").getTrigger().setMath(libsbml.parseL3Formula("time == t_next_dose"))
    path = _write(doc, tmp_path / "eq.xml")
    assert main(["check", str(path), "--no-copasi"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] events" in out and "==" in out
    assert "[PASS] units" in out


def test_t0_true_trigger_fails(tmp_path: Path, exported: str) -> None:
    doc = libsbml.readSBMLFromString(exported)
    doc.getModel().getEvent("E_dose").getTrigger().setInitialValue(True)
    assert _status(_write(doc, tmp_path / "t0.xml"))["events"] == "fail"


def test_missing_unit_fails(tmp_path: Path, exported: str) -> None:
    doc = libsbml.readSBMLFromString(exported)
    doc.getModel().getParameter("k_sg").unsetUnits()
    assert _status(_write(doc, tmp_path / "units.xml"))["units"] == "fail"


def test_parameter_without_source_or_sbo_fails(tmp_path: Path, exported: str) -> None:
    doc = libsbml.readSBMLFromString(exported)
    extra = doc.getModel().createParameter()
    extra.setId("k_new")
    extra.setValue(1.0)
    extra.setUnits("per_h")
    extra.setConstant(True)
    status = _status(_write(doc, tmp_path / "nosource.xml"))
    assert status["parameter sources"] == "fail"
    assert status["SBO terms"] == "fail"


def test_unannotated_molecule_fails(tmp_path: Path, exported: str) -> None:
    doc = libsbml.readSBMLFromString(exported)
    doc.getModel().getSpecies("RAL_t").unsetCVTerms()
    assert _status(_write(doc, tmp_path / "nocv.xml"))["MIRIAM annotations"] == "fail"


def test_copasi_item_runs_on_a_file(tmp_path: Path) -> None:
    path = tmp_path / "scenario.xml"
    path.write_text(export_sbml(phenotype="maturation_arrest", regimen="20 mg bid for 30 d"), encoding="utf-8")
    results = {r.name: r for r in run_checks(path)}
    assert results["COPASI agreement (quick)"].status == "pass", results["COPASI agreement (quick)"].detail
