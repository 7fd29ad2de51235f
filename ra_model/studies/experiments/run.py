"""Run a loaded experiment by its kind."""

from __future__ import annotations

from pathlib import Path

from ra_model.studies.experiments.cohort import run_cohort
from ra_model.studies.experiments.common import ExperimentResult
from ra_model.studies.experiments.grid import run_grid
from ra_model.studies.experiments.sensitivity import run_sensitivity
from ra_model.studies.experiments.single import run_single
from ra_model.studies.experiments.spec import Experiment


def run_experiment(
    experiment: Experiment,
    *,
    work_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> ExperimentResult:
    """Run an experiment.

    Args:
        experiment: A loaded experiment.
        work_dir: Folder for the sweep's Parquet chunks (cohort and grid): rerunning with the same
            folder resumes instead of recomputing.
        workers: Worker processes for cohorts and grids (None = all cores, 1 = this process).
        progress: Show the sweep's progress bar.

    Returns:
        The results, summary and provenance.

    Raises:
        SimulationFailedError: A ``single`` run failed (cohort members that fail are reported in
            the ``failures`` table instead).
        ExperimentFailedError: Every man of a cohort or grid failed; its ``partial`` result holds the
            ``failures`` table for the caller to write.
    """
    if experiment.kind == "single":
        return run_single(experiment)
    if experiment.kind == "cohort":
        return run_cohort(experiment, work_dir=work_dir, workers=workers, progress=progress)
    if experiment.kind == "grid":
        return run_grid(experiment, work_dir=work_dir, workers=workers, progress=progress)
    return run_sensitivity(experiment, work_dir=work_dir, workers=workers, progress=progress)
