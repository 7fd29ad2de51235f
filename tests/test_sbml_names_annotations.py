"""SBML names, Cell Ontology and UBERON terms, and references (DOIs/PubMed ids) of the exported model.

Every expectation is worked out here from the data files (``models/parameters.csv`` read with the csv module,
``models/annotations.toml`` with tomllib) or from the model's own structure (germ cells are the species counted
in Mcell; their order is the chain of reactions), never copied from the exporter's output.
"""

from __future__ import annotations

import csv
import dataclasses
import tomllib
from collections.abc import Iterator
from pathlib import Path

import libsbml
import pytest

from ra_model.engines.simulate import ParameterChange
from ra_model.errors import InvalidValueError, ModelBuildError
from ra_model.interop.annotate import annotate_document, load_annotations
from ra_model.interop.sbml_export import export_sbml
from ra_model.model.phenotypes import shipped_class_template
from ra_model.model.source import default_sbml, read_parameter_table

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "models" / "parameters.csv"
ANNOTATIONS = REPO / "models" / "annotations.toml"
BRIEF = REPO.parent / "shared" / "science" / "brief.md"
N = 3
IDENTIFIERS = "https://identifiers.org/"
#: Rank of each Cell Ontology germ-cell type along spermatogenesis (spermatocyte: primary or secondary).
CL_RANK = {"CL:0000020": 0, "CL:0000656": 1, "CL:0000017": 1, "CL:0000018": 2, "CL:0000019": 3}
CELL_UNIT = "Mcell"


@pytest.fixture(scope="module")
def plain() -> libsbml.Model:
    return _model(export_sbml())


@pytest.fixture(scope="module")
def classes() -> libsbml.Model:
    return _model(export_sbml(n_classes=N))


_DOCUMENTS: list[libsbml.SBMLDocument] = []  # the documents of the models handed out, kept alive


def _model(text: str) -> libsbml.Model:
    doc = libsbml.readSBMLFromString(text)
    _DOCUMENTS.append(doc)
    return doc.getModel()


def _table_rows() -> list[dict[str, str]]:
    with TABLE.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _elements(model: libsbml.Model) -> Iterator[libsbml.SBase]:
    for listing in (
        model.getListOfCompartments(),
        model.getListOfSpecies(),
        model.getListOfReactions(),
        model.getListOfParameters(),
        model.getListOfEvents(),
    ):
        yield from listing


def _terms(element: libsbml.SBase) -> dict[str, set[str]]:
    """Biology qualifier (``is``, ``isVersionOf``, ...) -> resources, read back from libsbml's CV terms."""
    out: dict[str, set[str]] = {}
    for i in range(element.getNumCVTerms()):
        term = element.getCVTerm(i)
        if term.getQualifierType() == libsbml.BIOLOGICAL_QUALIFIER:
            name = libsbml.BiolQualifierType_toString(term.getBiologicalQualifierType())
            out.setdefault(name, set()).update(term.getResourceURI(j) for j in range(term.getNumResources()))
    return out


def _model_described_by(model: libsbml.Model) -> set[str]:
    found: set[str] = set()
    for i in range(model.getNumCVTerms()):
        term = model.getCVTerm(i)
        if term.getQualifierType() == libsbml.MODEL_QUALIFIER:
            assert term.getModelQualifierType() == libsbml.BQM_IS_DESCRIBED_BY
            found.update(term.getResourceURI(j) for j in range(term.getNumResources()))
    return found


def _cell_types(element: libsbml.SBase) -> set[str]:
    """The Cell Ontology terms an element is (or is a version of)."""
    terms = _terms(element)
    uris = terms.get("is", set()) | terms.get("isVersionOf", set())
    return {u.removeprefix(IDENTIFIERS) for u in uris if u.startswith(IDENTIFIERS + "CL:")}


# ------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("which", ["plain", "classes"])
def test_every_element_has_a_human_name(which: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(which)
    elements = list(_elements(model))
    assert len(elements) > 250
    unnamed = [e.getId() for e in elements if not e.getName().strip() or e.getName() == e.getId()]
    assert unnamed == []
    names = [e.getName() for e in elements]
    assert len(set(names)) == len(names), sorted({n for n in names if names.count(n) > 1})


def test_names_are_the_table_and_the_names_data(plain: libsbml.Model) -> None:
    table = {row["id"]: row["name"] for row in _table_rows()}
    listed = tomllib.loads(ANNOTATIONS.read_text(encoding="utf-8"))["names"]
    assert not set(table) & set(listed)  # each element named in one place
    for element in _elements(plain):
        eid = element.getId()
        assert element.getName() == (table[eid] if eid in table else listed[eid]), eid
    # compartments and constant parameters are named by the table, rule variables and the rest by [names]
    rules = {r.getVariable() for r in plain.getListOfRules()}
    assert {c.getId() for c in plain.getListOfCompartments()} <= set(table)
    assert {p.getId() for p in plain.getListOfParameters() if p.getId() not in rules} <= set(table)
    assert rules <= set(listed)


def test_class_copies_are_named_after_their_template(plain: libsbml.Model, classes: libsbml.Model) -> None:
    template = shipped_class_template()
    copies = 0
    for name in template.ids:
        shared = plain.getElementBySId(name)
        for k in range(1, N + 1):
            copy = classes.getElementBySId(f"F{k}__{name}")
            assert copy is not None, name
            if shared is not None:  # ids the one-class model has too
                assert copy.getName() == f"{shared.getName()} (focus class F{k} of {N})"
                copies += 1
            else:  # class-only ids (class parameters, ra_local_synthesis): the same name in every class
                assert copy.getName().endswith(f" (focus class F{k} of {N})")
                assert (
                    copy.getName().split(" (focus class")[0]
                    == classes.getElementBySId(f"F1__{name}").getName().split(" (focus class")[0]
                )
    assert copies > 90 * N


def test_every_names_entry_names_an_element(plain: libsbml.Model, classes: libsbml.Model) -> None:
    listed = tomllib.loads(ANNOTATIONS.read_text(encoding="utf-8"))["names"]
    ids = {e.getId() for e in _elements(plain)} | {e.getId().split("__")[-1] for e in _elements(classes)}
    assert set(listed) <= ids


def test_an_unnamed_element_stops_the_export() -> None:
    def annotated(edit) -> None:  # type: ignore[no-untyped-def]
        doc = libsbml.readSBMLFromString(default_sbml())
        edit(doc.getModel())
        annotate_document(doc, per_class=shipped_class_template().ids)

    def new_species(model: libsbml.Model) -> None:
        species = model.getSpecies("Oxo").clone()
        species.setId("Oxo_glucuronide")
        assert model.addSpecies(species) == libsbml.LIBSBML_OPERATION_SUCCESS

    with pytest.raises(ModelBuildError, match=r"species 'Oxo_glucuronide'.*\[names\].*annotations\.toml"):
        annotated(new_species)

    def new_parameter(model: libsbml.Model) -> None:
        parameter = model.createParameter()
        parameter.setId("k_new")
        parameter.setValue(1.0)
        parameter.setConstant(True)

    with pytest.raises(ModelBuildError, match=r"parameter 'k_new'.*parameters\.csv"):
        annotated(new_parameter)
    # an element named both in the table and in [names] is refused, as is a [names] entry naming nothing
    data = load_annotations()
    doc = libsbml.readSBMLFromString(default_sbml())
    with pytest.raises(ModelBuildError, match=r"testis named both"):
        annotate_document(doc, data=dataclasses.replace(data, names=dict(data.names) | {"testis": "the testes"}))
    with pytest.raises(ModelBuildError, match=r"J_gone, which the model does not have"):
        annotate_document(doc, data=dataclasses.replace(data, names=dict(data.names) | {"J_gone": "gone"}))


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ('Oxo = "4-oxo-isotretinoin"', 'Oxo = "Oxo"', "'Oxo' has no human name"),
        ('Oxo = "4-oxo-isotretinoin"', 'Oxo = ""', "'Oxo' has no human name"),
        ('Oxo = "4-oxo-isotretinoin"', f'Oxo = "{"x" * 81}"', "at most 80 characters"),
    ],
)
def test_bad_names_in_the_annotation_file_are_refused(tmp_path: Path, old: str, new: str, fragment: str) -> None:
    text = ANNOTATIONS.read_text(encoding="utf-8")
    assert old in text
    bad = tmp_path / "annotations.toml"
    bad.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(InvalidValueError, match=fragment):
        load_annotations(bad)


def test_scenario_elements_are_named_too() -> None:
    change = ParameterChange(t_d=10.0, parameter="aldh1a_inhibition", value=1.0)
    model = _model(export_sbml(phenotype="healthy", changes=[change]))
    assert model.getEvent("E_change_0").getName() and model.getParameter("t_change_0").getName()
    assert all(e.getName() and e.getName() != e.getId() for e in _elements(model))


# ------------------------------------------------------------------------------------------- the parameter table
def _write_table(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    rows = _table_rows()
    fields = list(rows[0])
    edit(rows, fields)
    path = tmp_path / "parameters.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _set(pid: str, column: str, value: str):  # type: ignore[no-untyped-def]
    def edit(rows: list[dict[str, str]], fields: list[str]) -> None:
        next(r for r in rows if r["id"] == pid)[column] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (_set("Km_rdh10", "doi", "doi:10.1074/jbc.M000000200"), r"'Km_rdh10': doi 'doi:10.1074/jbc.M000000200' is not"),
        (_set("Km_rdh10", "doi", "https://doi.org/10.1074/jbc"), r"is not a DOI; write the bare DOI"),
        (_set("Km_rdh10", "doi", "11.1074/jbc"), r"starts with '10\.'"),
        (_set("Km_rdh10", "pmid", "PMID:18000000"), r"'Km_rdh10': pmid 'PMID:18000000' is not a PubMed id"),
        (_set("Km_rdh10", "pmid", "18x"), r"digits only"),
        (_set("Km_rdh10", "name", ""), r"'Km_rdh10' has no human name"),
        (_set("Km_rdh10", "name", "Km_rdh10"), r"'Km_rdh10' has no human name"),
        (lambda rows, fields: fields.remove("doi"), r"columns must be id, name, .*, source, doi, pmid, lower"),
        (lambda rows, fields: fields.remove("name"), r"columns must be"),
    ],
)
def test_the_table_validates_names_dois_and_pmids(tmp_path: Path, edit, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidValueError, match=fragment):
        read_parameter_table(_write_table(tmp_path, edit))


def test_the_table_accepts_several_references(tmp_path: Path) -> None:
    def edit(rows: list[dict[str, str]], fields: list[str]) -> None:
        _set("Km_rdh10", "doi", "10.1000/a.1 10.1000/b(2)")(rows, fields)
        _set("Km_rdh10", "pmid", "18000001 18000002")(rows, fields)

    row = read_parameter_table(_write_table(tmp_path, edit))["Km_rdh10"]
    assert row.references == ("doi:10.1000/a.1", "doi:10.1000/b(2)", "pubmed:18000001", "pubmed:18000002")
    assert read_parameter_table()["Km_rdh10"].references == ()


# ------------------------------------------------------------------------------------------- references
def test_references_are_the_table_s_dois_and_pmids(plain: libsbml.Model) -> None:
    expected: dict[str, set[str]] = {}
    for row in _table_rows():
        refs = {f"{IDENTIFIERS}doi:{d}" for d in row["doi"].split()}
        refs |= {f"{IDENTIFIERS}pubmed:{p}" for p in row["pmid"].split()}
        if refs:
            expected[row["id"]] = refs
    assert expected, "the table gives no DOI or PubMed id at all"
    assert _model_described_by(plain) == set().union(*expected.values())
    described = {e.getId(): _terms(e)["isDescribedBy"] for e in _elements(plain) if "isDescribedBy" in _terms(e)}
    assert described == expected


def test_every_doi_is_written_in_the_brief() -> None:
    if not BRIEF.exists():
        pytest.skip(f"{BRIEF} is not here")
    brief = BRIEF.read_text(encoding="utf-8")
    for row in _table_rows():
        for doi in row["doi"].split():
            assert f"doi:{doi}" in brief, (row["id"], doi)  # never a DOI the brief does not give
        for pmid in row["pmid"].split():
            assert pmid in brief, (row["id"], pmid)


# ------------------------------------------------------------------------------------------- Cell Ontology, UBERON
def _germ_cells(model: libsbml.Model) -> set[str]:
    """The germ-cell stages: the species counted in cells (Mcell), not in nmol."""
    return {s.getId() for s in model.getListOfSpecies() if CELL_UNIT in (s.getSubstanceUnits(), s.getUnits())}


def _chain(model: libsbml.Model, cells: set[str]) -> list[tuple[str, float]]:
    """The germ line in order, from the reactions moving cells on by one stage: (species, stoichiometry in)."""
    step: dict[str, tuple[str, float]] = {}
    for reaction in model.getListOfReactions():
        reactants = [r.getSpecies() for r in reaction.getListOfReactants()]
        products = [(p.getSpecies(), p.getStoichiometry()) for p in reaction.getListOfProducts()]
        if len(reactants) == 1 and len(products) == 1 and {reactants[0], products[0][0]} <= cells:
            assert reactants[0] not in step, f"{reactants[0]} has two next stages"
            step[reactants[0]] = products[0]
    (first,) = cells - {s for s, _ in step.values()}
    chain = [(first, 1.0)]
    while chain[-1][0] in step:
        chain.append(step[chain[-1][0]])
    return chain


def test_germ_cell_stages_carry_cell_ontology_terms_in_order(plain: libsbml.Model) -> None:
    cells = _germ_cells(plain)
    assert len(cells) >= 40
    # exactly the germ-cell stages are (a version of) a Cell Ontology cell type, one each
    typed = {s.getId(): _cell_types(s) for s in plain.getListOfSpecies() if _cell_types(s)}
    assert set(typed) == cells
    assert all(len(t) == 1 for t in typed.values())
    chain = _chain(plain, cells)
    assert {s for s, _ in chain} == cells  # one chain through every stage
    ranks = [CL_RANK[next(iter(typed[s]))] for s, _ in chain]
    assert ranks[0] == 0 and ranks[-1] == 3 and ranks == sorted(ranks)  # spermatogonium ... sperm, never back
    # meiosis (one spermatocyte makes four spermatids) is where spermatocytes become spermatids
    steps = zip(chain, [0, *ranks[:-1]], ranks, strict=True)
    assert [stoich for (_, stoich), before, rank in steps if (before, rank) == (1, 2)] == [4.0]
    assert [stoich for _, stoich in chain].count(4.0) == 1
    # in the tubules until spermiation, in the epididymis after it
    for (species, _), rank in zip(chain, ranks, strict=True):
        place = _terms(plain.getSpecies(species))["isPartOf"]
        assert place == {IDENTIFIERS + ("UBERON:0001301" if rank == 3 else "UBERON:0001343")}, species


def test_every_focus_class_copy_carries_the_same_cell_type(plain: libsbml.Model, classes: libsbml.Model) -> None:
    cells = _germ_cells(plain)
    many = _germ_cells(classes)
    assert len(many) > len(cells)
    for species in many:
        template = species.split("__")[-1]
        assert _cell_types(classes.getSpecies(species)) == _cell_types(plain.getSpecies(template)), species


@pytest.mark.parametrize("which", ["plain", "classes"])
def test_every_compartment_is_annotated(which: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(which)
    for compartment in model.getListOfCompartments():
        resources = set().union(*_terms(compartment).values()) if _terms(compartment) else set()
        assert any(r.startswith(IDENTIFIERS + "UBERON:") for r in resources), compartment.getId()
