"""Kind ``cohort``: virtual men from a histology mix, screened, enrolled, treated and read like the trial.

Men are drawn by :mod:`ra_model.studies.population`, simulated on the sweep engine, and read like the trial
reads its men: on simulated semen analyses (:func:`ra_model.studies.clinical.measure`, seeded by the cohort's
seed, the man and the visit), with the baseline confirmed on two analyses and a responder needing motile sperm on
two consecutive ones. Each response rate carries two intervals: the binomial (Wilson) interval of the count, and
the spread over measurement draws, the same simulated men read by :data:`~ra_model.studies.clinical.DEFAULT_REDRAWS`
re-drawn sets of analyses, each enrolling and classifying its own men (:func:`measurement_spread`). The rates are
set beside the published ones. Each man's sperm-retrieval chances (:mod:`ra_model.studies.retrieval`, read inside
the sweep) are summarised by histology for responders and eligible non-responders.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ra_model.errors import InvalidValueError
from ra_model.studies import clinical, retrieval
from ra_model.studies.experiments.common import (
    ExperimentResult,
    apply_overrides,
    failures,
    inputs_record,
    regimen_for_weight,
    require_some_success,
    sweep_visits,
)
from ra_model.studies.experiments.spec import MAX_RUNS, Experiment, Published, Reader
from ra_model.studies.population import BODY_WEIGHT_KG, HISTOLOGY, PATIENT_INDEX, allocate, check_mix, draw_patients

if TYPE_CHECKING:
    import distributed

log = logging.getLogger(__name__)

_PUBLISHED_KEYS = frozenset({"group", "responders", "n", "source", "cohort"})
#: Name of a cohort result's retrieval table (written as ``retrieval.csv``).
RETRIEVAL_TABLE = "retrieval"
#: Most men a published count may have (its interval is computed in 64-bit integers; no trial is bigger).
MAX_PUBLISHED_N = 10**9
#: A histology's first screening round draws this many candidates per place (plus 2), before the
#: eligible share is known; later rounds draw more, up to ``max_screen_factor`` per place.
FIRST_DRAW_FACTOR = 1.25

# Summary columns of the spread over measurement draws (:func:`measurement_spread`): the same simulated men,
# their analyses re-drawn; each draw enrols its own men (the first eligible ones of each histology, as the
# cohort does) from the candidates screened for the cohort, and reads its own responders.
#: Number of re-drawn sets of analyses the spread is taken over.
DRAWS = "measurement_draws"
#: 2.5th percentile of the response rate over the measurement draws.
RATE_DRAWS_LOW = "rate_draws_p2_5"
#: Median response rate over the measurement draws.
RATE_DRAWS_MEDIAN = "rate_draws_p50"
#: 97.5th percentile of the response rate over the measurement draws.
RATE_DRAWS_HIGH = "rate_draws_p97_5"
#: Median number of enrolled men over the measurement draws (below ``n`` when some draws found too few
#: eligible men among the screened candidates).
N_DRAWS_MEDIAN = "n_draws_p50"
#: The spread columns, in the summary's order.
SPREAD_COLUMNS: tuple[str, ...] = (DRAWS, RATE_DRAWS_LOW, RATE_DRAWS_MEDIAN, RATE_DRAWS_HIGH, N_DRAWS_MEDIAN)


def first_draw(need: Mapping[str, int]) -> dict[str, int]:
    """Return the candidates of each histology's first screening round, for ``need`` places."""
    return {h: (math.ceil(n * FIRST_DRAW_FACTOR) + 2 if n else 0) for h, n in need.items()}


def _histology_mix(r: Reader, data: Mapping[str, Any]) -> dict[str, Any]:
    pop, out = r.population(data, "cohort")
    if ("histology_mix" in pop) == ("phenotype" in pop):
        raise r.fail(
            "population",
            "give exactly one of histology_mix or phenotype",
            "write histology_mix = {maturation_arrest = 1.0}",
        )
    if "phenotype" in pop:
        mix = {r.phenotype("population.phenotype", pop["phenotype"]): 1.0}
    else:
        shares = r.table(
            "population.histology_mix", pop["histology_mix"], "write histology_mix = {maturation_arrest = 0.4, ...}"
        )
        for name, share in shares.items():
            r.phenotype(f"population.histology_mix.{name}", name)
            r.number(f"population.histology_mix.{name}", share, allow_zero=True)
        try:
            mix = check_mix(shares, where="histology mix")
        except InvalidValueError as exc:
            raise r.fail("population.histology_mix", str(exc), "fix the shares") from exc
    out["histology_mix"] = MappingProxyType(mix)
    return out


def _published(r: Reader, data: Mapping[str, Any], cohorts: Mapping[str, int]) -> tuple[Published, ...]:
    items = r.items("published", data.get("published", []), "write [[published]] blocks with group, responders, n")
    out = []
    for i, item in enumerate(items):
        where = f"published[{i}]"
        item = r.table(where, item, "write [[published]] blocks with group, responders, n and source")
        r.unknown(f"{where}.", item, _PUBLISHED_KEYS)
        n = r.integer(f"{where}.n", item.get("n"), example=30)
        if n > MAX_PUBLISHED_N:
            raise r.fail(f"{where}.n", f"{n:,} men is more than any study enrolled", "give the study's count of men")
        k = r.integer(f"{where}.responders", item.get("responders"), minimum=0, example=11)
        if k > n:
            raise r.fail(f"{where}.responders", f"{k} responders out of {n}", "responders cannot exceed n")
        cohort = item.get("cohort")
        if cohort is not None and r.text(f"{where}.cohort", cohort) not in cohorts:
            raise r.fail(
                f"{where}.cohort",
                f"{cohort!r} names no cohort of [cohorts], so nothing would be compared with it",
                f"use one of {', '.join(map(repr, cohorts))}, or leave cohort out to compare with every cohort",
            )
        out.append(
            Published(
                group=r.text(f"{where}.group", item.get("group", "overall")),
                responders=k,
                n=n,
                source=r.text(f"{where}.source", item.get("source", "")),
                cohort=cohort,
            )
        )
    return tuple(out)


def read_cohort(r: Reader, data: Mapping[str, Any]) -> dict[str, Any]:
    """Read the keys of a ``cohort`` file (the common ones are read by the caller).

    Args:
        r: The file's reader.
        data: The file's table, ``[reduced]`` applied.

    Returns:
        The :class:`~ra_model.studies.experiments.spec.Experiment` fields of the kind.
    """
    t_end = r.number("t_end_d", data.get("t_end_d", 365.0))
    cohorts = r.table("cohorts", data.get("cohorts"), "write [cohorts] with e.g. trial = 30")
    if not cohorts:
        raise r.fail("cohorts", "is empty", "write [cohorts] with e.g. trial = 30")
    sizes = {name: r.integer(f"cohorts.{name}", n) for name, n in cohorts.items()}
    if "regimen" not in data:
        raise r.fail("regimen", "is missing", 'write regimen = "20 mg bid for 180 d"')
    regimen = r.regimen("regimen", data["regimen"], weight=True)
    if "sampling" not in data:
        raise r.fail("sampling", "is missing", "write [sampling] with every_d = 30")
    out = _histology_mix(r, data)
    largest = max(sizes, key=lambda k: sizes[k])
    runs = sum(first_draw(allocate(out["histology_mix"], sizes[largest])).values())
    r.runs(
        f"cohorts.{largest}",
        sizes[largest],
        runs=runs,
        what=f"{sizes[largest]:,} men, each place screening at least {FIRST_DRAW_FACTOR:g} candidates",
        fix="ask for fewer men (1,000 give a rate within about 3%), or split them into files with different seeds",
    )
    published = _published(r, data, sizes)
    for i, p in enumerate(published):
        if p.group not in ("overall", *out["histology_mix"]):
            raise r.fail(
                f"published[{i}].group",
                f"{p.group!r} is neither 'overall' nor a histology of the mix",
                f"use one of {', '.join(map(repr, ('overall', *out['histology_mix'])))}",
            )
    factor = r.number("max_screen_factor", data.get("max_screen_factor", 20.0))
    if factor < 1:
        raise r.fail(
            "max_screen_factor",
            f"{factor:g} screens fewer candidates than there are places",
            "use 1 or more (candidates screened per enrolled man)",
        )
    return out | dict(
        t_end_d=t_end,
        cohorts=MappingProxyType(sizes),
        regimen=str(data["regimen"]).strip() if regimen else None,
        visit_days=r.sampling(data["sampling"], t_end),
        response=r.response(data.get("response", {})),
        published=published,
        seed=r.seed(data),
        max_screen_factor=factor,
    )


def _inputs(exp: Experiment) -> dict[str, Any]:
    """Return the provenance of a cohort run: the common record plus mix, spreads and visits."""
    return inputs_record(
        exp,
        histology_mix=dict(exp.histology_mix),
        variability={k: dataclasses.asdict(v) for k, v in exp.population().variability.items()},
        factors={k: dataclasses.asdict(v) for k, v in exp.population().factors.items()},
        visit_days=list(exp.visit_days),
    )


def _metrics(exp: Experiment) -> dict[str, Any]:
    """Return the per-man metrics a cohort's sweep computes beside the semen analyses: the retrieval readouts."""
    return {retrieval.METRIC: functools.partial(retrieval.retrieval_readouts, visit_days=exp.visit_days)}


def enrol(
    exp: Experiment,
    *,
    work_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    fresh: bool = False,
    client: distributed.Client | str | None = None,
) -> pd.DataFrame:
    """Screen virtual men of each histology until every cohort is filled, treating each candidate.

    Candidates of one histology are drawn in index order; each is read on simulated semen analyses
    (:func:`ra_model.studies.clinical.measure`, seeded by the experiment's seed) and the first eligible ones
    (no sperm in a fresh count on both baseline analyses, if the rule screens) are enrolled. A cohort of n men
    takes, per histology, the first ``allocate(mix, n)`` enrolled men, so smaller cohorts are subsets of larger
    ones.

    Returns:
        One row per candidate: sweep inputs, visit readouts (the model's concentrations, ``semen.*``), the
        simulated analyses (``semen.analysis.*``), retrieval readouts (``retrieval.*``), the responder
        classification read on the analyses and one boolean ``enrolled_<cohort>`` column per cohort.

    Raises:
        ExperimentFailedError: Every candidate failed to simulate (the error holds the failures table).
    """
    population = exp.population()
    n_max = max(exp.cohorts.values())
    need = allocate(exp.histology_mix, n_max)
    drawn = first_draw(need)
    inputs = _inputs(exp)
    results: pd.DataFrame | None = None
    while True:
        frames = [
            draw_patients(population, h, range(m), seed=exp.seed, overrides=exp.overrides)
            for h, m in drawn.items()
            if m
        ]
        samples = apply_overrides(pd.concat(frames, ignore_index=True), exp.overrides)
        samples["regimen"] = [regimen_for_weight(exp.regimen, w) for w in samples[BODY_WEIGHT_KG]]
        samples.attrs["seed"] = exp.seed
        samples.attrs["design"] = f"experiment {exp.id}: histology mix {dict(exp.histology_mix)}"
        raw = sweep_visits(
            samples,
            exp,
            t_end_d=exp.t_end_d,
            work_dir=work_dir,
            workers=workers,
            progress=progress,
            fresh=fresh,
            metrics=_metrics(exp),
            client=client,
        )
        fresh = False  # later screening rounds add men to this round's results
        require_some_success(exp, raw, inputs)
        measured, analyses = clinical.measure(raw, seed=exp.seed, window_d=(0.0, exp.t_end_d))
        results = clinical.classify_measured(measured, analyses, exp.response)
        short = {}
        for h, n in need.items():
            found = int(results.loc[results[HISTOLOGY] == h, clinical.ELIGIBLE].sum())
            if found < n:
                short[h] = (found, n)
        if not short:
            break
        grow = False
        for h, (found, n) in short.items():
            ok = results.loc[results[HISTOLOGY] == h, "status"] == "ok"
            if not ok.any():  # more men of a histology whose every man fails would fail too
                log.warning("%s: all %d candidates failed to simulate; not screening more of them", h, len(ok))
                continue
            budget = MAX_RUNS - sum(drawn.values())  # the screening stays within the size limit too
            limit = min(math.ceil(exp.max_screen_factor * n), drawn[h] + max(budget, 0))
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
    histology = results[HISTOLOGY].to_numpy()
    eligible = results[clinical.ELIGIBLE].to_numpy(dtype=bool)
    for name, size in exp.cohorts.items():
        results[f"enrolled_{name}"] = enrolled_first(eligible, histology, allocate(exp.histology_mix, size))
    return results


def enrolled_first(
    eligible: npt.NDArray[np.bool_], histology: npt.NDArray[Any], quota: Mapping[str, int]
) -> npt.NDArray[np.bool_]:
    """Return who is enrolled: per histology, the first ``quota[h]`` eligible men in row order (vectorised).

    Args:
        eligible: Eligibility, shape (..., men) (a leading axis for measurement draws).
        histology: Each man's histology, shape (men,); rows in index order within a histology.
        quota: Places per histology.

    Returns:
        Enrolment flags of ``eligible``'s shape.
    """
    flags = np.zeros(eligible.shape, dtype=bool)
    for h, n in quota.items():
        cols = histology == h
        mine = eligible[..., cols]
        flags[..., cols] = mine & (np.cumsum(mine, axis=-1) <= n)
    return flags


def measurement_spread(
    results: pd.DataFrame,
    exp: Experiment,
    *,
    redraws: int,
) -> dict[str, pd.DataFrame]:
    """Re-draw every candidate's analyses ``redraws`` times and read each cohort's rates in every draw.

    The simulated men stay the same; only the semen analyses are drawn again (one generator per man, from the
    experiment's seed: :func:`ra_model.studies.semen_analysis.redraw_generator`). Each draw enrols, per cohort
    and histology, the first eligible candidates (as :func:`enrol` does with the analyses themselves) and counts
    their responders, so the spread holds both the enrolment and the response read on a different set of
    analyses.

    Args:
        results: :func:`enrol`'s table (sorted by histology and index).
        exp: The experiment.
        redraws: Number of draws (>= 1).

    Returns:
        Per cohort name, one row per group (``overall`` first, then each histology) with ``group`` and the
        columns of :data:`SPREAD_COLUMNS`.
    """
    _, drawn = clinical.measure(
        results,
        seed=exp.seed,
        window_d=(0.0, exp.t_end_d),
        redraws=redraws,
        main=False,
        redraw_counts=exp.response.threshold_M_per_mL is not None,
    )
    found = clinical.endpoints(
        drawn.redraw_category_code,
        drawn.redraw_motile_seen,
        exp.response,
        sperm_per_concentration=clinical.motile_per_concentration(results),
    )
    histology = results[HISTOLOGY].to_numpy()
    out: dict[str, pd.DataFrame] = {}
    for name, size in exp.cohorts.items():
        enrolled = enrolled_first(found.eligible, histology, allocate(exp.histology_mix, size))
        responded = enrolled & found.responder
        groups: list[tuple[str, npt.NDArray[np.bool_]]] = [("overall", np.ones(len(results), dtype=bool))]
        groups += [(str(h), histology == h) for h in sorted(set(histology.tolist()))]
        rows = []
        for group, cols in groups:
            n = enrolled[:, cols].sum(axis=1)
            k = responded[:, cols].sum(axis=1)
            rate = np.divide(k, n, out=np.full(n.shape, np.nan), where=n > 0)
            finite = rate[np.isfinite(rate)]
            low, mid, high = np.percentile(finite, [2.5, 50, 97.5]) if finite.size else (math.nan,) * 3
            rows.append(
                {
                    "group": group,
                    DRAWS: redraws,
                    RATE_DRAWS_LOW: float(low),
                    RATE_DRAWS_MEDIAN: float(mid),
                    RATE_DRAWS_HIGH: float(high),
                    N_DRAWS_MEDIAN: float(np.median(n)),
                }
            )
        out[name] = pd.DataFrame(rows)
    return out


#: Simulated columns of a comparison row with no enrolled men (NaN).
_NAN_SIM = ("rate", "ci_low", "ci_high", RATE_DRAWS_LOW, RATE_DRAWS_HIGH)


def compare_published(summary: pd.DataFrame, published: Sequence[Published]) -> pd.DataFrame:
    """Set each published count beside the simulated rate of the same group, with both intervals.

    A cohort with no enrolled man of the group still gets its row (``sim_n`` 0, rate NaN), so no
    published count silently drops out of the table.

    Returns:
        One row per published count and simulated cohort: ``cohort``, ``group``, simulated
        ``sim_responders``/``sim_n``/``sim_rate``/``sim_ci_low``/``sim_ci_high``, the spread over measurement
        draws ``sim_draws_p2_5``/``sim_draws_p97_5`` (NaN when the summary has none), ``published_responders``,
        ``published_n``, ``published_rate``, ``published_ci_low``/``published_ci_high`` (Wilson) and
        ``published_in_sim_ci`` (the published rate inside the simulated 95% interval).
    """
    rows = []
    cohorts = list(dict.fromkeys(summary["cohort"])) if "cohort" in summary else []
    for p in published:
        low, high = clinical.proportion_ci(p.responders, p.n)
        rate = p.responders / p.n
        for cohort in cohorts if p.cohort is None else [p.cohort]:
            sims = summary[(summary["cohort"] == cohort) & (summary["group"] == p.group)]
            s = sims.iloc[0] if len(sims) else pd.Series({"responders": 0, "n": 0} | dict.fromkeys(_NAN_SIM, math.nan))
            rows.append(
                {
                    "cohort": cohort,
                    "group": p.group,
                    "sim_responders": int(s["responders"]),
                    "sim_n": int(s["n"]),
                    "sim_rate": s["rate"],
                    "sim_ci_low": s["ci_low"],
                    "sim_ci_high": s["ci_high"],
                    "sim_draws_p2_5": s.get(RATE_DRAWS_LOW, math.nan),
                    "sim_draws_p97_5": s.get(RATE_DRAWS_HIGH, math.nan),
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


def run_cohort(
    exp: Experiment,
    *,
    work_dir: Path | None,
    workers: int | None,
    progress: bool,
    fresh: bool = False,
    redraws: int = clinical.DEFAULT_REDRAWS,
    client: distributed.Client | str | None = None,
) -> ExperimentResult:
    """Enrol and treat the cohorts of a ``cohort`` experiment (:func:`enrol`) and summarise them.

    Args:
        exp: The experiment.
        work_dir: Folder for the sweep's chunks (rerunning resumes); None keeps nothing.
        workers: Worker processes (None = all cores).
        progress: Show the sweep's progress bar.
        fresh: Set earlier results in ``work_dir`` aside.
        redraws: Measurement draws for the spread of the rates (:func:`measurement_spread`); 0 leaves the spread
            columns NaN.
        client: A Dask client or scheduler address to run the men on (None: local worker processes).

    Returns:
        Results: one row per candidate. Summary: response rates per cohort and histology, read on the simulated
        analyses, with the Wilson interval (``ci_low``, ``ci_high``) and the spread over measurement draws
        (:data:`SPREAD_COLUMNS`). Tables:
        ``time_to_response``, ``peak_concentration``, ``retrieval`` (per cohort, histology and group:
        :func:`ra_model.studies.retrieval.retrieval_summary`), ``failures``, ``screening`` and, with
        published counts, ``comparison``.

    Raises:
        ExperimentFailedError: Every candidate failed to simulate (the error holds the failures table).
    """
    if isinstance(redraws, bool) or not isinstance(redraws, int) or redraws < 0:
        raise InvalidValueError(f"redraws = {redraws!r}; use a whole number >= 0 (0: no spread over measurement draws)")
    results = enrol(exp, work_dir=work_dir, workers=workers, progress=progress, fresh=fresh, client=client)
    spread = measurement_spread(results, exp, redraws=redraws) if redraws else {}
    summaries, curves, peaks, retrievals = [], [], [], []
    for name in exp.cohorts:
        enrolled = results[results[f"enrolled_{name}"]]
        summary = clinical.response_summary(enrolled, by=HISTOLOGY)
        if name in spread:
            summary = summary.merge(spread[name], on="group", how="left")
        else:
            summary = summary.assign(**{DRAWS: 0} | dict.fromkeys(SPREAD_COLUMNS[1:], math.nan))
        summary.insert(0, "cohort", name)
        summaries.append(summary)
        curve = clinical.time_to_response_curve(enrolled, by=HISTOLOGY)
        curve.insert(0, "cohort", name)
        curves.append(curve)
        peak = clinical.peak_distribution(enrolled, by=HISTOLOGY)
        peak.insert(0, "cohort", name)
        peaks.append(peak)
        chances = retrieval.retrieval_summary(enrolled, by=HISTOLOGY)
        chances.insert(0, "cohort", name)
        retrievals.append(chances)
    summary = pd.concat(summaries, ignore_index=True)
    tables = {
        "time_to_response": pd.concat(curves, ignore_index=True),
        "peak_concentration": pd.concat(peaks, ignore_index=True),
        RETRIEVAL_TABLE: pd.concat(retrievals, ignore_index=True),
        "failures": failures(results),
    }
    if exp.published:
        tables["comparison"] = compare_published(summary, exp.published)
    screened = results.groupby(HISTOLOGY).agg(
        candidates=(clinical.ELIGIBLE, "size"), eligible=(clinical.ELIGIBLE, "sum")
    )
    tables["screening"] = screened.reset_index()
    inputs = _inputs(exp) | {
        "measurement": {
            "screening_day_d": clinical.SCREENING_DAY_D,
            "redraws": redraws,
            "seed": exp.seed,
            "rule": "baseline confirmed on two analyses; responder: motile sperm on consecutive analyses",
        }
    }
    return ExperimentResult(experiment=exp, results=results, summary=summary, tables=tables, inputs=inputs)
