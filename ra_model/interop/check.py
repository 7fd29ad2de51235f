"""The model health report: what a curator checks in an SBML model, each item pass, warn or fail.

Items: libsbml validation, unit consistency, MIRIAM annotation and SBO coverage, parameters without a
source, events that could be missed, and a quick COPASI agreement run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import libsbml

from ra_model.errors import RAModelError
from ra_model.model.validate import ValidationReport, validate_sbml

log = logging.getLogger(__name__)

#: Scenario of the quick COPASI agreement run on the shipped model.
QUICK_PHENOTYPE = "maturation_arrest"
QUICK_REGIMEN = "20 mg bid for 30 d"
QUICK_T_END_D = 60.0

PASS, WARN, FAIL = "pass", "warn", "fail"


@dataclass(frozen=True)
class CheckResult:
    """One item of the health report.

    Attributes:
        name: What was checked.
        status: ``"pass"``, ``"warn"`` or ``"fail"``.
        detail: The numbers behind the verdict, and what to fix.
    """

    name: str
    status: str
    detail: str

    @property
    def failed(self) -> bool:
        """True for a failed item."""
        return self.status == FAIL

    def __str__(self) -> str:
        """Return ``[PASS] name: detail``."""
        return f"[{self.status.upper()}] {self.name}: {self.detail}"


def run_checks(path: Path | None = None, *, copasi: bool = True) -> list[CheckResult]:
    """Check an SBML file, or the export of the shipped model when ``path`` is None.

    Args:
        path: An SBML file; None checks ``export_sbml()`` of the current Antimony source.
        copasi: Include the quick COPASI agreement run.

    Returns:
        The report items, in order.
    """
    if path is None:
        from ra_model.interop.sbml_export import export_sbml

        try:
            text = export_sbml()
        except RAModelError as exc:
            return [CheckResult("export", FAIL, str(exc))]
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            return [CheckResult("read", FAIL, f"cannot read {path}: {exc}")]
    report = validate_sbml(text)
    results = [_validation(report), _units(report)]
    doc = libsbml.readSBMLFromString(text)
    model = doc.getModel()
    if model is None or not report.ok:
        return results
    results += [_miriam(model), _sbo(model), _sources(model), _events(model)]
    if copasi:
        results.append(_copasi(path, text))
    return results


def _validation(report: ValidationReport) -> CheckResult:
    general = [f for f in report.findings if not f.is_unit]
    errors = [f for f in general if f.is_error]
    level = f"SBML L{report.level}V{report.version}"
    if errors:
        shown = "; ".join(str(f) for f in errors[:5])
        return CheckResult("SBML validation", FAIL, f"{level}, {len(errors)} error(s): {shown}")
    if general:
        return CheckResult("SBML validation", WARN, f"{level}, 0 errors, {len(general)} warning(s): {general[0]}")
    return CheckResult("SBML validation", PASS, f"{level}, 0 errors, 0 warnings (libsbml full consistency check)")


def _units(report: ValidationReport) -> CheckResult:
    found = report.unit_findings
    if not found:
        return CheckResult("units", PASS, "0 errors, 0 warnings in the unit-consistency check")
    shown = "; ".join(str(f) for f in found[:5])
    return CheckResult(
        "units",
        FAIL,
        f"{len(found)} finding(s) (give every parameter, species and number a unit): {shown}",
    )


def _has_cv(element: libsbml.SBase) -> bool:
    return bool(element.getNumCVTerms() > 0)


def _miriam(model: libsbml.Model) -> CheckResult:
    species = list(model.getListOfSpecies())
    molecular = [s for s in species if _is_molar(model, s)]
    missing = [s.getId() for s in molecular if not _has_cv(s)]
    annotated = sum(_has_cv(s) for s in species)
    params = sum(_has_cv(p) for p in model.getListOfParameters())
    comps = sum(_has_cv(c) for c in model.getListOfCompartments())
    has_history = model.isSetModelHistory() and model.getModelHistory().getNumCreators() > 0
    detail = (
        f"species {annotated}/{len(species)} (molecules {len(molecular) - len(missing)}/{len(molecular)}), "
        f"parameters {params}/{model.getNumParameters()}, compartments {comps}/{model.getNumCompartments()}, "
        f"model creator {'yes' if has_history else 'no'}"
    )
    if missing or not has_history:
        fix = f"; molecules without a MIRIAM term: {', '.join(missing)}" if missing else "; no model creator"
        return CheckResult("MIRIAM annotations", FAIL, detail + fix)
    return CheckResult("MIRIAM annotations", PASS, detail)


def _is_molar(model: libsbml.Model, species: libsbml.Species) -> bool:
    units = species.getDerivedUnitDefinition()
    if units is None:
        return False
    return any(units.getUnit(i).getKind() == libsbml.UNIT_KIND_MOLE for i in range(units.getNumUnits()))


def _sbo(model: libsbml.Model) -> CheckResult:
    reactions = list(model.getListOfReactions())
    parameters = list(model.getListOfParameters())
    r_missing = [r.getId() for r in reactions if not r.isSetSBOTerm()]
    p_missing = [p.getId() for p in parameters if not p.isSetSBOTerm()]
    detail = (
        f"reactions {len(reactions) - len(r_missing)}/{len(reactions)}, "
        f"parameters {len(parameters) - len(p_missing)}/{len(parameters)}"
    )
    if r_missing or p_missing:
        missing = ", ".join((r_missing + p_missing)[:12])
        return CheckResult("SBO terms", FAIL, f"{detail}; missing on {missing}")
    return CheckResult("SBO terms", PASS, detail)


def _sources(model: libsbml.Model) -> CheckResult:
    rule_vars = {r.getVariable() for r in model.getListOfRules()}
    constants = [p for p in model.getListOfParameters() if p.getId() not in rule_vars]
    missing = [p.getId() for p in constants if "Source:" not in (p.getNotesString() or "")]
    assumed = sum("Source: assumed" in (p.getNotesString() or "") for p in constants)
    detail = f"{len(constants) - len(missing)}/{len(constants)} parameters state a source ({assumed} 'assumed')"
    if missing:
        return CheckResult(
            "parameter sources",
            FAIL,
            f"{detail}; without a source: {', '.join(missing[:12])} (add them to models/parameters.csv)",
        )
    return CheckResult("parameter sources", PASS, detail)


def _events(model: libsbml.Model) -> CheckResult:
    problems, notes = [], []
    for event in model.getListOfEvents():
        eid = event.getId() or "(unnamed event)"
        trigger = event.getTrigger()
        if trigger is None or not trigger.isSetMath():
            problems.append(f"{eid} has no trigger")
            continue
        # Read the trigger as L3 text: once COPASI's own SWIG bindings are loaded, libsbml's
        # ASTNode.getType() returns an opaque pointer, so node types cannot be compared reliably.
        formula = str(libsbml.formulaToL3String(trigger.getMath()))
        if "==" in formula:
            problems.append(f"{eid}: '{formula}' uses ==, which solvers skip unless an output lands on it; use >=")
        if trigger.getInitialValue():
            problems.append(
                f"{eid}: initialValue=true (Antimony t0=true): a trigger already true at t = 0 never fires; "
                "use t0=false"
            )
        if "&&" in formula or "||" in formula:
            notes.append(f"{eid}: compound trigger '{formula}' (some simulators mis-fire these)")
    count = model.getNumEvents()
    if problems:
        return CheckResult(
            "events", FAIL, f"{len(problems)} of {count} event(s) could be missed: " + "; ".join(problems)
        )
    if notes:
        return CheckResult("events", WARN, f"{count} event(s); " + "; ".join(notes))
    return CheckResult("events", PASS, f"{count} event(s), all with single >=/<= style triggers and initialValue=false")


def _copasi(path: Path | None, text: str) -> CheckResult:
    from ra_model.engines.simulate import simulate
    from ra_model.interop.copasi import compare_tables, simulate_copasi

    name = "COPASI agreement (quick)"
    try:
        if path is None:
            from ra_model.interop.sbml_export import export_sbml

            sbml = export_sbml(phenotype=QUICK_PHENOTYPE, regimen=QUICK_REGIMEN, annotate=False)
            ours = simulate(QUICK_PHENOTYPE, QUICK_REGIMEN, t_end_d=QUICK_T_END_D)
            scenario = f"{QUICK_PHENOTYPE}, {QUICK_REGIMEN}, {QUICK_T_END_D:g} d"
        else:
            from ra_model.engines.from_file import engine_from_file

            sbml = text
            # The file as written (its own parameters, initial amounts and dose-event values), no changes; its
            # unit findings are the "units" item's verdict, so the comparison runs whatever they are.
            engine = engine_from_file(path, force=True)
            ours = simulate("healthy", None, t_end_d=QUICK_T_END_D, preequilibrate=False, engine=engine)
            scenario = f"the file as written, {QUICK_T_END_D:g} d"
        theirs = simulate_copasi(sbml, t_end_d=QUICK_T_END_D)
        rows = compare_tables(ours, theirs)
    except RAModelError as exc:
        return CheckResult(name, FAIL, f"could not run: {exc}")
    worst = max(rows, key=lambda r: r.max_scaled_error)
    detail = (
        f"{scenario}: worst {worst.column} relative error {worst.max_relative_error:.1e} "
        f"(tolerance 1e-3 relative + 1e-9 absolute) on the dose count and {len(rows) - 1} observables"
    )
    return CheckResult(name, PASS if all(r.ok for r in rows) else FAIL, detail)


def format_report(results: list[CheckResult]) -> str:
    """Return the report as text, one line per item, with a final verdict."""
    lines = [str(r) for r in results]
    failed = sum(r.failed for r in results)
    lines.append(f"{'FAILED' if failed else 'OK'}: {failed} of {len(results)} checks failed")
    return "\n".join(lines)
