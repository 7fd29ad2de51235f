"""Write COMBINE/OMEX archives (SBML + SED-ML + manifest + metadata) for scenarios, and run them with tellurium.

One archive per experiment. Each run in it becomes an exported SBML model
(``ra_model.interop.sbml_export``, so it carries the phenotype's steady state and the regimen's dose event),
a uniform time course in hours, a report of the dose count and every named observable, and a curve on each
of six plots, the panels of the standard time-course figure (``ra_model.model.columns.STANDARD_PANELS``)
against time in days. A run is one of:

* :class:`Scenario`: one phenotype, regimen, overrides and horizon, optionally with scheduled parameter
  changes (SBML events ``E_change_<i>``) and missed doses (every n-th dose, written into the dose event
  ``E_dose``, see ``export_sbml(missed_every=...)``), as ``ra_model.studies.experiments`` runs them;
* :class:`GridScenario`: several regimens (arms) on one phenotype, as one SED-ML ``repeatedTask``. Its one
  model carries the phenotype's untreated steady state and the first arm's regimen; each iteration resets the
  model and sets, from lock-step ``vectorRange`` s, the values the arm's own export would carry: the dose
  event's parameters and the dose at t = 0 in ``Gut_iso``. Regimens do not enter the pre-treatment steady state
  (it is drug-free), so one model serves every arm; a grid dimension that does (a grid file's histologies)
  becomes one ``GridScenario``, one model, per value, and :func:`grid_changes` refuses arms that differ in
  anything else.

``run_omex_tellurium`` executes an archive with tellurium's SED-ML engine, an independent reader of the archive,
for the cross-check against ``simulate()``. Tellurium executes the repeated task (master ``vectorRange`` of arm
numbers, lock-step ``vectorRange`` s, ``setValue`` s, ``resetModel``) and draws the ``plot2D`` s, but ignores
their axis types (the log axis of the ejaculate panel); it does not run a ``functionalRange`` as the master range.
"""

from __future__ import annotations

import math
import re
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import libcombine
import libsbml
import libsedml
import numpy as np
import pandas as pd

from ra_model.engines.simulate import ParameterChange
from ra_model.errors import InvalidValueError, ModelBuildError
from ra_model.interop.annotate import load_annotations
from ra_model.model import columns as C
from ra_model.model.phenotypes import load_phenotypes
from ra_model.model.regimen import DOSE_EVENT_PARAMETERS, REFERENCE_WEIGHT_KG, Regimen, parse_optional

if TYPE_CHECKING:
    from ra_model.studies.experiments.spec import Experiment

#: The standard scenario regimens: no drug, and the clinical regimen under study.
STANDARD_REGIMENS: tuple[str | None, ...] = (None, "20 mg bid for 180 d")
#: SED-ML algorithm and tolerances (KiSAO): CVODE, relative 1e-8, absolute 1e-12, as ``simulate()`` uses.
KISAO_CVODE = "KISAO:0000019"
KISAO_RTOL = "KISAO:0000209"
KISAO_ATOL = "KISAO:0000211"
SOLVER_RTOL = 1e-8
SOLVER_ATOL = 1e-12
#: Name of the x axis of every plot (a data generator ``time_h / 24`` per run, named ``time_d``).
TIME_AXIS = "time (days)"
#: Namespace of the repeated task's annotation that lists a grid's arms (SED-ML ranges hold numbers only).
ARMS_NAMESPACE = "urn:ra-model:sedml:grid-arms:1"
#: Experiment kinds an archive cannot hold, and why (said when ``export omex`` skips a file).
COHORT_LIKE_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "cohort": "virtual men drawn with parameter variability, screened and enrolled by simulated semen "
        "analyses, read as response rates",
        "sensitivity": "parameter sets sampled for a screening analysis, read as sensitivity indices",
    }
)

# The format URIs libcombine knows (tellurium finds the SED-ML through them).
_FORMAT_SBML = "http://identifiers.org/combine.specifications/sbml"
_FORMAT_SEDML = "http://identifiers.org/combine.specifications/sed-ml"
_FORMAT_METADATA = "http://identifiers.org/combine.specifications/omex-metadata"
_SBML_NAMESPACE = "http://www.sbml.org/sbml/level3/version2/core"
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, kw_only=True)
class _Run:
    """What every run of an archive has: a label, a phenotype, overrides, a time grid and focus classes.

    Attributes:
        label: Short id, letters, digits and underscores (used for file and SED-ML ids).
        phenotype: Phenotype preset name.
        overrides: Parameter values by id.
        t_end_d: Simulated time, days.
        output_step_d: Output spacing, days (``t_end_d`` must be a whole number of steps).
        n_classes: Tubule-focus classes the testis is built from (1 = homogeneous, the published model).
    """

    label: str
    phenotype: str = "healthy"
    overrides: Mapping[str, float] = field(default_factory=dict)
    t_end_d: float = 365.0
    output_step_d: float = 1.0
    n_classes: int = 1

    def __post_init__(self) -> None:
        """Check the label and the time grid."""
        if not _LABEL.fullmatch(self.label):
            raise InvalidValueError(f"scenario label {self.label!r}: use letters, digits and underscores")
        steps = self.t_end_d / self.output_step_d if self.output_step_d > 0 else math.nan
        if not (math.isfinite(steps) and steps >= 1 and abs(steps - round(steps)) < 1e-9):
            raise InvalidValueError(
                f"scenario {self.label!r}: t_end_d = {self.t_end_d!r} must be a whole number of output "
                f"steps of {self.output_step_d!r} d"
            )
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))

    @property
    def steps(self) -> int:
        """Number of output intervals."""
        return int(round(self.t_end_d / self.output_step_d))


@dataclass(frozen=True, kw_only=True)
class Scenario(_Run):
    """One simulation of an archive (the fields of :class:`_Run`, and the following).

    Attributes:
        regimen: Regimen text, or None for no drug.
        changes: Scheduled parameter changes (written as SBML events).
        missed_every: Miss the n-th, 2n-th, ... dose (n >= 2, needs a regimen), as a scenario file's
            ``missed_every``; None for no missed doses.
    """

    regimen: str | None = None
    changes: tuple[ParameterChange, ...] = ()
    missed_every: int | None = None

    def __post_init__(self) -> None:
        """Check the label, the time grid and the missed-dose pattern."""
        super().__post_init__()
        if self.missed_every is not None and (
            isinstance(self.missed_every, bool)
            or not isinstance(self.missed_every, int)
            or self.missed_every < 2
            or not self.regimen
        ):
            raise InvalidValueError(
                f"scenario {self.label!r}: missed_every = {self.missed_every!r} with regimen {self.regimen!r}; "
                "give a regimen and a whole number >= 2 (every 2nd, 3rd, ... dose missed)"
            )

    @property
    def description(self) -> str:
        """Phenotype and regimen in words (report and curve names)."""
        missed = f", doses {self.missed_every}, {2 * self.missed_every}, ... missed" if self.missed_every else ""
        return f"{self.phenotype}, {self.regimen or 'no drug'}{missed}"


@dataclass(frozen=True, kw_only=True)
class GridScenario(_Run):
    """Regimens (arms) on one phenotype, run as one SED-ML repeatedTask (the fields of :class:`_Run`, and these).

    Attributes:
        arms: Regimen texts, each a whole regimen (None or ``"none"`` for no drug); stored in canonical form.
        note: What the grid leaves out of the archive, for the metadata and the command's output.
    """

    arms: tuple[str | None, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        """Check the label, the time grid and the arms (each parses; no two the same)."""
        super().__post_init__()
        if not self.arms:
            raise InvalidValueError(f"grid {self.label!r} has no arms; give at least one regimen")
        canonical = []
        for text in self.arms:
            regimen = parse_optional(text) if text is not None else None
            canonical.append(str(regimen) if regimen is not None else None)
        labels = [slug(text) for text in canonical]
        repeated = sorted({name for name in labels if labels.count(name) > 1})
        if repeated:
            raise InvalidValueError(f"grid {self.label!r}: arms {repeated} appear more than once; list each once")
        object.__setattr__(self, "arms", tuple(canonical))

    @property
    def arm_labels(self) -> tuple[str, ...]:
        """File-name-safe id of each arm, in order (the keys of :func:`run_omex_tellurium`'s tables)."""
        return tuple(slug(text) for text in self.arms)

    @property
    def description(self) -> str:
        """Phenotype and the number of regimens in words (report and curve names)."""
        return f"{self.phenotype}, grid of {len(self.arms)} regimens"


#: A run of an archive.
ArchiveRun = Scenario | GridScenario


@dataclass(frozen=True)
class GridChange:
    """A value a grid's repeated task sets in each iteration.

    Attributes:
        kind: ``"parameter"`` or ``"species"`` (the initial amount; its compartment has size 1).
        id: The SBML id.
        values: The value for each arm, in arm order.
    """

    kind: str
    id: str
    values: tuple[float, ...]

    @property
    def target(self) -> str:
        """The SED-ML XPath of the SBML element."""
        where = "listOfParameters/sbml:parameter" if self.kind == "parameter" else "listOfSpecies/sbml:species"
        return f"/sbml:sbml/sbml:model/sbml:{where}[@id='{self.id}']"


def slug(text: str | None) -> str:
    """Return a file-name-safe id for a regimen text (``"no_drug"`` for None)."""
    if not text or text.strip().lower() == "none":
        return "no_drug"
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]+", "_", text)).strip("_")


def standard_experiments() -> dict[str, list[ArchiveRun]]:
    """Return every phenotype preset with no drug and with 20 mg bid for 180 d, one experiment each."""
    out: dict[str, list[ArchiveRun]] = {}
    for name in load_phenotypes():
        for regimen in STANDARD_REGIMENS:
            label = f"{name}__{slug(regimen)}"
            out[label] = [Scenario(label=label, phenotype=name, regimen=regimen)]
    return out


def experiment_file_scenarios(path: Path) -> list[ArchiveRun] | str:
    """Read a scenario file (``experiments/*.toml``) of kind "single" or "grid" as the runs of one archive.

    The file is read and validated by :func:`ra_model.studies.experiments.load_experiment`, the one reader of
    the scenario schema; outputs-only settings (sampling, species, figures) do not enter the archive.

    * ``single``: one :class:`Scenario` per run, with its scheduled changes and missed doses.
    * ``grid``: one :class:`GridScenario` per histology, its arms every dose x duration (weight-based doses at
      :data:`~ra_model.model.regimen.REFERENCE_WEIGHT_KG`), run over the longest duration plus the follow-up as
      the file's runs are. The archive holds each histology's preset man: the file's virtual men (parameter
      variability) and the responder reading of their semen analyses stay out, as the run's ``note`` says.

    Returns:
        The runs, or the reason the file cannot be an archive (a cohort-like kind: :data:`COHORT_LIKE_KINDS`).

    Raises:
        InvalidValueError: If the file cannot be read as TOML or has bad values.
    """
    from ra_model.studies.experiments import load_experiment

    try:
        with path.open("rb") as handle:
            kind = tomllib.load(handle).get("kind", "single")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidValueError(f"{path}: {exc}") from exc
    if kind in COHORT_LIKE_KINDS:
        return (
            f"kind {kind!r} is cohort-like ({COHORT_LIKE_KINDS[kind]}); an archive holds fixed scenarios, so it "
            f"stays out: run it with `ra-model run {path} --out DIR`"
        )
    experiment = load_experiment(path)
    stem = re.sub(r"[^A-Za-z0-9_]", "_", path.stem)
    if experiment.kind == "grid":
        return list(_grid_runs(experiment, stem))
    if experiment.kind != "single":
        return f"kind {experiment.kind!r} is not a kind an archive holds (single and grid are)"
    return [
        Scenario(
            label=f"{stem}__{slug(run.label)}",
            phenotype=experiment.phenotype,
            regimen=str(run.regimen) if run.regimen else None,
            overrides=dict(experiment.overrides),
            t_end_d=experiment.t_end_d,
            output_step_d=experiment.output_step_d,
            changes=(*experiment.changes, *run.changes),
            missed_every=run.missed_every,
            n_classes=experiment.n_classes,
        )
        for run in experiment.runs
    ]


def _grid_runs(experiment: Experiment, stem: str) -> list[GridScenario]:
    from ra_model.studies.experiments import regimen_for_weight

    arms = tuple(
        regimen_for_weight(f"{dose} for {duration:g} d", REFERENCE_WEIGHT_KG)
        for dose in experiment.doses
        for duration in experiment.durations_d
    )
    by_weight = any("mg/kg" in dose for dose in experiment.doses)
    weight = f"; weight-based doses at {REFERENCE_WEIGHT_KG:g} kg" if by_weight else ""
    note = (
        f"grid: the preset man of each histology ({', '.join(experiment.histologies)}) under every dose x duration "
        f"({len(arms)} arms){weight}; the {experiment.n_patients} virtual men per histology (parameter "
        "variability) and the responder reading of their semen analyses are not in the archive (`ra-model run` "
        "gives those)"
    )
    return [
        GridScenario(
            label=f"{stem}__{histology}",
            phenotype=histology,
            arms=arms,
            overrides=dict(experiment.overrides),
            t_end_d=experiment.t_end_d,
            output_step_d=experiment.output_step_d,
            n_classes=experiment.n_classes,
            note=note,
        )
        for histology in experiment.histologies
    ]


def missed_until_h(regimen: str, every: int, t_end_d: float) -> float | None:
    """Return the time from which a dose due to be missed is taken, as ``ra_model``'s simulator runs it.

    The simulator misses the n-th, 2n-th, ... dose by setting ``dose_mg`` to 0 around it
    (:func:`ra_model.studies.experiments.single.missed_dose_changes`), except a dose due within that margin
    of the end of the run. This reads the doses it misses from those changes and returns the time, halfway
    between doses, before which exactly those are missed; the export's dose event then misses the same ones.

    Args:
        regimen: Regimen text.
        every: Miss every n-th dose.
        t_end_d: End of the run, days.

    Returns:
        Hours, or None if every n-th dose up to the end of the run is missed.

    Raises:
        ModelBuildError: If the simulator's missed doses are not "every n-th dose before a time".
    """
    from ra_model.studies.experiments.single import missed_dose_changes

    parsed = Regimen.parse(regimen)
    times_h = np.asarray(parsed.dose_times_h(), dtype=float)
    off_h = np.sort([c.t_d * 24.0 for c in missed_dose_changes(parsed, every, t_end_d=t_end_d) if c.value == 0.0])
    # a dose is missed if dose_mg was set to 0 within half an interval before it
    missed = np.zeros(times_h.size, dtype=bool)
    if off_h.size:
        before = np.searchsorted(off_h, times_h, side="right")
        missed = (before > 0) & (times_h - off_h[np.maximum(before - 1, 0)] < parsed.interval_h / 2)
    due = ((np.arange(times_h.size) + 1) % every == 0) & (times_h <= t_end_d * 24.0)
    taken = np.flatnonzero(due & ~missed)
    until = float(times_h[taken[0]] - parsed.interval_h / 2) if taken.size else None
    expected = due & (times_h < (until if until is not None else math.inf))
    if not np.array_equal(missed & (times_h <= t_end_d * 24.0), expected):
        raise ModelBuildError(
            f"the simulator's missed doses of {regimen!r} (every {every}) are not every {every}-th dose before one "
            "time, which is what the export's dose event expresses; update ra_model.interop.omex.missed_until_h "
            "and export_sbml(missed_every=...) together with missed_dose_changes"
        )
    return until


def grid_changes(grid: GridScenario) -> tuple[GridChange, ...]:
    """Return the values the grid's repeated task sets for each arm: what each arm's own export carries.

    Each arm is exported as a scenario (:func:`~ra_model.interop.sbml_export.export_sbml`, without annotations)
    and its parameter values and initial amounts compared. Every dose-event parameter
    (:data:`~ra_model.model.regimen.DOSE_EVENT_PARAMETERS`) and the gut's initial amount (the dose at t = 0)
    is set in every iteration, changed or not, so a simulator whose reset keeps values that events changed
    (roadrunner's ``reset()``) still starts each arm right. The species comes first: setting a species' initial
    value in tellurium (roadrunner ``init([S])``) puts every parameter back to its initial value.

    Raises:
        ModelBuildError: If the arms differ in anything else (a pre-treatment steady state or a parameter that
            depends on the arm): export such arms as separate :class:`Scenario` s.
    """
    from ra_model.engines.simulate import DOSE_SPECIES
    from ra_model.interop.sbml_export import export_sbml

    texts = [
        export_sbml(
            phenotype=grid.phenotype,
            regimen=arm,
            overrides=dict(grid.overrides),
            n_classes=grid.n_classes,
            annotate=False,
        )
        for arm in grid.arms
    ]
    model = libsbml.readSBMLFromString(texts[0]).getModel()
    species = model.getSpecies(DOSE_SPECIES)
    if species is None or model.getCompartment(species.getCompartment()).getSize() != 1.0:
        # SED-ML sets a species as a concentration (tellurium: init([S])); in a compartment of size 1 it is the amount
        raise ModelBuildError(
            f"grid {grid.label!r}: the dose species {DOSE_SPECIES!r} is missing or its compartment's size is not 1, "
            "so the arm's dose at t = 0 cannot be set unambiguously; keep the gut compartment at size 1"
        )
    exports = [_model_values(text) for text in texts]
    first = exports[0]
    settable = {("parameter", name) for name in DOSE_EVENT_PARAMETERS} | {("species", DOSE_SPECIES)}
    missing = sorted(name for kind, name in settable if (kind, name) not in first)
    if missing:
        raise ModelBuildError(f"grid {grid.label!r}: the exported model lacks {missing}, which each arm sets")
    differing = sorted(
        name
        for key, value in first.items()
        if key not in settable
        for name in [key[1]]
        if any(not math.isclose(other[key], value, rel_tol=1e-12, abs_tol=0.0) for other in exports[1:])
    )
    if differing:
        raise ModelBuildError(
            f"grid {grid.label!r}: the arms differ in {differing}, not only in the dose event's values; an archive "
            "repeats one model (one pre-treatment steady state) over the arms, so export such arms as separate "
            "scenarios (one Scenario each)"
        )
    # species first: tellurium (roadrunner) puts every parameter back to its initial value when a species'
    # initial value is set, so the parameters are set after it
    order = sorted(settable, key=lambda key: (key[0] != "species", key[1]))
    return tuple(GridChange(kind, name, tuple(values[kind, name] for values in exports)) for kind, name in order)


def _model_values(text: str) -> dict[tuple[str, str], float]:
    """Return the parameter values, species initial amounts and compartment sizes of an SBML text, by (kind, id)."""
    model = libsbml.readSBMLFromString(text).getModel()
    out: dict[tuple[str, str], float] = {}
    for parameter in model.getListOfParameters():
        if parameter.isSetValue():
            out["parameter", parameter.getId()] = float(parameter.getValue())
    for species in model.getListOfSpecies():
        if species.isSetInitialAmount():
            out["species", species.getId()] = float(species.getInitialAmount())
    for compartment in model.getListOfCompartments():
        if compartment.isSetSize():
            out["compartment", compartment.getId()] = float(compartment.getSize())
    return out


def sedml_for(runs: Sequence[ArchiveRun]) -> str:
    """Return SED-ML L1V4 text: per run a model file ``<label>.xml``, a time course and a report; six plots.

    A :class:`Scenario` is a task; a :class:`GridScenario` a repeatedTask over its arms (:func:`grid_changes`,
    which exports each arm, so this takes a moment per arm), with its arms listed in an annotation
    (:data:`ARMS_NAMESPACE`). Each report holds ``time_h``, ``time_d``, ``doses_given`` and every observable;
    each plot2D is one panel of the standard time-course figure, a curve per run (a grid's curve holds every
    arm) of the panel's quantity against ``time_d``.

    Raises:
        ModelBuildError: If the SED-ML does not validate, or a grid's arms differ beyond the dose event.
    """
    doc = libsedml.SedDocument(1, 4)
    doc.getNamespaces().add(_SBML_NAMESPACE, "sbml")
    for run in runs:
        model = doc.createModel()
        model.setId(f"model_{run.label}")
        model.setLanguage("urn:sedml:language:sbml.level-3.version-2")
        model.setSource(f"{run.label}.xml")
        sim = doc.createUniformTimeCourse()
        sim.setId(f"sim_{run.label}")
        sim.setInitialTime(0.0)
        sim.setOutputStartTime(0.0)
        sim.setOutputEndTime(run.t_end_d * 24.0)  # the model's time unit is the hour
        sim.setNumberOfPoints(run.steps)
        algorithm = sim.createAlgorithm()
        algorithm.setKisaoID(KISAO_CVODE)
        for kisao, value in ((KISAO_RTOL, SOLVER_RTOL), (KISAO_ATOL, SOLVER_ATOL)):
            parameter = algorithm.createAlgorithmParameter()
            parameter.setKisaoID(kisao)
            parameter.setValue(repr(value))
        task = doc.createTask()
        task.setId(f"task_{run.label}")
        task.setModelReference(model.getId())
        task.setSimulationReference(sim.getId())
        output_task = task.getId()
        if isinstance(run, GridScenario):
            output_task = _repeated_task(doc, run, task.getId(), model.getId())
        _add_report(doc, run, output_task)
    _add_plots(doc, runs)
    text = str(libsedml.writeSedMLToString(doc))
    check = libsedml.readSedMLFromString(text)
    if check.getErrorLog().getNumFailsWithSeverity(libsedml.LIBSEDML_SEV_ERROR) > 0:
        raise ModelBuildError(f"the SED-ML does not validate: {check.getErrorLog().toString()}")
    dangling = sedml_dangling_references(check)
    if dangling:
        raise ModelBuildError(f"the SED-ML refers to ids it does not define: {dangling}")
    return text


def sedml_dangling_references(doc: libsedml.SedDocument) -> list[str]:
    """Return every reference in a SED-ML document to an id it does not define (libsedml's reader does not check).

    Checked: tasks' models and simulations, subtasks' tasks, setValues' models and ranges, variables' tasks,
    and the data generators of report data sets and plot curves.
    """
    models = {m.getId() for m in doc.getListOfModels()}
    sims = {s.getId() for s in doc.getListOfSimulations()}
    tasks = {t.getId() for t in doc.getListOfTasks()}
    generators = {g.getId() for g in doc.getListOfDataGenerators()}
    refs: list[tuple[str, str, set[str]]] = []
    for task in doc.getListOfTasks():
        if isinstance(task, libsedml.SedRepeatedTask):
            ranges = {r.getId() for r in task.getListOfRanges()}
            refs.append((task.getId(), task.getRangeId(), ranges))
            refs += [(task.getId(), st.getTask(), tasks) for st in task.getListOfSubTasks()]
            for change in task.getListOfTaskChanges():
                refs += [(task.getId(), change.getModelReference(), models), (task.getId(), change.getRange(), ranges)]
        else:
            refs += [
                (task.getId(), task.getModelReference(), models),
                (task.getId(), task.getSimulationReference(), sims),
            ]
    for gen in doc.getListOfDataGenerators():
        refs += [(gen.getId(), var.getTaskReference(), tasks) for var in gen.getListOfVariables()]
    for output in doc.getListOfOutputs():
        if isinstance(output, libsedml.SedReport):
            refs += [(output.getId(), ds.getDataReference(), generators) for ds in output.getListOfDataSets()]
        elif isinstance(output, libsedml.SedPlot2D):
            for curve in output.getListOfCurves():
                refs += [(curve.getId(), curve.getXDataReference(), generators)]
                refs += [(curve.getId(), curve.getYDataReference(), generators)]
    return [f"{owner} -> {ref!r}" for owner, ref, known in refs if ref not in known]


def _repeated_task(doc: libsedml.SedDocument, grid: GridScenario, task_id: str, model_id: str) -> str:
    """Add the grid's repeatedTask over ``task_id`` and return its id."""
    repeated = doc.createRepeatedTask()
    repeated.setId(f"grid_{grid.label}")
    repeated.setName(f"{grid.description}: " + "; ".join(str(arm or "no drug") for arm in grid.arms))
    repeated.setResetModel(True)
    master = repeated.createVectorRange()
    master.setId(f"arm_{grid.label}")
    for k in range(len(grid.arms)):
        master.addValue(float(k))
    repeated.setRangeId(master.getId())
    for change in grid_changes(grid):
        values = repeated.createVectorRange()
        values.setId(f"range_{grid.label}_{change.id}")
        for value in change.values:
            values.addValue(value)
        setting = repeated.createTaskChange()
        setting.setModelReference(model_id)
        setting.setTarget(change.target)
        setting.setRange(values.getId())
        setting.setMath(libsedml.parseL3Formula(values.getId()))
    subtask = repeated.createSubTask()
    subtask.setTask(task_id)
    subtask.setOrder(1)
    arms = "".join(
        f'<ra:arm index="{k}" label="{_xml(label)}" regimen="{_xml(str(arm or "none"))}"/>'
        for k, (label, arm) in enumerate(zip(grid.arm_labels, grid.arms, strict=True))
    )
    if repeated.setAnnotation(f'<annotation><ra:arms xmlns:ra="{ARMS_NAMESPACE}">{arms}</ra:arms></annotation>') != 0:
        raise ModelBuildError(f"libsedml refused the arms annotation of grid {grid.label!r}")
    return str(repeated.getId())


def _add_report(doc: libsedml.SedDocument, run: ArchiveRun, task_id: str) -> None:
    """Add the run's data generators (time in hours and days, doses, observables) and its report."""
    report = doc.createReport()
    report.setId(f"report_{run.label}")
    report.setName(run.description)
    for name, target, symbol in [
        ("time_h", None, "urn:sedml:symbol:time"),
        (C.TIME_D, None, "urn:sedml:symbol:time"),
        (C.DOSES_GIVEN, "doses_given", None),
        *((o.column, o.model_id, None) for o in C.OBSERVABLES),
    ]:
        var_id = f"v_{run.label}_{name}"
        gen = doc.createDataGenerator()
        gen.setId(f"dg_{run.label}_{name}")
        gen.setName(name)
        var = gen.createVariable()
        var.setId(var_id)
        var.setTaskReference(task_id)
        if symbol:
            var.setSymbol(symbol)
        else:
            var.setTarget(f"/sbml:sbml/sbml:model/sbml:listOfParameters/sbml:parameter[@id='{target}']")
        gen.setMath(libsedml.parseL3Formula(f"{var_id} / 24" if name == C.TIME_D else var_id))
        dataset = report.createDataSet()
        dataset.setId(f"ds_{run.label}_{name}")
        dataset.setLabel(name)
        dataset.setDataReference(gen.getId())


def _add_plots(doc: libsedml.SedDocument, runs: Sequence[ArchiveRun]) -> None:
    """Add one plot2D per panel of the standard time-course figure, a curve per run against time in days."""
    for column, title, log_scale in C.STANDARD_PANELS:
        plot = doc.createPlot2D()
        plot.setId(f"plot_{column}")
        plot.setName(title)
        plot.setLegend(True)
        x_axis = plot.createXAxis()
        x_axis.setType(libsedml.SEDML_AXISTYPE_LINEAR)
        x_axis.setName(TIME_AXIS)
        y_axis = plot.createYAxis()
        y_axis.setType(libsedml.SEDML_AXISTYPE_LOG10 if log_scale else libsedml.SEDML_AXISTYPE_LINEAR)
        y_axis.setName(title)
        for run in runs:
            curve = plot.createCurve()
            curve.setId(f"curve_{column}_{run.label}")
            curve.setName(run.description)
            curve.setType(libsedml.SEDML_CURVETYPE_POINTS)
            curve.setXDataReference(f"dg_{run.label}_{C.TIME_D}")
            curve.setYDataReference(f"dg_{run.label}_{column}")


def metadata_rdf(title: str, description: str) -> str:
    """Return OMEX metadata (RDF/XML) describing the archive itself: title, description, creators, licence, dates.

    The subject is ``rdf:about="."``, the archive, as the OMEX metadata specification and libcombine read it
    (``CombineArchive.getMetadataForLocation(".")``); creators are vCard names, as libcombine writes them.
    """
    data = load_annotations()
    creators = "".join(
        '<dcterms:creator rdf:parseType="Resource"><vCard:hasName rdf:parseType="Resource">'
        f"<vCard:family-name>{_xml(c.family)}</vCard:family-name><vCard:given-name>{_xml(c.given)}</vCard:given-name>"
        "</vCard:hasName>"
        + (f'<vCard:hasEmail rdf:resource="mailto:{_xml(c.email)}"/>' if c.email else "")
        + (f"<vCard:organization-name>{_xml(c.organisation)}</vCard:organization-name>" if c.organisation else "")
        + f"<foaf:name>{_xml(c.given)} {_xml(c.family)}</foaf:name></dcterms:creator>"
        for c in data.creators
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns:dcterms="http://purl.org/dc/terms/" xmlns:foaf="http://xmlns.com/foaf/0.1/" '
        'xmlns:vCard="http://www.w3.org/2006/vcard/ns#">\n'
        '  <rdf:Description rdf:about=".">\n'
        f"    <dcterms:title>{_xml(title)}</dcterms:title>\n"
        f"    <dcterms:description>{_xml(description)}</dcterms:description>\n"
        f"    {creators}\n"
        f'    <dcterms:license rdf:resource="{_xml(data.licence_url)}"/>\n'
        f'    <dcterms:created rdf:parseType="Resource"><dcterms:W3CDTF>{data.created}</dcterms:W3CDTF>'
        "</dcterms:created>\n"
        f'    <dcterms:modified rdf:parseType="Resource"><dcterms:W3CDTF>{data.modified}</dcterms:W3CDTF>'
        "</dcterms:modified>\n"
        "  </rdf:Description>\n"
        "</rdf:RDF>\n"
    )


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def write_omex(path: Path, runs: Sequence[ArchiveRun], *, description: str = "") -> Path:
    """Write one COMBINE archive holding the given runs.

    Args:
        path: The ``.omex`` file to write (its folder must exist).
        runs: The simulations (:class:`Scenario`) and grids (:class:`GridScenario`); each gets its own
            exported SBML file (a grid's carries its first arm).
        description: Free text for the metadata; a default names the runs (and a grid's note).

    Returns:
        ``path``.

    Raises:
        ModelBuildError: If an export or the archive cannot be written.
    """
    from ra_model.interop.sbml_export import export_sbml

    if not runs:
        raise InvalidValueError("an archive needs at least one scenario")
    labels = [run.label for run in runs]
    if len(set(labels)) != len(labels):
        raise InvalidValueError(f"scenario labels repeat: {labels}; give every scenario its own label")
    archive = libcombine.CombineArchive()
    for run in runs:
        if isinstance(run, GridScenario):
            sbml = export_sbml(
                phenotype=run.phenotype, regimen=run.arms[0], overrides=dict(run.overrides), n_classes=run.n_classes
            )
        else:
            sbml = export_sbml(
                phenotype=run.phenotype,
                regimen=run.regimen,
                overrides=dict(run.overrides),
                changes=run.changes,
                n_classes=run.n_classes,
                missed_every=run.missed_every,
                missed_until_h=(
                    missed_until_h(run.regimen, run.missed_every, run.t_end_d)
                    if run.missed_every is not None and run.regimen
                    else None
                ),
            )
        _add(archive, sbml, f"./{run.label}.xml", _FORMAT_SBML, master=False)
    _add(archive, sedml_for(runs), "./simulation.sedml", _FORMAT_SEDML, master=True)
    summary = "; ".join(
        f"{run.description}, {run.t_end_d:g} d" + (f", overrides {dict(run.overrides)}" if run.overrides else "")
        for run in runs
    )
    notes = sorted({run.note for run in runs if isinstance(run, GridScenario) and run.note})
    title = f"ra_testis: {summary}"
    _add(
        archive,
        metadata_rdf(
            title, description or f"Simulation of the ra_testis model: {summary}." + "".join(f" {n}." for n in notes)
        ),
        "./metadata.rdf",
        _FORMAT_METADATA,
        master=False,
    )
    path.unlink(missing_ok=True)
    if not archive.writeToFile(str(path)):
        raise ModelBuildError(f"libcombine could not write {path}")
    return path


def _add(archive: libcombine.CombineArchive, text: str, location: str, fmt: str, *, master: bool) -> None:
    if not archive.addFileFromString(text, location, fmt, master):
        raise ModelBuildError(f"libcombine could not add {location} to the archive")


def run_omex_tellurium(path: Path) -> dict[str, pd.DataFrame]:
    """Execute an archive with tellurium's SED-ML engine; return one table per scenario and grid arm.

    Outputs (reports, plots) are not drawn: this reads the data generators. Tables have ``time_d``,
    ``doses_given`` and the observable columns, like ``simulate()``; a :class:`Scenario`'s table is keyed by its
    label, a grid arm's by ``<grid label>__<arm label>`` (:attr:`GridScenario.arm_labels`).

    Raises:
        ModelBuildError: If tellurium's results lack a data generator or a grid's arms do not match its results.
    """
    import tellurium as te

    raw = te.executeCombineArchive(str(path), createOutputs=False, saveOutputs=False)
    generators: dict[str, object] = {}
    for data in raw.values():
        generators.update(data["dataGenerators"])
    arms = archive_grid_arms(path)
    labels = sorted({g.split("_", 1)[1].rsplit("_time_h", 1)[0] for g in generators if g.endswith("_time_h")})
    tables: dict[str, pd.DataFrame] = {}
    for label in labels:
        time_h = _matrix(generators, f"dg_{label}_time_h")
        names = arms.get(label)
        if names is None and time_h.shape[1] != 1:
            raise ModelBuildError(f"tellurium returned {time_h.shape[1]} repeats of {label!r}, which is not a grid")
        if names is not None and len(names) != time_h.shape[1]:
            raise ModelBuildError(f"grid {label!r} lists {len(names)} arms, but tellurium returned {time_h.shape[1]}")
        keys = [label] if names is None else [f"{label}__{name}" for name in names]
        columns = {C.DOSES_GIVEN: _matrix(generators, f"dg_{label}_{C.DOSES_GIVEN}")}
        columns |= {o.column: _matrix(generators, f"dg_{label}_{o.column}") for o in C.OBSERVABLES}
        for k, key in enumerate(keys):
            table = pd.DataFrame({C.TIME_D: time_h[:, k] / 24.0})
            table[C.DOSES_GIVEN] = np.round(columns[C.DOSES_GIVEN][:, k]).astype(int)
            for obs in C.OBSERVABLES:
                table[obs.column] = columns[obs.column][:, k]
            tables[key] = table
    return tables


def archive_grid_arms(path: Path) -> dict[str, tuple[str, ...]]:
    """Return the arm labels of each grid in an archive's SED-ML, by grid label (from the arms annotation).

    Raises:
        ModelBuildError: If the archive or its SED-ML cannot be read.
    """
    archive = libcombine.CombineArchive()
    if not archive.initializeFromArchive(str(path)):
        raise ModelBuildError(f"libcombine cannot read {path}; is it a COMBINE archive?")
    out: dict[str, tuple[str, ...]] = {}
    try:
        for i in range(archive.getNumEntries()):
            entry = archive.getEntry(i)
            if entry.getFormat() != _FORMAT_SEDML:
                continue
            doc = libsedml.readSedMLFromString(archive.extractEntryToString(entry.getLocation()))
            for task in doc.getListOfTasks():
                if not isinstance(task, libsedml.SedRepeatedTask) or not task.getId().startswith("grid_"):
                    continue
                annotation = ET.fromstring(task.getAnnotationString() or "<annotation/>")
                found = sorted(
                    (int(arm.get("index", "-1")), arm.get("label", ""))
                    for arm in annotation.iter(f"{{{ARMS_NAMESPACE}}}arm")
                )
                out[task.getId().removeprefix("grid_")] = tuple(label for _, label in found)
    finally:
        archive.cleanUp()
    return out


def _matrix(generators: Mapping[str, object], key: str) -> np.ndarray:
    """Return a data generator's values as (time points, repeats)."""
    if key not in generators:
        raise ModelBuildError(f"tellurium's results lack data generator {key!r}")
    values = np.asarray(generators[key], dtype=float)
    return values.reshape(-1, 1) if values.ndim == 1 else values.reshape(values.shape[0], -1)
