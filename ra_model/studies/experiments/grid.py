"""Kind ``grid``: the same virtual men under every dose x duration, per histology; read its keys and run it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ra_model.errors import RAModelError
from ra_model.model.regimen import parse_optional
from ra_model.studies import clinical
from ra_model.studies.experiments.common import (
    ExperimentResult,
    apply_overrides,
    failures,
    inputs_record,
    regimen_for_weight,
    require_some_success,
    sweep_visits,
)
from ra_model.studies.experiments.spec import CHECK_WEIGHT_KG, MAX_RUNS, Experiment, Reader
from ra_model.studies.population import BODY_WEIGHT_KG, HISTOLOGY, draw_patients

if TYPE_CHECKING:
    import distributed


def _is_regimen(text: str) -> bool:
    """Return True if a dose text parses as a whole regimen on its own (it already has a duration)."""
    try:
        return parse_optional(regimen_for_weight(text, CHECK_WEIGHT_KG)) is not None
    except RAModelError:
        return False


def read_grid(r: Reader, data: Mapping[str, Any]) -> dict[str, Any]:
    """Read the keys of a ``grid`` file (the common ones are read by the caller).

    The simulated time is the longest duration plus the follow-up, so ``[sampling]`` may not set ``last_d``.

    Args:
        r: The file's reader.
        data: The file's table, ``[reduced]`` applied.

    Returns:
        The :class:`~ra_model.studies.experiments.spec.Experiment` fields of the kind.
    """
    doses = r.items("doses", data.get("doses"), 'write doses = ["10 mg od", "20 mg bid"]')
    durations = r.items("durations_d", data.get("durations_d"), "write durations_d = [90, 180, 270]")
    if not doses:
        raise r.fail("doses", "is empty", 'write doses = ["10 mg od", "20 mg bid"]')
    if not durations:
        raise r.fail("durations_d", "is empty", "write durations_d = [90, 180, 270]")
    durations_d = tuple(r.number(f"durations_d[{i}]", d) for i, d in enumerate(durations))
    texts = tuple(r.text(f"doses[{i}]", dose).strip() for i, dose in enumerate(doses))
    for i, text in enumerate(texts):
        if _is_regimen(text):
            raise r.fail(
                f"doses[{i}]",
                f"{text!r} is a whole regimen, but a grid's durations come from durations_d",
                "give only the dose and interval, e.g. '20 mg bid'",
            )
        r.regimen(f"doses[{i}]", f"{text} for {durations_d[0]:g} d", weight=True)
    for key, values in (("doses", texts), ("durations_d", tuple(f"{d:g}" for d in durations_d))):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:  # each arm's men are named by dose and duration, so a repeat would be the same arm twice
            raise r.fail(key, f"{', '.join(repeated)} appears more than once", "list each value once")
    follow = r.number("follow_up_d", data.get("follow_up_d", 90.0), allow_zero=True)
    t_end = max(durations_d) + follow
    if "sampling" not in data:
        raise r.fail("sampling", "is missing", "write [sampling] with every_d = 30")
    sampling = r.table("sampling", data["sampling"], "write [sampling] with every_d = 30")
    if "last_d" in sampling:
        raise r.fail("sampling.last_d", "is set by durations_d + follow_up_d in a grid", "remove last_d")
    pop, out = r.population(data, "grid")
    names = r.items("population.histologies", pop.get("histologies"), 'write histologies = ["maturation_arrest"]')
    if not names:
        raise r.fail("population.histologies", "is empty", 'write histologies = ["maturation_arrest"]')
    out["histologies"] = tuple(r.phenotype(f"population.histologies[{i}]", n) for i, n in enumerate(names))
    n_patients = r.integer("n_patients", data.get("n_patients"), example=60)
    arms = len(out["histologies"]) * len(texts) * len(durations_d)
    r.runs(
        "n_patients",
        n_patients,
        runs=n_patients * arms,
        what=(
            f"{n_patients:,} men x {len(out['histologies'])} histologies x {len(texts)} doses x "
            f"{len(durations_d)} durations"
        ),
        fix=f"use fewer men or a smaller grid (n_patients <= {MAX_RUNS // arms:,} for this grid)",
    )
    visit_days = r.sampling(sampling, t_end)
    shortest = min(durations_d) + follow
    if not any(0 < d <= shortest + 1e-9 for d in visit_days):
        raise r.fail(
            "sampling",
            f"no visit after baseline falls inside the shortest arm ({min(durations_d):g} days of treatment + "
            f"{follow:g} days of follow-up), so its response cannot be read",
            "visit more often (a smaller every_d) or lengthen follow_up_d",
        )
    return out | dict(
        doses=texts,
        durations_d=durations_d,
        follow_up_d=follow,
        t_end_d=t_end,
        n_patients=n_patients,
        seed=r.seed(data),
        visit_days=visit_days,
        response=r.response(data.get("response", {})),
    )


def run_grid(
    exp: Experiment,
    *,
    work_dir: Path | None,
    workers: int | None,
    progress: bool,
    fresh: bool = False,
    client: distributed.Client | str | None = None,
) -> ExperimentResult:
    """Treat the same men of each histology with every dose for every duration, in one sweep.

    Each arm is classified over its own window: treatment plus ``follow_up_d``. The testis is built from
    ``exp.n_classes`` focus classes (:func:`~ra_model.studies.experiments.common.sweep_visits` passes them on).

    Returns:
        Results: one row per man and arm (``meta_dose``, ``meta_duration_d``). Summary: the response
        rate per histology, dose and duration. Tables: ``failures``.

    Raises:
        ExperimentFailedError: Every man in every arm failed to simulate (the error holds the failures table).
    """
    population = exp.population()
    frames = []
    for h in exp.histologies:
        men = draw_patients(population, h, range(exp.n_patients), seed=exp.seed, overrides=exp.overrides)
        for dose in exp.doses:
            for duration in exp.durations_d:
                arm = men.copy()
                arm["sample_id"] = [f"{sid}|{dose}|{duration:g}d" for sid in arm["sample_id"]]
                arm["regimen"] = [regimen_for_weight(f"{dose} for {duration:g} d", w) for w in arm[BODY_WEIGHT_KG]]
                arm["meta_dose"] = dose
                arm["meta_duration_d"] = duration
                frames.append(arm)
    samples = apply_overrides(pd.concat(frames, ignore_index=True), exp.overrides)
    samples.attrs["seed"] = exp.seed
    samples.attrs["design"] = f"experiment {exp.id}: dose x duration grid"
    raw = sweep_visits(
        samples,
        exp,
        t_end_d=exp.t_end_d,
        work_dir=work_dir,
        workers=workers,
        progress=progress,
        fresh=fresh,
        client=client,
    )
    inputs = inputs_record(exp, histologies=list(exp.histologies), visit_days=list(exp.visit_days))
    require_some_success(exp, raw, inputs)
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
        tables={"failures": failures(results)},
        inputs=inputs,
    )
