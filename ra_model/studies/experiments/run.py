"""Run a loaded experiment by its kind."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ra_model.errors import InvalidValueError
from ra_model.studies.experiments.cohort import run_cohort
from ra_model.studies.experiments.common import ExperimentResult
from ra_model.studies.experiments.grid import run_grid
from ra_model.studies.experiments.sensitivity import run_sensitivity
from ra_model.studies.experiments.single import run_single
from ra_model.studies.experiments.spec import Experiment

if TYPE_CHECKING:
    import distributed

#: The experiment file a work folder's results belong to, kept beside its sweep chunks.
EXPERIMENT_RECORD = "experiment.toml"


def run_experiment(
    experiment: Experiment,
    *,
    work_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    fresh: bool = False,
    client: distributed.Client | str | None = None,
) -> ExperimentResult:
    """Run an experiment.

    Args:
        experiment: A loaded experiment.
        work_dir: Folder for the sweep's Parquet chunks (cohort and grid): rerunning with the same
            folder resumes instead of recomputing.
        workers: Worker processes for cohorts and grids (None = all cores, 1 = this process).
        progress: Show the sweep's progress bar.
        fresh: Set earlier results in ``work_dir`` aside instead of resuming from them (a folder whose
            earlier run differs is refused without it).
        client: A Dask client or scheduler address (``tcp://host:port``) to run cohorts, grids and
            sensitivity sweeps on (None: local worker processes; see :func:`ra_model.studies.sweep.run_sweep`).

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
    if work_dir is not None:
        _claim(work_dir, experiment, fresh=fresh)
    if experiment.kind == "cohort":
        return run_cohort(experiment, work_dir=work_dir, workers=workers, progress=progress, fresh=fresh, client=client)
    if experiment.kind == "grid":
        return run_grid(experiment, work_dir=work_dir, workers=workers, progress=progress, fresh=fresh, client=client)
    return run_sensitivity(
        experiment, work_dir=work_dir, workers=workers, progress=progress, fresh=fresh, client=client
    )


def _claim(work_dir: Path, experiment: Experiment, *, fresh: bool) -> None:
    """Refuse a work folder holding another version of the experiment (unless fresh); record this one.

    The sweep underneath recomputes any man whose scenario changed, so results are never stale; this
    check says so up front instead of silently recomputing a whole cohort into the old folder.
    """
    record = work_dir / EXPERIMENT_RECORD
    if record.exists() and not fresh:
        old = record.read_text(encoding="utf-8").splitlines()
        new = experiment.text.splitlines()
        if old != new:
            line = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), min(len(old), len(new)))
            was = old[line] if line < len(old) else "(end of file)"
            now = new[line] if line < len(new) else "(end of file)"
            raise InvalidValueError(
                f"{work_dir} holds the results of another version of {experiment.id!r} (first difference, line "
                f"{line + 1}: was {was.strip()!r}, now {now.strip()!r}); rerun with --fresh (fresh=True) to set "
                "them aside, or use another output folder"
            )
    work_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(experiment.text, encoding="utf-8")
