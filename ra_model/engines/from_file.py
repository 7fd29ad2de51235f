"""Compile a user's SBML file (for example the export, edited in another tool) into an engine, checking it first.

A file is refused unless it keeps the ids the package relies on and passes libsbml's unit check: a
unit-inconsistent file usually means a tool changed what the model computes (COPASI's L3V2 re-export
turns every amount species into a concentration species and drops the conversion factors, so testis
atRA of a healthy man comes out at 175 nM instead of 7). ``force=True`` runs such a file anyway.
:func:`preset_overrides` says which of the file's own values a phenotype preset would replace.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import libsbml

from ra_model.engines.engine import Engine, SolverOptions
from ra_model.errors import ModelBuildError
from ra_model.model import columns as C
from ra_model.model import semen
from ra_model.model.phenotypes import Phenotype, classes_of
from ra_model.model.regimen import DOSE_EVENT_PARAMETERS
from ra_model.model.source import default_sbml
from ra_model.model.validate import read_sbml, validate_sbml

log = logging.getLogger(__name__)


def engine_from_file(path: Path, *, options: SolverOptions | None = None, force: bool = False) -> Engine:
    """Compile an SBML file (for example the export, edited in another tool) into an engine for ``simulate``.

    The file must keep the ids the package relies on (the observables, the dose-event parameters and the
    readout limits) and, unless ``force``, pass libsbml's unit check as the export does.

    Args:
        path: The SBML file.
        options: Solver settings.
        force: Run a file whose unit check fails (its findings are logged as a warning instead).

    Returns:
        An engine to pass as ``simulate(..., engine=engine_from_file(path))``.

    Raises:
        ModelBuildError: If the file is not valid SBML, lacks an id the package needs, or (without
            ``force``) fails the unit check; the message names the findings and the fix.
    """
    text = read_sbml(path)
    problem = unit_problem(path, text)
    if problem and not force:
        raise ModelBuildError(
            problem + "; to run it anyway, add --force (Python: engine_from_file(path, force=True) or "
            "run_sweep(..., model=path, force_model=True))"
        )
    if problem:
        log.warning("%s; running it anyway (--force)", problem)
    engine = Engine(text, options=options)
    needed = [o.model_id for o in C.OBSERVABLES] + [
        *DOSE_EVENT_PARAMETERS,
        "nmol_per_mg_iso",
        "motile_detection_limit",
        *semen.LIMIT_PARAMETERS,
        *semen.DETECTION_INPUTS,
    ]
    known = set(engine.parameter_ids) | set(engine.species_ids)
    missing = [n for n in needed if n not in known]
    if missing:
        raise ModelBuildError(
            f"{path} lacks ids that ra_model needs: {', '.join(missing)}; keep the exported ids when editing"
        )
    return engine


def unit_problem(path: Path, text: str) -> str:
    """Return why an SBML file fails libsbml's unit check, with the fix, or ``""`` if it passes.

    Args:
        path: The file (named in the message).
        text: Its SBML text.
    """
    found = validate_sbml(text).unit_findings
    if not found:
        return ""
    doc = libsbml.readSBMLFromString(text)  # kept: the model lives inside it
    model = doc.getModel()
    species = list(model.getListOfSpecies()) if model is not None else []
    concentrations = [s.getId() for s in species if not s.getHasOnlySubstanceUnits()]
    if "Created by COPASI" in text[:1000] and species and len(concentrations) == len(species):
        fix = (
            "it was re-exported by COPASI, whose SBML export makes every species a concentration "
            "(hasOnlySubstanceUnits=false) and drops the conversion factors, which changes what the model "
            "computes; make the edit in the ra_model export instead (libsbml, tellurium, or by hand) and "
            "check it with `ra-model check FILE --no-copasi`"
        )
    else:
        fix = (
            "give every parameter, species and number a unit (`ra-model check FILE --no-copasi` lists the "
            "findings; the export `ra-model export sbml` passes the check)"
        )
    return f"{path} fails the SBML unit check ({len(found)} finding(s), the first {found[0]}): {fix}"


@dataclass(frozen=True)
class PresetOverride:
    """A value of a model file that a phenotype preset replaces.

    Attributes:
        parameter: Parameter id.
        file_value: The value written in the file.
        run_value: The value the run uses (the preset's, or the file's value times the preset's factor).
        shipped_value: The value in the shipped model.
        factor: The preset's multiplier, or None when it sets the value outright.
    """

    parameter: str
    file_value: float
    run_value: float
    shipped_value: float
    factor: float | None = None

    def __str__(self) -> str:
        """Return one line naming the parameter and both values."""
        how = (
            f"scales {self.parameter} by {self.factor:g}: the file's {self.file_value:g} becomes {self.run_value:g}"
            if self.factor is not None
            else f"sets {self.parameter} = {self.run_value:g}, replacing the file's {self.file_value:g}"
        )
        return f"{how} (the shipped model has {self.shipped_value:g})"


def preset_overrides(defaults: Mapping[str, float], phenotype: Phenotype) -> tuple[PresetOverride, ...]:
    """Return the parameters whose value a model file changed and a phenotype preset replaces.

    A preset is written against the shipped model: it sets some parameters and scales others. Where the
    file holds a value of its own (one that differs from the shipped model's) and the preset changes it,
    the file's edit is lost (or, for a scaled parameter, applied twice, as when a scenario export of a
    phenotype is run with the same phenotype again).

    Args:
        defaults: The file's parameter values (``Engine.defaults``).
        phenotype: The preset, written for the file's focus classes (:meth:`Phenotype.for_classes`).

    Returns:
        One entry per such parameter, in the preset's order.
    """
    shipped = _shipped_values(classes_of(defaults))
    out = []
    for name, value in phenotype.resolve(defaults).items():
        file_value = defaults.get(name)
        if file_value is None or name not in shipped or _same(file_value, shipped[name]) or _same(value, file_value):
            continue
        factor = phenotype.scale[name] if name in phenotype.scale and name not in phenotype.parameters else None
        out.append(PresetOverride(name, file_value, value, shipped[name], factor))
    return tuple(out)


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def _shipped_values(n_classes: int) -> dict[str, float]:
    """Return the written values of the shipped model's parameters and compartments (no initial assignment)."""
    doc = libsbml.readSBMLFromString(default_sbml(n_classes))  # kept: the model lives inside it
    model = doc.getModel()
    assigned = {a.getSymbol() for a in model.getListOfInitialAssignments()}
    assigned |= {r.getVariable() for r in model.getListOfRules()}
    values = {p.getId(): float(p.getValue()) for p in model.getListOfParameters() if p.isSetValue()}
    values |= {c.getId(): float(c.getSize()) for c in model.getListOfCompartments() if c.isSetSize()}
    return {k: v for k, v in values.items() if k not in assigned}
