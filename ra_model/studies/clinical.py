"""Clinical readouts: simulated semen analyses at trial visits, the trial's responder rule, cohort summaries.

A simulation is reduced to semen analyses at the visit days (:func:`semen_analyses`, a picklable
metric for :func:`ra_model.studies.sweep.run_sweep`). The responder rule is applied afterwards to those
visit values (:func:`classify`), so one set of simulations can be read with different treatment
windows. Each visit's sperm concentration falls in a semen category (azoospermia, cryptozoospermia,
oligozoospermia, normal: :mod:`ra_model.model.semen`); the trial enrols men with no sperm in a fresh
count (azoospermic or cryptozoospermic) and counts a response when motile sperm are present and the
category is better than at baseline. Cohort summaries give response rates with binomial confidence
intervals, cumulative time-to-response curves and the distribution of peak concentrations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from ra_model.errors import InvalidValueError
from ra_model.model import columns as C
from ra_model.model import semen

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
    days = visit_days_in(results)
    if 0.0 not in days:
        raise InvalidValueError("results have no baseline visit (day 0); add 0 to the visit days")
    follow = [d for d in days if d > 0 and (window_d is None or window_d[0] <= d <= window_d[1])]
    if not follow:
        raise InvalidValueError(f"no visits after baseline inside the window {window_d}; add visit days")
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
