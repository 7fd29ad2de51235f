"""Focus classes (issue 15): the class template of models/ra_testis.ant, written once per tubule-focus class."""

from __future__ import annotations

import re
from pathlib import Path

import libsbml
import pytest

from ra_model.cli import main
from ra_model.engines.engine import Engine
from ra_model.engines.simulate import default_engine, simulate, steady_state_amounts
from ra_model.errors import InvalidValueError, ModelBuildError
from ra_model.interop.copasi import compare_tables
from ra_model.interop.sbml_export import export_sbml
from ra_model.model import columns as C
from ra_model.model.classes import CLASS_END, CLASS_PARAMETERS, MAX_CLASSES, class_template, expand_classes
from ra_model.model.phenotypes import get_phenotype
from ra_model.model.source import (
    ANTIMONY_FILE,
    antimony_to_sbml,
    class_parameter_table,
    default_sbml,
    model_antimony,
    model_dir,
    read_parameter_table,
)
from ra_model.model.validate import validate_sbml

REPO = Path(__file__).resolve().parents[1]
REGIMEN = "20 mg bid for 180 d"
CLASS_ID = re.compile(r"^F\d+__")


@pytest.fixture(scope="module")
def source() -> str:
    return (model_dir() / ANTIMONY_FILE).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def engine8() -> Engine:
    return Engine(default_sbml(8))


def _ids(sbml: str) -> set[str]:
    model = libsbml.readSBMLFromString(sbml).getModel()
    elements = model.getListOfAllElements()
    return {elements.get(i).getId() for i in range(elements.getSize()) if elements.get(i).isSetId()}


def test_one_class_is_the_published_model_byte_for_byte(source: str, tmp_path: Path) -> None:
    assert expand_classes(source, 1) == source  # the markers and class-only lines are comments
    assert default_sbml(1) == default_sbml() == antimony_to_sbml(source)
    out = tmp_path / "x.xml"
    assert main(["export", "sbml", "--out", str(out)]) == 0
    assert out.read_bytes() == (REPO / "models" / "ra_testis.xml").read_bytes()
    ids = _ids(default_sbml())
    assert {"SSC", "STRA8", "J_spermiation", "spermiation_gate", "RAR_occupancy"} <= ids
    assert not [i for i in ids if CLASS_ID.match(i) or "niche_share" in i or "ra_local" in i]


@pytest.mark.parametrize("n", [2, 4, 8])
def test_n_classes_export_flat_and_valid(n: int, source: str, tmp_path: Path) -> None:
    sbml = default_sbml(n)
    raw = validate_sbml(sbml)
    assert raw.ok and {f.error_id for f in raw.unit_findings} <= {99505}  # bare numbers, as in one class
    path = tmp_path / f"ra_testis_{n}.ant"
    path.write_text(model_antimony(n), encoding="utf-8")  # plain Antimony: no template left
    exported = export_sbml(source=path, annotate=False)  # the export's unit step; raises unless clean
    report = validate_sbml(exported)
    assert (report.level, report.version) == (3, 2)
    assert report.findings == ()  # 0 errors, 0 warnings, units included
    doc = libsbml.readSBMLFromString(exported)
    assert not doc.isPackageEnabled("comp") and "comp:" not in exported  # flat: no submodels
    model = doc.getModel()
    template = class_template(source)
    ids = _ids(exported)
    for name in template.ids:
        assert all(f"F{k}__{name}" in ids for k in range(1, n + 1)), name
    assert not set(template.class_only) & ids  # SSC, ... exist only per class
    assert {"RAR_occupancy", "RA_signal", "STRA8_rel", "EP1", "stem_niche", "daily_sperm_production"} <= ids
    into_ep1 = sorted(
        r.getId() for r in model.getListOfReactions() if any(p.getSpecies() == "EP1" for p in r.getListOfProducts())
    )
    assert into_ep1 == sorted(f"F{k}__J_spermiation" for k in range(1, n + 1))  # the testis's spermiation
    shares = [model.getParameter(f"F{k}__niche_share").getValue() for k in range(1, n + 1)]
    assert sum(shares) == pytest.approx(1.0) and len(set(shares)) == 1
    assert {model.getParameter(f"F{k}__ra_local").getValue() for k in range(1, n + 1)} == {1.0}
    one = libsbml.readSBMLFromString(default_sbml()).getModel()
    for species in template.cell_species:
        split = sum(model.getSpecies(f"F{k}__{species}").getInitialAmount() for k in range(1, n + 1))
        assert split == pytest.approx(one.getSpecies(species).getInitialAmount(), rel=1e-12), species


@pytest.mark.parametrize("regimen", [None, REGIMEN])
def test_identical_classes_reproduce_the_single_class_model(engine8: Engine, regimen: str | None) -> None:
    same = {"local_ra_sd": 0.0}  # the preset spreads local RA over the classes; without the spread they are identical
    one = simulate("maturation_arrest", regimen, t_end_d=365, overrides=same)
    eight = simulate("maturation_arrest", regimen, t_end_d=365, engine=engine8, overrides=same)
    rows = compare_tables(one, eight, rtol=1e-5, floor=1e-9)
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
    if regimen:  # the comparison covers a response, not only the arrest
        assert eight[C.EJACULATE_CONCENTRATION].max() > 1


def test_local_ra_multiplier_scales_the_synthesised_share_of_testis_ra() -> None:
    multipliers = (0.25, 0.5, 2.0, 4.0)
    engine = Engine(default_sbml(len(multipliers)))
    preset = get_phenotype("maturation_arrest")
    local = {f"F{k}__ra_local": m for k, m in enumerate(multipliers, start=1)}
    parameters = preset.resolve(engine.defaults) | local | {"local_ra_sd": 0.0}
    engine.fresh(parameters=parameters, initial_amounts=steady_state_amounts(engine, parameters, {}))
    occupancy = engine.get("RAR_occupancy")
    k_syn, k_deg, half, hill = (engine.get(p) for p in ("k_stra8_syn", "k_stra8_deg", "K_stra8_occ", "n_stra8"))
    # the synthesised share of the testis's atRA input, from the rates: ALDH1A against 13-cis isomerisation
    # and plasma atRA entry
    v = {
        p: engine.get(p)
        for p in (
            "Vmax_aldh1a",
            "aldh1a_expr",
            "aldh1a_inhibition",
            "Km_aldh1a",
            "k_iso_t",
            "PS_at_in",
            "at_space",
            "testis",
            "f_free_ra",
            "Kd_rar_at",
            "Kd_rar_cis",
        )
    }
    ral = engine.get("RAL_t") / v["testis"]
    synth = v["Vmax_aldh1a"] * v["aldh1a_expr"] * (1 - v["aldh1a_inhibition"]) * ral / (v["Km_aldh1a"] + ral)
    supply = v["k_iso_t"] * engine.get("cisRA_t") + v["PS_at_in"] * engine.get("atRA_p") / v["at_space"]
    share = synth / (synth + supply)
    at, cis = engine.get("atRA_t") / v["testis"], engine.get("cisRA_t") / v["testis"]
    production = []
    for k, m in enumerate(multipliers, start=1):
        a = v["f_free_ra"] * at * (1 + share * (m - 1)) / v["Kd_rar_at"]
        expected = a / (1 + a + v["f_free_ra"] * cis / v["Kd_rar_cis"])
        assert engine.get(f"F{k}__RAR_occupancy") == pytest.approx(expected, rel=1e-12)
        assert engine.get(f"F{k}__RA_signal") == pytest.approx(expected / engine.get("occupancy_ref"), rel=1e-12)
        # the class's germ line reads its own occupancy: its STRA8 sits at that occupancy's steady state
        stra8 = k_syn * expected**hill / (half**hill + expected**hill) / k_deg
        assert engine.get(f"F{k}__STRA8") == pytest.approx(stra8, rel=1e-6)
        production.append(engine.get(f"F{k}__daily_sperm_production"))
    # local handling acts downstream of the shared retinoids: the testis occupancy is the one-class model's
    one = default_engine()
    base = preset.resolve(one.defaults)
    one.fresh(parameters=base, initial_amounts=steady_state_amounts(one, base, {}))
    assert occupancy == pytest.approx(one.get("RAR_occupancy"), rel=1e-6)
    assert production == sorted(production) and production[-1] > 10 * max(production[0], 1e-6)


def test_class_parameters_are_generated_table_rows(engine8: Engine) -> None:
    table = read_parameter_table()
    classes = class_parameter_table(8)
    assert class_parameter_table(1) == {}
    assert not [pid for pid in table if CLASS_ID.match(pid)]  # no row per class in models/parameters.csv
    assert len(classes) == 8 * len(CLASS_PARAMETERS)
    assert set(engine8.defaults) == set(table) | set(classes)  # the N-class model and the rows, both ways
    model = libsbml.readSBMLFromString(default_sbml(8)).getModel()
    for pid, info in classes.items():
        assert engine8.defaults[pid] == pytest.approx(info.value, rel=1e-12), pid
        assert model.getParameter(pid).getUnits() == info.unit, pid
        assert info.source.strip() and info.lower <= info.value <= info.upper and info.category == "focus_class"
    for pid, info in table.items():  # the shared parameters keep their values
        assert engine8.defaults[pid] == pytest.approx(info.value, rel=1e-12), pid
    assert sum(classes[f"F{k}__niche_share"].value for k in range(1, 9)) == pytest.approx(1.0)


def test_template_mistakes_are_named(source: str) -> None:
    for bad in (0, MAX_CLASSES + 1, True, 2.0):
        with pytest.raises(InvalidValueError, match="n_classes"):
            default_sbml(bad)  # type: ignore[arg-type]
    leaked = source.replace(
        "//+ daily_sperm_production := sum_classes(daily_sperm_production)",
        "//+ daily_sperm_production := k_rs * RS12 * h_per_d",
    )
    assert leaked != source
    assert antimony_to_sbml(leaked) == default_sbml()  # one class: the class-only line is a comment
    with pytest.raises(ModelBuildError, match=r"line \d+: RS12 is per focus class"):
        expand_classes(leaked, 2)
    unclosed = source[: source.rindex(CLASS_END)] + source[source.rindex(CLASS_END) + len(CLASS_END) :]
    with pytest.raises(ModelBuildError, match="not closed"):
        expand_classes(unclosed, 1)
    with pytest.raises(ModelBuildError, match="no '// >>> focus class'"):
        expand_classes(model_antimony(2), 2)
