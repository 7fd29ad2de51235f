"""Export the model as standard SBML L3V2: unit-complete, annotated, optionally carrying a phenotype and a regimen.

The Antimony source stays the human-readable truth. At export, every bare number in the model's math
(the ``1`` in ``1 - f``, the ``+ 1`` of the dose counter) is given the unit ``dimensionless`` in its
MathML (``<cn sbml:units="dimensionless">``), which is what those numbers are; the unit validator then
checks the claim, so a literal that should have carried a real unit shows up as a unit error rather
than being hidden. This changes no number, so the export simulates exactly like the source. Event
assignments that read an assignment-rule variable (the dose event's ``dose_nmol``) are written with the
rule's formula instead, which means the same and lets AMICI compile the file.

A scenario export (``phenotype=`` and/or ``regimen=``) writes the phenotype's parameter values, its
untreated steady state as initial amounts (``simulate()`` pre-equilibrates to the same state) and the
regimen as the values of the model's self-rescheduling dose event. A dose due at t = 0 is put in the
gut as an initial amount and the event starts at the second dose, exactly as the engine does: an event
whose trigger is true at t = 0 fires in some simulators and not in others.

Missed doses (``missed_every=n``) are written into the same event: the dose it adds to the gut is
multiplied by ``piecewise(0, <the dose's number is a multiple of n> && time < t_missed_doses_end, 1)``, the
number being ``doses_given + 1`` before the event. The event still fires and counts the dose, as
``ra_model``'s simulator does (it sets ``dose_mg`` to 0 around each missed dose), so ``doses_given`` counts
doses due, taken or missed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import libsbml

from ra_model.engines.engine import T_NEVER_H, Engine
from ra_model.engines.simulate import DOSE_SPECIES
from ra_model.errors import InvalidValueError, ModelBuildError, UnknownNameError
from ra_model.interop.annotate import annotate_document
from ra_model.model.classes import check_n_classes, class_template
from ra_model.model.phenotypes import Phenotype, get_phenotype, shipped_class_template
from ra_model.model.regimen import DOSE_EVENT_PARAMETERS, Regimen
from ra_model.model.source import antimony_to_sbml, default_sbml
from ra_model.model.validate import validate_sbml

if TYPE_CHECKING:
    from ra_model.engines.simulate import ParameterChange

log = logging.getLogger(__name__)

#: The unit given to bare numbers in the exported math.
LITERAL_UNIT = "dimensionless"

#: The dose event (its doses go into ``DOSE_SPECIES``, the gut depot).
DOSE_EVENT = "E_dose"
#: Parameters of a scenario with missed doses: every n-th dose is missed, before this time (hours).
MISSED_EVERY = "missed_every"
MISSED_UNTIL = "t_missed_doses_end"

#: Command that refreshes the published export (quoted in messages).
REFRESH_COMMAND = "ra-model export sbml --out models/ra_testis.xml"


def give_literals_units(model: libsbml.Model, unit: str = LITERAL_UNIT) -> int:
    """Give every number without units in the model's math the unit ``unit``, in place.

    Args:
        model: A Level 3 model.
        unit: Unit id or base unit kind to give.

    Returns:
        How many numbers were changed.
    """
    changed = 0
    for ast in _all_math(model):
        for node in _walk(ast):
            if node.isNumber() and not node.hasUnits():
                if node.setUnits(unit) != libsbml.LIBSBML_OPERATION_SUCCESS:
                    raise ModelBuildError(f"libsbml refused units {unit!r} on the number {node.getValue()!r}")
                changed += 1
    return changed


def inline_rules_in_event_assignments(model: libsbml.Model) -> int:
    """Write every assignment-rule variable that an event assignment reads as the rule's formula, in place.

    ``Gut_iso = Gut_iso + dose_nmol`` becomes ``Gut_iso = Gut_iso + dose_mg * nmol_per_mg_iso``. This is
    what the SBML means (event assignments are evaluated at the trigger time, where the rule holds), but
    AMICI cannot compile an event assignment that reads a rule variable (its generated ``deltax.cpp``
    does not declare it). Rules that read other rules are followed to the end.

    Args:
        model: A Level 3 model.

    Returns:
        How many event assignments were rewritten.

    Raises:
        ModelBuildError: If the assignment rules refer to each other in a cycle.
    """
    # isName(), not getType(): once COPASI's SWIG bindings are loaded, getType() returns an opaque pointer
    rules = {r.getVariable(): r.getMath() for r in model.getListOfRules() if r.isAssignment() and r.isSetMath()}
    changed = 0
    for event in model.getListOfEvents():
        for assignment in event.getListOfEventAssignments():
            if not assignment.isSetMath():
                continue
            math = assignment.getMath().deepCopy()
            rewritten = False
            for _ in range(len(rules) + 1):
                names = [n.getName() for n in _walk(math) if n.isName() and n.getName() in rules]
                if not names:
                    break
                for name in dict.fromkeys(names):
                    if math.isName() and math.getName() == name:
                        math = rules[name].deepCopy()
                    else:
                        math.replaceArgument(name, rules[name])
                rewritten = True
            else:
                raise ModelBuildError(
                    f"the assignment rules read by event {event.getId()!r} refer to each other in a cycle"
                )
            if rewritten:
                if assignment.setMath(math) != libsbml.LIBSBML_OPERATION_SUCCESS:
                    raise ModelBuildError(f"libsbml refused the inlined math of event {event.getId()!r}")
                changed += 1
    return changed


def _all_math(model: libsbml.Model) -> list[libsbml.ASTNode]:
    holders: list[libsbml.SBase] = []
    holders += list(model.getListOfRules())
    holders += list(model.getListOfInitialAssignments())
    holders += list(model.getListOfConstraints())
    holders += [f for f in model.getListOfFunctionDefinitions()]
    for reaction in model.getListOfReactions():
        if reaction.isSetKineticLaw():
            holders.append(reaction.getKineticLaw())
    for event in model.getListOfEvents():
        for part in (event.getTrigger(), event.getDelay(), event.getPriority()):
            if part is not None:
                holders.append(part)
        holders += list(event.getListOfEventAssignments())
    return [h.getMath() for h in holders if h.isSetMath()]


def _walk(node: libsbml.ASTNode) -> list[libsbml.ASTNode]:
    out = [node]
    for i in range(node.getNumChildren()):
        out += _walk(node.getChild(i))
    return out


def export_sbml(
    *,
    phenotype: str | Phenotype | None = None,
    regimen: Regimen | str | None = None,
    overrides: Mapping[str, float] | None = None,
    changes: Sequence[ParameterChange] = (),
    annotate: bool = True,
    source: Path | None = None,
    engine: Engine | None = None,
    n_classes: int = 1,
    missed_every: int | None = None,
    missed_until_h: float | None = None,
) -> str:
    """Return the model as annotated, unit-complete SBML L3V2 text.

    Without ``phenotype``, ``regimen`` and ``overrides`` this is the model as written in the Antimony
    source (the published ``models/ra_testis.xml``). With any of them it is a scenario: the phenotype
    (``"healthy"`` if only a regimen is given) with its parameter values and its untreated steady state
    as initial amounts, and the regimen in the dose event, so the file alone reproduces
    ``simulate(phenotype, regimen, overrides=overrides)`` in another simulator.

    With ``n_classes`` = N >= 2 the testis is built from N focus classes (flat SBML, ids ``F1__SSC``, ...):
    each class's copy of an annotated element carries the same terms, the class parameters their rows of
    :func:`~ra_model.model.source.class_parameter_table`, and a scenario applies the phenotype to every
    class, reproducing ``simulate(..., n_classes=N)``.

    Args:
        phenotype: Preset name or ``Phenotype``.
        regimen: A ``Regimen`` or its text form.
        overrides: Parameter values by id, on top of the phenotype.
        changes: Parameter changes during the run, written as events ``E_change_<i>`` at their times.
        annotate: Add human names, MIRIAM/SBO annotations, references, notes and model history.
        source: An Antimony file to export instead of the shipped model.
        engine: Engine compiled from the same source and classes (for the steady state); built if needed.
        n_classes: Tubule-focus classes to build the testis from (1, the default, is the published model).
        missed_every: Miss the n-th, 2n-th, ... dose of the regimen (n >= 2; needs ``regimen``), written into
            the dose event ``E_dose`` (see the module notes).
        missed_until_h: Doses due at or after this time (hours) are taken even if their number says missed;
            None for never. ``ra_model``'s simulator takes a dose due within its margin of the end of a run
            (``ra_model.studies.experiments.single.missed_dose_changes``); ``ra_model.interop.omex`` passes
            the matching time.

    Returns:
        SBML text that passes libsbml's consistency and unit checks.

    Raises:
        ModelBuildError: If the result fails validation (the message lists the findings with line numbers).
        UnknownNameError: Unknown phenotype or parameter.
        RegimenParseError: Regimen text that cannot be parsed.
        InvalidValueError: If ``n_classes`` is not a whole number from 1 to ``MAX_CLASSES``, or
            ``missed_every`` is below 2 or given without a regimen.
    """
    n = check_n_classes(n_classes)
    if missed_every is not None and (regimen is None or isinstance(missed_every, bool) or missed_every < 2):
        raise InvalidValueError(
            f"missed_every = {missed_every!r} with regimen {regimen!r}: give a regimen and a whole number >= 2 "
            "(every 2nd, 3rd, ... dose missed)"
        )
    sbml = antimony_to_sbml(source, n_classes=n) if source is not None else default_sbml(n)
    doc = libsbml.readSBMLFromString(sbml)
    model = doc.getModel()
    inline_rules_in_event_assignments(model)
    if missed_every is not None:
        _add_missed_doses(model, missed_every, T_NEVER_H if missed_until_h is None else missed_until_h)
    give_literals_units(model)
    note = ""
    if phenotype is not None or regimen is not None or overrides or changes:
        note = _apply_scenario(model, sbml, phenotype, regimen, dict(overrides or {}), engine, n)
    for i, change in enumerate(changes):
        _add_change_event(model, i, change)
    if missed_every is not None:
        until = "" if missed_until_h is None else f" due before t = {missed_until_h:g} h"
        note += (
            f" Doses number {missed_every}, {2 * missed_every}, ...{until} are missed (the dose event adds nothing; "
            "doses_given still counts them)."
        )
    if changes:
        note += " Scheduled changes: " + "; ".join(f"day {c.t_d:g}: {c.parameter} = {c.value:g}" for c in changes) + "."
    if n > 1:
        note = f"The testis is built from {n} tubule-focus classes (ids F1__ to F{n}__). {note}".rstrip()
    if annotate:
        # the template's ids: copied per class when n >= 2; with one class, they excuse the names of ids
        # written only for two or more classes
        template = class_template(source.read_text(encoding="utf-8")) if source else shipped_class_template()
        annotate_document(doc, scenario_note=note, n_classes=n, per_class=template.ids)
    text = str(libsbml.writeSBMLToString(doc))
    report = validate_sbml(text)
    if not report.ok or report.unit_findings:
        raise ModelBuildError("the exported SBML does not validate cleanly:\n" + report.summary())
    return text


def _apply_scenario(
    model: libsbml.Model,
    sbml: str,
    phenotype: str | Phenotype | None,
    regimen: Regimen | str | None,
    overrides: dict[str, float],
    engine: Engine | None,
    n_classes: int,
) -> str:
    from ra_model.engines.simulate import default_engine, dose_plan, steady_state_amounts

    if engine is None:
        engine = default_engine(n_classes) if sbml == default_sbml(n_classes) else Engine(sbml)
    preset = get_phenotype(phenotype or "healthy") if not isinstance(phenotype, Phenotype) else phenotype
    preset = preset.for_classes(n_classes)
    if isinstance(regimen, str):
        regimen = Regimen.parse(regimen)
    for name in overrides:
        if name not in engine.defaults:
            raise UnknownNameError("parameter", name, engine.defaults)
    parameters = preset.resolve(engine.defaults) | overrides
    start = steady_state_amounts(engine, parameters, preset.initial_amounts)
    for name, value in parameters.items():
        _set_value(model, name, value)
    if regimen is not None:
        # The engine arms the dose event (a dose due at t = 0 goes into Gut_iso, the event starts at the
        # next one); the file carries exactly the state it leaves.
        engine.fresh(parameters=parameters, initial_amounts=start)
        engine.arm_doses(dose_plan(regimen))
        start = engine.amounts()
        for name in DOSE_EVENT_PARAMETERS:
            _set_value(model, name, engine.get(name))
    for species_id, amount in start.items():
        species = model.getSpecies(species_id)
        if species is None:
            raise ModelBuildError(f"the steady state names species {species_id!r}, which the model lacks")
        species.setInitialAmount(float(amount))
    regimen_text = str(regimen) if regimen is not None else "none"
    return (
        f"Scenario: phenotype {preset.name!r}, regimen {regimen_text!r}"
        + (f", overrides {overrides}" if overrides else "")
        + ". Initial amounts are this phenotype's untreated steady state (as ra_model.simulate uses); "
        "the regimen is carried by the dose event E_dose"
        + (" (the dose at t = 0 is in the initial amount of Gut_iso)." if regimen is not None else ".")
    )


def _set_value(model: libsbml.Model, name: str, value: float) -> None:
    element = model.getParameter(name) or model.getCompartment(name)
    if element is None:
        raise ModelBuildError(f"cannot set {name!r}: the model has no parameter or compartment of that id")
    if model.getInitialAssignment(name) is not None:
        model.removeInitialAssignment(name)
    if element.setValue(float(value)) != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise ModelBuildError(f"libsbml refused value {value!r} for {name!r}")


def _add_change_event(model: libsbml.Model, index: int, change: ParameterChange) -> None:
    """Add ``E_change_<i>: at (time >= t_change_<i>), t0=false: parameter = value``."""
    target = model.getParameter(change.parameter) or model.getCompartment(change.parameter)
    if target is None:
        raise UnknownNameError("parameter", change.parameter, [p.getId() for p in model.getListOfParameters()])
    if model.getRule(change.parameter) is not None:
        raise ModelBuildError(f"{change.parameter!r} is defined by a rule; a scheduled change cannot set it")
    target.setConstant(False)
    when = model.createParameter()
    when.setId(f"t_change_{index}")
    when.setName(f"time of scheduled change {index}")
    when.setValue(change.t_d * 24.0)
    when.setUnits("hour")
    when.setConstant(True)
    when.setNotes(
        f'<body xmlns="http://www.w3.org/1999/xhtml"><p>Time of scheduled change {index} '
        f"({change.parameter} = {change.value:g}). Source: scenario definition.</p></body>"
    )
    event = model.createEvent()
    event.setId(f"E_change_{index}")
    event.setName(f"scheduled change {index}: {change.parameter}")
    event.setUseValuesFromTriggerTime(True)
    trigger = event.createTrigger()
    trigger.setInitialValue(False)
    trigger.setPersistent(True)
    trigger.setMath(libsbml.parseL3Formula(f"time >= t_change_{index}"))
    assignment = event.createEventAssignment()
    assignment.setVariable(change.parameter)
    value = libsbml.ASTNode(libsbml.AST_REAL)
    value.setValue(float(change.value))
    if target.isSetUnits():
        value.setUnits(target.getUnits())
    assignment.setMath(value)


def _add_missed_doses(model: libsbml.Model, every: int, until_h: float) -> None:
    """Make the dose event give nothing for every ``every``-th dose due before ``until_h``, in place.

    ``E_dose``'s assignment ``Gut_iso = Gut_iso + <dose>`` (its rule already inlined) becomes
    ``Gut_iso = Gut_iso + (<dose>) * piecewise(0, <missed>, 1)``; event assignments read the values before
    the event, so the dose's number is ``doses_given + 1``.
    """
    event = model.getEvent(DOSE_EVENT)
    assignment = event.getEventAssignment(DOSE_SPECIES) if event is not None else None
    text = libsbml.formulaToL3String(assignment.getMath()) if assignment is not None and assignment.isSetMath() else ""
    match = re.fullmatch(rf"{DOSE_SPECIES} \+ (.+)", text or "")
    if assignment is None or match is None:
        raise ModelBuildError(
            f"missed doses need the dose event {DOSE_EVENT!r} to assign {DOSE_SPECIES} = {DOSE_SPECIES} + dose; "
            f"the model has {text!r}: update ra_model.interop.sbml_export._add_missed_doses to the new event"
        )
    for name, value, unit, what in (
        (MISSED_EVERY, float(every), "dimensionless", f"doses number {every}, {2 * every}, ... are missed"),
        (MISSED_UNTIL, float(until_h), "hour", "doses due at or after this time are taken (end of the run)"),
    ):
        if model.getElementBySId(name) is not None:
            raise ModelBuildError(f"the model already has an element {name!r}; missed doses cannot be added")
        parameter = model.createParameter()
        parameter.setId(name)
        parameter.setName({MISSED_EVERY: "missed-dose period", MISSED_UNTIL: "end of missed doses"}[name])
        parameter.setValue(value)
        parameter.setUnits(unit)
        parameter.setConstant(True)
        parameter.setNotes(
            '<body xmlns="http://www.w3.org/1999/xhtml">'
            f"<p>Missed doses: {what}. Source: scenario definition.</p></body>"
        )
    number = "(doses_given + 1)"
    missed = f"{number} - {MISSED_EVERY} * floor({number} / {MISSED_EVERY}) < 0.5 && time < {MISSED_UNTIL}"
    math = libsbml.parseL3Formula(f"{DOSE_SPECIES} + ({match.group(1)}) * piecewise(0, {missed}, 1)")
    if math is None or assignment.setMath(math) != libsbml.LIBSBML_OPERATION_SUCCESS:
        reason = libsbml.getLastParseL3Error()
        raise ModelBuildError(f"libsbml refused the missed-dose math of {DOSE_EVENT!r}: {reason}")
