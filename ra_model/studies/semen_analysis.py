"""Simulated semen analyses: turn the model's ejaculate concentration at a visit into what a laboratory reports.

One job: the measurement model of a semen analysis (brief 6: a semen analysis is a measurement). The model
gives a man's true (expected) sperm concentration ``c`` at a visit; one analysis of one ejaculate then

1. draws the ejaculate's concentration ``c_e = c * M_c`` and volume ``V_e = ejaculate_volume_mL * M_v``, with
   ``M_c`` and ``M_v`` log-normal of mean 1 and CVs ``cv_within_concentration`` and ``cv_within_volume``
   (between-ejaculate variation within a man, Schwartz 1979), so analyses average to ``c``. The two are
   correlated on the log scale: the correlation is the one that gives the total count ``c_e * V_e`` its CV
   ``cv_within_total_count`` (:func:`volume_correlation`; 0.23 from Schwartz's 39%, 28% and 55%). This is the
   abstinence effect: the longer since the last ejaculation, the fuller the cauda reserve and the larger both
   volume and concentration (brief 6), so they rise and fall together between ejaculates (and the total count
   averages ``exp(rho s_c s_v)`` = 1.024 times ``c`` x ``ejaculate_volume_mL``);
2. counts the sperm in the fresh (uncentrifuged) examined volume ``examined_volume_fresh_uL``: Poisson with
   mean ``c_e`` times that volume; the measured concentration is that count divided by the volume (0 when
   none are seen);
3. if the fresh count is zero, centrifuges the rest of the ejaculate (``V_e`` less the examined volume) and
   searches ``pellet_fraction_examined`` of the pellet: Poisson with mean ``c_e`` times the searched volume.
   With the whole pellet searched, the fresh drop and the pellet together cover the whole ejaculate, so the
   chance that no sperm is seen at all is exactly ``exp(-c_e * V_e)``;
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
whatever other men or visits are simulated with it, and a new seed gives new draws. A cohort
(:func:`visit_analyses`) also re-draws every analysis ``R`` times, all at once from one generator of the seed
(:func:`redraw_generator`), to show how much a rate moves with the measurement alone on the same simulated men.

The detection limits of the model (:func:`ra_model.model.semen.detection_limits`: one sperm expected in the
examined fresh volume, or in the searched pellet of a mean ejaculate) come from the same parameters, so the
deterministic semen categories of a time course are the categories of an analysis at its expected counts.
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
from scipy import special

from ra_model.errors import InvalidValueError
from ra_model.model import columns as C
from ra_model.model import domain, semen
from ra_model.model.source import read_parameter_table

log = logging.getLogger(__name__)

#: Sperm per (million/mL x uL): a concentration in million/mL times a volume in uL is this many sperm.
SPERM_PER_M_PER_ML_UL = semen.SPERM_PER_M_PER_ML_UL
#: Sperm per (million/mL x mL).
SPERM_PER_M_PER_ML_ML = semen.SPERM_PER_M_PER_ML_ML
#: Tag mixed into every analysis's seed, so these draws never coincide with the population's.
_STREAM_TAG = 0x5E3E_A7A1
#: Tag of a man's re-draw generator (:func:`redraw_generator`), so re-draws never coincide with the analyses.
_REDRAW_TAG = 0x2E_D2A3

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
        cv_within_volume: Between-ejaculate CV of the semen volume within a man (>= 0).
        cv_within_total_count: Between-ejaculate CV of the total count within a man (>= 0); with the other two
            it sets the correlation of volume and concentration (:func:`volume_correlation`).
        examined_volume_fresh_uL: Volume examined in the fresh count, uL (> 0).
        pellet_fraction_examined: Share of the centrifuged pellet searched, (0, 1].
        motile_fraction_cv: Between-ejaculate CV of the motile fraction (>= 0).
        ejaculate_volume_mL: Semen volume of one ejaculate, mL (> the examined volume).
        motile_fraction: Mean motile share of the sperm, [0, 1].
        oligozoospermia_limit: WHO lower reference limit, million/mL (> 0).
    """

    cv_within_concentration: float
    cv_within_volume: float
    cv_within_total_count: float
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
                larger than the examined volume, a motile-fraction CV a beta distribution cannot have, or CVs of
                concentration, volume and total count that no correlation reconciles.
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
        volume_correlation(self)

    @property
    def detection_limits(self) -> dict[str, float]:
        """The model's derived detection limits for these settings (:func:`ra_model.model.semen.detection_limits`)."""
        return semen.detection_limits({f.name: getattr(self, f.name) for f in fields(self)})

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

    The draws are taken in a fixed order (two standard normals for the concentration and volume multipliers,
    fresh count, pellet count, motile fraction, motile count), one of each per element, so the result depends
    only on the generator's state and the inputs. For analyses that must not depend on each other's order use
    :func:`analyses`.

    Args:
        concentration: True (model) ejaculate concentrations, million/mL, >= 0; any shape.
        rng: The generator to draw from.
        settings: The measurement parameters.

    Returns:
        Arrays of the input's shape: ``measured_concentration_M_per_mL`` (float), ``fresh_count`` (int),
        ``pellet_count`` (float: NaN where the pellet was not searched), ``motile_seen`` (int),
        ``category_code`` (int, the index in :data:`ra_model.model.semen.CATEGORIES`),
        ``ejaculate_concentration_M_per_mL`` (the drawn concentration of the ejaculate, float) and
        ``ejaculate_volume_mL`` (its drawn volume, float).

    Raises:
        InvalidValueError: A concentration that is negative, NaN or infinite.
    """
    c = _concentrations(concentration, where="concentration")
    if c.ndim == 0:
        return _draw_one(float(c), rng, settings)
    shape = c.shape
    c_e, volume, fresh = _draw_ejaculates(c, rng, settings)
    rest_mL = np.maximum(volume - settings.examined_volume_fresh_mL, 0.0)
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
        "ejaculate_volume_mL": volume,
    }


def draw_presence(
    concentration: npt.ArrayLike,
    *,
    rng: np.random.Generator,
    settings: MeasurementSettings,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.bool_]]:
    """Simulate analyses down to what the trial's rules read: the category and whether motile sperm are seen.

    The same measurement as :func:`draw_analyses` (between-ejaculate factors, Poisson fresh and pellet counts),
    but whether any motile sperm is seen is drawn directly, the ejaculate's motile fraction ``f`` (beta with
    parameters ``a``, ``b``) integrated out: of ``n`` sperm seen none is motile with chance
    ``E[(1 - f)^n] = B(a, b + n) / B(a, b)`` (``(1 - f)^n`` for a fixed fraction). That is exact for the
    indicator and skips the slow beta and binomial draws, for a cohort's re-drawn analyses.

    Args:
        concentration: True concentrations, million/mL, >= 0; any shape.
        rng: The generator to draw from.
        settings: The measurement parameters.

    Returns:
        Category codes (int8) and motile sperm seen (bool), of the input's shape.

    Raises:
        InvalidValueError: A concentration that is negative, NaN or infinite.
    """
    c = _concentrations(concentration, where="concentration")
    shape = c.shape
    c_e, volume, fresh = _draw_ejaculates(c, rng, settings)
    none_fresh = fresh == 0
    pellet = np.zeros(shape, dtype=np.int64)
    rest_mL = np.maximum(volume[none_fresh] - settings.examined_volume_fresh_mL, 0.0)
    searched = c_e[none_fresh] * rest_mL * settings.pellet_fraction_examined * SPERM_PER_M_PER_ML_ML
    pellet[none_fresh] = rng.poisson(searched)
    seen = np.where(none_fresh, pellet, fresh).astype(float)
    mean = settings.motile_fraction
    if 0 < mean < 1 and settings.motile_fraction_cv > 0:
        var = (settings.motile_fraction_cv * mean) ** 2
        kappa = mean * (1 - mean) / var - 1
        a, b = mean * kappa, (1 - mean) * kappa
        p_none = np.exp(special.betaln(a, b + seen) - special.betaln(a, b))
    else:
        p_none = np.power(1.0 - mean, seen)
    motile = (seen > 0) & (rng.random(size=shape) >= p_none)
    measured = fresh / (settings.examined_volume_fresh_uL * SPERM_PER_M_PER_ML_UL)
    codes = np.where(
        none_fresh,
        np.where(pellet > 0, semen.CRYPTOZOOSPERMIA, semen.AZOOSPERMIA),
        np.where(measured >= settings.oligozoospermia_limit, semen.NORMAL, semen.OLIGOZOOSPERMIA),
    ).astype(np.int8)
    return codes, motile


def _draw_one(c: float, rng: np.random.Generator, settings: MeasurementSettings) -> dict[str, npt.NDArray[Any]]:
    """Draw one analysis with scalar calls: the same draws, in the same order, as the vectorised path (faster)."""
    sigma_c = _log_sd(settings.cv_within_concentration)
    sigma_v = _log_sd(settings.cv_within_volume)
    rho = volume_correlation(settings)
    z = rng.standard_normal(size=2)
    z0, z1 = float(z[0]), float(z[1])
    c_e = float(c * np.exp(sigma_c * z0 - 0.5 * sigma_c * sigma_c))  # numpy's exp, as the vectorised path's
    volume = float(
        settings.ejaculate_volume_mL
        * np.exp(sigma_v * (rho * z0 + math.sqrt(1.0 - rho * rho) * z1) - 0.5 * sigma_v * sigma_v)
    )
    fresh = int(rng.poisson(c_e * settings.examined_volume_fresh_uL * SPERM_PER_M_PER_ML_UL))
    rest_mL = max(volume - settings.examined_volume_fresh_mL, 0.0)
    pellet_mean = c_e * rest_mL * settings.pellet_fraction_examined * SPERM_PER_M_PER_ML_ML if fresh == 0 else 0.0
    pellet = int(rng.poisson(pellet_mean))
    mean = settings.motile_fraction
    if 0 < mean < 1 and settings.motile_fraction_cv > 0:
        var = (settings.motile_fraction_cv * mean) ** 2
        kappa = mean * (1 - mean) / var - 1
        motile_fraction = float(rng.beta(mean * kappa, (1 - mean) * kappa))
    else:
        motile_fraction = mean
    motile = int(rng.binomial(fresh if fresh > 0 else pellet, motile_fraction))
    measured = fresh / (settings.examined_volume_fresh_uL * SPERM_PER_M_PER_ML_UL)
    if fresh > 0:
        code = semen.NORMAL if measured >= settings.oligozoospermia_limit else semen.OLIGOZOOSPERMIA
    else:
        code = semen.CRYPTOZOOSPERMIA if pellet > 0 else semen.AZOOSPERMIA
    return {
        "measured_concentration_M_per_mL": np.array(measured),
        "fresh_count": np.array(fresh, dtype=np.int64),
        "pellet_count": np.array(float(pellet) if fresh == 0 else math.nan),
        "motile_seen": np.array(motile, dtype=np.int64),
        "category_code": np.array(code, dtype=np.int64),
        "ejaculate_concentration_M_per_mL": np.array(c_e),
        "ejaculate_volume_mL": np.array(volume),
    }


def _log_sd(cv: float) -> float:
    """Return the log-scale SD of a log-normal factor of mean 1 and coefficient of variation ``cv``."""
    return math.sqrt(math.log1p(cv * cv))


def volume_correlation(settings: MeasurementSettings) -> float:
    """Return the correlation of the log concentration and log volume multipliers between a man's ejaculates.

    With log SDs ``s_c``, ``s_v`` and ``s_t`` of the concentration, volume and total count (each from its CV:
    ``s^2 = ln(1 + CV^2)``), the total count's log variance is ``s_c^2 + s_v^2 + 2 rho s_c s_v``, so
    ``rho = (s_t^2 - s_c^2 - s_v^2) / (2 s_c s_v)``. Schwartz 1979's 39%, 28% and 55% give 0.23: volume and
    concentration rise together (abstinence fills the cauda reserve). With either CV 0 there is nothing to
    correlate: 0, and ``cv_within_total_count`` is not used.

    Args:
        settings: The measurement parameters.

    Returns:
        The correlation, in [-1, 1].

    Raises:
        InvalidValueError: CVs that no correlation reconciles (the total count varies more than both together
            at correlation 1, or less than at -1).
    """
    s_c = _log_sd(settings.cv_within_concentration)
    s_v = _log_sd(settings.cv_within_volume)
    if s_c == 0 or s_v == 0:
        return 0.0
    s_t = _log_sd(settings.cv_within_total_count)
    rho = (s_t * s_t - s_c * s_c - s_v * s_v) / (2 * s_c * s_v)
    if not -1.0 <= rho <= 1.0:
        low = math.sqrt(math.expm1((s_c - s_v) ** 2))
        high = math.sqrt(math.expm1((s_c + s_v) ** 2))
        raise InvalidValueError(
            f"cv_within_total_count = {settings.cv_within_total_count:g} cannot go with cv_within_concentration = "
            f"{settings.cv_within_concentration:g} and cv_within_volume = {settings.cv_within_volume:g} (it would "
            f"need a correlation of {rho:.3g}); use a total-count CV from {low:.3g} to {high:.3g}"
        )
    return float(rho)


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
    """Encode a visit day (finite; negative before the first dose) as the two 32-bit halves of its float64 bits."""
    if isinstance(day, bool) or not isinstance(day, numbers.Real) or not math.isfinite(day):
        raise InvalidValueError(f"visit day = {day!r}; use a finite number of days")
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
            a string, or a visit day that is not finite.
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


# ---------------------------------------------------------------------------------------------- a cohort's visits
def redraw_generator(seed: int) -> np.random.Generator:
    """Return the generator of a cohort's re-drawn analyses (:func:`visit_analyses`), from the seed only.

    Args:
        seed: The study's seed, a whole number >= 0.

    Returns:
        A fresh PCG64 generator, independent of every :func:`visit_generator`.

    Raises:
        InvalidValueError: A bad seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InvalidValueError(f"seed = {seed!r}; use a whole number >= 0")
    entropy = [_STREAM_TAG, _REDRAW_TAG, *_words(int(seed), what="seed")]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


@dataclass(frozen=True)
class VisitAnalyses:
    """The simulated semen analyses of a cohort: men x visits, and ``R`` re-draws of each.

    Rows of men whose concentrations are missing (NaN: the simulation failed) hold category -1, counts 0 and NaN
    concentrations.

    Attributes:
        visit_days: The visit days, one per column.
        category_code: Category of each analysis (:data:`ra_model.model.semen.CATEGORIES` index), shape (men,
            visits), int8.
        motile_seen: Motile sperm seen in each analysis, (men, visits).
        fresh_count: Sperm seen in the fresh count, (men, visits).
        pellet_count: Sperm seen in the searched pellet, NaN where it was not searched, (men, visits).
        measured_concentration_M_per_mL: Measured concentration (fresh count over examined volume), (men, visits).
        redraw_category_code: The re-draws' categories, (R, men, visits), int8.
        redraw_motile_seen: Motile sperm seen in each re-draw, (R, men, visits), int32: the count, or 1 if any
            were seen and 0 if none (without ``redraw_counts``).
    """

    visit_days: tuple[float, ...]
    category_code: npt.NDArray[np.int8]
    motile_seen: npt.NDArray[np.int64]
    fresh_count: npt.NDArray[np.int64]
    pellet_count: npt.NDArray[np.float64]
    measured_concentration_M_per_mL: npt.NDArray[np.float64]
    redraw_category_code: npt.NDArray[np.int8]
    redraw_motile_seen: npt.NDArray[np.int32]

    @property
    def redraws(self) -> int:
        """Number of re-draws ``R``."""
        return int(self.redraw_category_code.shape[0])


def visit_analyses(
    concentrations: npt.ArrayLike,
    visit_days: Sequence[float],
    *,
    seed: int,
    man_ids: Sequence[int | str],
    settings: Sequence[MeasurementSettings] | MeasurementSettings,
    redraws: int = 0,
    main: bool = True,
    redraw_counts: bool = False,
) -> VisitAnalyses:
    """Simulate every man's analysis at every visit, and ``redraws`` more of each, for a cohort's endpoints.

    The analysis of a man at a visit is the one :func:`analyses` gives (generator :func:`visit_generator` of seed,
    man id and day), so it does not depend on the other men or visits. The re-draws are a statistic of the cohort,
    not of one man: they come from one generator of the seed (:func:`redraw_generator`) that draws every man's
    ``redraws`` x visits analyses at once (vectorised; men with the same settings together, in row order), so
    they are reproducible for the same men, concentrations and seed. Re-draw ``r`` is one more laboratory's
    reading of the same simulated men at the same visits.

    Args:
        concentrations: True concentrations, million/mL, shape (men, visits); a row of NaN is a man who failed.
        visit_days: The visit days, one per column (finite; before day 0 for a screening analysis).
        seed: The study's seed.
        man_ids: One unique id per row.
        settings: The measurement parameters, one for all men or one per man.
        redraws: Re-draws per analysis, ``R`` >= 0.
        main: Draw the analyses themselves; False leaves them empty (category -1) and draws only the re-draws.
        redraw_counts: Re-draw the motile counts (:func:`draw_analyses`; needed for a response threshold); by default
            only whether motile sperm are seen (:func:`draw_presence`, exact for it and several times faster).

    Returns:
        The analyses.

    Raises:
        InvalidValueError: A shape that does not match the men and visits, repeated man ids, settings not one per
            man, a negative or infinite concentration, a partly missing row, or a bad ``redraws``.
    """
    days = [float(d) for d in visit_days]
    for day in days:
        _day_words(day)
    ids = list(man_ids)
    if len(set(ids)) != len(ids):
        raise InvalidValueError("man_ids repeat an id; give each man his own id (his draws come from it)")
    if isinstance(redraws, bool) or not isinstance(redraws, numbers.Integral) or redraws < 0:
        raise InvalidValueError(f"redraws = {redraws!r}; use a whole number >= 0")
    array = np.asarray(concentrations, dtype=float)
    n, v, r = len(ids), len(days), int(redraws)
    if array.shape != (n, v):
        raise InvalidValueError(
            f"concentrations have shape {array.shape}, not (men, visits) = ({n}, {v}); give one row per man id and "
            "one column per visit day"
        )
    per_man = [settings] * n if isinstance(settings, MeasurementSettings) else list(settings)
    if len(per_man) != n:
        raise InvalidValueError(f"{len(per_man)} measurement settings for {n} men; give one, or one per man")
    codes = np.full((n, v), -1, dtype=np.int8)
    motile = np.zeros((n, v), dtype=np.int64)
    fresh = np.zeros((n, v), dtype=np.int64)
    pellet = np.full((n, v), np.nan)
    measured = np.full((n, v), np.nan)
    redraw_codes = np.full((r, n, v), -1, dtype=np.int8)
    redraw_motile = np.zeros((r, n, v), dtype=np.int32)
    groups: dict[MeasurementSettings, list[int]] = {}
    for i, man in enumerate(ids):
        row = array[i]
        missing = np.isnan(row)
        if missing.all():
            continue
        if missing.any():
            day = days[int(np.flatnonzero(missing)[0])]
            raise InvalidValueError(f"concentration of man {man!r} on day {day:g} is missing; give every visit")
        row = _concentrations(row, where=f"concentrations of man {man!r}")
        mine = per_man[i]
        groups.setdefault(mine, []).append(i)
        for j, day in enumerate(days if main else ()):
            draws = _draw_one(float(row[j]), visit_generator(seed, man, day), mine)
            codes[i, j] = draws["category_code"]
            motile[i, j] = draws["motile_seen"]
            fresh[i, j] = draws["fresh_count"]
            pellet[i, j] = draws["pellet_count"]
            measured[i, j] = draws["measured_concentration_M_per_mL"]
    if r and groups:
        rng = redraw_generator(seed)
        for mine, rows in groups.items():
            block = np.broadcast_to(array[rows], (r, len(rows), v))
            if redraw_counts:
                again = draw_analyses(block, rng=rng, settings=mine)
                redraw_codes[:, rows, :] = again["category_code"]
                redraw_motile[:, rows, :] = again["motile_seen"]
            else:
                redraw_codes[:, rows, :], redraw_motile[:, rows, :] = draw_presence(block, rng=rng, settings=mine)
    log.debug("simulated %d semen analyses of %d men, %d re-draws each (seed %d)", n * v, n, r, seed)
    return VisitAnalyses(
        visit_days=tuple(days),
        category_code=codes,
        motile_seen=motile,
        fresh_count=fresh,
        pellet_count=pellet,
        measured_concentration_M_per_mL=measured,
        redraw_category_code=redraw_codes,
        redraw_motile_seen=redraw_motile,
    )


def _draw_ejaculates(
    c: npt.NDArray[np.float64], rng: np.random.Generator, settings: MeasurementSettings
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Draw each ejaculate's concentration, volume and fresh count; the pellet search is the caller's.

    Concentration and volume are correlated log-normals of mean 1 times the expected values; the fresh count is
    Poisson in the examined volume.
    """
    shape = c.shape
    sigma_c = _log_sd(settings.cv_within_concentration)
    sigma_v = _log_sd(settings.cv_within_volume)
    rho = volume_correlation(settings)
    z = rng.standard_normal(size=(2, *shape))
    c_e = c * np.exp(sigma_c * z[0] - 0.5 * sigma_c * sigma_c)
    volume = settings.ejaculate_volume_mL * np.exp(
        sigma_v * (rho * z[0] + math.sqrt(1.0 - rho * rho) * z[1]) - 0.5 * sigma_v * sigma_v
    )
    fresh = rng.poisson(c_e * settings.examined_volume_fresh_uL * SPERM_PER_M_PER_ML_UL, size=shape)
    return c_e, volume, fresh
