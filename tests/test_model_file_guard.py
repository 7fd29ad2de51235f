"""``ra-model simulate --model FILE``: a file that fails the unit check is refused unless --force, and a phenotype
preset that replaces one of the file's own values says so.

COPASI's own SBML export of the model is the real case: it turns every species into a concentration and drops
the conversion factors, and testis atRA comes out far from the model's (175 nM instead of 7 in a healthy man).
"""

from __future__ import annotations

import logging
from pathlib import Path

import libsbml
import pandas as pd
import pytest

from ra_model.cli import main
from ra_model.engines.from_file import PresetOverride, engine_from_file, preset_overrides
from ra_model.engines.simulate import simulate
from ra_model.errors import ModelBuildError
from ra_model.interop.copasi import reexport_with_copasi
from ra_model.interop.sbml_export import export_sbml
from ra_model.model import columns as C
from ra_model.model.phenotypes import Phenotype, get_phenotype
from ra_model.model.validate import validate_sbml

REGIMEN = "20 mg bid for 180 d"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("files")
    ours = export_sbml(phenotype="maturation_arrest", regimen=REGIMEN, annotate=False)
    out = {"ours": folder / "ma.xml", "copasi": folder / "ma_copasi.xml"}
    out["ours"].write_text(ours, encoding="utf-8")
    out["copasi"].write_text(reexport_with_copasi(ours), encoding="utf-8")
    return out


def _simulate(args: list[str], tmp_path: Path, capsys) -> tuple[int, str, Path]:
    out = tmp_path / "run.csv"
    code = main(["simulate", "--days", "2", "--out", str(out), *args])
    return code, capsys.readouterr().err, out


def test_copasi_reexport_fails_the_unit_check_and_changes_the_model(files: dict[str, Path]) -> None:
    text = files["copasi"].read_text(encoding="utf-8")
    assert validate_sbml(text).ok and validate_sbml(text).unit_findings  # valid SBML, inconsistent units
    doc = libsbml.readSBMLFromString(text)
    species = list(doc.getModel().getListOfSpecies())
    assert species and not any(s.getHasOnlySubstanceUnits() for s in species)


def test_simulate_refuses_a_file_that_fails_the_unit_check_and_names_the_fix(
    files: dict[str, Path], tmp_path: Path, capsys
) -> None:
    code, err, out = _simulate(["--model", str(files["copasi"])], tmp_path, capsys)
    assert code == 2 and not out.exists()
    assert "Traceback" not in err
    assert str(files["copasi"]) in err and "unit check" in err
    assert "COPASI" in err and "hasOnlySubstanceUnits" in err and "--force" in err
    with pytest.raises(ModelBuildError, match="force=True"):
        engine_from_file(files["copasi"])


def test_force_runs_it_and_shows_why_it_was_refused(files: dict[str, Path], tmp_path: Path, capsys) -> None:
    code, err, out = _simulate(["--model", str(files["copasi"]), "--force"], tmp_path, capsys)
    assert code == 0, err
    forced = pd.read_csv(out)
    code, err, out = _simulate(["--model", str(files["ours"])], tmp_path, capsys)
    assert code == 0, err
    original = pd.read_csv(out)
    # our file reproduces the scenario; COPASI's, the same scenario with amounts read as concentrations, is
    # an order of magnitude off in testis atRA
    reference = simulate("maturation_arrest", REGIMEN, t_end_d=2.0)
    assert original[C.TESTIS_ATRA].to_numpy() == pytest.approx(reference[C.TESTIS_ATRA].to_numpy(), rel=1e-4)
    assert forced[C.TESTIS_ATRA].iloc[0] > 10 * original[C.TESTIS_ATRA].iloc[0]


def test_force_without_a_model_file_is_bad_input(tmp_path: Path, capsys) -> None:
    code, err, _ = _simulate(["--force"], tmp_path, capsys)
    assert code == 2 and "--model" in err


def _edited(tmp_path: Path, values: dict[str, float]) -> Path:
    doc = libsbml.readSBMLFromString(export_sbml(annotate=False))
    for name, value in values.items():
        doc.getModel().getParameter(name).setValue(value)
    path = tmp_path / "edited.xml"
    path.write_text(libsbml.writeSBMLToString(doc), encoding="utf-8")
    return path


def test_a_preset_that_replaces_an_edited_value_is_named_with_both_values(tmp_path: Path, capsys, caplog) -> None:
    model = _edited(tmp_path, {"aldh1a_expr": 0.5, "cyp26_expr": 5.0})  # cyp26 edited to the preset's own value
    with caplog.at_level(logging.WARNING, logger="ra_model"):
        code, err, _ = _simulate(["--model", str(model), "--phenotype", "maturation_arrest"], tmp_path, capsys)
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    about = [w for w in warnings if "aldh1a_expr" in w]
    assert len(about) == 1, warnings
    assert "maturation_arrest" in about[0] and "0.15" in about[0] and "0.5" in about[0] and "--set" in about[0]
    # unedited values (stra6_expr) and an edit equal to the preset's value (cyp26_expr) are not warned about
    assert not [w for w in warnings if "stra6_expr" in w or "cyp26_expr" in w]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ra_model"):
        args = ["--model", str(model), "--phenotype", "maturation_arrest", "--set", "aldh1a_expr=0.5"]
        code, err, _ = _simulate(args, tmp_path, capsys)
    assert code == 0, err
    assert not [r for r in caplog.records if "aldh1a_expr" in r.getMessage()]  # the user chose the value


def test_preset_overrides_names_set_and_scaled_values(tmp_path: Path) -> None:
    engine = engine_from_file(_edited(tmp_path, {"aldh1a_expr": 0.5, "cyp26_expr": 2.0}))
    shipped = engine_from_file(_edited(tmp_path, {}))
    assert preset_overrides(shipped.defaults, get_phenotype("maturation_arrest")) == ()  # the file is the model
    preset = Phenotype(
        name="custom", description="", rationale="", parameters={"aldh1a_expr": 0.15}, scale={"cyp26_expr": 3.0}
    )
    found = {o.parameter: o for o in preset_overrides(engine.defaults, preset)}
    assert found == {
        "aldh1a_expr": PresetOverride("aldh1a_expr", 0.5, 0.15, shipped.defaults["aldh1a_expr"]),
        "cyp26_expr": PresetOverride("cyp26_expr", 2.0, 6.0, shipped.defaults["cyp26_expr"], factor=3.0),
    }
    assert "the file's 2 becomes 6" in str(found["cyp26_expr"])


def test_sweep_refuses_the_file_too_and_runs_it_with_force(files: dict[str, Path], tmp_path: Path, capsys) -> None:
    """`ra-model sweep --model FILE` follows simulate: refused with the fix named, run with --force."""
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'design = "random"\nn = 2\nseed = 1\nphenotype = "maturation_arrest"\nt_end_d = 2.0\n'
        'metrics = ["peak_ejaculate_concentration"]\n[parameters]\ncyp26_expr = [0.5, 2.0]\n',
        encoding="utf-8",
    )
    common = ["sweep", str(spec), "--workers", "1", "--quiet", "--model", str(files["copasi"])]
    assert main([*common, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "unit check" in err and "--force" in err and "Traceback" not in err
    assert main([*common, "--out", str(tmp_path / "forced"), "--force"]) == 0, capsys.readouterr().err
    assert main(["sweep", str(spec), "--out", str(tmp_path / "x"), "--force", "--quiet"]) == 2
    assert "--model" in capsys.readouterr().err
