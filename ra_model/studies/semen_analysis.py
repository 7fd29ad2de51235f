"""Simulated semen analyses: turn the model's ejaculate concentration at a visit into what a laboratory reports.

One job: the measurement model of a semen analysis (brief 6: a semen analysis is a measurement). The model
gives a man's true (expected) sperm concentration ``c`` at a visit; one analysis of one ejaculate then

1. draws the ejaculate's concentration ``c_e = c * M``, with ``M`` log-normal of mean 1 and CV
   ``cv_within_concentration`` (between-ejaculate variation within a man), so analyses average to ``c``;
2. counts the sperm in the fresh (uncentrifuged) examined volume ``examined_volume_fresh_uL``: Poisson with
   mean ``c_e`` times that volume; the measured concentration is that count divided by the volume (0 when
   none are seen);
3. if the fresh count is zero, centrifuges the rest of the ejaculate (``ejaculate_volume_mL`` less the
   examined volume) and searches ``pellet_fraction_examined`` of the pellet: Poisson with mean ``c_e``
   times the searched volume. With the whole pellet searched, the fresh drop and the pellet together cover
   the whole ejaculate, so the chance that no sperm is seen at all is exactly ``exp(-c_e * volume)``;
4. counts the motile sperm among those seen (in the fresh count, or in the pellet when it was searched):
   binomial with the ejaculate's motile fraction, drawn from a beta distribution of mean ``motile_fraction``
   and CV ``motile_fraction_cv``;
5. names the WHO category (:data:`ra_model.model.semen.CATEGORIES`): azoospermia when no sperm is seen even in
   the pellet, cryptozoospermia when none is seen in the fresh count but some in the pellet, else
   oligozoospermia or normal from the measured concentration and ``oligozoospermia_limit``.

Where the parameters come from (:meth:`MeasurementSettings.from_parameters`): the values in
``models/parameters.csv`` (category ``readout``), replaced by a mapping of parameter values by model id
(e.g. a man's sampled parameters or ``simulate()``'s ``attrs["overrides"]``). :func:`analyses` given a
``simulate()`` table applies its ``attrs["overrides"]`` and its ``oligozoospermia_limit_M_per_mL`` first; an
explicit ``params`` mapping wins over both.

Reproducibility: every analysis draws from its own generator, derived with :class:`numpy.random.SeedSequence`
from (seed, man id, visit day) (:func:`visit_generator`), so a man's analysis on a given day is the same
whatever other men or visits are simulated with it, and a new seed gives new draws. Cohort endpoints do not
use these analyses yet (issue 16, later parts).
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ra_model.errors import InvalidValueError
from ra_model.model import columns as C
from ra_model.model import domain, semen
from ra_model.model.source import read_parameter_table

log = logging.getLogger(__name__)

#: Sperm per (million/mL x uL): a concentration in million/mL times a volume in uL is this many sperm.
SPERM_PER_M_PER_ML_UL = 1e3
#: Sperm per (million/mL x mL).
SPERM_PER_M_PER_ML_ML = 1e6
#: Tag mixed into every analysis's seed, so these draws never coincide with the population's.
_STREAM_TAG = 0x5E3E_A7A1

#: Columns of :func:`analyses_table`, in order.
TABLE_COLUMNS: tuple[str, ...] = (
    "man_id",
    "visit_d",
    "true_concentration_M_per_mL",
    "measured_concentration_M_per_mL",
    "fresh_count",
    "pellet_count",
    "motile_seen",
    "semen_category",
)


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class MeasurementSettings:
    """The measurement model's parameters (model ids; see ``models/parameters.csv`` for sources).

    Attributes:
        cv_within_concentration: Between-ejaculate CV of the concentration within a man (>= 0).
        examined_volume_fresh_uL: Volume examined in the fresh count, uL (> 0).
        pellet_fraction_examined: Share of the centrifuged pellet searched, (0, 1].
        motile_fraction_cv: Between-ejaculate CV of the motile fraction (>= 0).
        ejaculate_volume_mL: Semen volume of one ejaculate, mL (> the examined volume).
        motile_fraction: Mean motile share of the sperm, [0, 1].
        oligozoospermia_limit: WHO lower reference limit, million/mL (> 0).
    """

    cv_within_concentration: float
    examined_volume_fresh_uL: float
    pellet_fraction_examined: float
    motile_fraction_cv: float
    ejaculate_volume_mL: float
    motile_fraction: float
    oligozoospermia_limit: float

    def __post_init__(self) -> None:
        """Check every value against its parameter's domain, and the values against each other.

        Raises:
            InvalidValueError: A value outside its domain (the message names it and the fix), an ejaculate no
                larger than the examined volume, or a motile-fraction CV a beta distribution cannot have.
        """
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        checked = domain.check_values(values, where="semen analysis settings", warn=False)
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        examined_mL = self.examined_volume_fresh_uL / 1e3
        if self.ejaculate_volume_mL <= examined_mL:
            raise InvalidValueError(
                f"ejaculate_volume_mL = {self.ejaculate_volume_mL:g} is not larger than the examined fresh volume "
                f"({self.examined_volume_fresh_uL:g} uL); use a larger ejaculate or a smaller examined_volume_fresh_uL"
            )
        mean = self.motile_fraction
        if 0 < mean < 1 and self.motile_fraction_cv > 0:
            largest = math.sqrt((1 - mean) / mean)
            if self.motile_fraction_cv >= largest:
                raise InvalidValueError(
                    f"motile_fraction_cv = {self.motile_fraction_cv:g} is too large for motile_fraction = {mean:g}: a "
                    f"fraction of that mean cannot vary that much; use a CV below {largest:.3g}"
                )

    @classmethod
    def from_parameters(cls, values: Mapping[str, Any] | None = None) -> MeasurementSettings:
        """Build the settings from ``models/parameters.csv``, replaced by ``values`` where it has an id.

        Args:
            values: Parameter values by model id; ids that are not settings are ignored.

        Returns:
            The checked settings.

        Raises:
            InvalidValueError: A value outside its domain, or settings that do not fit together.
        """
        table = read_parameter_table()
        names = [f.name for f in fields(cls)]
        chosen: dict[str, Any] = {name: table[name].value for name in names}
        if values:
            chosen |= {name: values[name] for name in names if name in values}
        return cls(**chosen)

    @property
    def examined_volume_fresh_mL(self) -> float:
        """The examined fresh volume in mL."""
        return self.examined_volume_fresh_uL / 1e3


# ---------------------------------------------------------------------------------------------- one analysis
@dataclass(frozen=True)
class SemenAnalysis:
    """One simulated semen analysis (one ejaculate), as the laboratory reports it.

    Attributes:
        concentration_M_per_mL: Measured concentration, million/mL: the fresh count over the examined volume
            (0 when none is seen).
        fresh_count: Sperm seen in the fresh examined volume.
        pellet_count: Sperm seen in the searched pellet, or None when the pellet was not searched (the fresh
            count was positive).
        motile_seen: Motile sperm among those seen (in the fresh count, or in the pellet when searched).
        category: WHO category, one of :data:`ra_model.model.semen.CATEGORIES`.
    """

    concentration_M_per_mL: float
    fresh_count: int
    pellet_count: int | None
    motile_seen: int
    category: str

    def __post_init__(self) -> None:
        """Check the analysis is coherent.

        Raises:
            InvalidValueError: A negative or non-whole count, a pellet count given with a positive fresh count (or
                missing with none), more motile sperm than seen, a concentration that is not finite and >= 0, an
                unknown category, or a category that does not follow from the counts.
        """
        for name in ("fresh_count", "motile_seen", "pellet_count"):
            value = getattr(self, name)
            if value is None and name == "pellet_count":
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise InvalidValueError(f"{name} = {value!r}; use a whole number >= 0")
            object.__setattr__(self, name, int(value))
        conc = self.concentration_M_per_mL
        if isinstance(conc, bool) or not isinstance(conc, numbers.Real) or not (math.isfinite(conc) and conc >= 0):
            raise InvalidValueError(f"concentration_M_per_mL = {conc!r}; use a finite concentration >= 0 (million/mL)")
        object.__setattr__(self, "concentration_M_per_mL", float(conc))
        if (self.pellet_count is None) != (self.fresh_count > 0):
            raise InvalidValueError(
                f"pellet_count = {self.pellet_count!r} with fresh_count = {self.fresh_count}; the pellet is searched "
                "(give its count) exactly when the fresh count is 0, else give None"
            )
        seen = self.fresh_count if self.pellet_count is None else self.pellet_count
        if self.motile_seen > seen:
            raise InvalidValueError(
                f"motile_seen = {self.motile_seen} exceeds the {seen} sperm seen; use at most {seen}"
            )
        if (self.fresh_count == 0) != (self.concentration_M_per_mL == 0):
            raise InvalidValueError(
                f"concentration_M_per_mL = {conc!r} with fresh_count = {self.fresh_count}; the measured concentration "
                "is 0 exactly when the fresh count is 0"
            )
        if self.category not in semen.CATEGORIES:
            raise InvalidValueError(f"category = {self.category!r}; use one of {', '.join(semen.CATEGORIES)}")
        if self.fresh_count == 0:
            expected = {semen.CATEGORIES[semen.AZOOSPERMIA], semen.CATEGORIES[semen.CRYPTOZOOSPERMIA]}
            right = semen.CATEGORIES[semen.AZOOSPERMIA if self.pellet_count == 0 else semen.CRYPTOZOOSPERMIA]
        else:
            expected = {semen.CATEGORIES[semen.OLIGOZOOSPERMIA], semen.CATEGORIES[semen.NORMAL]}
            right = self.category if self.category in expected else semen.CATEGORIES[semen.OLIGOZOOSPERMIA]
        if self.category != right:
            raise InvalidValueError(
                f"category = {self.category!r} does not follow from fresh_count = {self.fresh_count} and "
                f"pellet_count = {self.pellet_count!r}; use {right!r}"
            )


# ---------------------------------------------------------------------------------------------- the draws
def _concentrations(values: npt.ArrayLike, *, where: str) -> npt.NDArray[np.float64]:
    """Return concentrations as a float array, refusing NaN, infinite and negative values."""
    try:
        if np.asarray(values).dtype == bool:
            raise TypeError
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise InvalidValueError(
            f"{where} = {values!r} is not a concentration; give numbers >= 0 (million/mL)"
        ) from None
    bad = ~(np.isfinite(array) & (array >= 0))
    if bad.any():
        shown = float(array) if array.ndim == 0 else float(array[bad][0])
        raise InvalidValueError(f"{where} = {shown!r}; give a finite concentration >= 0 (million/mL)")
    return array


def draw_analyses(
    concentration: npt.ArrayLike,
    *,
    rng: np.random.Generator,
    settings: MeasurementSettings,
) -> dict[str, npt.NDArray[Any]]:
    """Simulate one semen analysis per true concentration, all from one generator (vectorised).

    The draws are taken in a fixed order (ejaculate multiplier, fresh count, pellet count, motile fraction,
    motile count), one of each per element, so the result depends only on the generator's state and the
    inputs. For analyses that must not depend on each other's order use :func:`analyses`.

    Args:
        concentration: True (model) ejaculate concentrations, million/mL, >= 0; any shape.
        rng: The generator to draw from.
        settings: The measurement parameters.

    Returns:
        Arrays of the input's shape: ``measured_concentration_M_per_mL`` (float), ``fresh_count`` (int),
        ``pellet_count`` (float: NaN where the pellet was not searched), ``motile_seen`` (int),
        ``category_code`` (int, the index in :data:`ra_model.model.semen.CATEGORIES`) and
        ``ejaculate_concentration_M_per_mL`` (the drawn concentration of the ejaculate, float).

    Raises:
        InvalidValueError: A concentration that is negative, NaN or infinite.
    """
    c = _concentrations(concentration, where="concentration")
    shape = c.shape
    cv = settings.cv_within_concentration
    if cv > 0:
        sigma = math.sqrt(math.log1p(cv * cv))
        multiplier = rng.lognormal(mean=-0.5 * sigma * sigma, sigma=sigma, size=shape)
    else:
        multiplier = np.ones(shape)
    c_e = c * multiplier
    fresh = rng.poisson(c_e * settings.examined_volume_fresh_uL * SPERM_PER_M_PER_ML_UL, size=shape)
    rest_mL = settings.ejaculate_volume_mL - settings.examined_volume_fresh_mL
    pellet_mean = np.where(fresh == 0, c_e * rest_mL * settings.pellet_fraction_examined * SPERM_PER_M_PER_ML_ML, 0.0)
    pellet = rng.poisson(pellet_mean, size=shape)
    mean = settings.motile_fraction
    if 0 < mean < 1 and settings.motile_fraction_cv > 0:
        var = (settings.motile_fraction_cv * mean) ** 2
        kappa = mean * (1 - mean) / var - 1
        motile_fraction = rng.beta(mean * kappa, (1 - mean) * kappa, size=shape)
    else:
        motile_fraction = np.full(shape, mean)
    seen = np.where(fresh > 0, fresh, pellet)
    motile = rng.binomial(seen, motile_fraction, size=shape)
    measured = fresh / (settings.examined_volume_fresh_uL * SPERM_PER_M_PER_ML_UL)
    codes = np.where(
        fresh > 0,
        np.where(measured >= settings.oligozoospermia_limit, semen.NORMAL, semen.OLIGOZOOSPERMIA),
        np.where(pellet > 0, semen.CRYPTOZOOSPERMIA, semen.AZOOSPERMIA),
    ).astype(np.int64)
    return {
        "measured_concentration_M_per_mL": measured,
        "fresh_count": fresh.astype(np.int64),
        "pellet_count": np.where(fresh == 0, pellet.astype(float), np.nan),
        "motile_seen": motile.astype(np.int64),
        "category_code": codes,
        "ejaculate_concentration_M_per_mL": c_e,
    }


def simulate_semen_analysis(
    concentration: float,
    *,
    rng: np.random.Generator,
    params: MeasurementSettings | Mapping[str, Any] | None = None,
    volume_ml: float | None = None,
    motile_fraction: float | None = None,
) -> SemenAnalysis:
    """Simulate one semen analysis of one ejaculate.

    Args:
        concentration: The man's true (model) ejaculate concentration, million/mL, >= 0.
        rng: The generator to draw from (e.g. :func:`visit_generator`).
        params: The measurement parameters: settings, or parameter values by model id replacing
            ``models/parameters.csv``'s (:meth:`MeasurementSettings.from_parameters`); default: the table's values.
        volume_ml: Ejaculate volume, mL; replaces ``settings.ejaculate_volume_mL``.
        motile_fraction: Mean motile fraction; replaces ``settings.motile_fraction``.

    Returns:
        The analysis.

    Raises:
        InvalidValueError: A concentration that is negative, NaN or infinite, or a setting out of its domain.

    Examples:
        >>> a = simulate_semen_analysis(0.0, rng=np.random.default_rng(1))
        >>> a.category, a.fresh_count, a.pellet_count
        ('azoospermia', 0, 0)
    """
    if not isinstance(params, MeasurementSettings):
        params = MeasurementSettings.from_parameters(params)
    settings = _with(params, volume_ml, motile_fraction)
    if isinstance(concentration, np.ndarray) and concentration.ndim > 0:
        raise InvalidValueError(
            f"concentration has shape {concentration.shape}; give one number, or use draw_analyses for arrays"
        )
    draws = draw_analyses(concentration, rng=rng, settings=settings)
    return _analysis(draws, ())


def _with(settings: MeasurementSettings, volume_ml: float | None, motile_fraction: float | None) -> MeasurementSettings:
    """Return ``settings`` with the ejaculate volume and mean motile fraction replaced where given."""
    changes: dict[str, Any] = {}
    if volume_ml is not None:
        changes["ejaculate_volume_mL"] = volume_ml
    if motile_fraction is not None:
        changes["motile_fraction"] = motile_fraction
    if not changes:
        return settings
    return MeasurementSettings(**({f.name: getattr(settings, f.name) for f in fields(settings)} | changes))


def _analysis(draws: Mapping[str, npt.NDArray[Any]], index: tuple[int, ...]) -> SemenAnalysis:
    """Return the analysis at ``index`` of :func:`draw_analyses`'s arrays."""
    pellet = float(draws["pellet_count"][index])
    return SemenAnalysis(
        concentration_M_per_mL=float(draws["measured_concentration_M_per_mL"][index]),
        fresh_count=int(draws["fresh_count"][index]),
        pellet_count=None if math.isnan(pellet) else int(pellet),
        motile_seen=int(draws["motile_seen"][index]),
        category=semen.CATEGORIES[int(draws["category_code"][index])],
    )


# ---------------------------------------------------------------------------------------------- seeded visits
def _words(value: int | str, *, what: str) -> list[int]:
    """Encode a man id as 32-bit words: a type tag, the length, then the value (injective per type)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        raise InvalidValueError(f"{what} = {value!r}; use a whole number or a string")
    if isinstance(value, str):
        data = value.encode("utf-8")
        data += b"\0" * (-len(data) % 4)
        words = np.frombuffer(data, dtype="<u4").tolist()
        return [1, len(value.encode("utf-8")), *words]
    number = int(value)
    if number < 0:
        raise InvalidValueError(f"{what} = {number}; use a whole number >= 0 or a string")
    words = []
    while True:
        words.append(number & 0xFFFFFFFF)
        number >>= 32
        if not number:
            break
    return [0, len(words), *words]


def _day_words(day: float) -> list[int]:
    """Encode a visit day (finite, >= 0) as the two 32-bit halves of its float64 bits."""
    if isinstance(day, bool) or not isinstance(day, numbers.Real) or not (math.isfinite(day) and day >= 0):
        raise InvalidValueError(f"visit day = {day!r}; use a finite number of days >= 0")
    bits = int(np.array(float(day) + 0.0, dtype="<f8").view("<u8"))
    return [bits & 0xFFFFFFFF, bits >> 32]


def visit_generator(seed: int, man_id: int | str, visit_day: float) -> np.random.Generator:
    """Return the generator of one man's analysis on one visit day.

    Derived with :class:`numpy.random.SeedSequence` from the seed, the man id (a whole number or a string,
    encoded byte for byte: never ``hash()``) and the visit day's float bits, so it does not depend on any
    other man or visit.

    Args:
        seed: The study's seed, a whole number >= 0.
        man_id: The man's id.
        visit_day: The day of the analysis.

    Returns:
        A fresh PCG64 generator.

    Raises:
        InvalidValueError: A seed that is not a whole number >= 0, a man id that is neither a whole number >= 0 nor
            a string, or a visit day that is not finite and >= 0.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InvalidValueError(f"seed = {seed!r}; use a whole number >= 0")
    entropy = [_STREAM_TAG, *_words(int(seed), what="seed"), *_words(man_id, what="man_id"), *_day_words(visit_day)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def analyses(
    source: pd.DataFrame | npt.ArrayLike,
    visit_days: Sequence[float],
    *,
    seed: int,
    man_id: int | str,
    params: Mapping[str, Any] | None = None,
) -> list[SemenAnalysis]:
    """Simulate one man's semen analysis at each visit day, seeded by (seed, man id, visit day).

    Parameters (:class:`MeasurementSettings`): ``models/parameters.csv``; then, if ``source`` is a ``simulate()``
    table, its ``attrs["overrides"]`` and ``attrs["oligozoospermia_limit_M_per_mL"]``; then ``params``.

    Args:
        source: A ``simulate()`` table of the man (its ejaculate concentration is read at each visit day by
            linear interpolation in ``time_d``), or his true concentrations (million/mL), one per visit day.
        visit_days: Days of the analyses (finite, >= 0, inside the table's time).
        seed: The study's seed (whole number >= 0).
        man_id: The man's id (whole number >= 0 or string).
        params: Parameter values by model id that replace the others.

    Returns:
        One analysis per visit day, in the order given.

    Raises:
        InvalidValueError: A concentration that is negative or NaN, a visit day outside the table or not matching
            the concentrations in number, or a parameter out of its domain.
    """
    days = list(visit_days)
    settings = settings_for(source, params)
    conc = _visit_concentrations(source, days)
    out = []
    for day, value in zip(days, conc, strict=True):
        draws = draw_analyses(value, rng=visit_generator(seed, man_id, day), settings=settings)
        out.append(_analysis(draws, ()))
    log.debug("simulated %d semen analyses of man %r (seed %d)", len(out), man_id, seed)
    return out


def analyses_table(
    concentrations: npt.ArrayLike,
    visit_days: Sequence[float],
    *,
    seed: int,
    man_ids: Sequence[int | str],
    params: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Simulate the semen analyses of many men at many visits (each seeded as in :func:`analyses`).

    Args:
        concentrations: True concentrations, million/mL, shape (men, visits).
        visit_days: Days of the analyses, one per column.
        seed: The study's seed.
        man_ids: One id per row (unique).
        params: Parameter values by model id replacing ``models/parameters.csv``'s (the same for every man).

    Returns:
        One row per man and visit (men in the order given, then visits), columns :data:`TABLE_COLUMNS`
        (``pellet_count`` NaN where the pellet was not searched).

    Raises:
        InvalidValueError: A bad concentration (naming the man and day), a shape that does not match the men and
            visits, repeated man ids, or a parameter out of its domain.
    """
    settings = MeasurementSettings.from_parameters(params)
    days = list(visit_days)
    ids = list(man_ids)
    if len(set(ids)) != len(ids):
        raise InvalidValueError("man_ids repeat an id; give each man his own id (his draws come from it)")
    array = np.asarray(concentrations, dtype=float)
    if array.shape != (len(ids), len(days)):
        raise InvalidValueError(
            f"concentrations have shape {array.shape}, not (men, visits) = ({len(ids)}, {len(days)}); give one row "
            "per man id and one column per visit day"
        )
    rows: list[tuple[Any, ...]] = []
    for i, man in enumerate(ids):
        for j, day in enumerate(days):
            value = _concentrations(array[i, j], where=f"concentration of man {man!r} on day {day:g}")
            draws = draw_analyses(value, rng=visit_generator(seed, man, day), settings=settings)
            a = _analysis(draws, ())
            pellet = math.nan if a.pellet_count is None else a.pellet_count
            rows.append(
                (
                    man,
                    float(day),
                    float(value),
                    a.concentration_M_per_mL,
                    a.fresh_count,
                    pellet,
                    a.motile_seen,
                    a.category,
                )
            )
    log.debug("simulated %d semen analyses of %d men (seed %d)", len(rows), len(ids), seed)
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def settings_for(source: pd.DataFrame | npt.ArrayLike, params: Mapping[str, Any] | None) -> MeasurementSettings:
    """Return the settings of :func:`analyses`: ``models/parameters.csv``, then the table's ``attrs``, then ``params``.

    Args:
        source: A ``simulate()`` table, or anything else (then only ``params`` replace the defaults).
        params: Parameter values by model id.

    Returns:
        The checked settings.
    """
    values: dict[str, Any] = {}
    if isinstance(source, pd.DataFrame):
        overrides = source.attrs.get("overrides") or {}
        values |= dict(overrides)
        limit = source.attrs.get(semen.LIMIT_ATTRS["oligozoospermia_limit"])
        if limit is not None:
            values["oligozoospermia_limit"] = limit
    values |= dict(params or {})
    return MeasurementSettings.from_parameters(values)


def _visit_concentrations(source: pd.DataFrame | npt.ArrayLike, days: list[float]) -> npt.NDArray[np.float64]:
    """Return the true concentration at each visit day, from a table or given one per day."""
    for day in days:
        _day_words(day)
    if isinstance(source, pd.DataFrame):
        if C.TIME_D not in source or C.EJACULATE_CONCENTRATION not in source:
            raise InvalidValueError(
                f"the table has no {C.TIME_D!r} or {C.EJACULATE_CONCENTRATION!r} column; give a simulate() table"
            )
        t = source[C.TIME_D].to_numpy(dtype=float)
        conc = source[C.EJACULATE_CONCENTRATION].to_numpy(dtype=float)
        for day in days:
            if not t[0] - 1e-9 <= day <= t[-1] + 1e-9:
                raise InvalidValueError(
                    f"visit on day {day:g} is outside the simulated {t[0]:g}-{t[-1]:g} d; lengthen t_end_d"
                )
        values = np.interp(np.asarray(days, dtype=float), t, conc)
        return _concentrations(values, where=f"{C.EJACULATE_CONCENTRATION} at the visits")
    values = _concentrations(source, where="concentration")
    if values.ndim != 1 or values.shape[0] != len(days):
        raise InvalidValueError(
            f"{values.size} concentration(s) for {len(days)} visit day(s); give one concentration per visit day"
        )
    return values
