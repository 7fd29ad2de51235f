"""The exported SBML simulated in COPASI agrees with our own simulation (every preset, no drug and 20 mg bid)."""

from __future__ import annotations

import libsbml
import pytest

from ra_model.engines.simulate import simulate
from ra_model.errors import InvalidValueError
from ra_model.interop.copasi import AGREEMENT_FLOOR, AGREEMENT_RTOL, compare_tables, copasi_agreement, simulate_copasi
from ra_model.interop.sbml_export import export_sbml
from ra_model.model import columns as C
from ra_model.model.phenotypes import load_phenotypes

REGIMEN = "20 mg bid for 180 d"


@pytest.mark.parametrize("regimen", [None, REGIMEN], ids=["no_drug", "20mg_bid_180d"])
@pytest.mark.parametrize("phenotype", list(load_phenotypes()))
def test_copasi_matches_simulate_on_every_observable_over_a_year(phenotype: str, regimen: str | None) -> None:
    agreement = copasi_agreement(phenotype, regimen, t_end_d=365.0, output_step_d=1.0)
    assert (agreement.rtol, agreement.floor) == (1e-3, 1e-9)
    columns = {o.column for o in agreement.observables}
    assert columns == {C.DOSES_GIVEN, *(o.column for o in C.OBSERVABLES)}
    assert agreement.ok, agreement.describe()


def test_copasi_gives_every_dose() -> None:
    sbml = export_sbml(phenotype="healthy", regimen=REGIMEN, annotate=False)
    table = simulate_copasi(sbml, t_end_d=365.0)
    assert len(table) == 366
    assert table[C.DOSES_GIVEN].iloc[-1] == 360
    assert table.loc[table[C.TIME_D] == 90, C.DOSES_GIVEN].item() == 181  # t = 0 plus two a day for 90 days


def test_the_comparison_detects_a_one_percent_change() -> None:
    """Negative control: a 1 % faster isotretinoin clearance in the COPASI copy must fail the agreement."""
    doc = libsbml.readSBMLFromString(export_sbml(phenotype="healthy", regimen="20 mg bid for 30 d", annotate=False))
    parameter = doc.getModel().getParameter("CL_iso")
    parameter.setValue(parameter.getValue() * 1.01)
    theirs = simulate_copasi(libsbml.writeSBMLToString(doc), t_end_d=40.0)
    ours = simulate("healthy", "20 mg bid for 30 d", t_end_d=40.0)
    rows = {r.column: r for r in compare_tables(ours, theirs, rtol=AGREEMENT_RTOL, floor=AGREEMENT_FLOOR)}
    assert not rows[C.PLASMA_ISOTRETINOIN].ok
    assert rows[C.PLASMA_ISOTRETINOIN].max_relative_error > 5e-3


def test_copasi_refuses_a_grid_that_is_not_whole_steps() -> None:
    with pytest.raises(InvalidValueError, match="whole number"):
        simulate_copasi(export_sbml(annotate=False), t_end_d=10.5, output_step_d=1.0)
