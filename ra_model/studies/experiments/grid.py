"""Kind ``grid``: the same virtual men under every dose x duration, per histology; read its keys and run it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ra_model.studies import clinical
from ra_model.studies.experiments.common import (
    ExperimentResult,
    apply_overrides,
    failures,
    inputs_record,
    regimen_for_weight,
    sweep_visits,
)
from ra_model.studies.experiments.spec import Experiment, Reader
from ra_model.studies.population import BODY_WEIGHT_KG, HISTOLOGY, draw_patients


def read_grid(r: Reader, data: Mapping[str, Any]) -> dict[str, Any]:
    """Read the keys of a ``grid`` file (the common ones are read by the caller).

    The simulated time is the longest duration plus the follow-up, so ``[sampling]`` may not set ``last_d``.

    Args:
        r: The file's reader.
        data: The file's table, ``[reduced]`` applied.

    Returns:
        The :class:`~ra_model.studies.experiments.spec.Experiment` fields of the kind.
    """
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
    pop, out = r.population(data)
    names = pop.get("histologies")
    if not isinstance(names, list) or not names:
        raise r.fail("population.histologies", "is missing or empty", 'write histologies = ["maturation_arrest"]')
    out["histologies"] = tuple(r.phenotype(f"population.histologies[{i}]", n) for i, n in enumerate(names))
    return out | dict(
        doses=tuple(str(d).strip() for d in doses),
        durations_d=durations_d,
        follow_up_d=follow,
        t_end_d=t_end,
        n_patients=r.integer("n_patients", data.get("n_patients")),
        seed=r.seed(data),
        visit_days=r.sampling(sampling, t_end),
        response=r.response(data.get("response", {})),
    )


def run_grid(exp: Experiment, *, work_dir: Path | None, workers: int | None, progress: bool) -> ExperimentResult:
    """Treat the same men of each histology with every dose for every duration, in one sweep.

    Each arm is classified over its own window: treatment plus ``follow_up_d``.

    Returns:
        Results: one row per man and arm (``meta_dose``, ``meta_duration_d``). Summary: the response
        rate per histology, dose and duration. Tables: ``failures``.
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
    raw = sweep_visits(samples, exp, t_end_d=exp.t_end_d, work_dir=work_dir, workers=workers, progress=progress)
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
        inputs=inputs_record(exp, histologies=list(exp.histologies), visit_days=list(exp.visit_days)),
    )
