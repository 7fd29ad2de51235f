"""Units as pint (and CF/UDUNITS-style) text: the model's SBML unit definitions turned into parseable strings.

One job: give every quantity that leaves the package a ``units`` string that :mod:`pint` parses
(``pint.UnitRegistry().parse_expression(text)``), derived from the model where the model defines it:

- :func:`pint_units` turns an SBML unit id of the model (``Mcell_per_mL``, ``nM``, ``per_h``...) into text built
  from its SBML definition (multiplier, scale, exponent and base kind of each part), so the text can never
  disagree with the model; SBML's ``item`` (a count of things) is pint's ``count``.
- :data:`DIMENSIONLESS` is the text for fractions, yes/no values, ratios and labels.

The results table's columns carry their units in :data:`ra_model.model.columns.UNITS` (written with the same
vocabulary; a test checks each observable's text against its SBML unit here).
"""

from __future__ import annotations

import functools
import math

import libsbml

from ra_model.errors import ModelBuildError, UnknownNameError
from ra_model.model.source import default_sbml

#: Units text of a dimensionless quantity (fractions, yes/no, ratios, categories and counts of nothing).
DIMENSIONLESS = "dimensionless"

#: SBML base unit kinds by their pint name. SBML's ``item`` counts things: pint's ``count``.
_KIND_TO_PINT: dict[str, str] = {
    "mole": "mole",
    "litre": "liter",
    "liter": "liter",
    "second": "second",
    "gram": "gram",
    "item": "count",
    "metre": "meter",
    "meter": "meter",
    "kilogram": "kilogram",
    "dimensionless": "dimensionless",
}


def _unit_text(unit: libsbml.Unit) -> str:
    """Text of one part of an SBML unit definition: ``(multiplier * 10**scale * kind) ** exponent``."""
    kind = libsbml.UnitKind_toString(unit.getKind())
    if kind not in _KIND_TO_PINT:
        raise ModelBuildError(f"SBML unit kind {kind!r} has no pint name; add it to ra_model.model.units._KIND_TO_PINT")
    factor = unit.getMultiplier() * 10.0 ** unit.getScale()
    base = _KIND_TO_PINT[kind]
    exponent = unit.getExponentAsDouble()
    core = base if math.isclose(factor, 1.0) else f"{factor:.12g} * {base}"
    if math.isclose(exponent, 1.0):
        return f"({core})"
    return f"({core}) ** {exponent:g}"


@functools.lru_cache(maxsize=1)
def _model_units() -> dict[str, str]:
    document = libsbml.readSBMLFromString(default_sbml())
    model = document.getModel()
    if model is None:  # pragma: no cover - the packaged model always parses
        raise ModelBuildError("the packaged model's SBML has no model element")
    return _document_units(model)


def pint_units(unit_id: str) -> str:
    """Return pint-parseable text for one of the model's SBML unit ids.

    Args:
        unit_id: A unit id of the model (``nM``, ``Mcell_per_mL``, ``per_h``...), an SBML base unit
            (``litre``, ``dimensionless``) or a name pint already knows (``hour``).

    Returns:
        Text that ``pint.UnitRegistry().parse_expression`` parses to the same quantity, e.g.
        ``"(1e+06 * count) * (0.001 * liter) ** -1"`` for ``Mcell_per_mL``.

    Raises:
        UnknownNameError: ``unit_id`` is neither defined by the model nor an SBML base unit.
    """
    units = _model_units()
    if unit_id in units:
        return units[unit_id]
    if unit_id in _KIND_TO_PINT:
        return _KIND_TO_PINT[unit_id]
    if unit_id in {"hour", "day"}:
        return unit_id
    raise UnknownNameError(
        "unit", unit_id, [*units, *_KIND_TO_PINT, "hour", "day"], where="the model's unit definitions"
    )


def species_units(sbml: str) -> dict[str, str]:
    """Return pint-parseable units text of each species' amount in an SBML document.

    Args:
        sbml: SBML text (a ``str``, not a path).

    Returns:
        Species id -> units text of its substance unit (the species' own, else the model's ``substanceUnits``):
        nmol for retinoids and proteins, million cells (``1e6 * count``) for germ cells.

    Raises:
        ModelBuildError: The text is not SBML with a model.
    """
    document = libsbml.readSBMLFromString(sbml)
    model = document.getModel()
    if model is None:
        raise ModelBuildError("species_units: the text is not an SBML document with a model; pass SBML text")
    units = _model_units() | _document_units(model)
    default = model.getSubstanceUnits() if model.isSetSubstanceUnits() else "dimensionless"
    found: dict[str, str] = {}
    for species in model.getListOfSpecies():
        unit_id = species.getSubstanceUnits() if species.isSetSubstanceUnits() else default
        found[species.getId()] = units.get(unit_id) or _KIND_TO_PINT.get(unit_id, DIMENSIONLESS)
    return found


def _document_units(model: libsbml.Model) -> dict[str, str]:
    found: dict[str, str] = {}
    for definition in model.getListOfUnitDefinitions():
        parts = [_unit_text(definition.getUnit(i)) for i in range(definition.getNumUnits())]
        found[definition.getId()] = " * ".join(parts) if parts else DIMENSIONLESS
    return found
