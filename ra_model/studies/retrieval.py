"""Sperm retrieval readouts from results tables: each man's TESE chances, and their summary by histology.

One job: read the model's retrieval observables (:data:`ra_model.model.columns.RETRIEVAL_MICRO_TESE` and
:data:`~ra_model.model.columns.RETRIEVAL_CONVENTIONAL_TESE`, probabilities 0-1 that the procedure finds
sperm) at the times a surgeon might operate. :func:`retrieval_readouts` reduces one man's ``simulate()``
table to numbers (baseline, end of run, last visit): a picklable metric for
:func:`ra_model.studies.sweep.run_sweep`, so a cohort's sweep returns only numbers, never whole tables.
:func:`retrieval_summary` reads a classified cohort (:func:`ra_model.studies.clinical.classify`) by
histology, for responders and for eligible non-responders (the men whose ejaculate stays empty, for
whom retrieval is the question): mean chances at baseline and at the end, and the expected number of
men in whom sperm would be found (the sum of their chances).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ra_model.errors import InvalidValueError
from ra_model.model import columns as C
from ra_model.studies import clinical

#: Metric name under which :func:`retrieval_readouts` is registered in a sweep (columns ``retrieval.<key>``).
METRIC = "retrieval"

#: Procedure key of micro-TESE (``micro_tese_samples`` regions picked by their look under the microscope).
MICRO_TESE = "micro_TESE"
#: Procedure key of conventional TESE (``tese_samples`` random biopsies).
CONVENTIONAL_TESE = "conventional_TESE"
#: Each procedure's results column (the model observable).
PROCEDURES: dict[str, str] = {MICRO_TESE: C.RETRIEVAL_MICRO_TESE, CONVENTIONAL_TESE: C.RETRIEVAL_CONVENTIONAL_TESE}

#: Time key: baseline, day 0 (the man's untreated steady state).
BASELINE = "baseline"
#: Time key: the last row of the run (``t_end_d``).
END = "end"
#: Time key: the last semen-analysis visit (only when visit days are given).
LAST_VISIT = "last_visit"

# Keys of one man's readouts (:func:`retrieval_readouts`); in a sweep table each is a column ``retrieval.<key>``.
#: Micro-TESE retrieval probability at baseline (day 0), 0-1.
MICRO_TESE_BASELINE = f"{MICRO_TESE}_{BASELINE}"
#: Micro-TESE retrieval probability at the end of the run, 0-1.
MICRO_TESE_END = f"{MICRO_TESE}_{END}"
#: Micro-TESE retrieval probability at the last visit, 0-1.
MICRO_TESE_LAST_VISIT = f"{MICRO_TESE}_{LAST_VISIT}"
#: Conventional-TESE retrieval probability at baseline (day 0), 0-1.
CONVENTIONAL_TESE_BASELINE = f"{CONVENTIONAL_TESE}_{BASELINE}"
#: Conventional-TESE retrieval probability at the end of the run, 0-1.
CONVENTIONAL_TESE_END = f"{CONVENTIONAL_TESE}_{END}"
#: Conventional-TESE retrieval probability at the last visit, 0-1.
CONVENTIONAL_TESE_LAST_VISIT = f"{CONVENTIONAL_TESE}_{LAST_VISIT}"

# Columns of :func:`retrieval_summary` (the probability columns are means over the group's men, 0-1,
# named like the readout keys above).
#: Histology (the ``by`` column's value), or ``"overall"`` for all men.
HISTOLOGY = "histology"
#: Which men: :data:`RESPONDERS` or :data:`NON_RESPONDERS`.
GROUP = "group"
#: Men in the group.
N_MEN = "n"
#: Mean micro-TESE retrieval probability at the end minus at baseline.
MICRO_TESE_CHANGE = f"{MICRO_TESE}_change"
#: Expected number of the group's men in whom a micro-TESE at baseline finds sperm (sum of their chances).
EXPECTED_FOUND_MICRO_TESE_BASELINE = f"expected_found_{MICRO_TESE_BASELINE}"
#: Expected number of the group's men in whom a micro-TESE at the end finds sperm.
EXPECTED_FOUND_MICRO_TESE_END = f"expected_found_{MICRO_TESE_END}"
#: Expected number of the group's men in whom a conventional TESE at baseline finds sperm.
EXPECTED_FOUND_CONVENTIONAL_TESE_BASELINE = f"expected_found_{CONVENTIONAL_TESE_BASELINE}"
#: Expected number of the group's men in whom a conventional TESE at the end finds sperm.
EXPECTED_FOUND_CONVENTIONAL_TESE_END = f"expected_found_{CONVENTIONAL_TESE_END}"
#: The columns of :func:`retrieval_summary`, in order.
SUMMARY_COLUMNS: tuple[str, ...] = (
    HISTOLOGY,
    GROUP,
    N_MEN,
    MICRO_TESE_BASELINE,
    MICRO_TESE_END,
    MICRO_TESE_CHANGE,
    CONVENTIONAL_TESE_BASELINE,
    CONVENTIONAL_TESE_END,
    EXPECTED_FOUND_MICRO_TESE_BASELINE,
    EXPECTED_FOUND_MICRO_TESE_END,
    EXPECTED_FOUND_CONVENTIONAL_TESE_BASELINE,
    EXPECTED_FOUND_CONVENTIONAL_TESE_END,
)

#: Group of eligible men who responded (motile sperm in the ejaculate by the trial's rule).
RESPONDERS = "responders"
#: Group of eligible men who did not respond: their ejaculate stayed empty, so sperm must be retrieved.
NON_RESPONDERS = "non_responders"
#: Name of the all-histologies row.
OVERALL = "overall"


def column(key: str) -> str:
    """Return the sweep-table column of a readout key: ``micro_TESE_end`` -> ``retrieval.micro_TESE_end``."""
    return f"{METRIC}.{key}"


def retrieval_readouts(table: pd.DataFrame, *, visit_days: Sequence[float] | None = None) -> dict[str, float]:
    """Read one man's sperm-retrieval probabilities at baseline, at the end of the run and at the last visit.

    Args:
        table: A ``simulate()`` table (one man's run) with the retrieval observables.
        visit_days: Semen-analysis days; with any, the chances at the last of them are read too.

    Returns:
        ``micro_TESE_baseline``, ``micro_TESE_end``, ``conventional_TESE_baseline``,
        ``conventional_TESE_end`` and, with visit days, ``micro_TESE_last_visit`` and
        ``conventional_TESE_last_visit``: probabilities 0-1 that the procedure finds sperm.

    Raises:
        InvalidValueError: The table lacks a retrieval column (a model without the retrieval
            observables), does not start on day 0, or a visit lies outside the simulated time.
    """
    missing = [c for c in (C.TIME_D, *PROCEDURES.values()) if c not in table.columns]
    if missing:
        raise InvalidValueError(
            f"the results table has no column {missing[0]!r}, needed for the retrieval readouts; simulate the "
            "shipped model (or a model file exported from it) so that the retrieval observables are present"
        )
    t = table[C.TIME_D].to_numpy(dtype=float)
    if not len(t) or abs(t[0]) > 1e-9:
        raise InvalidValueError(
            f"the results table starts on day {t[0] if len(t) else math.nan:g}, not day 0, so there is no baseline "
            "for the retrieval readouts; simulate from day 0"
        )
    last_visit = max(visit_days) if visit_days else None
    if last_visit is not None and not t[0] - 1e-9 <= last_visit <= t[-1] + 1e-9:
        raise InvalidValueError(
            f"visit on day {last_visit:g} is outside the simulated {t[0]:g}-{t[-1]:g} d; lengthen t_end_d"
        )
    out: dict[str, float] = {}
    for procedure, name in PROCEDURES.items():
        values = table[name].to_numpy(dtype=float)
        out[f"{procedure}_{BASELINE}"] = float(values[0])
        out[f"{procedure}_{END}"] = float(values[-1])
        if last_visit is not None:
            out[f"{procedure}_{LAST_VISIT}"] = float(np.interp(last_visit, t, values))
    return out


#: Every readout of :func:`retrieval_readouts` is a probability, 0-1.
retrieval_readouts.units = "dimensionless"  # type: ignore[attr-defined]


def _group_row(histology: str, group: str, men: pd.DataFrame) -> dict[str, object]:
    """Return one summary row: the group's size, mean chances and expected men with sperm found."""
    means: dict[str, float] = {}
    expected: dict[str, float] = {}
    for key in (MICRO_TESE_BASELINE, MICRO_TESE_END, CONVENTIONAL_TESE_BASELINE, CONVENTIONAL_TESE_END):
        values = men[column(key)].to_numpy(dtype=float)
        means[key] = float(values.mean()) if len(values) else math.nan
        expected[f"expected_found_{key}"] = float(values.sum())
    change = {MICRO_TESE_CHANGE: means[MICRO_TESE_END] - means[MICRO_TESE_BASELINE]}
    return {HISTOLOGY: histology, GROUP: group, N_MEN: len(men)} | means | change | expected


def retrieval_summary(classified: pd.DataFrame, *, by: str) -> pd.DataFrame:
    """Summarise a cohort's sperm-retrieval chances by histology, for responders and eligible non-responders.

    Only eligible men count (:data:`ra_model.studies.clinical.ELIGIBLE`: simulated, and without motile
    sperm at baseline if the rule screens); responders are :data:`~ra_model.studies.clinical.RESPONDER`.

    Args:
        classified: One row per man: the ``retrieval.*`` readouts (:func:`retrieval_readouts` in a sweep),
            the ``eligible`` and ``responder`` flags of :func:`ra_model.studies.clinical.classify` and the
            ``by`` column.
        by: Column of each man's histology (``meta_histology``, :data:`ra_model.studies.population.HISTOLOGY`).

    Returns:
        :data:`SUMMARY_COLUMNS`: an ``overall`` pair of rows first, then one pair per histology of the
        table (sorted; a histology with no eligible man keeps its rows with ``n`` 0),
        each pair responders then non-responders: the number of men, their mean micro-TESE and
        conventional-TESE chances at baseline and at the end (NaN for no men), the mean micro-TESE
        change and the expected number of men with sperm found by each procedure then (0 for no men).

    Raises:
        InvalidValueError: A column it needs is missing (the message names it and where it comes from).
    """
    needed = {
        clinical.ELIGIBLE: "run clinical.classify first",
        clinical.RESPONDER: "run clinical.classify first",
        by: "give the column of each man's histology",
        **{
            column(key): f"run the sweep with the metric {METRIC!r} (retrieval_readouts)"
            for key in (MICRO_TESE_BASELINE, MICRO_TESE_END, CONVENTIONAL_TESE_BASELINE, CONVENTIONAL_TESE_END)
        },
    }
    for name, fix in needed.items():
        if name not in classified.columns:
            raise InvalidValueError(f"the cohort table has no column {name!r}, needed for the retrieval summary; {fix}")
    eligible = classified[classified[clinical.ELIGIBLE].astype(bool)]
    groups: list[tuple[str, pd.DataFrame]] = [(OVERALL, eligible)]
    for histology in sorted(classified[by].dropna().unique(), key=str):  # a histology with no eligible man: n = 0
        groups.append((str(histology), eligible[eligible[by] == histology]))
    rows = []
    for histology, men in groups:
        responded = men[clinical.RESPONDER].astype(bool)
        rows.append(_group_row(histology, RESPONDERS, men[responded]))
        rows.append(_group_row(histology, NON_RESPONDERS, men[~responded]))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
