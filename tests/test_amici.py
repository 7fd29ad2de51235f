"""AMICI compiles the export as it is and reproduces ``simulate()`` (AMICI is the optional extra ``amici``).

AMICI generates C++ from the SBML's math, so an event assignment that reads an assignment-rule variable
(``Gut_iso = Gut_iso + dose_nmol``) did not compile; the export writes the rule's formula there instead.
The AMICI model is compiled once per session (about half a minute to a minute).
"""

from __future__ import annotations

import importlib.util

import libsbml
import pytest

from ra_model.engines.simulate import simulate
from ra_model.interop.copasi import AGREEMENT_FLOOR, _basico, compare_tables
from ra_model.interop.sbml_export import export_sbml
from ra_model.model import columns as C

REGIMEN = "20 mg bid for 180 d"
#: Agreement with simulate() on every observable, every day: 1e-5 relative plus COPASI's floor of 1e-9 in the
#: observable's unit. Both integrate with CVODE(S) at rtol 1e-8; measured worst about 2e-6 (ejaculate).
AMICI_AGREEMENT_RTOL = 1e-5

needs_amici = pytest.mark.skipif(
    importlib.util.find_spec("amici") is None,
    reason="AMICI is not installed here: pip install -e '.[amici]' (.ci/run installs it, so CI runs this)",
)


@pytest.fixture(scope="session")
def ma_export() -> str:
    return export_sbml(phenotype="maturation_arrest", regimen=REGIMEN, annotate=False)


@pytest.fixture(scope="session")
def amici_ma(ma_export: str, tmp_path_factory: pytest.TempPathFactory):
    from ra_model.interop.amici_sim import compile_amici

    return compile_amici(ma_export, out_dir=tmp_path_factory.mktemp("amici"), model_name="ra_testis_ma")


def test_no_event_assignment_reads_an_assignment_rule_variable() -> None:
    _basico()  # COPASI's SWIG bindings change what libsbml's ASTNode.getType() returns; the export must not mind
    doc = libsbml.readSBMLFromString(export_sbml(phenotype="maturation_arrest", regimen=REGIMEN, annotate=False))
    model = doc.getModel()
    rules = {r.getVariable() for r in model.getListOfRules() if r.isAssignment()}
    assert "dose_nmol" in rules  # the rule is still there for other tools to read
    read = {
        name
        for event in model.getListOfEvents()
        for assignment in event.getListOfEventAssignments()
        for name in _names(assignment.getMath())
    }
    assert read & rules == set()
    assert {"Gut_iso", "dose_mg", "nmol_per_mg_iso", "doses_given", "t_next_dose"} <= read
    dose = model.getEvent("E_dose")
    gut = next(a for a in dose.getListOfEventAssignments() if a.getVariable() == "Gut_iso")
    assert libsbml.formulaToL3String(gut.getMath()) == "Gut_iso + dose_mg * nmol_per_mg_iso"


def _names(node: libsbml.ASTNode) -> set[str]:
    found = {node.getName()} if node.isName() else set()
    for i in range(node.getNumChildren()):
        found |= _names(node.getChild(i))
    return found


@needs_amici
def test_amici_compiles_the_export_and_matches_simulate(amici_ma) -> None:
    from ra_model.interop.amici_sim import simulate_amici

    theirs = simulate_amici(amici_ma, t_end_d=365.0)
    ours = simulate("maturation_arrest", REGIMEN, t_end_d=365.0)
    rows = compare_tables(ours, theirs, rtol=AMICI_AGREEMENT_RTOL, floor=AGREEMENT_FLOOR)
    assert {r.column for r in rows} == {C.DOSES_GIVEN, *(o.column for o in C.OBSERVABLES)}
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
    assert theirs[C.DOSES_GIVEN].iloc[-1] == 2 * 180  # twice a day for 180 days
    assert theirs[C.EJACULATE_CONCENTRATION].max() > 1.0  # the treated man responds in AMICI too


@needs_amici
def test_amici_gives_a_dose_due_at_t0_once(amici_ma) -> None:
    """The dose event armed for t = 0 (trigger true at t0, initialValue=false) fires once at t = 0 in AMICI."""
    from ra_model.interop.amici_sim import simulate_amici

    hour = 1 / 24
    theirs = simulate_amici(
        amici_ma,
        t_end_d=49 * hour,
        output_step_d=hour,
        parameters={"dose_interval_h": 12.0, "n_doses": 10.0},
        states={"Gut_iso": 0.0, "doses_given": 0.0, "t_next_dose": 0.0},  # the export's t = 0 dose taken out
    )
    assert theirs[C.DOSES_GIVEN].iloc[0] == 1
    assert theirs[C.DOSES_GIVEN].iloc[-1] == 5  # at 0, 12, 24, 36 and 48 h
    ours = simulate("maturation_arrest", "20 mg bid x 10 doses", t_end_d=49 * hour, output_step_d=hour)
    rows = compare_tables(ours, theirs, rtol=AMICI_AGREEMENT_RTOL, floor=AGREEMENT_FLOOR)
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]  # a second dose at t = 0 would double the drug
