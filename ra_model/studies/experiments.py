"""Scenarios as data: read, validate and run the experiment files in ``experiments/`` (TOML; the stem is the id).

Four kinds of file, chosen by ``kind`` (default ``"single"``):

``single``
    One phenotype, one run per regimen (or per ``[[runs]]`` entry, which may add scheduled parameter
    changes and a missed-dose pattern): time courses and per-run readouts.
``cohort``
    Virtual men drawn from a histology mix (:mod:`ra_model.studies.population`), screened at baseline,
    enrolled per histology, treated and read by the trial's semen analyses (:mod:`ra_model.studies.clinical`);
    response rates with confidence intervals beside published ones.
``grid``
    The same virtual men under every dose x duration, per histology: a response-rate table.
``sensitivity``
    Handed unchanged to :mod:`ra_model.studies.sensitivity` (the sweep helpers' global sensitivity analysis).

Cohorts and grids run through :func:`ra_model.studies.sweep.run_sweep` (its worker processes, Parquet
chunks and resume). Code only interprets these files: a new scenario needs no new Python. Every
file may carry a ``[reduced]`` table whose keys replace the top-level ones for quick runs (tests).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.metadata
import logging
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from ra_model.engines.simulate import ParameterChange, simulate
from ra_model.errors import InvalidValueError, RAModelError, SimulationFailedError, UnknownNameError
from ra_model.model import columns as C
from ra_model.model.phenotypes import load_phenotypes
from ra_model.model.regimen import Regimen, parse_optional
from ra_model.model.source import read_parameter_table
from ra_model.studies import clinical
from ra_model.studies.population import (
    BODY_WEIGHT_KG,
    HISTOLOGY,
    PATIENT_INDEX,
    Population,
    allocate,
    check_mix,
    draw_patients,
    load_population,
)

log = logging.getLogger(__name__)

#: Experiment kinds and the keys each accepts (besides the common ones).
KINDS: dict[str, frozenset[str]] = {
    "single": frozenset(
        {
            "phenotype",
            "regimens",
            "runs",
            "t_end_d",
            "output_step_d",
            "overrides",
            "changes",
            "include_species",
            "sampling",
        }
    ),
    "cohort": frozenset(
        {
            "population",
            "cohorts",
            "regimen",
            "t_end_d",
            "output_step_d",
            "overrides",
            "sampling",
            "response",
            "published",
            "seed",
            "max_screen_factor",
        }
    ),
    "grid": frozenset(
        {
            "population",
            "doses",
            "durations_d",
            "follow_up_d",
            "n_patients",
            "seed",
            "output_step_d",
            "overrides",
            "sampling",
            "response",
        }
    ),
    "sensitivity": frozenset(),  # any keys: the sensitivity module validates its own file
}
_COMMON = frozenset({"description", "kind", "figures", "reduced"})
#: Figures each kind can draw (``figures = [...]`` picks a subset; default all).
FIGURES: dict[str, tuple[str, ...]] = {
    "single": ("timecourse", "germ_cells"),
    "cohort": ("response", "time_to_response", "peak_concentration"),
    "grid": ("heatmap",),
    "sensitivity": (),
}
_RUN_KEYS = frozenset({"label", "regimen", "missed_every", "changes"})
_CHANGE_KEYS = frozenset({"t_d", "parameter", "value"})
_POPULATION_KEYS = frozenset({"histology_mix", "phenotype", "histologies", "variability"})
_SAMPLING_KEYS = frozenset({"visit_days", "every_d", "last_d"})
_RESPONSE_KEYS = frozenset({"consecutive", "threshold_M_per_mL", "screen"})
_PUBLISHED_KEYS = frozenset({"group", "responders", "n", "source", "cohort"})
#: Body weight used to check weight-based dose text at load time (each man's own weight is used to run).
_CHECK_WEIGHT_KG = 70.0


def experiments_dir() -> Path:
    """Return the folder of the shipped experiment files (``experiments/``, packaged as ``ra_model._experiments``)."""
    return Path(str(resources.files("ra_model._experiments")))


# --------------------------------------------------------------------------- schema
@dataclass(frozen=True, kw_only=True)
class Run:
    """One simulation of a ``single`` experiment.

    Attributes:
        label: Name in tables and legends.
        regimen: The regimen, or None for no drug.
        missed_every: Miss every n-th dose (the 4th, 8th, ...); None = no missed doses.
        changes: Scheduled parameter changes for this run (on top of the experiment's).
    """

    label: str
    regimen: Regimen | None
    missed_every: int | None = None
    changes: tuple[ParameterChange, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Published:
    """A published response count to compare with."""

    group: str
    responders: int
    n: int
    source: str
    cohort: str | None = None


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """A validated experiment file. Fields not used by its kind keep their defaults.

    Attributes:
        id: The file stem.
        path: The file.
        text: The file's text, exactly as read (kept for provenance).
        kind: ``single``, ``cohort``, ``grid`` or ``sensitivity``.
        description: One line on what the experiment asks.
        reduced: Whether the ``[reduced]`` table was applied.
        figures: Figures to draw.
        phenotype: Phenotype preset (single).
        runs: Runs (single).
        t_end_d: Simulated time, days.
        output_step_d: Output spacing, days.
        overrides: Parameter values applied to every run or man.
        changes: Scheduled parameter changes (single).
        include_species: Record species amounts (single; needed for the germ-cell figure).
        visit_days: Semen-analysis days, baseline (0) included.
        response: The responder rule.
        histology_mix: Histology shares (cohort).
        histologies: Histologies, one population each (grid).
        variability_file: Variability data (None = shipped ``models/population.toml``).
        cohorts: Cohort name to number of enrolled men (cohort).
        regimen: The regimen of a cohort.
        seed: Population seed.
        max_screen_factor: Stop screening a histology after this many candidates per enrolled man.
        published: Published counts to set beside the simulated ones.
        doses: Dose texts of a grid (``"20 mg bid"``, ``"0.5 mg/kg/day od"``).
        durations_d: Treatment durations of a grid, days.
        follow_up_d: Visits continue this long after treatment ends (grid).
        n_patients: Men per histology (grid).
        raw: The validated key/value table (for the sensitivity kind, the whole file).
    """

    id: str
    path: Path
    text: str
    kind: str
    description: str
    reduced: bool = False
    figures: tuple[str, ...] = ()
    phenotype: str = "healthy"
    runs: tuple[Run, ...] = ()
    t_end_d: float = 365.0
    output_step_d: float = 1.0
    overrides: Mapping[str, float] = field(default_factory=dict)
    changes: tuple[ParameterChange, ...] = ()
    include_species: bool = False
    visit_days: tuple[float, ...] = ()
    response: clinical.ResponseRule = field(default_factory=clinical.ResponseRule)
    histology_mix: Mapping[str, float] = field(default_factory=dict)
    histologies: tuple[str, ...] = ()
    variability_file: Path | None = None
    cohorts: Mapping[str, int] = field(default_factory=dict)
    regimen: str | None = None
    seed: int = 0
    max_screen_factor: float = 20.0
    published: tuple[Published, ...] = ()
    doses: tuple[str, ...] = ()
    durations_d: tuple[float, ...] = ()
    follow_up_d: float = 0.0
    n_patients: int = 0
    raw: Mapping[str, Any] = field(default_factory=dict)

    def population(self) -> Population:
        """Return the variability data this experiment draws men from."""
        return load_population(self.variability_file)


class _Reader:
    """Validates one file's table, turning every problem into an error naming the file and key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str, fix: str) -> InvalidValueError:
        return InvalidValueError(f"{self.path}: key {key!r}: {problem}; {fix}")

    def unknown(self, where: str, keys: set[str], allowed: set[str] | frozenset[str]) -> None:
        for key in sorted(keys - set(allowed)):
            close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(sorted(allowed))}"
            raise InvalidValueError(f"{self.path}: unknown key {where}{key!r}; {hint}")

    def number(self, key: str, value: object, *, positive: bool = True, allow_zero: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, f"{value!r} is not a number", "write a number such as 180")
        if positive and (value < 0 or (value == 0 and not allow_zero)):
            raise self.fail(key, f"{value!r} must be {'>= 0' if allow_zero else '> 0'}", "use a positive number")
        return float(value)

    def integer(self, key: str, value: object, *, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"{value!r} is not a whole number >= {minimum}", f"write e.g. {max(minimum, 30)}")
        return value

    def text(self, key: str, value: object) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"{value!r} is not text", "put it in quotes")
        return value

    def regimen(self, key: str, value: object, *, weight: bool = False) -> Regimen | None:
        text = self.text(key, value).strip()
        try:
            return parse_optional(text + (f", {_CHECK_WEIGHT_KG:g} kg" if weight and "mg/kg" in text else ""))
        except RAModelError as exc:
            raise self.fail(
                key, f"regimen {text!r} cannot be parsed ({exc})", "write e.g. '20 mg bid for 180 d'"
            ) from exc

    def phenotype(self, key: str, value: object) -> str:
        name = self.text(key, value)
        presets = load_phenotypes()
        if name not in presets:
            raise UnknownNameError("phenotype", name, presets, where=f"{self.path}, key {key!r}")
        return name

    def overrides(self, key: str, value: object) -> dict[str, float]:
        if not isinstance(value, dict):
            raise self.fail(key, "is not a table", "write [overrides] with lines 'parameter = value'")
        table = read_parameter_table()
        out = {}
        for name, number in value.items():
            if name not in table:
                raise UnknownNameError("parameter", name, table, where=f"{self.path}, key '{key}.{name}'")
            out[name] = self.number(f"{key}.{name}", number, allow_zero=True)
        return out

    def changes(self, key: str, value: object) -> tuple[ParameterChange, ...]:
        if not isinstance(value, list):
            raise self.fail(key, "is not a list", "write changes = [{t_d = 30, parameter = 'p', value = 1.0}]")
        table = read_parameter_table()
        out = []
        for i, item in enumerate(value):
            where = f"{key}[{i}]"
            if not isinstance(item, dict):
                raise self.fail(where, "is not a table", "write {t_d = 30, parameter = 'p', value = 1.0}")
            self.unknown(f"{where}.", set(item), _CHANGE_KEYS)
            missing = _CHANGE_KEYS - set(item)
            if missing:
                raise self.fail(where, f"is missing {sorted(missing)}", "give t_d, parameter and value")
            name = self.text(f"{where}.parameter", item["parameter"])
            if name not in table:
                raise UnknownNameError("parameter", name, table, where=f"{self.path}, key '{where}.parameter'")
            try:
                out.append(
                    ParameterChange(
                        t_d=self.number(f"{where}.t_d", item["t_d"]),
                        parameter=name,
                        value=self.number(f"{where}.value", item["value"], allow_zero=True),
                    )
                )
            except InvalidValueError as exc:
                raise self.fail(where, str(exc), "fix the change") from exc
        return tuple(out)

    def sampling(self, value: object, t_end_d: float) -> tuple[float, ...]:
        if not isinstance(value, dict):
            raise self.fail("sampling", "is not a table", "write [sampling] with every_d = 30 or visit_days = [...]")
        self.unknown("sampling.", set(value), _SAMPLING_KEYS)
        if "visit_days" in value:
            if {"every_d", "last_d"} & set(value):
                raise self.fail("sampling", "has both visit_days and every_d/last_d", "keep one of the two forms")
            days = [self.number("sampling.visit_days", d, allow_zero=True) for d in value["visit_days"]]
        else:
            every = self.number("sampling.every_d", value.get("every_d", 30.0))
            last = self.number("sampling.last_d", value.get("last_d", t_end_d))
            days = list(np.arange(every, last + 1e-9, every))
        days = sorted({0.0, *(float(d) for d in days)})
        if days[-1] > t_end_d + 1e-9:
            raise self.fail(
                "sampling", f"a visit on day {days[-1]:g} is after t_end_d = {t_end_d:g}", "lengthen t_end_d"
            )
        return tuple(days)

    def response(self, value: object) -> clinical.ResponseRule:
        if not isinstance(value, dict):
            raise self.fail("response", "is not a table", "write [response] with consecutive = 2")
        self.unknown("response.", set(value), _RESPONSE_KEYS)
        try:
            return clinical.ResponseRule(**value)
        except (InvalidValueError, TypeError) as exc:
            raise self.fail("response", str(exc), "fix the rule") from exc


def load_experiment(path: Path, *, reduced: bool = False) -> Experiment:
    """Read and validate an experiment file.

    Args:
        path: The TOML file; its stem is the experiment id.
        reduced: Apply the file's ``[reduced]`` table (smaller cohorts, coarser grids).

    Returns:
        The validated experiment.

    Raises:
        InvalidValueError: Unknown key, bad value, unparseable regimen, histology mix not summing to 1
            (the message names the file, the key and the fix).
        UnknownNameError: Unknown phenotype or parameter (with close matches).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidValueError(f"{path}: cannot read the experiment file ({exc}); check the path") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidValueError(f"{path}: not valid TOML ({exc}); fix the syntax") from exc
    r = _Reader(path)
    kind = data.get("kind", "single")
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        raise r.fail(
            "kind",
            f"unknown kind {kind!r}",
            f"use one of {', '.join(KINDS)}" + (f" (did you mean {close[0]!r}?)" if close else ""),
        )
    if kind == "sensitivity":
        return Experiment(
            id=path.stem,
            path=path,
            text=text,
            kind=kind,
            description=str(data.get("description", "")).strip(),
            raw=MappingProxyType(dict(data)),
            reduced=reduced,
        )
    r.unknown("", set(data), _COMMON | KINDS[kind])
    if "description" not in data:
        raise r.fail("description", "is missing", 'add description = "what the experiment asks"')
    if reduced and "reduced" in data:
        extra = data["reduced"]
        if not isinstance(extra, dict):
            raise r.fail("reduced", "is not a table", "write [reduced] with the keys to replace")
        r.unknown("reduced.", set(extra), KINDS[kind] | {"figures"})
        data = {k: v for k, v in data.items() if k != "reduced"} | extra
    figures = data.get("figures", list(FIGURES[kind]))
    if not isinstance(figures, list) or any(f not in FIGURES[kind] for f in figures):
        raise r.fail("figures", f"{figures!r} names an unknown figure", f"choose from {', '.join(FIGURES[kind])}")
    common: dict[str, Any] = dict(
        id=path.stem,
        path=path,
        text=text,
        kind=kind,
        description=r.text("description", data["description"]).strip(),
        reduced=reduced,
        figures=tuple(figures),
        overrides=MappingProxyType(r.overrides("overrides", data.get("overrides", {}))),
        output_step_d=r.number("output_step_d", data.get("output_step_d", 1.0)),
        raw=MappingProxyType(dict(data)),
    )
    if kind == "single":
        return Experiment(**common, **_single(r, data))
    if kind == "cohort":
        return Experiment(**common, **_cohort(r, data))
    return Experiment(**common, **_grid(r, data))


def _single(r: _Reader, data: Mapping[str, Any]) -> dict[str, Any]:
    t_end = r.number("t_end_d", data.get("t_end_d", 365.0))
    if ("regimens" in data) == ("runs" in data):
        raise r.fail("regimens", "give either 'regimens' or '[[runs]]'", 'write regimens = ["20 mg bid for 180 d"]')
    runs: list[Run] = []
    if "regimens" in data:
        if not isinstance(data["regimens"], list) or not data["regimens"]:
            raise r.fail("regimens", "is not a non-empty list", 'write regimens = ["20 mg bid for 180 d", "none"]')
        for i, text in enumerate(data["regimens"]):
            regimen = r.regimen(f"regimens[{i}]", text)
            runs.append(Run(label=str(regimen) if regimen else "no drug", regimen=regimen))
    else:
        if not isinstance(data["runs"], list) or not data["runs"]:
            raise r.fail("runs", "is not a list of tables", "write [[runs]] blocks with label and regimen")
        for i, item in enumerate(data["runs"]):
            where = f"runs[{i}]"
            if not isinstance(item, dict):
                raise r.fail(where, "is not a table", "write [[runs]] blocks")
            r.unknown(f"{where}.", set(item), _RUN_KEYS)
            regimen = r.regimen(f"{where}.regimen", item.get("regimen", "none"))
            missed = item.get("missed_every")
            if missed is not None:
                missed = r.integer(f"{where}.missed_every", missed, minimum=2)
                if regimen is None:
                    raise r.fail(f"{where}.missed_every", "needs a regimen", "give the run a regimen")
            label = r.text(f"{where}.label", item.get("label", str(regimen) if regimen else "no drug"))
            runs.append(
                Run(
                    label=label,
                    regimen=regimen,
                    missed_every=missed,
                    changes=r.changes(f"{where}.changes", item.get("changes", [])),
                )
            )
    labels = [run.label for run in runs]
    if len(set(labels)) != len(labels):
        raise r.fail("runs", f"labels repeat: {labels}", "give every run its own label")
    changes = r.changes("changes", data.get("changes", []))
    for run in runs:
        for change in (*changes, *run.changes):
            if change.t_d >= t_end:
                raise r.fail(
                    "changes", f"a change on day {change.t_d:g} is not before t_end_d = {t_end:g}", "lengthen t_end_d"
                )
    include = data.get("include_species", False)
    if not isinstance(include, bool):
        raise r.fail("include_species", f"{include!r} is not true/false", "write include_species = true")
    return dict(
        phenotype=r.phenotype("phenotype", data.get("phenotype", "healthy")),
        runs=tuple(runs),
        t_end_d=t_end,
        changes=changes,
        include_species=include,
        visit_days=r.sampling(data["sampling"], t_end) if "sampling" in data else (),
    )


def _population(r: _Reader, data: Mapping[str, Any], *, many: bool) -> dict[str, Any]:
    pop = data.get("population")
    if not isinstance(pop, dict):
        raise r.fail("population", "is missing or not a table", "write [population] with histology_mix = {...}")
    r.unknown("population.", set(pop), _POPULATION_KEYS)
    out: dict[str, Any] = {}
    if "variability" in pop:
        file = Path(r.text("population.variability", pop["variability"]))
        file = file if file.is_absolute() else (r.path.parent / file)
        if not file.exists():
            raise r.fail(
                "population.variability", f"file {file} does not exist", "give a path relative to the experiment file"
            )
        out["variability_file"] = file
    if many:
        names = pop.get("histologies")
        if not isinstance(names, list) or not names:
            raise r.fail("population.histologies", "is missing or empty", 'write histologies = ["maturation_arrest"]')
        out["histologies"] = tuple(r.phenotype(f"population.histologies[{i}]", n) for i, n in enumerate(names))
        return out
    if ("histology_mix" in pop) == ("phenotype" in pop):
        raise r.fail(
            "population",
            "give exactly one of histology_mix or phenotype",
            "write histology_mix = {maturation_arrest = 1.0}",
        )
    if "phenotype" in pop:
        mix = {r.phenotype("population.phenotype", pop["phenotype"]): 1.0}
    else:
        if not isinstance(pop["histology_mix"], dict):
            raise r.fail(
                "population.histology_mix", "is not a table", "write histology_mix = {maturation_arrest = 0.4, ...}"
            )
        for name in pop["histology_mix"]:
            r.phenotype(f"population.histology_mix.{name}", name)
        try:
            mix = check_mix(pop["histology_mix"], where="histology mix")
        except InvalidValueError as exc:
            raise r.fail("population.histology_mix", str(exc), "make the shares add up to 1") from exc
    out["histology_mix"] = MappingProxyType(mix)
    return out


def _seed(r: _Reader, data: Mapping[str, Any]) -> int:
    if "seed" not in data:
        raise r.fail("seed", "is missing", "add seed = 2025 so the cohort can be reproduced")
    return r.integer("seed", data["seed"], minimum=0)


def _published(r: _Reader, data: Mapping[str, Any]) -> tuple[Published, ...]:
    items = data.get("published", [])
    if not isinstance(items, list):
        raise r.fail("published", "is not a list of tables", "write [[published]] blocks")
    out = []
    for i, item in enumerate(items):
        where = f"published[{i}]"
        r.unknown(f"{where}.", set(item), _PUBLISHED_KEYS)
        n = r.integer(f"{where}.n", item.get("n"))
        k = r.integer(f"{where}.responders", item.get("responders"), minimum=0)
        if k > n:
            raise r.fail(f"{where}.responders", f"{k} responders out of {n}", "responders cannot exceed n")
        out.append(
            Published(
                group=r.text(f"{where}.group", item.get("group", "overall")),
                responders=k,
                n=n,
                source=r.text(f"{where}.source", item.get("source", "")),
                cohort=item.get("cohort"),
            )
        )
    return tuple(out)


def _cohort(r: _Reader, data: Mapping[str, Any]) -> dict[str, Any]:
    t_end = r.number("t_end_d", data.get("t_end_d", 365.0))
    cohorts = data.get("cohorts")
    if not isinstance(cohorts, dict) or not cohorts:
        raise r.fail("cohorts", "is missing or empty", "write [cohorts] with e.g. trial = 30")
    sizes = {name: r.integer(f"cohorts.{name}", n) for name, n in cohorts.items()}
    if "regimen" not in data:
        raise r.fail("regimen", "is missing", 'write regimen = "20 mg bid for 180 d"')
    regimen = r.regimen("regimen", data["regimen"], weight=True)
    if "sampling" not in data:
        raise r.fail("sampling", "is missing", "write [sampling] with every_d = 30")
    out = _population(r, data, many=False)
    published = _published(r, data)
    for p in published:
        if p.group not in ("overall", *out["histology_mix"]):
            raise r.fail(
                "published.group", f"{p.group!r} is neither 'overall' nor a histology of the mix", "fix the group"
            )
    return out | dict(
        t_end_d=t_end,
        cohorts=MappingProxyType(sizes),
        regimen=str(data["regimen"]).strip() if regimen else None,
        visit_days=r.sampling(data["sampling"], t_end),
        response=r.response(data.get("response", {})),
        published=published,
        seed=_seed(r, data),
        max_screen_factor=r.number("max_screen_factor", data.get("max_screen_factor", 20.0)),
    )


def _grid(r: _Reader, data: Mapping[str, Any]) -> dict[str, Any]:
    doses = data.get("doses")
    durations = data.get("durations_d")
    if not isinstance(doses, list) or not doses:
        raise r.fail("doses", "is missing or empty", 'write doses = ["10 mg od", "20 mg bid"]')
    if not isinstance(durations, list) or not durations:
        raise r.fail("durations_d", "is missing or empty", "write durations_d = [90, 180, 270]")
    durations_d = tuple(r.number(f"durations_d[{i}]", d) for i, d in enumerate(durations))
    for i, dose in enumerate(doses):
        r.regimen(f"doses[{i}]", f"{r.text(f'doses[{i}]', dose)} for {durations_d[0]:g} d", weight=True)
    follow = r.number("follow_up_d", data.get("follow_up_d", 90.0), allow_zero=True)
    t_end = max(durations_d) + follow
    if "sampling" not in data:
        raise r.fail("sampling", "is missing", "write [sampling] with every_d = 30")
    sampling = dict(data["sampling"])
    if "last_d" in sampling:
        raise r.fail("sampling.last_d", "is set by durations_d + follow_up_d in a grid", "remove last_d")
    return _population(r, data, many=True) | dict(
        doses=tuple(str(d).strip() for d in doses),
        durations_d=durations_d,
        follow_up_d=follow,
        t_end_d=t_end,
        n_patients=r.integer("n_patients", data.get("n_patients")),
        seed=_seed(r, data),
        visit_days=r.sampling(sampling, t_end),
        response=r.response(data.get("response", {})),
    )


def list_experiments(folder: Path | None = None) -> list[Experiment]:
    """Return every experiment in a folder (default: the source tree's ``experiments/``), by id."""
    folder = folder or experiments_dir()
    return [load_experiment(p) for p in sorted(folder.glob("*.toml"))]


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, kw_only=True)
class ExperimentResult:
    """What an experiment produced.

    Attributes:
        experiment: The experiment that ran.
        results: The results table (time courses for ``single``; one row per man and arm otherwise).
        summary: One row per run, cohort x group or grid cell.
        tables: Further named tables (published comparison, curves, failures, ...).
        inputs: Provenance: model hash, package version, parameters, seed, scenario text.
    """

    experiment: Experiment
    results: pd.DataFrame
    summary: pd.DataFrame
    tables: Mapping[str, pd.DataFrame]
    inputs: Mapping[str, Any]


def run_experiment(
    experiment: Experiment,
    *,
    work_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> ExperimentResult:
    """Run an experiment.

    Args:
        experiment: A loaded experiment.
        work_dir: Folder for the sweep's Parquet chunks (cohort and grid): rerunning with the same
            folder resumes instead of recomputing.
        workers: Worker processes for cohorts and grids (None = all cores, 1 = this process).
        progress: Show the sweep's progress bar.

    Returns:
        The results, summary and provenance.

    Raises:
        SimulationFailedError: A ``single`` run failed (cohort members that fail are reported in
            the ``failures`` table instead).
    """
    if experiment.kind == "single":
        return _run_single(experiment)
    if experiment.kind == "cohort":
        return _run_cohort(experiment, work_dir=work_dir, workers=workers, progress=progress)
    if experiment.kind == "grid":
        return _run_grid(experiment, work_dir=work_dir, workers=workers, progress=progress)
    return _run_sensitivity(experiment, work_dir=work_dir, workers=workers, progress=progress)


def _inputs(experiment: Experiment, **extra: Any) -> dict[str, Any]:
    from ra_model.engines.simulate import default_engine

    engine = default_engine()
    try:
        version = importlib.metadata.version("ra_model")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "experiment": experiment.id,
        "kind": experiment.kind,
        "reduced": experiment.reduced,
        "model_hash": engine.sbml_hash,
        "package_version": version,
        "solver": {"rtol": engine.options.rtol, "atol": engine.options.atol},
        "seed": experiment.seed if experiment.kind in ("cohort", "grid") else None,
        "parameters": dict(engine.defaults),
        "overrides": dict(experiment.overrides),
        "scenario_file": str(experiment.path),
        "scenario_text": experiment.text,
    } | extra


# ---- single
def missed_dose_changes(regimen: Regimen, every: int, *, t_end_d: float) -> tuple[ParameterChange, ...]:
    """Express "miss every n-th dose" as scheduled changes of the dose size.

    The model's dose event gives ``dose_mg`` each time it fires; setting ``dose_mg`` to 0 one hour
    before a dose and back one hour after it skips exactly that dose. The first dose is never missed.

    Args:
        regimen: The prescribed regimen (fixed or weight-based dose).
        every: Miss the n-th, 2n-th, ... dose (n >= 2).
        t_end_d: End of the run; doses after it are ignored.

    Returns:
        Changes in time order.
    """
    if every < 2:
        raise InvalidValueError(f"missed_every = {every}; use 2 or more (every dose missed is no treatment)")
    dose = regimen.dose_per_administration_mg
    margin_d = min(1.0, regimen.interval_h / 4) / 24
    changes: list[ParameterChange] = []
    for i, t_h in enumerate(regimen.dose_times_h()):
        t_d = t_h / 24
        if (i + 1) % every or t_d + margin_d >= t_end_d:
            continue
        changes += [
            ParameterChange(t_d=t_d - margin_d, parameter="dose_mg", value=0.0),
            ParameterChange(t_d=t_d + margin_d, parameter="dose_mg", value=dose),
        ]
    return tuple(changes)


def run_readouts(table: pd.DataFrame) -> dict[str, float]:
    """Per-run readouts of a time course: baseline, peak, first and last motile sperm, final values.

    With species amounts in the table, ``eliminated_retinoid_nmol`` is the body's elimination ledger at the end.
    """
    t = table[C.TIME_D].to_numpy(dtype=float)
    conc = table[C.EJACULATE_CONCENTRATION].to_numpy(dtype=float)
    present = table[C.MOTILE_SPERM_PRESENT].to_numpy(dtype=bool)
    i_peak = int(np.argmax(conc))
    ledger = (
        {"eliminated_retinoid_nmol": float(table["amount_Eliminated"].iloc[-1])} if "amount_Eliminated" in table else {}
    )
    return ledger | {
        "baseline_concentration_M_per_mL": float(conc[0]),
        "peak_concentration_M_per_mL": float(conc[i_peak]),
        "time_of_peak_d": float(t[i_peak]),
        "min_concentration_M_per_mL": float(conc.min()),
        "time_of_min_d": float(t[int(np.argmin(conc))]),
        "final_concentration_M_per_mL": float(conc[-1]),
        "first_motile_d": float(t[present][0]) if present.any() else math.nan,
        "last_motile_d": float(t[present][-1]) if present.any() else math.nan,
        "days_with_motile_sperm": float(np.sum(present[1:] * np.diff(t))),
        "doses_given": float(table[C.DOSES_GIVEN].iloc[-1]),
        "peak_testis_atRA_nM": float(table[C.TESTIS_ATRA].max()),
        "min_testis_atRA_nM": float(table[C.TESTIS_ATRA].min()),
        "plasma_isotretinoin_auc_ng_h_per_mL": float(np.trapezoid(table[C.PLASMA_ISOTRETINOIN], t * 24)),
    }


def _run_single(exp: Experiment) -> ExperimentResult:
    tables = []
    rows = []
    for run in exp.runs:
        changes = [*exp.changes, *run.changes]
        if run.missed_every and run.regimen is not None:
            changes += missed_dose_changes(run.regimen, run.missed_every, t_end_d=exp.t_end_d)
        changes.sort(key=lambda c: c.t_d)
        table = simulate(
            exp.phenotype,
            run.regimen,
            t_end_d=exp.t_end_d,
            overrides=exp.overrides,
            changes=changes,
            output_step_d=exp.output_step_d,
            include_species=exp.include_species,
        )
        table.insert(0, "run", run.label)
        tables.append(table)
        row: dict[str, Any] = {"run": run.label, "phenotype": exp.phenotype, "regimen": str(run.regimen or "none")}
        row["missed_every"] = run.missed_every or 0
        row |= run_readouts(table)
        if exp.visit_days:
            visits = clinical.semen_analyses(table, visit_days=exp.visit_days)
            frame = pd.DataFrame([{f"{clinical.METRIC}.{k}": v for k, v in visits.items()} | {"status": "ok"}])
            got = clinical.classify(frame, exp.response).iloc[0]
            row |= {k: got[k] for k in (clinical.RESPONDER, clinical.TIME_TO_RESPONSE_D, clinical.PEAK_AT_VISITS)}
        rows.append(row)
    results = pd.concat(tables, ignore_index=True)
    results.attrs = dict(tables[0].attrs) | {"runs": [r.label for r in exp.runs]}
    summary = pd.DataFrame(rows)
    return ExperimentResult(
        experiment=exp, results=results, summary=summary, tables={}, inputs=_inputs(exp, phenotype=exp.phenotype)
    )


# ---- cohort
def _regimen_for(text: str | None, weight_kg: float) -> str:
    if text is None:
        return ""
    return f"{text}, {weight_kg:.1f} kg" if "mg/kg" in text else text


def _sweep(
    samples: pd.DataFrame,
    exp: Experiment,
    *,
    t_end_d: float,
    work_dir: Path | None,
    workers: int | None,
    progress: bool,
) -> pd.DataFrame:
    from ra_model.studies.sweep import run_sweep

    metric = functools.partial(clinical.semen_analyses, visit_days=exp.visit_days)
    return run_sweep(
        samples,
        metrics={clinical.METRIC: metric},
        t_end_d=t_end_d,
        output_step_d=exp.output_step_d,
        out_dir=work_dir,
        workers=workers,
        progress=progress,
    )


def _apply_overrides(samples: pd.DataFrame, overrides: Mapping[str, float]) -> pd.DataFrame:
    for name, value in overrides.items():
        if name not in samples.columns:
            samples[name] = value
    return samples


def enrol(
    exp: Experiment, *, work_dir: Path | None = None, workers: int | None = None, progress: bool = True
) -> pd.DataFrame:
    """Screen virtual men of each histology until every cohort is filled, treating each candidate.

    Candidates of one histology are drawn in index order; the first eligible ones (no motile sperm
    at baseline, if the rule screens) are enrolled. A cohort of n men takes, per histology, the
    first ``allocate(mix, n)`` enrolled men, so smaller cohorts are subsets of larger ones.

    Returns:
        One row per candidate: sweep inputs and visit readouts, the responder classification and
        one boolean ``enrolled_<cohort>`` column per cohort.
    """
    population = exp.population()
    n_max = max(exp.cohorts.values())
    need = allocate(exp.histology_mix, n_max)
    drawn = {h: (math.ceil(n * 1.25) + 2 if n else 0) for h, n in need.items()}
    results: pd.DataFrame | None = None
    while True:
        frames = [
            draw_patients(population, h, range(m), seed=exp.seed, overrides=exp.overrides)
            for h, m in drawn.items()
            if m
        ]
        samples = _apply_overrides(pd.concat(frames, ignore_index=True), exp.overrides)
        samples["regimen"] = [_regimen_for(exp.regimen, w) for w in samples[BODY_WEIGHT_KG]]
        samples.attrs["seed"] = exp.seed
        samples.attrs["design"] = f"experiment {exp.id}: histology mix {dict(exp.histology_mix)}"
        raw = _sweep(samples, exp, t_end_d=exp.t_end_d, work_dir=work_dir, workers=workers, progress=progress)
        results = clinical.classify(raw, exp.response, window_d=(0.0, exp.t_end_d))
        short = {}
        for h, n in need.items():
            found = int(results.loc[results[HISTOLOGY] == h, clinical.ELIGIBLE].sum())
            if found < n:
                short[h] = (found, n)
        if not short:
            break
        grow = False
        for h, (found, n) in short.items():
            limit = math.ceil(exp.max_screen_factor * n)
            if drawn[h] >= limit:
                log.warning("%s: only %d of %d men eligible after screening %d candidates", h, found, n, drawn[h])
                continue
            rate = max(found, 1) / drawn[h]
            drawn[h] = min(limit, max(drawn[h] + 2, math.ceil((n / rate) * 1.1) + 2))
            grow = True
        if not grow:
            break
    assert results is not None
    results = results.sort_values([HISTOLOGY, PATIENT_INDEX], kind="stable").reset_index(drop=True)
    for name, size in exp.cohorts.items():
        quota = allocate(exp.histology_mix, size)
        flag = np.zeros(len(results), dtype=bool)
        for h, n in quota.items():
            idx = results.index[(results[HISTOLOGY] == h) & results[clinical.ELIGIBLE]][:n]
            flag[idx] = True
        results[f"enrolled_{name}"] = flag
    return results


def _failures(results: pd.DataFrame) -> pd.DataFrame:
    failed = results[results["status"] != "ok"]
    keep = [c for c in failed.columns if not c.startswith(f"{clinical.METRIC}.")]
    return failed[keep].reset_index(drop=True)


def _run_cohort(exp: Experiment, *, work_dir: Path | None, workers: int | None, progress: bool) -> ExperimentResult:
    results = enrol(exp, work_dir=work_dir, workers=workers, progress=progress)
    summaries, curves, peaks = [], [], []
    for name in exp.cohorts:
        enrolled = results[results[f"enrolled_{name}"]]
        summary = clinical.response_summary(enrolled, by=HISTOLOGY)
        summary.insert(0, "cohort", name)
        summaries.append(summary)
        curve = clinical.time_to_response_curve(enrolled, by=HISTOLOGY)
        curve.insert(0, "cohort", name)
        curves.append(curve)
        peak = clinical.peak_distribution(enrolled, by=HISTOLOGY)
        peak.insert(0, "cohort", name)
        peaks.append(peak)
    summary = pd.concat(summaries, ignore_index=True)
    tables = {
        "time_to_response": pd.concat(curves, ignore_index=True),
        "peak_concentration": pd.concat(peaks, ignore_index=True),
        "failures": _failures(results),
    }
    if exp.published:
        tables["comparison"] = compare_published(summary, exp.published)
    screened = results.groupby(HISTOLOGY).agg(
        candidates=(clinical.ELIGIBLE, "size"), eligible=(clinical.ELIGIBLE, "sum")
    )
    tables["screening"] = screened.reset_index()
    return ExperimentResult(
        experiment=exp,
        results=results,
        summary=summary,
        tables=tables,
        inputs=_inputs(
            exp,
            histology_mix=dict(exp.histology_mix),
            variability={k: dataclasses.asdict(v) for k, v in exp.population().variability.items()},
            visit_days=list(exp.visit_days),
        ),
    )


def compare_published(summary: pd.DataFrame, published: Sequence[Published]) -> pd.DataFrame:
    """Set each published count beside the simulated rate of the same group, with both intervals.

    Returns:
        One row per published count and simulated cohort: ``cohort``, ``group``, simulated
        ``sim_responders``/``sim_n``/``sim_rate``/``sim_ci_low``/``sim_ci_high``, ``published_responders``,
        ``published_n``, ``published_rate``, ``published_ci_low``/``published_ci_high`` (Wilson) and
        ``published_in_sim_ci`` (the published rate inside the simulated 95% interval).
    """
    rows = []
    for p in published:
        low, high = clinical.proportion_ci(p.responders, p.n)
        sims = summary[summary["group"] == p.group]
        if p.cohort is not None:
            sims = sims[sims["cohort"] == p.cohort]
        for _, s in sims.iterrows():
            rate = p.responders / p.n
            rows.append(
                {
                    "cohort": s["cohort"],
                    "group": p.group,
                    "sim_responders": int(s["responders"]),
                    "sim_n": int(s["n"]),
                    "sim_rate": s["rate"],
                    "sim_ci_low": s["ci_low"],
                    "sim_ci_high": s["ci_high"],
                    "published_responders": p.responders,
                    "published_n": p.n,
                    "published_rate": rate,
                    "published_ci_low": low,
                    "published_ci_high": high,
                    "published_in_sim_ci": bool(s["ci_low"] <= rate <= s["ci_high"]),
                    "source": p.source,
                }
            )
    return pd.DataFrame(rows)


# ---- grid
def _run_grid(exp: Experiment, *, work_dir: Path | None, workers: int | None, progress: bool) -> ExperimentResult:
    population = exp.population()
    frames = []
    for h in exp.histologies:
        men = draw_patients(population, h, range(exp.n_patients), seed=exp.seed, overrides=exp.overrides)
        for dose in exp.doses:
            for duration in exp.durations_d:
                arm = men.copy()
                arm["sample_id"] = [f"{sid}|{dose}|{duration:g}d" for sid in arm["sample_id"]]
                arm["regimen"] = [_regimen_for(f"{dose} for {duration:g} d", w) for w in arm[BODY_WEIGHT_KG]]
                arm["meta_dose"] = dose
                arm["meta_duration_d"] = duration
                frames.append(arm)
    samples = _apply_overrides(pd.concat(frames, ignore_index=True), exp.overrides)
    samples.attrs["seed"] = exp.seed
    samples.attrs["design"] = f"experiment {exp.id}: dose x duration grid"
    raw = _sweep(samples, exp, t_end_d=exp.t_end_d, work_dir=work_dir, workers=workers, progress=progress)
    parts = []
    for window, group in raw.groupby("meta_duration_d", sort=False):
        end_d = float(window) + exp.follow_up_d  # type: ignore[arg-type]
        parts.append(clinical.classify(group, exp.response, window_d=(0.0, end_d)))
    results = pd.concat(parts).sort_index()
    rows = []
    for key, cell in results.groupby([HISTOLOGY, "meta_dose", "meta_duration_d"], sort=False):
        h, dose, length = key  # type: ignore[assignment]
        s = clinical.response_summary(cell).iloc[0]
        rows.append({"histology": h, "dose": dose, "duration_d": length} | s.drop("group").to_dict())
    summary = pd.DataFrame(rows)
    return ExperimentResult(
        experiment=exp,
        results=results,
        summary=summary,
        tables={"failures": _failures(results)},
        inputs=_inputs(exp, histologies=list(exp.histologies), visit_days=list(exp.visit_days)),
    )


# ---- sensitivity
def _run_sensitivity(
    exp: Experiment, *, work_dir: Path | None, workers: int | None, progress: bool
) -> ExperimentResult:
    try:
        from ra_model.studies import sensitivity
    except ImportError as exc:
        raise InvalidValueError(
            f"{exp.path}: kind 'sensitivity' needs ra_model.studies.sensitivity, which is not installed ({exc})"
        ) from exc
    runner = getattr(sensitivity, "run_sensitivity_file", None)
    if runner is None:
        raise InvalidValueError(f"{exp.path}: ra_model.studies.sensitivity has no run_sensitivity_file(path, ...)")
    out = runner(exp.path, out_dir=work_dir, workers=workers, progress=progress, reduced=exp.reduced)
    table = out if isinstance(out, pd.DataFrame) else pd.DataFrame(out)
    return ExperimentResult(experiment=exp, results=table, summary=table, tables={}, inputs=_inputs(exp))


__all__ = [
    "Experiment",
    "ExperimentResult",
    "Published",
    "Run",
    "SimulationFailedError",
    "compare_published",
    "enrol",
    "experiments_dir",
    "list_experiments",
    "load_experiment",
    "missed_dose_changes",
    "run_experiment",
    "run_readouts",
]
