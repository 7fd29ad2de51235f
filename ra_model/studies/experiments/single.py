"""Kind ``single``: one phenotype, one run per regimen or ``[[runs]]`` entry; read its keys and run it.

A run may add scheduled parameter changes and a missed-dose pattern; each gives a time course and a
row of readouts (and, with ``[sampling]``, the trial's responder classification).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ra_model.engines.simulate import ParameterChange, simulate
from ra_model.errors import InvalidValueError, SimulationFailedError
from ra_model.model import columns as C
from ra_model.model.regimen import Regimen
from ra_model.studies import clinical
from ra_model.studies.experiments.common import ExperimentResult, inputs_record
from ra_model.studies.experiments.spec import Experiment, Reader, Run

_RUN_KEYS = frozenset({"label", "regimen", "missed_every", "changes"})
#: Label of a run without drug and without scheduled changes.
NO_DRUG = "no drug"


def read_single(r: Reader, data: Mapping[str, Any]) -> dict[str, Any]:
    """Read the keys of a ``single`` file (the common ones are read by the caller).

    Args:
        r: The file's reader.
        data: The file's table, ``[reduced]`` applied.

    Returns:
        The :class:`~ra_model.studies.experiments.spec.Experiment` fields of the kind.
    """
    t_end = r.number("t_end_d", data.get("t_end_d", 365.0))
    if ("regimens" in data) == ("runs" in data):
        raise r.fail("regimens", "give either 'regimens' or '[[runs]]'", 'write regimens = ["20 mg bid for 180 d"]')
    runs: list[Run] = []
    if "regimens" in data:
        texts = r.items("regimens", data["regimens"], 'write regimens = ["20 mg bid for 180 d", "none"]')
        if not texts:
            raise r.fail("regimens", "is empty", 'write regimens = ["20 mg bid for 180 d", "none"]')
        for i, text in enumerate(texts):
            regimen = r.regimen(f"regimens[{i}]", text)
            runs.append(Run(label=str(regimen) if regimen else NO_DRUG, regimen=regimen))
    else:
        items = r.items("runs", data["runs"], "write [[runs]] blocks with label and regimen")
        if not items:
            raise r.fail("runs", "is empty", "write [[runs]] blocks with label and regimen")
        for i, item in enumerate(items):
            where = f"runs[{i}]"
            item = r.table(where, item, "write [[runs]] blocks with label and regimen")
            r.unknown(f"{where}.", item, _RUN_KEYS)
            regimen = r.regimen(f"{where}.regimen", item.get("regimen", "none"))
            missed = item.get("missed_every")
            if missed is not None:
                missed = r.integer(f"{where}.missed_every", missed, minimum=2, example=4)
                if regimen is None:
                    raise r.fail(f"{where}.missed_every", "needs a regimen", "give the run a regimen")
            label = r.text(f"{where}.label", item.get("label", str(regimen) if regimen else NO_DRUG))
            runs.append(
                Run(
                    label=label,
                    regimen=regimen,
                    missed_every=missed,
                    changes=r.changes(f"{where}.changes", item.get("changes", [])),
                )
            )
    labels = [run.label for run in runs]
    if len(set(labels)) != len(labels):
        raise r.fail("runs", f"labels repeat: {labels}", "give every run its own label")
    changes = r.changes("changes", data.get("changes", []))
    scheduled = [("changes", changes), *((f"runs[{i}].changes", run.changes) for i, run in enumerate(runs))]
    for key, group in scheduled:
        for j, change in enumerate(group):
            if change.t_d >= t_end:
                raise r.fail(
                    f"{key}[{j}].t_d",
                    f"a change on day {change.t_d:g} is not before t_end_d = {t_end:g}",
                    "lengthen t_end_d or move the change",
                )
    # "no drug" only where nothing is changed: a run with scheduled changes is named by them
    runs = [
        dataclasses.replace(run, label=f"{NO_DRUG}; {changes_text([*changes, *run.changes])}")
        if run.label == NO_DRUG and (changes or run.changes)
        else run
        for run in runs
    ]
    return dict(
        phenotype=r.phenotype("phenotype", data.get("phenotype", "healthy")),
        runs=tuple(runs),
        t_end_d=t_end,
        changes=changes,
        include_species=r.boolean("include_species", data.get("include_species", False)),
        visit_days=r.sampling(data["sampling"], t_end) if "sampling" in data else (),
    )


def changes_text(changes: list[ParameterChange]) -> str:
    """Name scheduled changes in a few words: ``aldh1a_inhibition 0.99 from day 1, 0 from day 181``."""
    by_parameter: dict[str, list[str]] = {}
    for change in sorted(changes, key=lambda c: c.t_d):
        by_parameter.setdefault(change.parameter, []).append(f"{change.value:g} from day {change.t_d:g}")
    return "; ".join(f"{name} {', '.join(steps)}" for name, steps in by_parameter.items())


def missed_dose_changes(regimen: Regimen, every: int, *, t_end_d: float) -> tuple[ParameterChange, ...]:
    """Express "miss every n-th dose" as scheduled changes of the dose size.

    The model's dose event gives ``dose_mg`` each time it fires; setting ``dose_mg`` to 0 one hour
    before a dose and back one hour after it skips exactly that dose. The first dose is never missed.

    Args:
        regimen: The prescribed regimen (fixed or weight-based dose).
        every: Miss the n-th, 2n-th, ... dose (n >= 2).
        t_end_d: End of the run; doses after it are ignored.

    Returns:
        Changes in time order.
    """
    if every < 2:
        raise InvalidValueError(f"missed_every = {every}; use 2 or more (every dose missed is no treatment)")
    dose = regimen.dose_per_administration_mg
    margin_d = min(1.0, regimen.interval_h / 4) / 24
    changes: list[ParameterChange] = []
    for i, t_h in enumerate(regimen.dose_times_h()):
        t_d = t_h / 24
        if (i + 1) % every or t_d + margin_d >= t_end_d:
            continue
        changes += [
            ParameterChange(t_d=t_d - margin_d, parameter="dose_mg", value=0.0),
            ParameterChange(t_d=t_d + margin_d, parameter="dose_mg", value=dose),
        ]
    return tuple(changes)


def run_readouts(table: pd.DataFrame) -> dict[str, float]:
    """Per-run readouts of a time course: baseline, peak, first and last motile sperm, final values.

    With species amounts in the table, ``eliminated_retinoid_nmol`` is the body's elimination ledger at the end.
    """
    t = table[C.TIME_D].to_numpy(dtype=float)
    conc = table[C.EJACULATE_CONCENTRATION].to_numpy(dtype=float)
    present = table[C.MOTILE_SPERM_PRESENT].to_numpy(dtype=bool)
    i_peak = int(np.argmax(conc))
    ledger = (
        {"eliminated_retinoid_nmol": float(table["amount_Eliminated"].iloc[-1])} if "amount_Eliminated" in table else {}
    )
    return ledger | {
        "baseline_concentration_M_per_mL": float(conc[0]),
        "peak_concentration_M_per_mL": float(conc[i_peak]),
        "time_of_peak_d": float(t[i_peak]),
        "min_concentration_M_per_mL": float(conc.min()),
        "time_of_min_d": float(t[int(np.argmin(conc))]),
        "final_concentration_M_per_mL": float(conc[-1]),
        "first_motile_d": float(t[present][0]) if present.any() else math.nan,
        "last_motile_d": float(t[present][-1]) if present.any() else math.nan,
        "days_with_motile_sperm": float(np.sum(present[1:] * np.diff(t))),
        "doses_given": float(table[C.DOSES_GIVEN].iloc[-1]),
        "peak_testis_atRA_nM": float(table[C.TESTIS_ATRA].max()),
        "min_testis_atRA_nM": float(table[C.TESTIS_ATRA].min()),
        "plasma_isotretinoin_auc_ng_h_per_mL": float(np.trapezoid(table[C.PLASMA_ISOTRETINOIN], t * 24)),
    }


def run_single(exp: Experiment) -> ExperimentResult:
    """Simulate each run of a ``single`` experiment in this process (a testis of ``exp.n_classes`` focus classes).

    Returns:
        Results: the time courses stacked, with a ``run`` column. Summary: one row per run with its
        regimen, missed-dose pattern, :func:`run_readouts` and, with visit days, the responder readouts.

    Raises:
        SimulationFailedError: A run failed (the message names the file and the run; ``partial`` holds
            the rows computed before the failure, as ``simulate()`` gives them).
    """
    tables = []
    rows = []
    for run in exp.runs:
        changes = [*exp.changes, *run.changes]
        if run.missed_every and run.regimen is not None:
            changes += missed_dose_changes(run.regimen, run.missed_every, t_end_d=exp.t_end_d)
        changes.sort(key=lambda c: c.t_d)
        try:
            table = simulate(
                exp.phenotype,
                run.regimen,
                t_end_d=exp.t_end_d,
                overrides=exp.overrides,
                changes=changes,
                output_step_d=exp.output_step_d,
                include_species=exp.include_species,
                n_classes=exp.n_classes,
            )
        except SimulationFailedError as exc:  # name the file and the run; keep the rows computed before
            raise SimulationFailedError(f"{exp.path}: run {run.label!r}: {exc}", partial=exc.partial) from exc
        table.insert(0, "run", run.label)
        tables.append(table)
        row: dict[str, Any] = {"run": run.label, "phenotype": exp.phenotype, "regimen": str(run.regimen or "none")}
        row["missed_every"] = run.missed_every or 0
        row |= run_readouts(table)
        if exp.visit_days:
            visits = clinical.semen_analyses(table, visit_days=exp.visit_days)
            frame = pd.DataFrame([{f"{clinical.METRIC}.{k}": v for k, v in visits.items()} | {"status": "ok"}])
            got = clinical.classify(frame, exp.response).iloc[0]
            row |= {k: got[k] for k in (clinical.RESPONDER, clinical.TIME_TO_RESPONSE_D, clinical.PEAK_AT_VISITS)}
        rows.append(row)
    results = pd.concat(tables, ignore_index=True)
    results.attrs = dict(tables[0].attrs) | {"runs": [r.label for r in exp.runs]}
    summary = pd.DataFrame(rows)
    return ExperimentResult(
        experiment=exp,
        results=results,
        summary=summary,
        tables={},
        inputs=inputs_record(exp, phenotype=exp.phenotype),
    )
