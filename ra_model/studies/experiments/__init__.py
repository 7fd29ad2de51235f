"""Scenarios as data: read, validate and run the experiment files in ``experiments/`` (TOML; the stem is the id).

This face re-exports the public names; the work is done in one module per job:

- :mod:`.spec`: the schema (each kind's keys and figures), the records :class:`Run`, :class:`Published`
  and :class:`Experiment`, and the value checks whose errors name the file and key;
- :mod:`.reader`: :func:`load_experiment` (common keys, then the kind's), :func:`list_experiments`,
  :func:`experiments_dir`;
- one module per kind, each with its keys' reader and its runner:

  :mod:`.single` (the default)
      One phenotype, one run per regimen (or per ``[[runs]]`` entry, which may add scheduled parameter
      changes and a missed-dose pattern): time courses and per-run readouts.
  :mod:`.cohort`
      Virtual men drawn from a histology mix (:mod:`ra_model.studies.population`), screened at baseline,
      enrolled per histology, treated and read by the trial's semen analyses (:mod:`ra_model.studies.clinical`);
      response rates with confidence intervals beside published ones.
  :mod:`.grid`
      The same virtual men under every dose x duration, per histology: a response-rate table.
  :mod:`.sensitivity`
      Handed unchanged to :mod:`ra_model.studies.sensitivity` (the sweep helpers' global sensitivity analysis).

- :mod:`.common`: what the runners share (:class:`ExperimentResult`, raising
  :class:`ra_model.errors.ExperimentFailedError` when every man failed, the provenance record, the sweep
  call, a man's regimen for his weight);
- :mod:`.run`: :func:`run_experiment`, by kind.

Cohorts and grids run through :func:`ra_model.studies.sweep.run_sweep` (its worker processes, Parquet
chunks and resume). Code only interprets these files: a new scenario needs no new Python. Every
file may carry a ``[reduced]`` table whose keys replace the top-level ones for quick runs (tests), and
a ``classes`` key: the tubule-focus classes of the testis, passed as ``n_classes`` to every simulation.
A cohort also reads each man's sperm-retrieval chances (:mod:`ra_model.studies.retrieval`).
"""

from __future__ import annotations

from ra_model.errors import SimulationFailedError
from ra_model.studies.experiments.cohort import compare_published, enrol
from ra_model.studies.experiments.common import ExperimentResult, regimen_for_weight, sweep_visits
from ra_model.studies.experiments.reader import experiments_dir, list_experiments, load_experiment
from ra_model.studies.experiments.run import run_experiment
from ra_model.studies.experiments.single import missed_dose_changes, run_readouts
from ra_model.studies.experiments.spec import Experiment, Published, Run

__all__ = [
    "Experiment",
    "ExperimentResult",
    "Published",
    "Run",
    "SimulationFailedError",
    "compare_published",
    "enrol",
    "experiments_dir",
    "list_experiments",
    "load_experiment",
    "missed_dose_changes",
    "regimen_for_weight",
    "run_experiment",
    "run_readouts",
    "sweep_visits",
]
