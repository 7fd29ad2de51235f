"""The scenario schema: each kind's keys and figures, the validated records, and the value checks of a file.

Every experiment kind reads its own keys (:mod:`.single`, :mod:`.cohort`, :mod:`.grid`) with the
:class:`Reader` defined here; :func:`ra_model.studies.experiments.reader.load_experiment` checks the
keys common to all kinds and hands the rest to the kind.
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ra_model.engines.simulate import ParameterChange
from ra_model.errors import InvalidValueError, RAModelError, UnknownNameError
from ra_model.model import columns as C
from ra_model.model.bounds import MAX_OUTPUT_ROWS, MAX_T_END_D
from ra_model.model.classes import MAX_CLASSES
from ra_model.model.domain import check_value
from ra_model.model.phenotypes import load_phenotypes
from ra_model.model.regimen import Regimen, parse_optional
from ra_model.model.source import read_parameter_table
from ra_model.studies import clinical
from ra_model.studies.population import Population, load_population

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
#: Keys every kind accepts (``classes``: tubule-focus classes the testis is built from, 1 to
#: :data:`~ra_model.model.classes.MAX_CLASSES`; may also be set in ``[reduced]``).
COMMON_KEYS = frozenset({"description", "kind", "figures", "reduced", "classes"})
#: Focus classes when a file gives no ``classes`` key: the homogeneous testis (its median focus).
DEFAULT_CLASSES = 1
#: Figures each kind can draw (``figures = [...]`` picks a subset; default all).
FIGURES: dict[str, tuple[str, ...]] = {
    "single": ("timecourse", "germ_cells"),
    "cohort": ("response", "time_to_response", "peak_concentration"),
    "grid": ("heatmap",),
    "sensitivity": (),
}
#: Keys of ``[population]`` each kind reads (a key of the other kind is refused, not ignored).
POPULATION_KEYS: dict[str, frozenset[str]] = {
    "cohort": frozenset({"histology_mix", "phenotype", "variability"}),
    "grid": frozenset({"histologies", "variability"}),
}
_CHANGE_KEYS = frozenset({"t_d", "parameter", "value"})
_SAMPLING_KEYS = frozenset({"visit_days", "every_d", "last_d"})
_RESPONSE_KEYS = frozenset({"consecutive", "threshold_M_per_mL", "screen"})
#: Body weight used to check weight-based dose text at load time (each man's own weight is used to run).
CHECK_WEIGHT_KG = 70.0
#: Most simulations one cohort or grid file may ask for (men x arms; a cohort's first screening round).
#: At :data:`RUNS_PER_CORE_S` that is about 14 core-hours (7 hours on 2 cores), already a long run on
#: one machine; a file asking for more is almost always a typo (1e8 men for 1e3) and would start a
#: run that never ends. Bigger studies: several files with different seeds, or a cluster.
MAX_RUNS = 1_000_000
#: Rough speed of a sweep (one man over about a year, exact path), runs per second per core; used only
#: to say what a refused run would have cost.
RUNS_PER_CORE_S = 20.0
#: Most semen-analysis visits per man (daily for almost three years); more is a typo in ``every_d``.
MAX_VISITS = 1000
#: Columns of a time course without species, for the memory estimate of a run's output.
_TABLE_COLUMNS = 3 + len(C.OBSERVABLES)


_SHORT = reprlib.Repr()
_SHORT.maxlist = _SHORT.maxdict = 4
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlong = 40


def show(value: object) -> str:
    """Return a value as the file wrote it, shortened for a one-line message (``[1, 2, ...]``)."""
    return _SHORT.repr(value)


def run_cost(runs: int) -> str:
    """Return what ``runs`` simulations cost in words: ``"2,000,000 simulations, about 28 hours of one core"``."""
    seconds = runs / RUNS_PER_CORE_S
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            span = f"{seconds / size:,.3g} {unit}"
            break
    else:
        span = f"{seconds:.0f} seconds"
    return f"{runs:,} simulations, about {span} of one core at ~{RUNS_PER_CORE_S:g} runs/s per core"


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
        n_classes: Tubule-focus classes the testis is built from (the file's ``classes``; 1 = homogeneous),
            passed as ``n_classes`` to every simulation.
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
    n_classes: int = DEFAULT_CLASSES
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


class Reader:
    """Validates one file's table, turning every problem into an error naming the file, key, value and fix."""

    def __init__(self, path: Path) -> None:
        """Read values of ``path`` (named in every message; relative paths in it are resolved from its folder)."""
        self.path = path
        #: Top-level keys whose values came from the applied ``[reduced]`` table (named so in messages).
        self.reduced_keys: frozenset[str] = frozenset()

    def name(self, key: str) -> str:
        """Return ``key`` as the file spells it: ``reduced.<key>`` when its value came from ``[reduced]``."""
        top = re.split(r"[.\[]", key, maxsplit=1)[0]
        return f"reduced.{key}" if top in self.reduced_keys else key

    def fail(self, key: str, problem: str, fix: str) -> InvalidValueError:
        """Return (for the caller to raise) the error for a bad value of ``key``, with the fix."""
        return InvalidValueError(f"{self.path}: key {self.name(key)!r}: {problem}; {fix}")

    def unknown(
        self,
        where: str,
        table: Mapping[str, Any],
        allowed: set[str] | frozenset[str],
        *,
        kind: str | None = None,
        elsewhere: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        """Raise for the first key (in sorted order) of ``table`` not in ``allowed``.

        A key that another kind reads (``elsewhere``: kind to its keys) is named with that kind, so it
        is refused rather than silently ignored; any other key gets the closest allowed one.

        Args:
            where: Prefix of the keys in messages (``"runs[0]."``, ``"population."``).
            table: The keys and their values.
            allowed: The keys read here.
            kind: This file's kind (for the message about another kind's key).
            elsewhere: The keys each kind reads at this place.

        Raises:
            InvalidValueError: A key is not allowed.
        """
        for key in sorted(set(table) - set(allowed)):
            owners = [k for k, keys in (elsewhere or {}).items() if key in keys and k != kind]
            here = f"{self.path}: key {self.name(where + key)!r} (= {show(table[key])})"
            if owners and kind is not None:
                raise InvalidValueError(
                    f"{here} is read by kind {' and '.join(map(repr, owners))}, not by kind {kind!r}, so it "
                    f"would be ignored; remove it (a {kind} file reads here: {', '.join(sorted(allowed))})"
                )
            close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(sorted(allowed))}"
            raise InvalidValueError(
                f"{self.path}: unknown key {self.name(where + key)!r} (= {show(table[key])}); {hint}"
            )

    def number(self, key: str, value: object, *, positive: bool = True, allow_zero: bool = False) -> float:
        """Return a finite number (by default > 0; ``allow_zero`` admits 0, ``positive=False`` any sign)."""
        if value is None:
            raise self.fail(key, "is missing", "write a number such as 180")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"{show(value)} is not a number", "write a number such as 180 (no quotes)")
        try:
            number = float(value)
        except OverflowError:
            raise self.fail(key, f"{show(value)} is too large", "write a realistic number") from None
        if not math.isfinite(number):
            raise self.fail(key, f"{show(value)} is not a finite number", "write a number such as 180")
        if positive and (number < 0 or (number == 0 and not allow_zero)):
            raise self.fail(key, f"{show(value)} must be {'>= 0' if allow_zero else '> 0'}", "use a positive number")
        return number

    def integer(self, key: str, value: object, *, minimum: int = 1, example: int = 30) -> int:
        """Return a whole number of at least ``minimum`` (``example`` is shown in the fix)."""
        if value is None:
            raise self.fail(key, "is missing", f"write e.g. {key.rsplit('.', 1)[-1]} = {example}")
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(
                key,
                f"{show(value)} is not a whole number >= {minimum}",
                f"write e.g. {key.rsplit('.', 1)[-1]} = {example} (no quotes)",
            )
        return value

    def classes(self, value: object) -> int:
        """Return the number of tubule-focus classes of ``classes``: a whole number from 1 to ``MAX_CLASSES``.

        Raises:
            InvalidValueError: Not a whole number (``8.0``, ``"8"``, ``true``) or outside 1 to
                :data:`~ra_model.model.classes.MAX_CLASSES`; the message names the file, the value and the fix.
        """
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CLASSES:
            raise self.fail(
                "classes",
                f"{show(value)} is not a whole number of focus classes from 1 to {MAX_CLASSES}",
                "write e.g. classes = 8 (no quotes; the NOA histologies are mosaics of foci, whose spread shows "
                "only with 2 or more classes), or leave it out for 1, a homogeneous testis",
            )
        return value

    def boolean(self, key: str, value: object) -> bool:
        """Return a true/false value."""
        if not isinstance(value, bool):
            raise self.fail(key, f"{show(value)} is not true/false", f"write {key.rsplit('.', 1)[-1]} = true or false")
        return value

    def text(self, key: str, value: object) -> str:
        """Return a string value."""
        if value is None:
            raise self.fail(key, "is missing", "write it as text in quotes")
        if not isinstance(value, str):
            raise self.fail(key, f"{show(value)} is not text", "put it in quotes")
        return value

    def table(self, key: str, value: object, fix: str) -> dict[str, Any]:
        """Return a TOML table (``[key]`` or ``{...}``); ``fix`` says how to write it."""
        if value is None:
            raise self.fail(key, "is missing", fix)
        if not isinstance(value, dict):
            raise self.fail(key, f"{show(value)} is not a table", fix)
        return value

    def items(self, key: str, value: object, fix: str) -> list[Any]:
        """Return a TOML array (``[a, b]``); ``fix`` says how to write it."""
        if value is None:
            raise self.fail(key, "is missing", fix)
        if not isinstance(value, list):
            raise self.fail(key, f"{show(value)} is not a list", fix)
        return value

    def regimen(self, key: str, value: object, *, weight: bool = False) -> Regimen | None:
        """Parse regimen text (None for ``"none"``); ``weight`` checks mg/kg doses at :data:`CHECK_WEIGHT_KG`."""
        text = self.text(key, value).strip()
        if weight and "mg/kg" in text and re.search(r",\s*[0-9.]+\s*kg\b", text):
            raise self.fail(
                key,
                f"regimen {text!r} gives a body weight, but each man's own weight is used",
                "remove the ', N kg' part",
            )
        try:
            return parse_optional(text + (f", {CHECK_WEIGHT_KG:g} kg" if weight and "mg/kg" in text else ""))
        except RAModelError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise self.fail(
                key, f"regimen {text!r} cannot be parsed ({first})", "write e.g. '20 mg bid for 180 d'"
            ) from exc

    def phenotype(self, key: str, value: object) -> str:
        """Return a phenotype preset name.

        Raises:
            UnknownNameError: No such preset (with close matches).
        """
        name = self.text(key, value)
        presets = load_phenotypes()
        if name not in presets:
            raise UnknownNameError("phenotype", name, presets, where=f"{self.path}, key {self.name(key)!r}")
        return name

    def overrides(self, key: str, value: object) -> dict[str, float]:
        """Return a table of parameter values (``[overrides]``), each checked against its physical domain.

        Raises:
            UnknownNameError: A name is not a model parameter.
            InvalidValueError: Not a table, a value that is not a number, or one outside the parameter's
                domain (:func:`ra_model.model.domain.check_value`).
        """
        items = self.table(key, value, "write [overrides] with lines 'parameter = value'")
        table = read_parameter_table()
        out = {}
        for name, number in items.items():
            if name not in table:
                raise UnknownNameError("parameter", name, table, where=f"{self.path}, key '{self.name(key)}.{name}'")
            self.number(f"{key}.{name}", number, positive=False)
            out[name] = check_value(name, number, where=f"{self.path}: key '{self.name(key)}.{name}'")
        return out

    def changes(self, key: str, value: object) -> tuple[ParameterChange, ...]:
        """Return a list of scheduled parameter changes (``{t_d, parameter, value}`` tables)."""
        example = "write changes = [{t_d = 30, parameter = 'p', value = 1.0}]"
        items = self.items(key, value, example)
        table = read_parameter_table()
        out = []
        for i, item in enumerate(items):
            where = f"{key}[{i}]"
            item = self.table(where, item, "write {t_d = 30, parameter = 'p', value = 1.0}")
            self.unknown(f"{where}.", item, _CHANGE_KEYS)
            missing = _CHANGE_KEYS - set(item)
            if missing:
                raise self.fail(where, f"{show(item)} is missing {sorted(missing)}", "give t_d, parameter and value")
            name = self.text(f"{where}.parameter", item["parameter"])
            if name not in table:
                raise UnknownNameError(
                    "parameter", name, table, where=f"{self.path}, key '{self.name(where)}.parameter'"
                )
            t_d = self.number(f"{where}.t_d", item["t_d"])
            number = self.number(f"{where}.value", item["value"], positive=False)
            try:
                out.append(ParameterChange(t_d=t_d, parameter=name, value=number))
            except InvalidValueError as exc:  # the parameter's domain (ra_model.model.domain)
                raise self.fail(f"{where}.value", str(exc), "choose a value the parameter can take") from exc
        return tuple(out)

    def sampling(self, value: object, t_end_d: float) -> tuple[float, ...]:
        """Return the semen-analysis days of ``[sampling]``, baseline (0) included, none after ``t_end_d``.

        At least one visit after baseline is needed (response is read from the visits after day 0),
        and at most :data:`MAX_VISITS`.
        """
        sampling = self.table("sampling", value, "write [sampling] with every_d = 30 or visit_days = [30, 60, 90]")
        self.unknown("sampling.", sampling, _SAMPLING_KEYS)
        if "visit_days" in sampling:
            if {"every_d", "last_d"} & set(sampling):
                raise self.fail("sampling", "has both visit_days and every_d/last_d", "keep one of the two forms")
            listed = self.items("sampling.visit_days", sampling["visit_days"], "write visit_days = [0, 30, 60, 90]")
            if len(listed) > MAX_VISITS:
                raise self.fail(
                    "sampling.visit_days", f"{len(listed):,} visits", f"give at most {MAX_VISITS:,} visits per man"
                )
            days = [self.number(f"sampling.visit_days[{i}]", d, allow_zero=True) for i, d in enumerate(listed)]
        else:
            every = self.number("sampling.every_d", sampling.get("every_d", 30.0))
            last = self.number("sampling.last_d", sampling.get("last_d", t_end_d))
            count = math.floor(last / every + 1e-9)
            if count > MAX_VISITS:
                raise self.fail(
                    "sampling.every_d",
                    f"every_d = {every:g} up to day {last:g} makes {count:,} visits",
                    f"give at most {MAX_VISITS:,} visits per man: visit less often (e.g. every_d = 30)",
                )
            days = list(np.arange(every, last + 1e-9, every))
        days = sorted({0.0, *(float(d) for d in days)})
        if days[-1] > t_end_d + 1e-9:
            raise self.fail(
                "sampling", f"a visit on day {days[-1]:g} is after t_end_d = {t_end_d:g}", "lengthen t_end_d"
            )
        if len(days) < 2:
            raise self.fail(
                "sampling",
                f"{show(sampling)} gives no visit after baseline (day 0), so response cannot be read",
                "add visits, e.g. every_d = 30",
            )
        return tuple(days)

    def response(self, value: object) -> clinical.ResponseRule:
        """Return the responder rule of ``[response]``."""
        rule = self.table("response", value, "write [response] with consecutive = 2")
        self.unknown("response.", rule, _RESPONSE_KEYS)
        values: dict[str, Any] = {}
        if "consecutive" in rule:
            values["consecutive"] = self.integer("response.consecutive", rule["consecutive"], example=2)
        if "threshold_M_per_mL" in rule:
            values["threshold_M_per_mL"] = self.number("response.threshold_M_per_mL", rule["threshold_M_per_mL"])
        if "screen" in rule:
            values["screen"] = self.boolean("response.screen", rule["screen"])
        try:
            return clinical.ResponseRule(**values)
        except InvalidValueError as exc:
            raise self.fail("response", str(exc), "fix the rule") from exc

    def population(self, data: Mapping[str, Any], kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Check the ``[population]`` table (cohort and grid) and read the key both kinds share.

        Args:
            data: The file's table.
            kind: ``cohort`` or ``grid``: a key only the other kind reads is refused, naming that kind.

        Returns:
            The table (each kind reads its own keys from it), and the fields read so far:
            ``variability_file`` if the table names one (relative to the experiment file), checked by
            reading it.
        """
        example = "histology_mix = {maturation_arrest = 1.0}" if kind == "cohort" else 'histologies = ["healthy"]'
        pop = self.table("population", data.get("population"), f"write [population] with {example}")
        self.unknown("population.", pop, POPULATION_KEYS[kind], kind=kind, elsewhere=POPULATION_KEYS)
        out: dict[str, Any] = {}
        if "variability" in pop:
            text = self.text("population.variability", pop["variability"])
            file = Path(text) if Path(text).is_absolute() else (self.path.parent / text)
            if not file.is_file():
                raise self.fail(
                    "population.variability",
                    f"{text!r}: file {file} does not exist",
                    "give a path relative to the experiment file",
                )
            try:
                load_population(file)
            except RAModelError as exc:
                raise self.fail("population.variability", f"{text!r} is not valid: {exc}", "fix that file") from exc
            except (OSError, ValueError, TypeError, AttributeError) as exc:  # a broken file: say so, never a traceback
                raise self.fail(
                    "population.variability",
                    f"{text!r} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                    "give a UTF-8 TOML file laid out like models/population.toml",
                ) from exc
            out["variability_file"] = file
        return pop, out

    def seed(self, data: Mapping[str, Any]) -> int:
        """Return the population seed (required by cohort and grid, so a run can be reproduced)."""
        if "seed" not in data:
            raise self.fail("seed", "is missing", "add seed = 2025 so the cohort can be reproduced")
        return self.integer("seed", data["seed"], minimum=0, example=2025)

    def runs(self, key: str, value: object, runs: int, what: str, fix: str) -> None:
        """Refuse a cohort or grid above :data:`MAX_RUNS` simulations, saying what it would cost.

        Args:
            key: The key that sets the size.
            value: Its value.
            runs: Simulations the file asks for.
            what: How ``runs`` follows from the file (``"4 doses x 3 durations x 2 histologies x 60 men"``).
            fix: How to ask for less.
        """
        if runs > MAX_RUNS:
            raise self.fail(
                key,
                f"{show(value)} asks for {what} = {run_cost(runs)}, above the limit of {MAX_RUNS:,} "
                "simulations per file (MAX_RUNS)",
                fix,
            )

    def run_size(self, t_end_d: float, output_step_d: float, *, t_key: str, extra_rows: int = 0) -> None:
        """Refuse a horizon above 20 years or a run of more output rows than one table may hold.

        The limits are the engine's (:data:`ra_model.model.domain.MAX_T_END_D`, ``MAX_OUTPUT_ROWS``);
        checked here so the message names the file's keys.
        """
        if t_end_d > MAX_T_END_D:
            raise self.fail(
                t_key,
                f"simulates {t_end_d:g} days ({t_end_d / 365.25:,.3g} years), above the limit of {MAX_T_END_D:g} "
                "days (20 years)",
                "simulate fewer days: spermatogenesis takes about 74 days and a course months",
            )
        rows = t_end_d / output_step_d + 2 + extra_rows
        if rows > MAX_OUTPUT_ROWS:
            raise self.fail(
                "output_step_d",
                f"{output_step_d:g} d over {t_end_d:g} days makes {rows:,.0f} output rows x {_TABLE_COLUMNS} columns, "
                f"above the limit of {MAX_OUTPUT_ROWS:,} rows per run",
                f"use output_step_d >= {t_end_d / (MAX_OUTPUT_ROWS - 2 - extra_rows):.3g}",
            )
