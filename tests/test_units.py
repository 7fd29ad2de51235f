"""Every units text that leaves the package parses in pint and means what the model means (issue 17).

Results tables, sweep tables and the sweep's netCDF carry ``units`` attributes; each must parse with
``pint.UnitRegistry().parse_expression`` and, where the model defines the quantity, equal the model's SBML unit.
"""

from __future__ import annotations

import libsbml
import numpy as np
import pandas as pd
import pytest

from ra_model import simulate
from ra_model.errors import UnknownNameError
from ra_model.model import columns as C
from ra_model.model.source import default_sbml, read_parameter_table
from ra_model.model.units import pint_units
from ra_model.studies import metrics as M
from ra_model.studies.sweep import run_sweep, to_xarray

pint = pytest.importorskip("pint")
UREG = pint.UnitRegistry()


def _same(a: str, b: str) -> bool:
    qa, qb = UREG.parse_expression(a), UREG.parse_expression(b)
    if qa.dimensionality != qb.dimensionality:
        return False
    return bool(np.isclose(qa.to_base_units().magnitude, qb.to_base_units().magnitude, rtol=1e-9))


def test_every_model_unit_parses_to_its_sbml_definition() -> None:
    """Each unit definition, built by hand from its SBML parts here, equals pint_units' text."""
    model = libsbml.readSBMLFromString(default_sbml()).getModel()
    base = {"mole": "mol", "litre": "L", "second": "s", "gram": "g", "item": "count", "dimensionless": "1"}
    for definition in model.getListOfUnitDefinitions():
        expected = UREG.parse_expression("1")
        for i in range(definition.getNumUnits()):
            u = definition.getUnit(i)
            part = (
                u.getMultiplier()
                * 10.0 ** u.getScale()
                * UREG.parse_expression(base[libsbml.UnitKind_toString(u.getKind())])
            )
            expected = expected * part ** u.getExponentAsDouble()
        got = UREG.parse_expression(pint_units(definition.getId()))
        assert got.dimensionality == expected.dimensionality, definition.getId()
        assert got.to_base_units().magnitude == pytest.approx(expected.to_base_units().magnitude, rel=1e-9)


def test_familiar_units_come_out_right() -> None:
    assert _same(pint_units("Mcell_per_mL"), "1e6 / mL")
    assert _same(pint_units("nM"), "nmol / L")
    assert _same(pint_units("per_h"), "1 / hour")
    with pytest.raises(UnknownNameError, match="furlong"):
        pint_units("furlong")


def test_every_parameter_unit_parses() -> None:
    for pid, info in read_parameter_table().items():
        quantity = UREG.parse_expression(pint_units(info.unit))
        assert quantity.to_base_units().magnitude > 0, pid


def test_results_table_units_parse_and_match_the_model() -> None:
    table = simulate("healthy", None, t_end_d=1.0)
    units = table.attrs["units"]
    assert set(table.columns) <= set(units)
    for column in table.columns:
        UREG.parse_expression(units[column])
    model = libsbml.readSBMLFromString(default_sbml()).getModel()
    for obs in C.OBSERVABLES:
        element = model.getParameter(obs.model_id)
        if element is None or not element.isSetUnits():
            continue
        assert _same(units[obs.column], pint_units(element.getUnits())), obs.model_id
    assert _same(units[C.EJACULATE_CONCENTRATION], "1e6 / mL")
    assert _same(units[C.TIME_D], "day")


def test_species_columns_carry_their_own_amount_unit() -> None:
    table = simulate("healthy", None, t_end_d=1.0, include_species=True)
    units = table.attrs["units"]
    species = [c for c in table.columns if c.startswith("amount_")]
    assert species and set(species) <= set(units)
    assert _same(units["amount_SSC"], "1e6")  # germ cells: million cells
    assert _same(units["amount_atRA_t"], "nmol")  # retinoids: nmol
    for column in species:
        UREG.parse_expression(units[column])


def test_sweep_table_and_netcdf_carry_units(tmp_path) -> None:
    xr = pytest.importorskip("xarray")
    samples = pd.DataFrame({"sample_id": ["a", "b"], "cyp26_expr": [1.0, 2.0]})
    table = run_sweep(
        samples,
        metrics={"peak_ejaculate_concentration": M.peak_ejaculate_concentration, "responder": M.responder},
        phenotype="healthy",
        t_end_d=2.0,
        workers=1,
        progress=False,
    )
    units = table.attrs["units"]
    assert set(table.columns) <= set(units)
    for text in units.values():
        UREG.parse_expression(text)
    assert _same(units["peak_ejaculate_concentration"], "1e6 / mL")
    path = tmp_path / "sweep.nc"
    table.attrs["provenance"] = {"parameters": ["cyp26_expr"]}
    to_xarray(table).to_netcdf(path, engine="scipy")
    with xr.open_dataset(path, engine="scipy") as dataset:
        names = [*dataset.data_vars, *dataset.coords]
        assert names
        for name in names:
            UREG.parse_expression(dataset[name].attrs["units"])
        assert _same(dataset["peak_ejaculate_concentration"].attrs["units"], "1e6 / mL")


def test_the_cohort_readouts_carry_their_units_with_their_options_bound(caplog: pytest.LogCaptureFixture) -> None:
    """The semen and retrieval readouts run with their visit days bound (functools.partial) keep their units."""
    import functools
    import logging

    from ra_model.studies import clinical, retrieval

    samples = pd.DataFrame({"sample_id": ["a"], "cyp26_expr": [1.0]})
    metrics = {
        clinical.METRIC: functools.partial(clinical.semen_analyses, visit_days=(0.0, 2.0)),
        retrieval.METRIC: functools.partial(retrieval.retrieval_readouts, visit_days=(2.0,)),
    }
    with caplog.at_level(logging.INFO, logger="ra_model"):
        table = run_sweep(samples, metrics=metrics, phenotype="healthy", t_end_d=2.0, workers=1, progress=False)
    units = table.attrs["units"]
    assert _same(units["semen.conc_d2"], "1e6 / mL") and _same(units["semen.detection_limit_M_per_mL"], "1e6 / mL")
    assert units["retrieval.micro_TESE_end"] == "dimensionless"
    assert "declares no units" not in caplog.text
