"""Annotate an SBML document for reuse: MIRIAM cross-references, SBO terms, parameter notes, model history.

The annotation data live in ``models/annotations.toml`` and ``models/parameters.csv`` (data, not code);
this module only applies them to a libsbml document.
"""

from __future__ import annotations

import fnmatch
import html
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libsbml

from ra_model.errors import InvalidValueError, ModelBuildError
from ra_model.model.source import ParameterInfo, model_dir, read_parameter_table

#: File holding the annotation data, inside the model directory.
ANNOTATION_FILE = "annotations.toml"
#: Base of every MIRIAM resource URI written into the model.
IDENTIFIERS_ORG = "https://identifiers.org/"
#: SBO term for a parameter that no rule in the annotation file covers.
SBO_DEFAULT_PARAMETER = "SBO:0000002"

#: The biology qualifiers the annotation file may use, mapped to libsbml's constants.
QUALIFIERS: dict[str, int] = {
    "is": libsbml.BQB_IS,
    "hasPart": libsbml.BQB_HAS_PART,
    "isPartOf": libsbml.BQB_IS_PART_OF,
    "isVersionOf": libsbml.BQB_IS_VERSION_OF,
    "hasVersion": libsbml.BQB_HAS_VERSION,
    "isHomologTo": libsbml.BQB_IS_HOMOLOG_TO,
    "isDescribedBy": libsbml.BQB_IS_DESCRIBED_BY,
    "isEncodedBy": libsbml.BQB_IS_ENCODED_BY,
    "encodes": libsbml.BQB_ENCODES,
    "occursIn": libsbml.BQB_OCCURS_IN,
    "hasProperty": libsbml.BQB_HAS_PROPERTY,
    "isPropertyOf": libsbml.BQB_IS_PROPERTY_OF,
    "hasTaxon": libsbml.BQB_HAS_TAXON,
}

_XHTML = "http://www.w3.org/1999/xhtml"


@dataclass(frozen=True)
class Creator:
    """A model creator (SBML model history)."""

    given: str
    family: str
    email: str = ""
    organisation: str = ""


@dataclass(frozen=True)
class AnnotationData:
    """The contents of ``models/annotations.toml``, checked.

    Attributes:
        name: Model name.
        description: Model description (plain text).
        licence: Licence name, e.g. ``"MIT"``.
        licence_url: Licence URL.
        created: Creation date, W3C date-time.
        modified: Modification date, W3C date-time.
        taxon: Organism, ``prefix:accession``.
        creators: Model creators.
        terms: Element id -> qualifier -> ``prefix:accession`` list.
        reaction_sbo: Reaction id pattern (``*`` wildcard) -> SBO term, first match wins.
        parameter_sbo: Parameter id -> SBO term.
        unit_sbo: Unit id -> SBO term for parameters not in ``parameter_sbo``.
    """

    name: str
    description: str
    licence: str
    licence_url: str
    created: str
    modified: str
    taxon: str
    creators: tuple[Creator, ...]
    terms: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    reaction_sbo: Mapping[str, str] = field(default_factory=dict)
    parameter_sbo: Mapping[str, str] = field(default_factory=dict)
    unit_sbo: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check qualifiers, SBO term syntax and resource syntax."""
        for element, qualifiers in self.terms.items():
            for qualifier, resources in qualifiers.items():
                if qualifier not in QUALIFIERS:
                    raise InvalidValueError(
                        f"{ANNOTATION_FILE}: terms.{element}: unknown qualifier {qualifier!r}; use one of "
                        f"{', '.join(QUALIFIERS)}"
                    )
                for resource in resources:
                    if ":" not in resource or resource.startswith(("http:", "https:")):
                        raise InvalidValueError(
                            f"{ANNOTATION_FILE}: terms.{element}.{qualifier}: {resource!r} must be "
                            "'prefix:accession', e.g. 'CHEBI:15367' or 'uniprot:P10276'"
                        )
        for table in (self.reaction_sbo, self.parameter_sbo, self.unit_sbo):
            for key, term in table.items():
                if libsbml.SBO.stringToInt(term) < 0:
                    raise InvalidValueError(f"{ANNOTATION_FILE}: {key} = {term!r} is not an SBO term (SBO:0000nnn)")

    def reaction_term(self, reaction_id: str) -> str | None:
        """Return the SBO term of a reaction (first matching pattern), or None."""
        for pattern, term in self.reaction_sbo.items():
            if fnmatch.fnmatchcase(reaction_id, pattern):
                return term
        return None


def load_annotations(path: Path | None = None) -> AnnotationData:
    """Read the annotation data.

    Args:
        path: A TOML file; defaults to the shipped ``models/annotations.toml``.

    Returns:
        The checked annotation data.

    Raises:
        InvalidValueError: If the file is malformed.
    """
    path = path or model_dir() / ANNOTATION_FILE
    with path.open("rb") as handle:
        data: dict[str, Any] = tomllib.load(handle)
    try:
        model = data["model"]
        creators = tuple(Creator(**c) for c in model.get("creators", []))
        return AnnotationData(
            name=model["name"],
            description=" ".join(model["description"].split()),
            licence=model["licence"],
            licence_url=model["licence_url"],
            created=model["created"],
            modified=model["modified"],
            taxon=model["taxon"],
            creators=creators,
            terms={k: {q: tuple(r) for q, r in v.items()} for k, v in data.get("terms", {}).items()},
            reaction_sbo=dict(data.get("sbo", {}).get("reactions", {})),
            parameter_sbo=dict(data.get("sbo", {}).get("parameters", {})),
            unit_sbo=dict(data.get("sbo", {}).get("parameter_units", {})),
        )
    except (KeyError, TypeError) as exc:
        raise InvalidValueError(f"{path}: missing or malformed entry {exc}") from exc


def annotate_document(
    doc: libsbml.SBMLDocument,
    *,
    data: AnnotationData | None = None,
    parameters: Mapping[str, ParameterInfo] | None = None,
    scenario_note: str = "",
) -> None:
    """Add MIRIAM terms, SBO terms, parameter notes and model history to a document, in place.

    Args:
        doc: The SBML document (Level 3).
        data: Annotation data; defaults to ``load_annotations()``.
        parameters: The parameter table (for notes with each parameter's source); defaults to the shipped one.
        scenario_note: Extra paragraph for the model notes (e.g. the exported phenotype and regimen).

    Raises:
        ModelBuildError: If an annotation names an element the model does not have, or libsbml refuses it.
    """
    data = data or load_annotations()
    parameters = parameters if parameters is not None else read_parameter_table()
    model = doc.getModel()
    _model_level(model, data, scenario_note)
    for element_id, qualifiers in data.terms.items():
        element = model.getElementBySId(element_id)
        if element is None:
            raise ModelBuildError(
                f"{ANNOTATION_FILE}: terms.{element_id} names no element of the model; fix or remove the entry"
            )
        _ensure_metaid(element)
        for qualifier, resources in qualifiers.items():
            _add_cv(element, libsbml.BIOLOGICAL_QUALIFIER, QUALIFIERS[qualifier], qualifier, resources)
    for reaction in model.getListOfReactions():
        term = data.reaction_term(reaction.getId())
        if term:
            _check(reaction.setSBOTerm(term), f"SBO term {term} on reaction {reaction.getId()}")
    for parameter in model.getListOfParameters():
        pid = parameter.getId()
        term = data.parameter_sbo.get(pid) or data.unit_sbo.get(parameter.getUnits()) or SBO_DEFAULT_PARAMETER
        _check(parameter.setSBOTerm(term), f"SBO term {term} on parameter {pid}")
        info = parameters.get(pid)
        if info is not None:
            _set_notes(parameter, [f"{info.description}", f"Unit: {info.unit}.", f"Source: {info.source}."])


def _model_level(model: libsbml.Model, data: AnnotationData, scenario_note: str) -> None:
    _ensure_metaid(model)
    model.setName(data.name)
    paragraphs = [data.description, f"Licence: {data.licence} ({data.licence_url})."]
    if scenario_note:
        paragraphs.append(scenario_note)
    _set_notes(model, paragraphs)
    history = libsbml.ModelHistory()
    for person in data.creators:
        creator = libsbml.ModelCreator()
        creator.setGivenName(person.given)
        creator.setFamilyName(person.family)
        if person.email:
            creator.setEmail(person.email)
        if person.organisation:
            creator.setOrganisation(person.organisation)
        _check(history.addCreator(creator), "model creator")
    _check(history.setCreatedDate(libsbml.Date(data.created)), "model created date")
    _check(history.setModifiedDate(libsbml.Date(data.modified)), "model modified date")
    _check(model.setModelHistory(history), "model history")
    _add_cv(model, libsbml.BIOLOGICAL_QUALIFIER, libsbml.BQB_HAS_TAXON, "hasTaxon", (data.taxon,))


def _ensure_metaid(element: libsbml.SBase) -> None:
    if not element.isSetMetaId():
        _check(element.setMetaId(f"meta_{element.getId()}"), f"metaid of {element.getId()}")


def _add_cv(element: libsbml.SBase, kind: int, qualifier: int, name: str, resources: tuple[str, ...]) -> None:
    term = libsbml.CVTerm(kind)
    term.setBiologicalQualifierType(qualifier)
    for resource in resources:
        term.addResource(IDENTIFIERS_ORG + resource)
    _check(element.addCVTerm(term), f"bqbiol:{name} on {element.getId() or 'model'}")


def _set_notes(element: libsbml.SBase, paragraphs: list[str]) -> None:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    _check(element.setNotes(f'<body xmlns="{_XHTML}">{body}</body>'), f"notes of {element.getId()}")


def _check(code: int, what: str) -> None:
    if code != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise ModelBuildError(f"libsbml refused {what}: {libsbml.OperationReturnValue_toString(code)}")
