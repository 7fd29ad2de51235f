"""Kind ``sensitivity``: hand the file unchanged to :mod:`ra_model.studies.sensitivity` and keep its ranked index table.

The file is not read here: :func:`ra_model.studies.sensitivity.run_sensitivity_file` validates its own
keys, except ``classes`` (read by the loader as for every kind, and passed on as ``n_classes``). The
index figures are the caller's (:func:`ra_model.plots.cohort.experiment_figures` draws them from the
result's summary).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ra_model.studies import sensitivity
from ra_model.studies.experiments.common import ExperimentResult, inputs_record
from ra_model.studies.experiments.spec import Experiment

if TYPE_CHECKING:
    import distributed


def run_sensitivity(
    exp: Experiment,
    *,
    work_dir: Path | None,
    workers: int | None,
    progress: bool,
    fresh: bool = False,
    client: distributed.Client | str | None = None,
) -> ExperimentResult:
    """Run a ``sensitivity`` experiment through ``ra_model.studies.sensitivity.run_sensitivity_file``.

    The testis is built from ``exp.n_classes`` focus classes (the file's ``classes``).

    Returns:
        Results and summary: the same index table, with a ``rank`` column (1 = most influential).
    """
    table = sensitivity.run_sensitivity_file(
        exp.path,
        out_dir=work_dir,
        workers=workers,
        progress=progress,
        reduced=exp.reduced,
        fresh=fresh,
        n_classes=exp.n_classes,
        client=client,
    )
    return ExperimentResult(experiment=exp, results=table, summary=table, tables={}, inputs=inputs_record(exp))
