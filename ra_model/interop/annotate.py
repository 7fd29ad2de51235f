"""Annotate an SBML document for reuse: MIRIAM cross-references, SBO terms, parameter notes, model history.

The annotation data live in ``models/annotations.toml`` and ``models/parameters.csv`` (data, not code);
this module only applies them to a libsbml document.

A testis built from focus classes (:mod:`ra_model.model.classes`) has one copy per class of every id of
the class template (``F3__STRA8``). The annotation file names the template's ids (``STRA8``); each class's
copy gets the same terms and SBO term, a name and a note saying which class it belongs to, and the class
parameters get their notes from :func:`ra_model.model.source.class_parameter_table`.
"""

from __future__ import annotations

import fnmatch
import html
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libsbml

from ra_model.errors import InvalidValueError, ModelBuildError
from ra_model.model.classes import check_n_classes, class_id, class_prefix
from ra_model.model.source import ParameterInfo, class_parameter_table, model_dir, read_parameter_table

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
    n_classes: int = 1,
    per_class: Collection[str] = (),
) -> None:
    """Add MIRIAM terms, SBO terms, parameter notes and model history to a document, in place.

    Args:
        doc: The SBML document (Level 3).
        data: Annotation data; defaults to ``load_annotations()``.
        parameters: The parameter table (for notes with each parameter's source); defaults to the shipped one
            and, with focus classes, the rows of their class parameters.
        scenario_note: Extra paragraph for the model notes (e.g. the exported phenotype and regimen).
        n_classes: Focus classes the model is built from (1: the published model, nothing per class).
        per_class: The class template's ids (:attr:`ra_model.model.classes.ClassTemplate.ids`), each written
            ``F1__<id>`` ... ``FN__<id>`` when ``n_classes`` >= 2.

    Raises:
        ModelBuildError: If an annotation names an element the model does not have, or libsbml refuses it.
        InvalidValueError: If ``n_classes`` is not a whole number from 1 to ``MAX_CLASSES``.
    """
    n = check_n_classes(n_classes)
    data = data or load_annotations()
    if parameters is None:
        parameters = read_parameter_table() | class_parameter_table(n)
    template_ids = frozenset(per_class) if n > 1 else frozenset()
    model = doc.getModel()
    _model_level(model, data, scenario_note)
    for element_id, qualifiers in data.terms.items():
        copies = _copies(model, element_id, n, template_ids)
        if not copies:
            raise ModelBuildError(
                f"{ANNOTATION_FILE}: terms.{element_id} names no element of the model; fix or remove the entry"
            )
        for k, element in copies:
            _ensure_metaid(element)
            if k:
                _name_class_copy(element, element_id, k, n)
            for qualifier, resources in qualifiers.items():
                _add_cv(element, libsbml.BIOLOGICAL_QUALIFIER, QUALIFIERS[qualifier], qualifier, resources)
    for reaction in model.getListOfReactions():
        term = data.reaction_term(_template_id(reaction.getId(), n, template_ids))
        if term:
            _check(reaction.setSBOTerm(term), f"SBO term {term} on reaction {reaction.getId()}")
    for parameter in model.getListOfParameters():
        pid = parameter.getId()
        base = _template_id(pid, n, template_ids)
        term = data.parameter_sbo.get(base) or data.unit_sbo.get(parameter.getUnits()) or SBO_DEFAULT_PARAMETER
        _check(parameter.setSBOTerm(term), f"SBO term {term} on parameter {pid}")
        info = parameters.get(pid)
        if info is not None:
            _set_notes(parameter, [f"{info.description}", f"Unit: {info.unit}.", f"Source: {info.source}."])


def _copies(
    model: libsbml.Model, element_id: str, n: int, template_ids: frozenset[str]
) -> list[tuple[int, libsbml.SBase]]:
    """Return the elements an annotation of ``element_id`` applies to, with their class (0: shared)."""
    found: list[tuple[int, libsbml.SBase]] = []
    shared = model.getElementBySId(element_id)
    if shared is not None:
        found.append((0, shared))
    if element_id in template_ids:
        for k in range(1, n + 1):
            element = model.getElementBySId(class_id(element_id, k, n))
            if element is not None:
                found.append((k, element))
    return found


def _template_id(element_id: str, n: int, template_ids: frozenset[str]) -> str:
    """Return the template id of a class's copy (``F3__J_stra8_syn`` -> ``J_stra8_syn``); other ids unchanged."""
    for k in range(1, n + 1) if template_ids else ():
        prefix = class_prefix(k)
        if element_id.startswith(prefix) and element_id[len(prefix) :] in template_ids:
            return element_id[len(prefix) :]
    return element_id


def _name_class_copy(element: libsbml.SBase, element_id: str, k: int, n: int) -> None:
    """Name a class's copy of an annotated element, and say in its notes which class it belongs to."""
    _check(element.setName(f"{element_id} (focus class F{k} of {n})"), f"name of {element.getId()}")
    _set_notes(
        element,
        [
            f"{element_id} in focus class F{k} of {n}: the same entity as {element_id} of the one-class model, "
            f"in the germ line of this class of seminiferous-tubule foci (annotated with the same terms)."
        ],
    )


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
