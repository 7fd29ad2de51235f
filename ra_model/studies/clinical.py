"""Clinical readouts: semen analyses at trial visits, the trial's responder rule, cohort summaries.

A simulation is reduced to the model's sperm concentrations at the visit days (:func:`semen_analyses`, a
picklable metric for :func:`ra_model.studies.sweep.run_sweep`). The rules are applied afterwards, so one set of
simulations can be read with different treatment windows, in one of two ways:

- **on simulated semen analyses** (:func:`measure`, :func:`classify_measured`; what cohorts publish): each visit
  becomes one laboratory analysis of one ejaculate (:mod:`ra_model.studies.semen_analysis`: between-ejaculate
  variation, Poisson counting in the fresh drop and the pellet, motility), seeded by (seed, man, visit). As a
  clinic does (brief 6), the baseline is confirmed on two analyses: a screening analysis
  :data:`SCREENING_DAY_D` (two weeks before the first dose) and the baseline analysis on day 0. A man is
  enrolled when neither shows sperm in a fresh count; his baseline category is the better of the two
  (cryptozoospermic if either found sperm in the pellet). A visit is positive when motile sperm are seen and
  the category is better than at baseline; a responder has ``consecutive`` positive analyses in a row.
  :func:`endpoints` applies the same rules to arrays of re-drawn analyses (vectorised), so a cohort can show
  how far its rates move with the measurement alone.
- **on the model's expected concentrations** (:func:`classify`; used by grids, single runs and the population
  calibration): each visit's concentration is put in a semen category at the model's derived detection
  limits (:mod:`ra_model.model.semen`, the concentrations at which one sperm is expected in the examined
  volume), with one baseline analysis.

Cohort summaries give response rates with binomial confidence intervals, cumulative time-to-response curves
and the distribution of peak concentrations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from ra_model.errors import InvalidValueError
from ra_model.model import columns as C
from ra_model.model import semen
from ra_model.studies import semen_analysis

#: Metric name under which :func:`semen_analyses` is registered in a sweep.
METRIC = "semen"
#: Result column prefixes (``semen.motile_d30`` = motile sperm, million/mL, at the day-30 visit).
MOTILE_PREFIX = f"{METRIC}.motile_d"
CONCENTRATION_PREFIX = f"{METRIC}.conc_d"
#: Peak ejaculate sperm concentration over the whole run (continuous, not only at visits), million/mL.
PEAK_CONTINUOUS = f"{METRIC}.peak_concentration_M_per_mL"
#: Motile detection limit of the model for this run, million/mL.
DETECTION_LIMIT = f"{METRIC}.detection_limit_M_per_mL"
#: Semen category cut-offs of the model for this run, million/mL, lowest first (pellet, fresh count, WHO
#: limit): ``semen.pellet_detection_limit_M_per_mL`` and so on (:data:`ra_model.model.semen.LIMIT_ATTRS`).
CATEGORY_LIMITS: tuple[str, ...] = tuple(f"{METRIC}.{semen.LIMIT_ATTRS[p]}" for p in semen.LIMIT_PARAMETERS)

#: Columns added by :func:`classify`.
BASELINE_CATEGORY = "baseline_semen_category"  #: semen category at the baseline visit (day 0); None if failed
ELIGIBLE = "eligible"  #: screened in: azoospermic or cryptozoospermic at baseline (everyone without ``screen``)
#: motile sperm at or above the threshold, in a better semen category than at baseline, on `consecutive`
#: consecutive visits
RESPONDER = "responder"
TIME_TO_RESPONSE_D = "time_to_response_d"  #: day of the first visit of the first qualifying run (NaN if none)
PEAK_AT_VISITS = "peak_concentration_at_visits_M_per_mL"  #: highest concentration seen at a visit in the window
AZOOSPERMIC_AT_END = "azoospermic_at_last_visit"  #: no sperm at or above the threshold at the last visit
#: The label of a cryptozoospermic baseline in ``baseline_semen_category``.
CRYPTOZOOSPERMIC = semen.CATEGORIES[semen.CRYPTOZOOSPERMIA]

#: Day of the screening analysis that, with the day-0 baseline analysis, confirms the baseline on two analyses
#: (brief 6: clinics confirm azoospermia on two analyses). Two weeks before the first dose (assumed; clinics
#: repeat the analysis after a few weeks). The man is untreated and at his steady state then, so his true
#: concentration is day 0's; only the measurement differs.
SCREENING_DAY_D = -14.0
#: Re-draws of every analysis for the spread of a cohort's rates over measurement draws (the same simulated
#: men; 200 put the 2.5th and 97.5th percentiles about 5 draws from each end).
DEFAULT_REDRAWS = 200
#: Prefix of the simulated analyses' columns (:func:`measure`): ``semen.analysis.category_d30`` is the category
#: of the day-30 analysis, and so on. Day keys as :func:`visit_key` (``d-14`` for the screening analysis).
ANALYSIS_PREFIX = f"{METRIC}.analysis."
#: Semen category of each simulated analysis (text; None for a man who failed to simulate).
ANALYSIS_CATEGORY_PREFIX = f"{ANALYSIS_PREFIX}category_d"
#: Motile sperm seen in each simulated analysis (in the fresh count, or in the pellet when it was searched).
ANALYSIS_MOTILE_PREFIX = f"{ANALYSIS_PREFIX}motile_seen_d"
#: Measured concentration of each simulated analysis, million/mL (the fresh count over the examined volume).
ANALYSIS_CONCENTRATION_PREFIX = f"{ANALYSIS_PREFIX}conc_d"
#: Sperm seen in the fresh count of each simulated analysis.
ANALYSIS_FRESH_PREFIX = f"{ANALYSIS_PREFIX}fresh_count_d"
#: Sperm seen in the searched pellet of each simulated analysis (NaN where the pellet was not searched).
ANALYSIS_PELLET_PREFIX = f"{ANALYSIS_PREFIX}pellet_count_d"
#: Column naming a man in a results table (his analyses are seeded by it).
MAN_ID = "sample_id"


def visit_key(day: float) -> str:
    """Return the key suffix for a visit day (``30`` -> ``"30"``, ``30.5`` -> ``"30.5"``)."""
    return f"{day:g}"


def semen_analyses(table: pd.DataFrame, *, visit_days: Sequence[float]) -> dict[str, float]:
    """Read a semen analysis at each visit day of one simulation.

    Args:
        table: A ``simulate()`` table (its ``attrs`` must hold the motile detection limit).
        visit_days: Days of the analyses; must lie inside the simulated time.

    Returns:
        ``motile_d<day>`` and ``conc_d<day>`` (million/mL) per visit, the continuous peak
        concentration, the motile detection limit and the semen category limits (``pellet_detection_limit_M_per_mL``,
        ``fresh_detection_limit_M_per_mL``, ``oligozoospermia_limit_M_per_mL``; NaN if the table's
        ``attrs`` lack them).

    Raises:
        InvalidValueError: A visit outside the simulated time.
    """
    t = table[C.TIME_D].to_numpy(dtype=float)
    motile = table[C.MOTILE_CONCENTRATION].to_numpy(dtype=float)
    conc = table[C.EJACULATE_CONCENTRATION].to_numpy(dtype=float)
    out: dict[str, float] = {}
    for day in visit_days:
        if not t[0] - 1e-9 <= day <= t[-1] + 1e-9:
            raise InvalidValueError(
                f"visit on day {day:g} is outside the simulated {t[0]:g}-{t[-1]:g} d; lengthen t_end_d"
            )
        out[f"motile_d{visit_key(day)}"] = float(np.interp(day, t, motile))
        out[f"conc_d{visit_key(day)}"] = float(np.interp(day, t, conc))
    out["peak_concentration_M_per_mL"] = float(conc.max())
    out["detection_limit_M_per_mL"] = float(table.attrs.get("motile_detection_limit_M_per_mL", math.nan))
    for key in semen.LIMIT_ATTRS.values():
        out[key] = float(table.attrs.get(key, math.nan))
    return out


#: Every readout of :func:`semen_analyses` is a concentration in million per mL (pint-parseable, as in sweeps).
semen_analyses.units = "1e6 / mL"  # type: ignore[attr-defined]


def first_response(present: Sequence[bool], *, consecutive: int = 2) -> int | None:
    """Return the index of the first visit that starts ``consecutive`` positive visits in a row.

    Args:
        present: Motile sperm seen (True) or not, visit by visit.
        consecutive: Positive visits needed in a row (the trial's "reliable" sperm: 2).

    Returns:
        The index of the first visit of the first qualifying run, or None.

    Examples:
        >>> first_response([False, True, False, True, True])
        3
        >>> first_response([True, False, True], consecutive=2) is None
        True
    """
    if isinstance(consecutive, bool) or not isinstance(consecutive, int) or consecutive < 1:
        raise InvalidValueError(f"consecutive = {consecutive!r}; use a whole number >= 1")
    run = 0
    for i, value in enumerate(present):
        run = run + 1 if value else 0
        if run == consecutive:
            return i - consecutive + 1
    return None


@dataclass(frozen=True, kw_only=True)
class ResponseRule:
    """How a trial reads its semen analyses.

    Attributes:
        consecutive: Positive visits in a row that make a responder.
        threshold_M_per_mL: Motile sperm concentration that counts as present; None = the model's
            detection limit (a centrifuged pellet).
        screen: Enrol only men with no sperm in a fresh count at baseline: azoospermia (none in the
            centrifuged pellet either, NOA) or cryptozoospermia (sperm only in the pellet), as Jessup 2025's
            26 NOA and 4 cryptozoospermic men. Without it every man who simulated is enrolled.
    """

    consecutive: int = 2
    threshold_M_per_mL: float | None = None
    screen: bool = True

    def __post_init__(self) -> None:
        """Check the numbers."""
        if isinstance(self.consecutive, bool) or not isinstance(self.consecutive, int) or self.consecutive < 1:
            raise InvalidValueError(f"response.consecutive = {self.consecutive!r}; use a whole number >= 1")
        if self.threshold_M_per_mL is not None and not (
            isinstance(self.threshold_M_per_mL, int | float) and self.threshold_M_per_mL > 0
        ):
            raise InvalidValueError(
                f"response.threshold_M_per_mL = {self.threshold_M_per_mL!r}; use a concentration > 0 (million/mL)"
            )


def follow_up_days(results: pd.DataFrame, window_d: tuple[float, float] | None) -> list[float]:
    """Return the visit days after baseline inside the window, checking that a baseline (day 0) exists.

    Raises:
        InvalidValueError: No baseline visit, or no follow-up visit in the window.
    """
    days = visit_days_in(results)
    if 0.0 not in days:
        raise InvalidValueError("results have no baseline visit (day 0); add 0 to the visit days")
    follow = [d for d in days if d > 0 and (window_d is None or window_d[0] <= d <= window_d[1])]
    if not follow:
        raise InvalidValueError(f"no visits after baseline inside the window {window_d}; add visit days")
    return follow


def visit_days_in(results: pd.DataFrame) -> list[float]:
    """Return the visit days recorded in a results table, sorted."""
    return sorted(float(c[len(MOTILE_PREFIX) :]) for c in results.columns if c.startswith(MOTILE_PREFIX))


def visit_categories(results: pd.DataFrame, days: Sequence[float], *, ok: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Return each man's semen category code at each visit, from his concentration and the recorded limits.

    Args:
        results: Rows with ``semen.conc_d<day>`` columns and the limits in :data:`CATEGORY_LIMITS` (from
            :func:`semen_analyses`).
        days: Visit days, in the order of the returned columns.
        ok: Which rows simulated (the others get -1).

    Returns:
        Codes of :func:`ra_model.model.semen.semen_category_codes` (0 azoospermia ... 3 normal), one row per
        man, one column per visit; -1 for rows that failed (or have no concentration).

    Raises:
        InvalidValueError: The results lack the limits (results of an older version of the package), or a
            simulated row has none.
    """
    missing = [c for c in CATEGORY_LIMITS if c not in results.columns]
    if missing:
        raise InvalidValueError(
            f"results have no {missing[0]!r} column, needed for the semen category; they predate it: run the "
            "simulations again (ra-model run ... --fresh sets old results aside)"
        )
    good = np.asarray(ok, dtype=bool)
    conc = np.column_stack([results[f"{CONCENTRATION_PREFIX}{visit_key(d)}"].to_numpy(dtype=float) for d in days])
    limits = {
        k: results[c].to_numpy(dtype=float)[good].reshape(-1, 1)
        for k, c in zip(semen.LIMIT_KEYWORDS, CATEGORY_LIMITS, strict=True)
    }
    for column, values in zip(CATEGORY_LIMITS, limits.values(), strict=True):
        if np.isnan(values).any():
            raise InvalidValueError(
                f"results column {column!r} is empty for a simulated man; the results mix runs of different "
                "versions: run the simulations again (ra-model run ... --fresh sets old results aside)"
            )
    codes = np.full(conc.shape, -1, dtype=np.int64)
    codes[good] = semen.semen_category_codes(conc[good], **limits)
    return codes


def classify(
    results: pd.DataFrame,
    rule: ResponseRule,
    *,
    window_d: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Apply the screening and responder rules to each man's visits.

    Every visit's sperm concentration is put in a semen category (:func:`visit_categories`). With
    ``rule.screen`` a man is eligible when his baseline (day-0) category is azoospermia or
    cryptozoospermia, i.e. no sperm in a fresh count. A visit counts as positive when motile sperm are at
    or above the threshold and the category is better than at baseline: for an azoospermic man any
    sperm in the pellet, for a cryptozoospermic man sperm in a fresh count (oligozoospermia or better).
    A responder has ``rule.consecutive`` positive visits in a row.

    Args:
        results: Rows with ``semen.motile_d<day>`` and ``semen.conc_d<day>`` columns, the motile detection
            limit and the semen category limits (from a sweep with :func:`semen_analyses`).
        rule: The trial's rule.
        window_d: Only visits with first <= day <= last count for response (baseline is day 0 always).

    Returns:
        A copy with ``baseline_semen_category``, ``eligible``, ``responder``, ``time_to_response_d``,
        ``peak_concentration_at_visits_M_per_mL`` and ``azoospermic_at_last_visit`` added
        (None/NaN/False for failed rows).

    Raises:
        InvalidValueError: No baseline visit, no follow-up visit in the window, or results without the
            semen category limits.
    """
    follow = follow_up_days(results, window_d)
    out = results.copy()
    limit = out[DETECTION_LIMIT].astype(float) if rule.threshold_M_per_mL is None else rule.threshold_M_per_mL
    ok = (out["status"] == "ok" if "status" in out else pd.Series(True, index=out.index)).to_numpy(dtype=bool)
    categories = visit_categories(out, [0.0, *follow], ok=ok)
    baseline, later = categories[:, 0], categories[:, 1:]
    no_fresh_sperm = (baseline >= semen.AZOOSPERMIA) & (baseline <= semen.CRYPTOZOOSPERMIA)
    eligible = ok & no_fresh_sperm if rule.screen else ok
    motile = np.column_stack([out[f"{MOTILE_PREFIX}{visit_key(d)}"].astype(float) for d in follow])
    conc = np.column_stack([out[f"{CONCENTRATION_PREFIX}{visit_key(d)}"].astype(float) for d in follow])
    lim = np.broadcast_to(np.asarray(limit, dtype=float).reshape(-1, 1) if np.ndim(limit) else limit, motile.shape)
    present = motile >= lim
    positive = present & (later > baseline.reshape(-1, 1))
    responder = []
    when = []
    for row in positive:
        i = first_response(list(row), consecutive=rule.consecutive)
        responder.append(i is not None)
        when.append(follow[i] if i is not None else math.nan)
    out[BASELINE_CATEGORY] = semen.category_labels(baseline)
    out[ELIGIBLE] = eligible
    out[RESPONDER] = np.asarray(responder, dtype=bool) & eligible
    out[TIME_TO_RESPONSE_D] = np.where(out[RESPONDER], when, np.nan)
    peak = np.full(len(out), np.nan)
    peak[ok] = np.nanmax(conc[ok], axis=1)  # failed rows have no visits (an all-NaN row would warn)
    out[PEAK_AT_VISITS] = peak
    out[AZOOSPERMIC_AT_END] = ok & ~present[:, -1]
    return out


def proportion_ci(k: int, n: int, *, level: float = 0.95, method: str = "wilson") -> tuple[float, float]:
    """Return a two-sided confidence interval for a binomial proportion k/n.

    Args:
        k: Successes.
        n: Trials (> 0).
        level: Confidence level.
        method: ``"wilson"`` (score interval) or ``"exact"`` (Clopper-Pearson).

    Returns:
        (low, high).
    """
    if n <= 0 or not 0 <= k <= n:
        raise InvalidValueError(f"proportion {k}/{n}: need 0 <= k <= n and n > 0")
    if method not in ("wilson", "exact"):
        raise InvalidValueError(f"CI method {method!r}; use 'wilson' or 'exact' (Clopper-Pearson)")
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method=method)
    return float(ci.low), float(ci.high)


def response_summary(
    classified: pd.DataFrame,
    *,
    by: str | None = None,
    level: float = 0.95,
    method: str = "wilson",
    label: str = "overall",
) -> pd.DataFrame:
    """Response rate with a confidence interval, overall and (optionally) per group.

    Args:
        classified: Output of :func:`classify`.
        by: Column to group by (e.g. ``meta_histology``); the overall row is always first.
        level: Confidence level.
        method: ``"wilson"`` or ``"exact"``.
        label: Name of the overall group.

    Returns:
        Columns ``group``, ``n`` (eligible men), ``eligible_cryptozoospermic`` (of them, those
        cryptozoospermic at baseline; the others are azoospermic when the rule screens), ``responders``,
        ``rate``, ``ci_low``, ``ci_high``, ``median_time_to_response_d``, ``screened``, ``failed``.
    """
    groups: list[tuple[str, pd.DataFrame]] = [(label, classified)]
    if by is not None:
        groups += [(str(k), g) for k, g in classified.groupby(by, sort=True)]
    rows = []
    for name, group in groups:
        enrolled = group[group[ELIGIBLE]]
        n, k = len(enrolled), int(enrolled[RESPONDER].sum())
        low, high = proportion_ci(k, n, level=level, method=method) if n else (math.nan, math.nan)
        times = enrolled.loc[enrolled[RESPONDER], TIME_TO_RESPONSE_D]
        failed = int((group["status"] != "ok").sum()) if "status" in group else 0
        rows.append(
            {
                "group": name,
                "n": n,
                "eligible_cryptozoospermic": int((enrolled[BASELINE_CATEGORY] == CRYPTOZOOSPERMIC).sum()),
                "responders": k,
                "rate": k / n if n else math.nan,
                "ci_low": low,
                "ci_high": high,
                "median_time_to_response_d": float(times.median()) if len(times) else math.nan,
                "screened": len(group),
                "failed": failed,
            }
        )
    return pd.DataFrame(rows)


def time_to_response_curve(classified: pd.DataFrame, *, by: str | None = None) -> pd.DataFrame:
    """Cumulative share of eligible men who have responded by each visit day.

    Every man is followed to the last visit (no censoring), so the curve is the empirical CDF.

    Returns:
        Columns ``group``, ``day``, ``fraction_responded``.
    """
    days = [d for d in visit_days_in(classified) if d > 0]
    groups: list[tuple[str, pd.DataFrame]] = [("overall", classified)]
    if by is not None:
        groups += [(str(k), g) for k, g in classified.groupby(by, sort=True)]
    rows = []
    for name, group in groups:
        enrolled = group[group[ELIGIBLE]]
        times = enrolled[TIME_TO_RESPONSE_D].to_numpy(dtype=float)
        for day in [0.0, *days]:
            share = float(np.mean(times <= day)) if len(enrolled) else math.nan  # NaN <= day is False
            rows.append({"group": name, "day": day, "fraction_responded": share})
    return pd.DataFrame(rows)


def peak_distribution(
    classified: pd.DataFrame,
    *,
    by: str | None = None,
    quantiles: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 0.9),
) -> pd.DataFrame:
    """Quantiles of the peak sperm concentration at visits among eligible men, million/mL."""
    groups: list[tuple[str, pd.DataFrame]] = [("overall", classified)]
    if by is not None:
        groups += [(str(k), g) for k, g in classified.groupby(by, sort=True)]
    rows: list[Mapping[str, object]] = []
    for name, group in groups:
        values = group.loc[group[ELIGIBLE], PEAK_AT_VISITS].to_numpy(dtype=float)
        for q in quantiles:
            rows.append(
                {
                    "group": name,
                    "quantile": q,
                    "peak_M_per_mL": float(np.quantile(values, q)) if len(values) else math.nan,
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- simulated analyses
def measurement_settings(results: pd.DataFrame) -> list[semen_analysis.MeasurementSettings]:
    """Return each man's measurement parameters: the table's, replaced by his own columns where he has them.

    A results row that carries a measurement parameter as a column (an override or a sampled value) uses it; the
    oligozoospermia limit recorded by the simulation (``semen.oligozoospermia_limit_M_per_mL``) is used where
    present. Identical settings are built once.

    Args:
        results: One row per man (a cohort's sweep table).

    Returns:
        One :class:`~ra_model.studies.semen_analysis.MeasurementSettings` per row.

    Raises:
        InvalidValueError: A man's value outside its domain.
    """
    names = [f.name for f in dataclasses.fields(semen_analysis.MeasurementSettings)]
    oligo = f"{METRIC}.{semen.LIMIT_ATTRS['oligozoospermia_limit']}"
    columns = {name: results[name].to_numpy() for name in names if name in results.columns}
    if "oligozoospermia_limit" not in columns and oligo in results.columns:
        columns["oligozoospermia_limit"] = results[oligo].to_numpy(dtype=float)
    built: dict[tuple[tuple[str, float], ...], semen_analysis.MeasurementSettings] = {}
    out = []
    for i in range(len(results)):
        values = tuple((name, float(array[i])) for name, array in columns.items() if not pd.isna(array[i]))
        if values not in built:
            built[values] = semen_analysis.MeasurementSettings.from_parameters(dict(values))
        out.append(built[values])
    return out


def analysis_days(results: pd.DataFrame, *, window_d: tuple[float, float] | None = None) -> list[float]:
    """Return the days of a man's simulated analyses: the screening day, baseline (day 0), the visits in the window.

    Args:
        results: Rows with ``semen.conc_d<day>`` columns (:func:`semen_analyses`).
        window_d: Only visits with first <= day <= last count for response (baseline is day 0 always).

    Returns:
        ``[SCREENING_DAY_D, 0.0, *follow-up days]``.

    Raises:
        InvalidValueError: No baseline visit, or no follow-up visit in the window.
    """
    follow = follow_up_days(results, window_d)
    return [SCREENING_DAY_D, 0.0, *follow]


def measure(
    results: pd.DataFrame,
    *,
    seed: int,
    window_d: tuple[float, float] | None = None,
    redraws: int = 0,
    main: bool = True,
    redraw_counts: bool = False,
) -> tuple[pd.DataFrame, semen_analysis.VisitAnalyses]:
    """Simulate every man's semen analyses at the screening day, baseline and each visit in the window.

    Each analysis reads the model's concentration at the visit (the screening analysis reads day 0's: the man is
    untreated and at steady state before the first dose) and is seeded by (seed, man id, day), so a man's
    analyses do not depend on who else is in the cohort.

    Args:
        results: One row per man with a ``sample_id`` and the ``semen.conc_d<day>`` columns; rows whose
            ``status`` is not ``"ok"`` get no analyses.
        seed: The study's seed.
        window_d: Visits counted (as :func:`classify`).
        redraws: Re-draws of every analysis (:func:`ra_model.studies.semen_analysis.visit_analyses`).
        main: Draw the analyses themselves (False: only the re-draws, for a cohort's spread).
        redraw_counts: Re-draw motile counts, not only whether any are seen (for a response threshold).

    Returns:
        A copy of ``results`` with the analyses' columns (``semen.analysis.*``: category, motile sperm seen,
        measured concentration, fresh and pellet counts per day; absent when ``main`` is False), and the
        analyses as arrays (columns in the order of :func:`analysis_days`).

    Raises:
        InvalidValueError: No ``sample_id`` column, no baseline or follow-up visit, or a bad measurement value.
    """
    if MAN_ID not in results.columns:
        raise InvalidValueError(f"results have no {MAN_ID!r} column; the analyses are seeded by each man's id")
    days = analysis_days(results, window_d=window_d)
    ok = _ok(results)
    conc = np.column_stack(
        [results[f"{CONCENTRATION_PREFIX}{visit_key(max(d, 0.0))}"].to_numpy(dtype=float) for d in days]
    )
    conc[~ok] = np.nan
    drawn = semen_analysis.visit_analyses(
        conc,
        days,
        seed=seed,
        man_ids=results[MAN_ID].tolist(),
        settings=measurement_settings(results),
        redraws=redraws,
        main=main,
        redraw_counts=redraw_counts,
    )
    out = results.copy()
    if main:
        columns: dict[str, Any] = {}
        for j, day in enumerate(days):
            key = visit_key(day)
            columns[f"{ANALYSIS_CATEGORY_PREFIX}{key}"] = semen.category_labels(drawn.category_code[:, j])
            columns[f"{ANALYSIS_MOTILE_PREFIX}{key}"] = drawn.motile_seen[:, j]
            columns[f"{ANALYSIS_CONCENTRATION_PREFIX}{key}"] = drawn.measured_concentration_M_per_mL[:, j]
            columns[f"{ANALYSIS_FRESH_PREFIX}{key}"] = drawn.fresh_count[:, j]
            columns[f"{ANALYSIS_PELLET_PREFIX}{key}"] = drawn.pellet_count[:, j]
        out = pd.concat(
            [out.drop(columns=[c for c in columns if c in out.columns]), pd.DataFrame(columns, index=out.index)], axis=1
        )
    return out, drawn


@dataclass(frozen=True)
class Endpoints:
    """The trial's endpoints read from analyses, as arrays (a leading axis for re-draws when there is one).

    Attributes:
        eligible: Enrolled by the rule: no sperm in a fresh count on both baseline analyses (everyone who simulated
            without screening).
        baseline_code: The better category of the two baseline analyses (-1 for a man who failed).
        responder: Eligible, with ``consecutive`` positive analyses in a row.
        first_index: Index (among the follow-up analyses) of the first analysis of the first qualifying run; -1
            for none.
        last_positive: Motile sperm seen (at the threshold) in the last follow-up analysis.
    """

    eligible: npt.NDArray[np.bool_]
    baseline_code: npt.NDArray[np.int8]
    responder: npt.NDArray[np.bool_]
    first_index: npt.NDArray[np.int64]
    last_positive: npt.NDArray[np.bool_]


def endpoints(
    codes: npt.ArrayLike,
    motile_seen: npt.ArrayLike,
    rule: ResponseRule,
    *,
    sperm_per_concentration: npt.ArrayLike | None = None,
) -> Endpoints:
    """Apply the screening and responder rules to analyses (vectorised; any leading axes, e.g. re-draws).

    Columns: the screening analysis, the baseline analysis, then the follow-up analyses (:func:`analysis_days`).
    A man is eligible (``rule.screen``) when neither baseline analysis shows sperm in a fresh count; his baseline
    category is the better of the two. A follow-up analysis is positive when motile sperm are seen and its
    category is better than the baseline (an azoospermic man: any sperm; a cryptozoospermic man: sperm in a fresh
    count). With ``rule.threshold_M_per_mL`` the measured motile concentration (motile sperm in the fresh count
    over the examined volume) must also reach it.

    Args:
        codes: Category codes, shape (..., men, analyses); -1 for a man who failed.
        motile_seen: Motile sperm seen (counts or booleans), the same shape.
        rule: The trial's rule.
        sperm_per_concentration: Motile sperm seen per million/mL of measured motile concentration (the examined fresh
            volume in sperm per million/mL), one per man, broadcasting against (men, 1); needed with a threshold.

    Returns:
        The endpoints, shape (..., men).

    Raises:
        InvalidValueError: Fewer than three analyses, shapes that differ, or a threshold without
            ``sperm_per_concentration``.
    """
    code = np.asarray(codes)
    motile = np.asarray(motile_seen)
    if code.shape != motile.shape or code.ndim < 2 or code.shape[-1] < 3:
        raise InvalidValueError(
            f"analyses of shapes {code.shape} and {motile.shape}; give category codes and motile sperm of one shape "
            "(..., men, analyses) with the screening, baseline and at least one follow-up analysis"
        )
    screening, baseline_visit, later = code[..., 0], code[..., 1], code[..., 2:]
    ok = (screening >= 0) & (baseline_visit >= 0)
    no_fresh = (screening <= semen.CRYPTOZOOSPERMIA) & (baseline_visit <= semen.CRYPTOZOOSPERMIA)
    eligible = ok & no_fresh if rule.screen else ok
    baseline = np.where(ok, np.maximum(screening, baseline_visit), -1).astype(np.int8)
    present = motile[..., 2:] > 0
    if rule.threshold_M_per_mL is not None:
        if sperm_per_concentration is None:
            raise InvalidValueError("a response threshold needs the examined volume (sperm_per_concentration)")
        per = np.asarray(sperm_per_concentration, dtype=float).reshape(-1, 1)
        measured = np.where(later >= semen.OLIGOZOOSPERMIA, motile[..., 2:] / per, 0.0)
        present &= measured >= rule.threshold_M_per_mL
    positive = present & (later > baseline[..., None])
    k = rule.consecutive
    n_follow = positive.shape[-1]
    if k > n_follow:
        runs = np.zeros((*positive.shape[:-1], 0), dtype=bool)
    else:
        counts = np.cumsum(positive, axis=-1, dtype=np.int32)
        padded = np.concatenate([np.zeros((*counts.shape[:-1], 1), dtype=np.int32), counts], axis=-1)
        runs = (padded[..., k:] - padded[..., : n_follow - k + 1]) == k
    hit = runs.any(axis=-1) if runs.shape[-1] else np.zeros(positive.shape[:-1], dtype=bool)
    first = np.where(hit, runs.argmax(axis=-1) if runs.shape[-1] else 0, -1).astype(np.int64)
    return Endpoints(
        eligible=eligible,
        baseline_code=baseline,
        responder=hit & eligible,
        first_index=first,
        last_positive=present[..., -1] & ok,
    )


def classify_measured(
    results: pd.DataFrame,
    analyses: semen_analysis.VisitAnalyses,
    rule: ResponseRule,
) -> pd.DataFrame:
    """Apply the screening and responder rules to each man's simulated analyses (:func:`measure`).

    Args:
        results: What :func:`measure` returned (its table), one row per man.
        analyses: Its analyses, drawn with the same window.
        rule: The trial's rule.

    Returns:
        A copy with ``baseline_semen_category`` (the better of the two baseline analyses), ``eligible``,
        ``responder``, ``time_to_response_d`` (day of the first analysis of the first qualifying run),
        ``peak_concentration_at_visits_M_per_mL`` (the model's highest concentration at a follow-up visit) and
        ``azoospermic_at_last_visit`` (no motile sperm seen in the last analysis), None/NaN/False for failed rows.

    Raises:
        InvalidValueError: Analyses that do not match the table.
    """
    if analyses.category_code.shape[0] != len(results) or (analyses.category_code < -1).any():
        raise InvalidValueError("the analyses do not match the results table; draw them with measure(results)")
    follow = list(analyses.visit_days[2:])
    ok = _ok(results)
    found = endpoints(
        analyses.category_code,
        analyses.motile_seen,
        rule,
        sperm_per_concentration=motile_per_concentration(results),
    )
    out = results.copy()
    out[BASELINE_CATEGORY] = semen.category_labels(found.baseline_code)
    out[ELIGIBLE] = found.eligible
    out[RESPONDER] = found.responder
    days = np.asarray(follow, dtype=float)
    out[TIME_TO_RESPONSE_D] = np.where(found.responder, days[np.maximum(found.first_index, 0)], np.nan)
    conc = np.column_stack([out[f"{CONCENTRATION_PREFIX}{visit_key(d)}"].to_numpy(dtype=float) for d in follow])
    peak = np.full(len(out), np.nan)
    peak[ok] = np.nanmax(conc[ok], axis=1)
    out[PEAK_AT_VISITS] = peak
    out[AZOOSPERMIC_AT_END] = ok & ~found.last_positive
    return out


def _ok(results: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Return which rows simulated (``status == "ok"``; all of them without a status column)."""
    if "status" not in results:
        return np.ones(len(results), dtype=bool)
    return (results["status"] == "ok").to_numpy(dtype=bool)


def motile_per_concentration(results: pd.DataFrame) -> npt.NDArray[np.float64]:
    """Return each man's sperm counted per million/mL in the fresh count (his examined volume, for a threshold)."""
    settings = measurement_settings(results) if len(results) else []
    return np.array([s.examined_volume_fresh_uL * semen.SPERM_PER_M_PER_ML_UL for s in settings], dtype=float)
