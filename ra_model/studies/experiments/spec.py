"""The scenario schema: each kind's keys and figures, the validated records, and the value checks of a file.

Every experiment kind reads its own keys (:mod:`.single`, :mod:`.cohort`, :mod:`.grid`) with the
:class:`Reader` defined here; :func:`ra_model.studies.experiments.reader.load_experiment` checks the
keys common to all kinds and hands the rest to the kind.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ra_model.engines.simulate import ParameterChange
from ra_model.errors import InvalidValueError, RAModelError, UnknownNameError
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
#: Keys every kind accepts.
COMMON_KEYS = frozenset({"description", "kind", "figures", "reduced"})
#: Figures each kind can draw (``figures = [...]`` picks a subset; default all).
FIGURES: dict[str, tuple[str, ...]] = {
    "single": ("timecourse", "germ_cells"),
    "cohort": ("response", "time_to_response", "peak_concentration"),
    "grid": ("heatmap",),
    "sensitivity": (),
}
_CHANGE_KEYS = frozenset({"t_d", "parameter", "value"})
_POPULATION_KEYS = frozenset({"histology_mix", "phenotype", "histologies", "variability"})
_SAMPLING_KEYS = frozenset({"visit_days", "every_d", "last_d"})
_RESPONSE_KEYS = frozenset({"consecutive", "threshold_M_per_mL", "screen"})
#: Body weight used to check weight-based dose text at load time (each man's own weight is used to run).
CHECK_WEIGHT_KG = 70.0


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


class Reader:
    """Validates one file's table, turning every problem into an error naming the file and key."""

    def __init__(self, path: Path) -> None:
        """Read values of ``path`` (named in every message; relative paths in it are resolved from its folder)."""
        self.path = path

    def fail(self, key: str, problem: str, fix: str) -> InvalidValueError:
        """Return (for the caller to raise) the error for a bad value of ``key``, with the fix."""
        return InvalidValueError(f"{self.path}: key {key!r}: {problem}; {fix}")

    def unknown(self, where: str, keys: set[str], allowed: set[str] | frozenset[str]) -> None:
        """Raise for the first key (in sorted order) not in ``allowed``, suggesting the closest allowed one.

        Raises:
            InvalidValueError: A key is not allowed; ``where`` prefixes it in the message (``"runs[0]."``).
        """
        for key in sorted(keys - set(allowed)):
            close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(sorted(allowed))}"
            raise InvalidValueError(f"{self.path}: unknown key {where}{key!r}; {hint}")

    def number(self, key: str, value: object, *, positive: bool = True, allow_zero: bool = False) -> float:
        """Return a finite number (by default > 0; ``allow_zero`` admits 0, ``positive=False`` any sign)."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, f"{value!r} is not a number", "write a number such as 180")
        if positive and (value < 0 or (value == 0 and not allow_zero)):
            raise self.fail(key, f"{value!r} must be {'>= 0' if allow_zero else '> 0'}", "use a positive number")
        return float(value)

    def integer(self, key: str, value: object, *, minimum: int = 1) -> int:
        """Return a whole number of at least ``minimum``."""
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"{value!r} is not a whole number >= {minimum}", f"write e.g. {max(minimum, 30)}")
        return value

    def text(self, key: str, value: object) -> str:
        """Return a string value."""
        if not isinstance(value, str):
            raise self.fail(key, f"{value!r} is not text", "put it in quotes")
        return value

    def regimen(self, key: str, value: object, *, weight: bool = False) -> Regimen | None:
        """Parse regimen text (None for ``"none"``); ``weight`` checks mg/kg doses at :data:`CHECK_WEIGHT_KG`."""
        text = self.text(key, value).strip()
        try:
            return parse_optional(text + (f", {CHECK_WEIGHT_KG:g} kg" if weight and "mg/kg" in text else ""))
        except RAModelError as exc:
            raise self.fail(
                key, f"regimen {text!r} cannot be parsed ({exc})", "write e.g. '20 mg bid for 180 d'"
            ) from exc

    def phenotype(self, key: str, value: object) -> str:
        """Return a phenotype preset name.

        Raises:
            UnknownNameError: No such preset (with close matches).
        """
        name = self.text(key, value)
        presets = load_phenotypes()
        if name not in presets:
            raise UnknownNameError("phenotype", name, presets, where=f"{self.path}, key {key!r}")
        return name

    def overrides(self, key: str, value: object) -> dict[str, float]:
        """Return a table of parameter values (``[overrides]``).

        Raises:
            UnknownNameError: A name is not a model parameter.
        """
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
        """Return a list of scheduled parameter changes (``{t_d, parameter, value}`` tables)."""
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
        """Return the semen-analysis days of ``[sampling]``, baseline (0) included, none after ``t_end_d``."""
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
        """Return the responder rule of ``[response]``."""
        if not isinstance(value, dict):
            raise self.fail("response", "is not a table", "write [response] with consecutive = 2")
        self.unknown("response.", set(value), _RESPONSE_KEYS)
        try:
            return clinical.ResponseRule(**value)
        except (InvalidValueError, TypeError) as exc:
            raise self.fail("response", str(exc), "fix the rule") from exc

    def population(self, data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Check the ``[population]`` table (cohort and grid) and read the key both kinds share.

        Returns:
            The table (each kind reads its own keys from it), and the fields read so far:
            ``variability_file`` if the table names one (relative to the experiment file).
        """
        pop = data.get("population")
        if not isinstance(pop, dict):
            raise self.fail("population", "is missing or not a table", "write [population] with histology_mix = {...}")
        self.unknown("population.", set(pop), _POPULATION_KEYS)
        out: dict[str, Any] = {}
        if "variability" in pop:
            file = Path(self.text("population.variability", pop["variability"]))
            file = file if file.is_absolute() else (self.path.parent / file)
            if not file.exists():
                raise self.fail(
                    "population.variability",
                    f"file {file} does not exist",
                    "give a path relative to the experiment file",
                )
            out["variability_file"] = file
        return pop, out

    def seed(self, data: Mapping[str, Any]) -> int:
        """Return the population seed (required by cohort and grid, so a run can be reproduced)."""
        if "seed" not in data:
            raise self.fail("seed", "is missing", "add seed = 2025 so the cohort can be reproduced")
        return self.integer("seed", data["seed"], minimum=0)
