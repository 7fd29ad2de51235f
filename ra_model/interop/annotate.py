"""Annotate an SBML document for reuse: human names, MIRIAM cross-references, SBO terms, notes, history.

The annotation data live in ``models/annotations.toml`` and ``models/parameters.csv`` (data, not code);
this module only applies them to a libsbml document:

- every compartment, species, reaction, parameter (rule variables included) and event gets a human
  ``name``: parameters and compartments from the table's ``name`` column, everything else from the
  ``[names]`` table of the annotation file. Each id is named in exactly one of the two, and an element
  named in neither stops the export (:class:`~ra_model.errors.ModelBuildError` naming the id and where
  to add its name), so no element slips into the SBML unnamed;
- ``[terms.<id>]`` become MIRIAM biology qualifiers (ChEBI, UniProt, Cell Ontology, UBERON, ...);
- the table's ``doi``/``pmid`` columns become each parameter's ``bqbiol:isDescribedBy`` and, gathered,
  the model's ``bqmodel:isDescribedBy``.

A testis built from focus classes (:mod:`ra_model.model.classes`) has one copy per class of every id of
the class template (``F3__STRA8``). The annotation file names the template's ids (``STRA8``); each class's
copy gets the same terms and SBO term, the template's name with its class
(:func:`~ra_model.model.classes.class_copy_name`: ``"STRA8 protein (focus class F3 of 8)"``) and, when
annotated, a note saying which class it belongs to; the class parameters get their names and notes from
:func:`ra_model.model.source.class_parameter_table`.
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
from ra_model.model.classes import check_n_classes, class_copy_name, class_id, class_prefix
from ra_model.model.source import (
    PARAMETER_FILE,
    ParameterInfo,
    check_name,
    class_parameter_table,
    model_dir,
    read_parameter_table,
)

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
        names: Element id -> human name, for every element but parameters and compartments (whose names are
            the ``name`` column of ``models/parameters.csv``).
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
    names: Mapping[str, str] = field(default_factory=dict)
    terms: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    reaction_sbo: Mapping[str, str] = field(default_factory=dict)
    parameter_sbo: Mapping[str, str] = field(default_factory=dict)
    unit_sbo: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check names, qualifiers, SBO term syntax and resource syntax."""
        for element, name in self.names.items():
            if not isinstance(name, str):
                raise InvalidValueError(f'{ANNOTATION_FILE}: names.{element} must be a string, e.g. {element} = "..."')
            check_name(element, name, where=f"{ANNOTATION_FILE}, [names]")
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
        InvalidValueError: If the file is malformed (an empty or overlong name, an unknown qualifier, ...).
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
            names=dict(data.get("names", {})),
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
    """Add names, MIRIAM terms, references, SBO terms, parameter notes and model history to a document, in place.

    Args:
        doc: The SBML document (Level 3).
        data: Annotation data; defaults to ``load_annotations()``.
        parameters: The parameter table (names, notes with each parameter's source, references); defaults to
            the shipped one and, with focus classes, the rows of their class parameters.
        scenario_note: Extra paragraph for the model notes (e.g. the exported phenotype and regimen).
        n_classes: Focus classes the model is built from (1: the published model, nothing per class).
        per_class: The class template's ids (:attr:`ra_model.model.classes.ClassTemplate.ids`), each written
            ``F1__<id>`` ... ``FN__<id>`` when ``n_classes`` >= 2. With one class they only excuse names of
            template ids the one-class model does not have (those written only for two or more classes).

    Raises:
        ModelBuildError: If an annotation names an element the model does not have, an element has no name
            (or is named both in the parameter table and in ``[names]``), or libsbml refuses an annotation.
        InvalidValueError: If ``n_classes`` is not a whole number from 1 to ``MAX_CLASSES``.
    """
    n = check_n_classes(n_classes)
    data = data or load_annotations()
    if parameters is None:
        parameters = read_parameter_table() | class_parameter_table(n)
    template_ids = frozenset(per_class) if n > 1 else frozenset()
    model = doc.getModel()
    _model_level(model, data, scenario_note)
    _name_elements(model, data, parameters, n, template_ids, frozenset(per_class))
    for element_id, qualifiers in data.terms.items():
        copies = _copies(model, element_id, n, template_ids)
        if not copies:
            raise ModelBuildError(
                f"{ANNOTATION_FILE}: terms.{element_id} names no element of the model; fix or remove the entry"
            )
        for k, element in copies:
            _ensure_metaid(element)
            if k:
                _note_class_copy(element, element_id, k, n)
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
            notes = [f"{info.description}", f"Unit: {info.unit}.", f"Source: {info.source}."]
            if info.references:
                notes.append(f"References: {', '.join(info.references)}.")
            _set_notes(parameter, notes)
    _references(model, parameters)


#: The kinds of model element that must carry a human name, with how to list them.
_NAMED: tuple[tuple[str, str], ...] = (
    ("compartment", "getListOfCompartments"),
    ("species", "getListOfSpecies"),
    ("reaction", "getListOfReactions"),
    ("parameter", "getListOfParameters"),
    ("event", "getListOfEvents"),
)


def _name_elements(
    model: libsbml.Model,
    data: AnnotationData,
    parameters: Mapping[str, ParameterInfo],
    n: int,
    template_ids: frozenset[str],
    per_class: frozenset[str],
) -> None:
    """Give every compartment, species, reaction, parameter and event its human name, or say which have none.

    A parameter-table row names its id (class parameters' rows already carry their class); ``[names]`` names
    the rest; a class's copy of a template id gets the template's name with its class. An element named by
    neither keeps a name the export gave it (the scheduled-change events and their times); otherwise it is
    an error, as is an id named in both places or a ``[names]`` entry that names nothing in the model.
    """
    table = {pid: info.name for pid, info in parameters.items()}
    both = sorted(set(table) & set(data.names))
    if both:
        raise ModelBuildError(
            f"{', '.join(both)} named both in the name column of models/{PARAMETER_FILE} and in [names] of "
            f"models/{ANNOTATION_FILE}; name each element in one place (parameters and compartments in the table)"
        )
    stale = [i for i in data.names if not _copies(model, i, n, template_ids) and not (n == 1 and i in per_class)]
    if stale:
        raise ModelBuildError(
            f"[names] of models/{ANNOTATION_FILE} names {', '.join(stale)}, which the model does not have; "
            "fix or remove the entries"
        )
    rules = {r.getVariable() for r in model.getListOfRules()}
    missing: list[str] = []
    for kind, getter in _NAMED:
        for element in getattr(model, getter)():
            eid = element.getId()
            k, base = _class_of(eid, n, template_ids)
            name = table.get(eid)
            if name is None and k:  # a class's copy of a template id: the template's name, with its class
                template_name = table.get(base) or data.names.get(base)
                name = class_copy_name(template_name, k, n) if template_name else None
            elif name is None:
                name = data.names.get(eid)
            if name:
                _check(element.setName(name), f"name of {eid}")
            elif not element.isSetName():
                in_table = kind == "compartment" or (kind == "parameter" and eid not in rules)
                where = (
                    f"a row with a name in models/{PARAMETER_FILE}"
                    if in_table
                    else f'{base} = "<short name>" under [names] in models/{ANNOTATION_FILE}'
                )
                missing.append(f"{kind} {eid!r} (add {where})")
    if missing:
        shown = "; ".join(missing[:12]) + (f"; and {len(missing) - 12} more" if len(missing) > 12 else "")
        raise ModelBuildError(f"{len(missing)} model element(s) have no human name: {shown}")


def _references(model: libsbml.Model, parameters: Mapping[str, ParameterInfo]) -> None:
    """Write each parameter's DOIs/PubMed ids as its bqbiol:isDescribedBy, and all of them as the model's."""
    gathered: dict[str, None] = {}
    for pid, info in parameters.items():
        element = model.getElementBySId(pid)
        if element is None or not info.references:
            continue
        _ensure_metaid(element)
        _add_cv(element, libsbml.BIOLOGICAL_QUALIFIER, libsbml.BQB_IS_DESCRIBED_BY, "isDescribedBy", info.references)
        gathered.update(dict.fromkeys(info.references))
    if gathered:
        _add_cv(model, libsbml.MODEL_QUALIFIER, libsbml.BQM_IS_DESCRIBED_BY, "isDescribedBy", tuple(gathered))


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
    return _class_of(element_id, n, template_ids)[1]


def _class_of(element_id: str, n: int, template_ids: frozenset[str]) -> tuple[int, str]:
    """Return (class, template id) of a class's copy (``F3__J_stra8_syn`` -> 3, ``J_stra8_syn``); else (0, id)."""
    for k in range(1, n + 1) if template_ids else ():
        prefix = class_prefix(k)
        if element_id.startswith(prefix) and element_id[len(prefix) :] in template_ids:
            return k, element_id[len(prefix) :]
    return 0, element_id


def _note_class_copy(element: libsbml.SBase, element_id: str, k: int, n: int) -> None:
    """Say in the notes of a class's copy of an annotated element which class it belongs to."""
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
    """Add one CV term (``kind``: BIOLOGICAL_QUALIFIER or MODEL_QUALIFIER) with identifiers.org resources."""
    term = libsbml.CVTerm(kind)
    if kind == libsbml.MODEL_QUALIFIER:
        term.setModelQualifierType(qualifier)
    else:
        term.setBiologicalQualifierType(qualifier)
    for resource in resources:
        term.addResource(IDENTIFIERS_ORG + resource)
    prefix = "bqmodel" if kind == libsbml.MODEL_QUALIFIER else "bqbiol"
    _check(element.addCVTerm(term), f"{prefix}:{name} on {element.getId() or 'model'}")


def _set_notes(element: libsbml.SBase, paragraphs: list[str]) -> None:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    _check(element.setNotes(f'<body xmlns="{_XHTML}">{body}</body>'), f"notes of {element.getId()}")


def _check(code: int, what: str) -> None:
    if code != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise ModelBuildError(f"libsbml refused {what}: {libsbml.OperationReturnValue_toString(code)}")
