"""Focus classes on the whole-model path (issue 15, step 2): simulate, phenotypes, domain, export, CLI, sweep.

The compiled paths (split and fast) with focus classes are tested in test_focus_classes_compiled.py.

The N-class model is built from the class template of models/ra_testis.ant; nothing here lists per-class ids
by hand: they come from the template (``per_class_ids``, ``class_template``) and ``CLASS_PARAMETERS``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import libsbml
import pandas as pd
import pytest

from ra_model.cli import main
from ra_model.engines.engine import Engine
from ra_model.engines.simulate import ParameterChange, default_engine, engine_classes, simulate
from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.interop.check import run_checks
from ra_model.interop.copasi import compare_tables
from ra_model.interop.sbml_export import export_sbml
from ra_model.model import columns as C
from ra_model.model import domain
from ra_model.model.classes import CLASS_PARAMETERS, MAX_CLASSES, NICHE_SHARE, class_id
from ra_model.model.domain import check_combination, check_value, domain_of
from ra_model.model.phenotypes import Phenotype, get_phenotype, load_phenotypes, per_class_ids, shipped_class_template
from ra_model.model.source import read_parameter_table
from ra_model.model.validate import validate_sbml
from ra_model.studies.sweep import run_sweep

N = 8
REGIMEN = "20 mg bid for 180 d"


def _ids(n: int) -> list[str]:
    return [class_id(NICHE_SHARE, k, n) for k in range(1, n + 1)]


def _same(one: pd.DataFrame, many: pd.DataFrame) -> None:
    rows = compare_tables(one, many, rtol=1e-5, floor=1e-9)
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]


# ------------------------------------------------------------------------------------------- simulate
def test_n_classes_picks_one_cached_engine_per_number() -> None:
    assert default_engine() is default_engine(1)
    assert default_engine(N) is default_engine(N) and engine_classes(default_engine(N)) == N
    assert engine_classes(default_engine()) == 1
    table = simulate("healthy", None, t_end_d=2, n_classes=N)
    assert table.attrs["model_hash"] == default_engine(N).sbml_hash != default_engine().sbml_hash
    with pytest.raises(InvalidValueError, match=r"n_classes = 8 was given with engine=.*this one has 1"):
        simulate("healthy", None, t_end_d=2, n_classes=N, engine=default_engine())
    with pytest.raises(InvalidValueError, match="n_classes = 1 was given with engine="):
        simulate("healthy", None, t_end_d=2, n_classes=1, engine=default_engine(N))
    with pytest.raises(InvalidValueError, match="from 1 to 32"):
        simulate("healthy", None, t_end_d=2, n_classes=0)


def test_class_parameters_as_overrides_and_scheduled_changes() -> None:
    local = "F3__ra_local"
    table = simulate(
        "healthy",
        None,
        t_end_d=20,
        n_classes=N,
        overrides={local: 0.2},
        changes=[ParameterChange(t_d=10, parameter=local, value=1.0)],
        include_species=True,
    )
    start, end = table.iloc[0], table.iloc[-1]
    assert start["amount_F3__STRA8"] < 0.5 * start["amount_F1__STRA8"]  # less local RA, less STRA8
    assert end["amount_F3__STRA8"] > 0.9 * end["amount_F1__STRA8"]  # back after the change to 1
    assert table.attrs["overrides"] == {local: 0.2}
    with pytest.raises(UnknownNameError, match="one class, so no class ids"):
        simulate("healthy", None, t_end_d=2, overrides={local: 0.2})
    with pytest.raises(InvalidValueError, match="F3__ra_local = -1"):
        ParameterChange(t_d=1, parameter=local, value=-1.0)


def test_niche_shares_change_together_or_not_at_all() -> None:
    first, second = _ids(N)[:2]
    share = 1 / N
    together = [
        ParameterChange(t_d=1, parameter=first, value=share + 0.05),
        ParameterChange(t_d=1, parameter=second, value=share - 0.05),
    ]
    table = simulate("healthy", None, t_end_d=2, n_classes=N, changes=together)
    assert len(table) == 3
    with pytest.raises(InvalidValueError, match="after the change at day 1: the niche shares .* add up to 1.05"):
        simulate("healthy", None, t_end_d=2, n_classes=N, changes=together[:1])
    with pytest.raises(InvalidValueError, match="split the stem niche"):
        simulate("healthy", None, t_end_d=2, n_classes=N, overrides={first: 0.5})


# ------------------------------------------------------------------------------------------- phenotypes
def test_presets_name_template_ids_for_every_class() -> None:
    per_class = per_class_ids()
    template = shipped_class_template()
    assert {"SSC", "STRA8", "ES", *(p.name for p in CLASS_PARAMETERS)} <= per_class <= set(template.ids)
    assert not {"stem_niche", "EP1", "CAUDA", "RAR_occupancy", "STRA8_rel"} & per_class  # shared ids stay shared
    preset = get_phenotype("sertoli_cell_only_complete")  # the preset with initial amounts (an empty germ line)
    assert preset.initial_amounts and preset.for_classes(1) is preset
    spread = preset.for_classes(N)
    for name, value in preset.initial_amounts.items():
        if name in per_class:
            assert name not in spread.initial_amounts
            assert all(spread.initial_amounts[class_id(name, k, N)] == value for k in range(1, N + 1)), name
        else:
            assert spread.initial_amounts[name] == value, name
    made = Phenotype(
        name="made",
        description="",
        rationale="",
        parameters={"F3__ra_local": 0.5, "ra_local": 2.0},
        initial_amounts={"SSC": 80.0},
    ).for_classes(4)
    assert dict(made.parameters) == {class_id("ra_local", k, 4): 0.5 if k == 3 else 2.0 for k in range(1, 5)}
    assert dict(made.initial_amounts) == {class_id("SSC", k, 4): 20.0 for k in range(1, 5)}  # split by niche share
    # shared ids are set once: the man-level focus_share and local_ra_sd of a mosaic preset, a scaled shared niche
    hypo = get_phenotype("hypospermatogenesis")
    assert {"focus_share", "local_ra_sd"} <= set(hypo.parameters) and not set(hypo.parameters) & per_class
    assert dict(hypo.for_classes(N).parameters) == dict(hypo.parameters)
    scaled = Phenotype(name="scaled", description="", rationale="", scale={"stem_niche": 0.05, "ra_local": 2.0})
    every_class = {class_id("ra_local", k, N): 2.0 for k in range(1, N + 1)}
    assert dict(scaled.for_classes(N).scale) == {"stem_niche": 0.05, **every_class}


@pytest.mark.parametrize("phenotype", list(load_phenotypes()))
def test_every_preset_with_eight_identical_classes_is_the_one_class_testis(phenotype: str) -> None:
    # the mosaic presets spread local RA between the classes (local_ra_sd); without the spread they are identical
    same = {"local_ra_sd": 0.0}
    one = simulate(phenotype, None, t_end_d=365, overrides=same)
    _same(one, simulate(phenotype, None, t_end_d=365, n_classes=N, overrides=same))


def test_a_preset_under_treatment_with_eight_identical_classes() -> None:
    # vitamin A deficiency restarts from a full arrest under isotretinoin: a synchronised wave, the hardest case
    one = simulate("vitamin_a_deficient", REGIMEN, t_end_d=365)
    _same(one, simulate("vitamin_a_deficient", REGIMEN, t_end_d=365, n_classes=N))
    # the graded gates leak a trickle from the arrest, which the duct loss absorbs (models/phenotypes.toml):
    # production below the duct threshold and no sperm even in the pellet, then a full wave under the drug
    table = read_parameter_table()
    start = one.iloc[0]
    assert start[C.DAILY_SPERM_PRODUCTION] < 0.01 * table["Vmax_duct_loss"].value * 24
    assert start[C.EJACULATE_CONCENTRATION] < 1e-3 * one.attrs["pellet_detection_limit_M_per_mL"]
    assert start[C.SEMEN_CATEGORY] == "azoospermia"
    assert one[C.EJACULATE_CONCENTRATION].max() > 10


# ------------------------------------------------------------------------------------------- domain
def test_class_parameters_have_their_template_domain(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(domain, "_WARNED", set())
    for spec in CLASS_PARAMETERS:
        for k in (1, MAX_CLASSES):
            rule = domain_of(class_id(spec.name, k, MAX_CLASSES))
            assert rule is not None and rule.name == spec.domain, spec.name
    with pytest.raises(InvalidValueError, match=r"F1__niche_share = 2 .*a fraction"):
        check_value("F1__niche_share", 2.0, where="--set")
    with pytest.raises(InvalidValueError, match=r"F1__ra_local = -1 .*CLASS_PARAMETERS"):
        check_value("F1__ra_local", -1.0)
    with caplog.at_level(logging.WARNING, logger="ra_model.model.domain"):
        assert check_value("F1__ra_local", 50.0) == 50.0
    assert "F1__ra_local = 50 is above the plausible range 0.1 to 10" in caplog.text
    check_combination({}, fed=False, n_classes=4)  # equal shares by default
    check_combination(dict(zip(_ids(4), (0.1, 0.2, 0.3, 0.4), strict=True)), fed=False, n_classes=4)
    check_combination({"F1__niche_share": 0.5}, fed=False)  # one class: no shares to add up
    with pytest.raises(InvalidValueError, match=r"add up to 1.25, not 1 .*split the stem niche \(stem_niche\)"):
        check_combination({"F1__niche_share": 0.5}, fed=False, n_classes=4, where="overrides")


# ------------------------------------------------------------------------------------------- export
def test_export_of_eight_classes_is_annotated_per_class_and_checks_clean(tmp_path: Path) -> None:
    out = tmp_path / "x8.xml"
    assert main(["export", "sbml", "--classes", str(N), "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    report = validate_sbml(text)
    assert (report.level, report.version) == (3, 2) and report.ok and report.findings == ()
    failed = [r for r in run_checks(out, copasi=False) if r.status != "pass"]
    assert not failed, failed
    assert main(["check", str(out), "--no-copasi"]) == 0
    many = libsbml.readSBMLFromString(text).getModel()
    one = libsbml.readSBMLFromString(export_sbml()).getModel()
    compared: set[str] = set()
    for name in shipped_class_template().ids:
        shared = one.getElementBySId(name)
        if shared is None or not (shared.getNumCVTerms() or shared.isSetSBOTerm()):
            continue
        for k in (1, N):
            copy = many.getElementBySId(class_id(name, k, N))
            assert copy.getSBOTermID() == shared.getSBOTermID(), name
            assert copy.getAnnotationString() == shared.getAnnotationString().replace(
                f"#meta_{name}", f"#meta_F{k}__{name}"
            ), name
            compared.add(name)
            if shared.getNumCVTerms():
                assert copy.getName() == f"{shared.getName()} (focus class F{k} of {N})", name
                assert f"F{k} of {N}" in copy.getNotesString()
    assert {"STRA8", "STRA8_rel", "RAR_occupancy", "J_stra8_syn", "J_spermiation"} <= compared
    assert "Source: assumed" in many.getParameter("F8__ra_local").getNotesString()
    assert many.getSpecies("F5__STRA8").getNumCVTerms() == one.getSpecies("STRA8").getNumCVTerms() == 1


def test_scenario_export_applies_the_preset_to_every_class() -> None:
    # the complete Sertoli-cell-only preset empties the germ line (its initial amounts): in every class
    model = libsbml.readSBMLFromString(export_sbml(phenotype="sertoli_cell_only_complete", n_classes=N)).getModel()
    cells = shipped_class_template().cell_species
    assert set(get_phenotype("sertoli_cell_only_complete").initial_amounts) >= set(cells)
    assert {model.getSpecies(class_id(s, k, N)).getInitialAmount() for s in cells for k in range(1, N + 1)} == {0.0}
    assert "built from 8 tubule-focus classes" in model.getNotesString()


# ------------------------------------------------------------------------------------------- CLI and sweep
def test_cli_simulate_with_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.csv"
    args = ["simulate", "--phenotype", "maturation_arrest", "--days", "3", "--out", str(out)]
    assert main([*args, "--classes", str(N), "--set", "F2__ra_local=3"]) == 0
    assert pd.read_csv(out)[C.DAILY_SPERM_PRODUCTION].iloc[0] > 0
    model = tmp_path / "one.xml"
    model.write_text(export_sbml(annotate=False), encoding="utf-8")
    assert main([*args, "--classes", "2", "--model", str(model)]) == 2
    assert "n_classes = 2 was given with engine=" in capsys.readouterr().err
    assert main([*args, "--classes", "0"]) == 2


def test_sweep_with_classes_runs_the_whole_model_when_asked() -> None:
    samples = pd.DataFrame({"sample_id": ["low", "high"], "F1__ra_local": [0.5, 2.0]})
    metrics = {"dsp": lambda t: float(t[C.DAILY_SPERM_PRODUCTION].iloc[-1])}
    common = {"metrics": metrics, "phenotype": "maturation_arrest", "t_end_d": 30.0, "workers": 1, "progress": False}
    with pytest.raises(UnknownNameError, match="F1__ra_local"):
        run_sweep(samples, **common)  # type: ignore[arg-type]
    table = run_sweep(samples, n_classes=2, split=False, **common)  # type: ignore[arg-type]
    assert list(table["status"]) == ["ok", "ok"]
    provenance = table.attrs["provenance"]
    assert provenance["split"] is False and provenance["model_hash"] == default_engine(2).sbml_hash
    direct = simulate("maturation_arrest", None, t_end_d=30, n_classes=2, overrides={"F1__ra_local": 2.0})
    assert table["dsp"].iloc[1] == pytest.approx(direct[C.DAILY_SPERM_PRODUCTION].iloc[-1], rel=1e-4)
    assert table["dsp"].iloc[1] > table["dsp"].iloc[0]


def test_engine_of_a_file_knows_its_classes(tmp_path: Path) -> None:
    engine = Engine(export_sbml(n_classes=2, annotate=False))
    assert engine_classes(engine) == 2
    same = {"local_ra_sd": 0.0}  # the preset's foci differ in local RA; without the spread the classes are identical
    _same(
        simulate("sertoli_cell_only", None, t_end_d=30, overrides=same),
        simulate("sertoli_cell_only", None, t_end_d=30, engine=engine, overrides=same),
    )
