"""Virtual patients: draw each man's parameters from between-person distributions around his phenotype.

The distributions live in ``models/population.toml`` (data, not code): each ``variability`` entry makes
one model parameter a log-normal multiplier on the value the man's phenotype gives it, truncated at
``truncate_sd`` standard deviations; each ``factor`` entry is one such multiplier shared by several
parameters (the same draw scales them all, e.g. the germ-line stage rates that one clock sets). Every
man has his own random streams, derived from ``(seed, histology, index, parameter name)`` (for a
factor, ``factor.<name>``), so the same man gets the same parameters whatever else is in the cohort,
however large the cohort, and whichever other parameters vary.

A population's values have names (:func:`value_id`): ``<parameter>.log_sd`` (an entry's spread),
``<parameter>.log_sd.<phenotype>`` (its spread for men of one histology) and ``<parameter>.median.<phenotype>``
(the median of those men, in place of the phenotype preset's value). :meth:`Population.with_values` returns a
population with some of them changed (a calibration's candidate, a posterior draw), and :func:`dump_population`
writes it as a variability file a scenario can name.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import math
import re
import tomllib
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
import tomli_w
from scipy import special

from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.model.phenotypes import load_phenotypes
from ra_model.model.source import model_dir, read_parameter_table

#: File name of the variability data inside the model directory.
POPULATION_FILE = "population.toml"

#: Samples-table column: the man's histology (phenotype preset name).
HISTOLOGY = "meta_histology"
#: Samples-table column: the man's index within his histology's stream.
PATIENT_INDEX = "meta_patient_index"
#: Samples-table column: the man's body weight, kg (used by mg/kg/day regimens).
BODY_WEIGHT_KG = "meta_body_weight_kg"

_ENTRY_KEYS = {
    "cv",
    "log_sd",
    "scale",
    "by_phenotype",
    "median_by_phenotype",
    "source",
    "uncertain",
    "fit_lower",
    "fit_upper",
}
#: The spread's key in a variability entry, and the middle part of a spread's name (:func:`value_id`).
SPREAD = "log_sd"
#: The middle part of the name of a histology's median (:func:`value_id`).
MEDIAN = "median"
#: Scales a [variability] entry may spread on: a log-normal multiplier, or a logit-normal fraction.
LOG = "log"
LOGIT = "logit"
_FACTOR_KEYS = {"parameters", "log_sd", "source"}
_TOP_KEYS = {"truncate_sd", "body_weight_kg", "variability", "factor"}
_WEIGHT_KEYS = {"median", "cv", "source"}


@dataclass(frozen=True, kw_only=True)
class Variability:
    """Between-person spread of one parameter around the value the man's phenotype gives it (the median).

    On the ``log`` scale the value is multiplied by ``exp(log_sd * z)``; on the ``logit`` scale (for a
    fraction, such as the share of tubules holding germ cells) ``log_sd * z`` is added to its logit, so
    every draw stays inside (0, 1); a phenotype value of exactly 0 or 1 then does not vary.

    Attributes:
        parameter: Model parameter id.
        log_sd: Standard deviation of the natural log of the multiplier (of the logit on the logit scale).
        scale: ``log`` or ``logit``.
        by_phenotype: A different spread for men drawn around some phenotypes (a histology is a
            narrower group than the general population drawn around ``healthy``); others use ``log_sd``.
        median_by_phenotype: A different median for men drawn around some phenotypes, replacing the value
            the phenotype preset gives (e.g. one posterior draw of a histology's share of tubules with germ
            cells); others keep the preset's value. An experiment's overrides still win.
        source: Citation, or ``assumed``.
        uncertain: May be refitted by the population calibration.
        fit_lower: Lowest log_sd the calibration may try.
        fit_upper: Highest log_sd the calibration may try.
    """

    parameter: str
    log_sd: float
    source: str
    scale: str = LOG
    by_phenotype: Mapping[str, float] = field(default_factory=dict)
    median_by_phenotype: Mapping[str, float] = field(default_factory=dict)
    uncertain: bool = False
    fit_lower: float = 0.0
    fit_upper: float = 0.0

    def sd_for(self, phenotype: str) -> float:
        """Return the spread for men drawn around ``phenotype``."""
        return float(self.by_phenotype.get(phenotype, self.log_sd))

    def apply(self, value: float, z: float, *, phenotype: str = "") -> float:
        """Return the man's value: the phenotype's ``value`` moved ``z`` standard deviations on this scale."""
        sd = self.sd_for(phenotype)
        if self.scale == LOG:
            return value * math.exp(sd * z)
        if not 0.0 <= value <= 1.0:
            raise InvalidValueError(
                f"variability of {self.parameter!r} is on the logit scale, but the phenotype gives it {value!r}; "
                "use a value in [0, 1] or scale = 'log'"
            )
        if value in (0.0, 1.0):
            return value
        return 1.0 / (1.0 + math.exp(-(math.log(value / (1.0 - value)) + sd * z)))

    def __post_init__(self) -> None:
        """Check the spread is a finite non-negative number and the entry has a source."""
        if isinstance(self.log_sd, bool) or not isinstance(self.log_sd, int | float) or not math.isfinite(self.log_sd):
            raise InvalidValueError(f"variability of {self.parameter!r}: log_sd = {self.log_sd!r} is not a number")
        if self.log_sd < 0:
            raise InvalidValueError(f"variability of {self.parameter!r}: log_sd = {self.log_sd!r} must be >= 0")
        for name, sd in self.by_phenotype.items():
            if isinstance(sd, bool) or not isinstance(sd, int | float) or not math.isfinite(sd) or sd < 0:
                raise InvalidValueError(
                    f"variability of {self.parameter!r}: by_phenotype.{name} = {sd!r}; use a number >= 0"
                )
        for name, value in self.median_by_phenotype.items():
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value <= 0 or (self.scale == LOGIT and value >= 1):
                where = "in (0, 1)" if self.scale == LOGIT else "> 0"
                raise InvalidValueError(
                    f"variability of {self.parameter!r}: median_by_phenotype.{name} = {value!r}; use a number {where}"
                )
        if self.scale not in (LOG, LOGIT):
            raise InvalidValueError(
                f"variability of {self.parameter!r}: scale = {self.scale!r}; use {LOG!r} or {LOGIT!r}"
            )
        if not self.source.strip():
            raise InvalidValueError(f"variability of {self.parameter!r} has no source; cite one or write 'assumed'")
        if self.uncertain and not 0 <= self.fit_lower <= self.fit_upper:
            raise InvalidValueError(
                f"variability of {self.parameter!r}: fit range [{self.fit_lower}, {self.fit_upper}] is not ordered"
            )


@dataclass(frozen=True, kw_only=True)
class SharedFactor:
    """One log-normal multiplier with median 1 that scales several parameters of a man together.

    Attributes:
        name: Name of the factor (its random stream is ``factor.<name>``).
        parameters: Model parameter ids it multiplies.
        log_sd: Standard deviation of the natural log of the multiplier.
        source: Citation, or ``assumed``.
    """

    name: str
    parameters: tuple[str, ...]
    log_sd: float
    source: str

    def __post_init__(self) -> None:
        """Check the spread is a finite non-negative number, the parameters distinct, and a source given."""
        if isinstance(self.log_sd, bool) or not isinstance(self.log_sd, int | float) or not math.isfinite(self.log_sd):
            raise InvalidValueError(f"factor {self.name!r}: log_sd = {self.log_sd!r} is not a number")
        if self.log_sd < 0:
            raise InvalidValueError(f"factor {self.name!r}: log_sd = {self.log_sd!r} must be >= 0")
        if not self.parameters or len(set(self.parameters)) != len(self.parameters):
            raise InvalidValueError(
                f"factor {self.name!r}: parameters {list(self.parameters)!r}; list one or more distinct parameter ids"
            )
        if not self.source.strip():
            raise InvalidValueError(f"factor {self.name!r} has no source; cite one or write 'assumed'")

    @property
    def stream(self) -> str:
        """Name of the factor's random stream (never a parameter id: ids have no dot)."""
        return f"factor.{self.name}"


@dataclass(frozen=True, kw_only=True)
class Population:
    """A virtual population: which parameters vary between men, and how much.

    Attributes:
        variability: Spread per parameter id.
        factors: Shared multipliers by name; a parameter is in at most one factor and then has no
            ``variability`` entry of its own.
        truncate_sd: Draws are truncated at this many standard deviations of the log.
        weight_median_kg: Median body weight, kg.
        weight_cv: Coefficient of variation of body weight.
    """

    variability: Mapping[str, Variability] = field(default_factory=dict)
    factors: Mapping[str, SharedFactor] = field(default_factory=dict)
    truncate_sd: float = 3.0
    weight_median_kg: float = 80.0
    weight_cv: float = 0.15

    def __post_init__(self) -> None:
        """Check the truncation and weight are sensible, every parameter exists and varies one way only."""
        if not (isinstance(self.truncate_sd, int | float) and 0 < self.truncate_sd <= 10):
            raise InvalidValueError(f"truncate_sd = {self.truncate_sd!r}; use a number in (0, 10], e.g. 3")
        if not (isinstance(self.weight_median_kg, int | float) and 20 < self.weight_median_kg < 300):
            raise InvalidValueError(f"body_weight_kg.median = {self.weight_median_kg!r}; use a weight in kg, e.g. 80")
        if not (isinstance(self.weight_cv, int | float) and 0 <= self.weight_cv < 1):
            raise InvalidValueError(f"body_weight_kg.cv = {self.weight_cv!r}; use a number in [0, 1)")
        known = read_parameter_table()
        for name in self.variability:
            if name not in known:
                raise UnknownNameError("parameter", name, known, where="population variability")
        owner: dict[str, str] = {name: "its variability entry" for name in self.variability}
        for factor in self.factors.values():
            for name in factor.parameters:
                if name not in known:
                    raise UnknownNameError("parameter", name, known, where=f"population factor {factor.name!r}")
                if name in owner:
                    raise InvalidValueError(
                        f"parameter {name!r} varies through both {owner[name]} and factor {factor.name!r}; "
                        "keep one of them"
                    )
                owner[name] = f"factor {factor.name!r}"
        object.__setattr__(self, "variability", MappingProxyType(dict(self.variability)))
        object.__setattr__(self, "factors", MappingProxyType(dict(self.factors)))

    def with_log_sd(self, values: Mapping[str, float]) -> Population:
        """Return a copy with some parameters' log_sd replaced (used by the calibration)."""
        return self.with_values({value_id(name): value for name, value in values.items()})

    def value(self, name: str) -> float:
        """Return one population value, named as :func:`value_id` names it (``focus_share.log_sd.healthy``).

        A median of a phenotype without its own ``median_by_phenotype`` value is the preset's value.

        Raises:
            UnknownNameError: No such variability entry (or phenotype).
            InvalidValueError: The name is not of the form :func:`value_id` gives.
        """
        parameter, kind, phenotype = parse_value_id(name, self)
        entry = self.variability[parameter]
        if kind == SPREAD:
            return entry.log_sd if phenotype is None else entry.sd_for(phenotype)
        assert phenotype is not None
        if phenotype in entry.median_by_phenotype:
            return float(entry.median_by_phenotype[phenotype])
        return _preset_centre(phenotype)[parameter]

    def fit_range(self, name: str) -> tuple[float, float]:
        """Return the range a calibration may give one spread: its entry's ``fit_lower``..``fit_upper``.

        Raises:
            InvalidValueError: The entry is not marked ``uncertain`` (nothing may refit it), the name is
                a median (whose range the calibration problem gives), or the name is bad.
            UnknownNameError: No such variability entry (or phenotype).
        """
        parameter, kind, _ = parse_value_id(name, self)
        entry = self.variability[parameter]
        if kind != SPREAD:
            raise InvalidValueError(f"{name!r} is a median; give its range (lower, upper) with the calibration problem")
        if not entry.uncertain:
            raise InvalidValueError(
                f"spread {name!r}: [variability.{parameter}] is not marked uncertain, so nothing may refit it; "
                "add uncertain = true with fit_lower and fit_upper in the variability file"
            )
        return entry.fit_lower, entry.fit_upper

    def with_values(self, values: Mapping[str, float]) -> Population:
        """Return a copy with some spreads or histology medians replaced (a candidate, or one posterior draw).

        Args:
            values: New values by name (:func:`value_id`): ``<parameter>.log_sd`` replaces the entry's
                spread, ``<parameter>.log_sd.<phenotype>`` its spread for men drawn around that phenotype
                (a ``by_phenotype`` value), ``<parameter>.median.<phenotype>`` the median of men drawn
                around that phenotype (a ``median_by_phenotype`` value, in place of the preset's).

        Returns:
            The new population; everything else (sources, fit ranges, factors, weights) is kept.

        Raises:
            UnknownNameError: A variability entry or phenotype that does not exist.
            InvalidValueError: A bad name, or a value outside its domain (a spread below 0, a median of a
                fraction outside (0, 1)).
        """
        new = dict(self.variability)
        for name, value in values.items():
            parameter, kind, phenotype = parse_value_id(name, self)
            old = new[parameter]
            if isinstance(value, bool) or not isinstance(value, int | float | np.floating) or not value >= 0:
                raise InvalidValueError(f"{name!r} = {value!r}; use a finite number >= 0")
            log_sd, by_phenotype, medians = old.log_sd, dict(old.by_phenotype), dict(old.median_by_phenotype)
            if kind == MEDIAN:
                assert phenotype is not None
                medians[phenotype] = float(value)
            elif phenotype is None:
                log_sd = float(value)
            else:
                by_phenotype[phenotype] = float(value)
            new[parameter] = dataclasses.replace(
                old, log_sd=log_sd, by_phenotype=by_phenotype, median_by_phenotype=medians
            )
        return dataclasses.replace(self, variability=new)


def load_population(path: Path | None = None) -> Population:
    """Read the variability data.

    Args:
        path: A TOML file; defaults to the shipped ``models/population.toml``.

    Returns:
        The population.

    Raises:
        InvalidValueError: Unknown key, missing spread or source, or a bad value (naming the file).
        UnknownNameError: A parameter the model does not have.
    """
    path = path or model_dir() / POPULATION_FILE
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise InvalidValueError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    weight = data.get("body_weight_kg", {})
    if set(weight) - _WEIGHT_KEYS:
        raise InvalidValueError(f"{path}: [body_weight_kg] has unknown key(s) {sorted(set(weight) - _WEIGHT_KEYS)}")
    entries: dict[str, Variability] = {}
    for name, body in data.get("variability", {}).items():
        bad = set(body) - _ENTRY_KEYS
        if bad:
            raise InvalidValueError(
                f"{path}: [variability.{name}] has unknown key(s) {sorted(bad)}; allowed: {sorted(_ENTRY_KEYS)}"
            )
        if ("cv" in body) == ("log_sd" in body):
            raise InvalidValueError(f"{path}: [variability.{name}] needs exactly one of 'cv' or 'log_sd'")
        log_sd = math.sqrt(math.log1p(float(body["cv"]) ** 2)) if "cv" in body else float(body["log_sd"])
        try:
            entries[name] = Variability(
                parameter=name,
                log_sd=log_sd,
                source=str(body.get("source", "")),
                scale=str(body.get("scale", LOG)),
                by_phenotype=dict(body.get("by_phenotype", {})),
                median_by_phenotype=dict(body.get("median_by_phenotype", {})),
                uncertain=bool(body.get("uncertain", False)),
                fit_lower=float(body.get("fit_lower", 0.0)),
                fit_upper=float(body.get("fit_upper", 0.0)),
            )
        except InvalidValueError as exc:
            raise InvalidValueError(f"{path}: {exc}") from exc
    known = load_phenotypes()
    for entry in entries.values():
        for key, names in (("by_phenotype", entry.by_phenotype), ("median_by_phenotype", entry.median_by_phenotype)):
            for name in names:
                if name not in known:
                    raise UnknownNameError(
                        "phenotype", name, known, where=f"{path}: [variability.{entry.parameter}].{key}"
                    )
    factors: dict[str, SharedFactor] = {}
    for name, body in data.get("factor", {}).items():
        bad = set(body) - _FACTOR_KEYS
        if bad:
            raise InvalidValueError(
                f"{path}: [factor.{name}] has unknown key(s) {sorted(bad)}; allowed: {sorted(_FACTOR_KEYS)}"
            )
        params = body.get("parameters")
        if "log_sd" not in body or not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            raise InvalidValueError(f"{path}: [factor.{name}] needs 'log_sd' and 'parameters', a list of parameter ids")
        try:
            factors[name] = SharedFactor(
                name=name, parameters=tuple(params), log_sd=body["log_sd"], source=str(body.get("source", ""))
            )
        except InvalidValueError as exc:
            raise InvalidValueError(f"{path}: {exc}") from exc
    try:
        return Population(
            variability=entries,
            factors=factors,
            truncate_sd=float(data.get("truncate_sd", 3.0)),
            weight_median_kg=float(weight.get("median", 80.0)),
            weight_cv=float(weight.get("cv", 0.15)),
        )
    except UnknownNameError as exc:
        raise UnknownNameError("parameter", exc.name, read_parameter_table(), where=str(path)) from None
    except InvalidValueError as exc:
        raise InvalidValueError(f"{path}: {exc}") from exc


def value_id(parameter: str, phenotype: str | None = None, *, kind: str = "log_sd") -> str:
    """Name one population value: a spread (``focus_share.log_sd[.<phenotype>]``) or a median.

    ``<parameter>.log_sd`` is the entry's spread (men drawn around any phenotype without a ``by_phenotype``
    value), ``<parameter>.log_sd.<phenotype>`` its ``by_phenotype`` spread for men drawn around that
    phenotype, and ``<parameter>.median.<phenotype>`` the median of those men (kind :data:`MEDIAN`: the
    phenotype preset's value unless ``median_by_phenotype`` replaces it). Parameter and phenotype ids have
    no dots, so a name splits back unambiguously (:func:`parse_value_id`).
    """
    if kind not in (SPREAD, MEDIAN):
        raise InvalidValueError(f"kind = {kind!r}; use {SPREAD!r} or {MEDIAN!r}")
    if kind == MEDIAN and phenotype is None:
        raise InvalidValueError(f"a median names its phenotype: {parameter}.{MEDIAN}.<phenotype>")
    return f"{parameter}.{kind}" if phenotype is None else f"{parameter}.{kind}.{phenotype}"


def parse_value_id(name: str, population: Population) -> tuple[str, str, str | None]:
    """Split a population value's name into variability entry, kind (spread or median) and phenotype.

    Raises:
        InvalidValueError: Not of a form :func:`value_id` gives.
        UnknownNameError: No such variability entry in ``population``, or no such phenotype preset.
    """
    parts = str(name).split(".")
    good = (len(parts) == 2 and parts[1] == SPREAD) or (len(parts) == 3 and parts[1] in (SPREAD, MEDIAN))
    if not good:
        raise InvalidValueError(
            f"population value {name!r}; write <parameter>.{SPREAD}, <parameter>.{SPREAD}.<phenotype> or "
            f"<parameter>.{MEDIAN}.<phenotype>, e.g. focus_share.{SPREAD}.hypospermatogenesis"
        )
    if parts[0] not in population.variability:
        raise UnknownNameError("variability parameter", parts[0], population.variability, where=f"value {name!r}")
    if len(parts) == 2:
        return parts[0], SPREAD, None
    presets = load_phenotypes()
    if parts[2] not in presets:
        raise UnknownNameError("phenotype", parts[2], presets, where=f"value {name!r}")
    return parts[0], parts[1], parts[2]


def _preset_centre(phenotype: str) -> dict[str, float]:
    """Return every parameter's value for men drawn around ``phenotype`` before variability (table + preset)."""
    table = {k: v.value for k, v in read_parameter_table().items()}
    return table | load_phenotypes()[phenotype].resolve(table)


def dump_population(population: Population) -> str:
    """Return a population as the text of a variability file that :func:`load_population` reads back.

    Every entry is written with ``log_sd`` (a ``cv`` entry as its log SD), so a population changed by
    :meth:`Population.with_values` can be handed to anything that reads a variability file (a scenario's
    ``[population] variability``). Sources and fit ranges are kept.
    """
    data: dict[str, object] = {
        "truncate_sd": float(population.truncate_sd),
        "body_weight_kg": {"median": float(population.weight_median_kg), "cv": float(population.weight_cv)},
    }
    variability: dict[str, dict[str, object]] = {}
    for name, entry in population.variability.items():
        body: dict[str, object] = {"log_sd": float(entry.log_sd), "scale": entry.scale, "source": entry.source}
        if entry.by_phenotype:
            body["by_phenotype"] = {k: float(v) for k, v in entry.by_phenotype.items()}
        if entry.median_by_phenotype:
            body["median_by_phenotype"] = {k: float(v) for k, v in entry.median_by_phenotype.items()}
        if entry.uncertain:
            body |= {"uncertain": True, "fit_lower": float(entry.fit_lower), "fit_upper": float(entry.fit_upper)}
        variability[name] = body
    data["variability"] = variability
    data["factor"] = {
        name: {"parameters": list(f.parameters), "log_sd": float(f.log_sd), "source": f.source}
        for name, f in population.factors.items()
    }
    return tomli_w.dumps(data)


def write_log_sd(fitted: Mapping[str, float], path: Path | None = None, *, note: str, by: str) -> list[str]:
    """Write fitted log_sd values into the variability file, with a note in each entry's source.

    Only the ``log_sd`` and ``source`` lines of the fitted entries are rewritten (an earlier fit's note is
    replaced); the file is read immediately before writing.

    Args:
        fitted: Fitted log_sd per variability entry.
        path: The variability file; defaults to the shipped one.
        note: What the values were fitted to, for the source note.
        by: The fitting command named in the note.

    Returns:
        One line per change, ``parameter: old -> new``.

    Raises:
        InvalidValueError: The file has no such entry, or the entry is a ``cv`` entry (no log_sd line).
    """
    path = path or model_dir() / POPULATION_FILE
    text = path.read_text(encoding="utf-8")
    changes = []
    entry_note = f"; fitted {_dt.date.today().isoformat()} by {by} to {note}"
    for name, value in fitted.items():
        header = re.search(rf"^\[variability\.{re.escape(name)}\]\s*$", text, flags=re.MULTILINE)
        if header is None:
            raise InvalidValueError(f"{path}: no [variability.{name}] entry to write {name} into; add the entry first")
        end = re.search(r"^\[", text[header.end() :], flags=re.MULTILINE)
        stop = header.end() + (end.start() if end else len(text) - header.end())
        block = text[header.end() : stop]
        old = re.search(r"^log_sd\s*=\s*([-+0-9.eE]+)", block, flags=re.MULTILINE)
        if old is None:
            raise InvalidValueError(f"{path}: [variability.{name}] has no log_sd line (a cv entry cannot be fitted)")
        block = block[: old.start()] + f"log_sd = {value:.4g}" + block[old.end() :]
        block = re.sub(
            r'^(source\s*=\s*")(.*?)(?:; fitted \d{4}-\d\d-\d\d by [a-z_ -]+? to [^"]*)?(")',
            functools.partial(_with_note, note=entry_note),
            block,
            count=1,
            flags=re.MULTILINE,
        )
        text = text[: header.end()] + block + text[stop:]
        changes.append(f"{name}: log_sd {old.group(1)} -> {value:.4g}")
    path.write_text(text, encoding="utf-8")
    return changes


def _with_note(match: re.Match[str], *, note: str) -> str:
    return f"{match.group(1)}{match.group(2)}{note}{match.group(3)}"


def _stream(seed: int, histology: str, index: int, name: str) -> np.random.Generator:
    """Return the random stream of one man and one quantity (stable across runs and platforms)."""
    return np.random.default_rng([seed, zlib.crc32(histology.encode()), index, zlib.crc32(name.encode())])


def _truncated_z(rng: np.random.Generator, limit: float) -> float:
    """Draw a standard normal truncated at +/- limit by inverting the CDF (one uniform per draw)."""
    lo, hi = float(special.ndtr(-limit)), float(special.ndtr(limit))
    return float(special.ndtri(lo + (hi - lo) * rng.random()))


def draw_patients(
    population: Population,
    histology: str,
    indices: Sequence[int],
    *,
    seed: int,
    overrides: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Draw men of one histology as a samples table for :func:`ra_model.studies.sweep.run_sweep`.

    Args:
        population: Variability data.
        histology: Phenotype preset name of these men.
        indices: Which men of this histology's stream to draw (0, 1, 2, ...).
        seed: The population seed.
        overrides: Parameter values set for every man before variability (the median moves).

    Returns:
        One row per man: ``sample_id`` (``"<histology>-<index>"``), ``phenotype``, one column per
        varying parameter (those of the shared factors included), ``meta_histology``,
        ``meta_patient_index``, ``meta_body_weight_kg``.

    Raises:
        UnknownNameError: Unknown histology or override parameter.
        InvalidValueError: A negative index or a non-integer seed.
    """
    presets = load_phenotypes()
    if histology not in presets:
        raise UnknownNameError("phenotype", histology, presets, where="histology mix")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidValueError(f"seed = {seed!r}; use a non-negative integer")
    table = read_parameter_table()
    for name in overrides or {}:
        if name not in table:
            raise UnknownNameError("parameter", name, table, where="overrides")
    centre = {k: v.value for k, v in table.items()} | presets[histology].resolve({k: v.value for k, v in table.items()})
    for name, spread in population.variability.items():
        if histology in spread.median_by_phenotype:
            centre[name] = float(spread.median_by_phenotype[histology])
    centre |= dict(overrides or {})
    weight_sd = math.sqrt(math.log1p(population.weight_cv**2))
    rows = []
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
            raise InvalidValueError(f"patient index {index!r}; use integers >= 0")
        i = int(index)
        row: dict[str, object] = {"sample_id": f"{histology}-{i:05d}", "phenotype": histology}
        for name, spread in sorted(population.variability.items()):
            z = _truncated_z(_stream(seed, histology, i, name), population.truncate_sd)
            row[name] = spread.apply(centre[name], z, phenotype=histology)
        for _, factor in sorted(population.factors.items()):
            z = _truncated_z(_stream(seed, histology, i, factor.stream), population.truncate_sd)
            scale = math.exp(factor.log_sd * z)
            for name in factor.parameters:
                row[name] = centre[name] * scale
        z_weight = _truncated_z(_stream(seed, histology, i, "body_weight_kg"), population.truncate_sd)
        row[HISTOLOGY] = histology
        row[PATIENT_INDEX] = i
        row[BODY_WEIGHT_KG] = population.weight_median_kg * math.exp(weight_sd * z_weight)
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["seed"] = seed
    return frame


def check_mix(mix: Mapping[str, float], *, where: str = "histology mix") -> dict[str, float]:
    """Validate a histology mix: known phenotype names, fractions in [0, 1] summing to 1.

    Raises:
        UnknownNameError: A histology that is not a phenotype preset.
        InvalidValueError: A fraction outside [0, 1] or a sum other than 1 (within 1e-6).
    """
    presets = load_phenotypes()
    if not mix:
        raise InvalidValueError(f"{where} is empty; give e.g. {{maturation_arrest = 0.4, sertoli_cell_only = 0.6}}")
    for name, share in mix.items():
        if name not in presets:
            raise UnknownNameError("phenotype", name, presets, where=where)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise InvalidValueError(f"{where}: share of {name!r} = {share!r}; use a fraction between 0 and 1")
    total = float(sum(mix.values()))
    if abs(total - 1.0) > 1e-6:
        raise InvalidValueError(f"{where} sums to {total:g}, not 1; rescale the shares so they add up to 1")
    return {k: float(v) for k, v in mix.items()}


def allocate(mix: Mapping[str, float], n: int) -> dict[str, int]:
    """Split ``n`` men between histologies in proportion to the mix (largest remainders, ties by name).

    Args:
        mix: Histology shares summing to 1.
        n: Number of men.

    Returns:
        Men per histology, summing to ``n``.
    """
    exact = {k: v * n for k, v in mix.items()}
    counts = {k: int(math.floor(v)) for k, v in exact.items()}
    left = n - sum(counts.values())
    for name in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), k))[:left]:
        counts[name] += 1
    return counts
