"""Write COMBINE/OMEX archives (SBML + SED-ML + manifest + metadata) for scenarios, and run them with tellurium.

One archive per experiment: each scenario in it (phenotype, regimen, overrides, horizon) becomes an
exported SBML model (``ra_model.interop.sbml_export``, so it carries the phenotype's steady state and the
regimen's dose event), a uniform time course in hours, and a report of the dose count and every named
observable. ``run_omex_tellurium`` executes an archive with tellurium's SED-ML engine, an independent
reader of the archive, for the cross-check against ``simulate()``.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import libcombine
import libsedml
import numpy as np
import pandas as pd

from ra_model.engines.simulate import ParameterChange
from ra_model.errors import InvalidValueError, ModelBuildError
from ra_model.interop.annotate import load_annotations
from ra_model.model import columns as C
from ra_model.model.phenotypes import load_phenotypes

#: The standard scenario regimens: no drug, and the clinical regimen under study.
STANDARD_REGIMENS: tuple[str | None, ...] = (None, "20 mg bid for 180 d")
#: SED-ML algorithm and tolerances (KiSAO): CVODE, relative 1e-8, absolute 1e-12, as ``simulate()`` uses.
KISAO_CVODE = "KISAO:0000019"
KISAO_RTOL = "KISAO:0000209"
KISAO_ATOL = "KISAO:0000211"
SOLVER_RTOL = 1e-8
SOLVER_ATOL = 1e-12

# The format URIs libcombine knows (tellurium finds the SED-ML through them).
_FORMAT_SBML = "http://identifiers.org/combine.specifications/sbml"
_FORMAT_SEDML = "http://identifiers.org/combine.specifications/sed-ml"
_FORMAT_METADATA = "http://identifiers.org/combine.specifications/omex-metadata"


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One simulation of an archive.

    Attributes:
        label: Short id, letters, digits and underscores (used for file and SED-ML ids).
        phenotype: Phenotype preset name.
        regimen: Regimen text, or None for no drug.
        overrides: Parameter values by id.
        t_end_d: Simulated time, days.
        output_step_d: Output spacing, days (``t_end_d`` must be a whole number of steps).
        changes: Scheduled parameter changes (written as SBML events).
    """

    label: str
    phenotype: str = "healthy"
    regimen: str | None = None
    overrides: Mapping[str, float] = field(default_factory=dict)
    t_end_d: float = 365.0
    output_step_d: float = 1.0
    changes: tuple[ParameterChange, ...] = ()

    def __post_init__(self) -> None:
        """Check the label and the time grid."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.label):
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


def slug(text: str | None) -> str:
    """Return a file-name-safe id for a regimen text (``"no_drug"`` for None)."""
    if not text or text.strip().lower() == "none":
        return "no_drug"
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]+", "_", text)).strip("_")


def standard_experiments() -> dict[str, list[Scenario]]:
    """Return every phenotype preset with no drug and with 20 mg bid for 180 d, one experiment each."""
    out: dict[str, list[Scenario]] = {}
    for name in load_phenotypes():
        for regimen in STANDARD_REGIMENS:
            label = f"{name}__{slug(regimen)}"
            out[label] = [Scenario(label=label, phenotype=name, regimen=regimen)]
    return out


def experiment_file_scenarios(path: Path) -> list[Scenario] | str:
    """Read a scenario file of kind "single" (``experiments/*.toml``) as scenarios.

    The file is read and validated by :func:`ra_model.studies.experiments.load_experiment`, the one reader of
    the scenario schema; outputs-only settings (sampling, species, figures) do not enter the archive.

    Returns:
        The scenarios, or the reason the file cannot be an archive (another kind, or a setting such as
        missed doses that SBML + SED-ML here do not express).

    Raises:
        InvalidValueError: If the file cannot be read as TOML or has bad values.
    """
    from ra_model.studies.experiments import load_experiment

    try:
        with path.open("rb") as handle:
            kind = tomllib.load(handle).get("kind", "single")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidValueError(f"{path}: {exc}") from exc
    if kind != "single":
        return f"kind {kind!r} is not a single scenario"
    experiment = load_experiment(path)
    missed = [run.label for run in experiment.runs if run.missed_every is not None]
    if missed:
        return f"run setting(s) ['missed_every'] of {missed} are not expressible in the archive"
    stem = re.sub(r"[^A-Za-z0-9_]", "_", path.stem)
    return [
        Scenario(
            label=f"{stem}__{slug(run.label)}",
            phenotype=experiment.phenotype,
            regimen=str(run.regimen) if run.regimen else None,
            overrides=dict(experiment.overrides),
            t_end_d=experiment.t_end_d,
            output_step_d=experiment.output_step_d,
            changes=(*experiment.changes, *run.changes),
        )
        for run in experiment.runs
    ]


def sedml_for(scenarios: Sequence[Scenario]) -> str:
    """Return SED-ML L1V4 text: per scenario a model file ``<label>.xml``, a time course and a report."""
    doc = libsedml.SedDocument(1, 4)
    for sc in scenarios:
        model = doc.createModel()
        model.setId(f"model_{sc.label}")
        model.setLanguage("urn:sedml:language:sbml.level-3.version-2")
        model.setSource(f"{sc.label}.xml")
        sim = doc.createUniformTimeCourse()
        sim.setId(f"sim_{sc.label}")
        sim.setInitialTime(0.0)
        sim.setOutputStartTime(0.0)
        sim.setOutputEndTime(sc.t_end_d * 24.0)  # the model's time unit is the hour
        sim.setNumberOfPoints(sc.steps)
        algorithm = sim.createAlgorithm()
        algorithm.setKisaoID(KISAO_CVODE)
        for kisao, value in ((KISAO_RTOL, SOLVER_RTOL), (KISAO_ATOL, SOLVER_ATOL)):
            parameter = algorithm.createAlgorithmParameter()
            parameter.setKisaoID(kisao)
            parameter.setValue(repr(value))
        task = doc.createTask()
        task.setId(f"task_{sc.label}")
        task.setModelReference(model.getId())
        task.setSimulationReference(sim.getId())
        report = doc.createReport()
        report.setId(f"report_{sc.label}")
        report.setName(f"{sc.phenotype}, {sc.regimen or 'no drug'}")
        for name, target, symbol in [
            ("time_h", None, "urn:sedml:symbol:time"),
            (C.DOSES_GIVEN, "doses_given", None),
            *((o.column, o.model_id, None) for o in C.OBSERVABLES),
        ]:
            var_id = f"v_{sc.label}_{name}"
            gen = doc.createDataGenerator()
            gen.setId(f"dg_{sc.label}_{name}")
            gen.setName(name)
            var = gen.createVariable()
            var.setId(var_id)
            var.setTaskReference(task.getId())
            if symbol:
                var.setSymbol(symbol)
            else:
                var.setTarget(f"/sbml:sbml/sbml:model/sbml:listOfParameters/sbml:parameter[@id='{target}']")
            gen.setMath(libsedml.parseL3Formula(var_id))
            dataset = report.createDataSet()
            dataset.setId(f"ds_{sc.label}_{name}")
            dataset.setLabel(name)
            dataset.setDataReference(gen.getId())
    text = str(libsedml.writeSedMLToString(doc))
    check = libsedml.readSedMLFromString(text)
    if check.getErrorLog().getNumFailsWithSeverity(libsedml.LIBSEDML_SEV_ERROR) > 0:
        raise ModelBuildError(f"the SED-ML does not validate: {check.getErrorLog().toString()}")
    return text


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


def write_omex(path: Path, scenarios: Sequence[Scenario], *, description: str = "") -> Path:
    """Write one COMBINE archive holding the given scenarios.

    Args:
        path: The ``.omex`` file to write (its folder must exist).
        scenarios: The simulations; each gets its own exported SBML file.
        description: Free text for the metadata; a default names the scenarios.

    Returns:
        ``path``.

    Raises:
        ModelBuildError: If an export or the archive cannot be written.
    """
    from ra_model.interop.sbml_export import export_sbml

    if not scenarios:
        raise InvalidValueError("an archive needs at least one scenario")
    archive = libcombine.CombineArchive()
    for sc in scenarios:
        sbml = export_sbml(phenotype=sc.phenotype, regimen=sc.regimen, overrides=dict(sc.overrides), changes=sc.changes)
        _add(archive, sbml, f"./{sc.label}.xml", _FORMAT_SBML, master=False)
    _add(archive, sedml_for(scenarios), "./simulation.sedml", _FORMAT_SEDML, master=True)
    summary = "; ".join(
        f"{sc.phenotype}, {sc.regimen or 'no drug'}, {sc.t_end_d:g} d"
        + (f", overrides {dict(sc.overrides)}" if sc.overrides else "")
        for sc in scenarios
    )
    title = f"ra_testis: {summary}"
    _add(
        archive,
        metadata_rdf(title, description or f"Simulation of the ra_testis model: {summary}."),
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
    """Execute an archive with tellurium's SED-ML engine; return one table per scenario label.

    Tables have ``time_d``, ``doses_given`` and the observable columns, like ``simulate()``.
    """
    import tellurium as te

    raw = te.executeCombineArchive(str(path), createOutputs=False, saveOutputs=False)
    generators: dict[str, object] = {}
    for data in raw.values():
        generators.update(data["dataGenerators"])
    labels = sorted({g.split("_", 1)[1].rsplit("_time_h", 1)[0] for g in generators if g.endswith("_time_h")})
    tables: dict[str, pd.DataFrame] = {}
    for label in labels:
        table = pd.DataFrame({C.TIME_D: _column(generators, f"dg_{label}_time_h") / 24.0})
        table[C.DOSES_GIVEN] = _column(generators, f"dg_{label}_{C.DOSES_GIVEN}").round().astype(int)
        for obs in C.OBSERVABLES:
            table[obs.column] = _column(generators, f"dg_{label}_{obs.column}")
        tables[label] = table
    return tables


def _column(generators: Mapping[str, object], key: str) -> pd.Series:
    if key not in generators:
        raise ModelBuildError(f"tellurium's results lack data generator {key!r}")
    return pd.Series(np.asarray(generators[key], dtype=float).ravel())
