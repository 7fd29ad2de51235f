"""The germ-line table read from the SBML: it matches the model, follows edits, refuses what it cannot integrate."""

from __future__ import annotations

from collections import Counter

import libsbml
import numpy as np
import pytest

from ra_model.engines.engine import Engine
from ra_model.engines.fastpath import check_germline_equations, core_sbml, fast_engine
from ra_model.engines.germline import default_kernel, kernel_for
from ra_model.engines.germline_table import names_in, read_germline
from ra_model.errors import ModelBuildError, UnsupportedRateLawError
from ra_model.model.source import ANTIMONY_FILE, antimony_to_sbml, default_sbml, model_dir

HEAD = ("Oxo", "STRA8", "SCOMP", "TJ_open")
CHAIN = (
    "SSC",
    *(f"SG{i}" for i in range(1, 10)),
    "PL",
    *(f"SC{i}" for i in range(1, 13)),
    *(f"RS{i}" for i in range(1, 13)),
    "ES",
    "EP1",
    "EP2",
    "EP3",
    "CAUDA",
)


def _antimony() -> str:
    return (model_dir() / ANTIMONY_FILE).read_text(encoding="utf-8")


def _edited(old: str, new: str) -> str:
    text = _antimony()
    assert text.count(old) == 1, old
    return antimony_to_sbml(text.replace(old, new))


def test_the_table_is_the_models_germ_line() -> None:
    sbml = default_sbml()
    table = read_germline(sbml)
    assert table.species == HEAD + CHAIN
    assert table.head == HEAD and table.chain == CHAIN
    assert table.derived == {"TJ_sealed": ("TJ_open", "TJ_total")}
    assert table.ledgers == ("Eliminated",)
    assert table.inputs == ("Iso_c", "RAR_occupancy", "competence_target", "RA_signal", "spermiation_gate")
    # the schemes and the sub-stepped block follow from the rate laws
    assert {s: table.schemes[k] for k, s in enumerate(table.species) if table.schemes[k] != "linear"} == {
        "SSC": "logistic",
        "EP1": "saturable",
    }
    assert table.inputs[table.fast_input] == "spermiation_gate"
    assert [table.species[k] for k in table.substepped] == ["ES", "EP1"]
    # the gates: the drug's inflow, STRA8 synthesis, Sertoli competence, junction opening (inputs),
    # differentiation (STRA8 and competence) and crossing (head states), spermiation (the fast input)
    reads = [(frozenset(names_in(g, "input")), frozenset(names_in(g, "state"))) for g in table.gates]
    # compared as multisets: the text of a frozenset depends on the process's hash seed, so no sort by str
    assert Counter(reads) == Counter(
        [
            (frozenset({"Iso_c"}), frozenset()),
            (frozenset({"RAR_occupancy"}), frozenset()),
            (frozenset({"competence_target"}), frozenset()),
            (frozenset({"RA_signal"}), frozenset()),
            (frozenset(), frozenset({"STRA8", "SCOMP"})),
            (frozenset(), frozenset({"STRA8", "TJ_open"})),
            (frozenset({"spermiation_gate"}), frozenset()),
        ]
    )
    # every reaction that changes an integrated germ-line species enters each of them as a term
    model = libsbml.readSBMLFromString(sbml).getModel()
    touching: dict[str, set[str]] = {}
    for i in range(model.getNumReactions()):
        r = model.getReaction(i)
        refs = [*r.getListOfReactants(), *r.getListOfProducts()]
        germ = {ref.getSpecies() for ref in refs} & set(table.species)
        if germ:
            touching[r.getId()] = germ
    assert {r: set(s) for r, s in table.reactions.items()} == touching
    for reaction, species in touching.items():
        for s in species:
            assert any(t.reaction == reaction for t in table.terms_of(s)), (reaction, s)
    # the core is everything else: together they are every species of the model
    core = libsbml.readSBMLFromString(core_sbml(sbml)).getModel()
    core_species = {core.getSpecies(i).getId() for i in range(core.getNumSpecies())}
    every = {model.getSpecies(i).getId() for i in range(model.getNumSpecies())}
    assert core_species | set(table.species) | set(table.derived) | set(table.ledgers) == every
    assert not core_species & set(table.species)


def test_the_shipped_kernel_agrees_with_libroadrunner() -> None:
    engine = fast_engine()
    check_germline_equations(engine.full, engine.kernel, n_states=5, seed=11)


def test_an_edited_rate_constant_is_followed() -> None:
    sbml = _edited("J_ep2: EP2 -> EP3; k_ep * EP2 * cell_extent", "J_ep2: EP2 -> EP3; 0.5 * k_ep * EP2 * cell_extent")
    full = Engine(sbml)
    kernel = kernel_for(sbml)
    check_germline_equations(full, kernel)  # the kernel read from the edited model agrees with it
    # the shipped model's kernel does not: the check is what would catch a stale copy
    with pytest.raises(ModelBuildError, match="dEP2/dt"):
        check_germline_equations(full, default_kernel())
    # at steady state the slower stage holds twice the cells of its neighbours
    params = kernel.parameter_vector(dict(full.defaults) | {"TJ_total": 1.0})
    x = kernel.steady_state(np.array([250.0, 0.45, 0.9, 0.6]), params, np.ones(kernel.n_states))
    ep1, ep2, ep3 = (x[kernel.species.index(s)] for s in ("EP1", "EP2", "EP3"))
    assert ep2 == pytest.approx(2.0 * ep1, rel=1e-12) and ep3 == pytest.approx(ep1, rel=1e-12)


def _insert_stage(sbml: str) -> str:
    """A copy of the model with a fourth epididymal stage EP4 between EP3 and the cauda (libsbml)."""
    doc = libsbml.readSBMLFromString(sbml)
    model = doc.getModel()
    stage = model.getSpecies("EP3").clone()
    stage.setId("EP4")
    stage.setName("EP4")
    stage.unsetMetaId()
    stage.unsetAnnotation()
    assert model.addSpecies(stage) == libsbml.LIBSBML_OPERATION_SUCCESS
    reaction = model.getReaction("J_ep3").clone()
    reaction.setId("J_ep4")
    reaction.unsetMetaId()
    reaction.unsetAnnotation()
    reaction.getReactant(0).setSpecies("EP4")
    reaction.getKineticLaw().getMath().renameSIdRefs("EP3", "EP4")
    assert model.addReaction(reaction) == libsbml.LIBSBML_OPERATION_SUCCESS
    model.getReaction("J_ep3").getProduct(0).setSpecies("EP4")
    return str(libsbml.writeSBMLToString(doc))


def test_an_inserted_stage_is_followed() -> None:
    sbml = _insert_stage(default_sbml())
    table = read_germline(sbml)
    assert table.chain == (*CHAIN[:-1], "EP4", "CAUDA")
    assert table.terms_of("EP4", "p")[0].reaction == "J_ep3"
    assert table.terms_of("CAUDA", "p")[0].reaction == "J_ep4"
    full = Engine(sbml)
    kernel = kernel_for(sbml)
    check_germline_equations(full, kernel, n_states=5)
    params = kernel.parameter_vector(dict(full.defaults) | {"TJ_total": 1.0})
    x = kernel.steady_state(np.array([250.0, 0.45, 0.9, 0.6]), params, np.ones(kernel.n_states))
    assert x[kernel.species.index("EP4")] == pytest.approx(x[kernel.species.index("EP3")], rel=1e-12)


@pytest.mark.parametrize(
    ("old", "new", "species", "reaction", "why"),
    [
        (  # a Hill-type loss: not linear, logistic or saturable in EP2
            "J_ep2: EP2 -> EP3; k_ep * EP2 * cell_extent",
            "J_ep2: EP2 -> EP3; k_ep * EP2 * EP2 / (1 + EP2) * cell_extent",
            "EP2",
            "J_ep2",
            "is not linear, logistic or saturable",
        ),
        (  # a stage that reads its state through a function
            "J_rs4: RS4 -> RS5; k_rs * RS4 * cell_extent",
            "J_rs4: RS4 -> RS5; k_rs * (exp(RS4) - 1) * cell_extent",
            "RS4",
            "J_rs4",
            "'RS4' enters through 'exp'",
        ),
        (  # a time-varying factor that reads a chain state (feedback of the chain on itself)
            "J_sg2: SG2 -> SG3; k_sg * SG2 * cell_extent",
            "J_sg2: SG2 -> SG3; k_sg * SG2 * SSC / (1 + SSC) * cell_extent",
            "SG2",
            "J_sg2",
            "reads a chain state",
        ),
    ],
    ids=["hill", "function", "chain-gate"],
)
def test_a_rate_law_outside_the_form_is_refused_by_name(
    old: str, new: str, species: str, reaction: str, why: str
) -> None:
    sbml = _edited(old, new)
    with pytest.raises(UnsupportedRateLawError, match=f"'{species}'.*'{reaction}'.*edited") as refused:
        read_germline(sbml)
    assert why in str(refused.value)
    with pytest.raises(ModelBuildError, match=f"'{species}'"):
        kernel_for(sbml)
