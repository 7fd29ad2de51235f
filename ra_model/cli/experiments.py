"""The ``ra-model run`` and ``ra-model experiments`` commands: run a scenario file, list the shipped ones."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from ra_model.studies.abc_population import Posterior
    from ra_model.studies.experiments import Experiment, ExperimentResult

log = logging.getLogger("ra_model.cli")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):
        return _json_safe(value.item())
    return value


def _write_tables(result: ExperimentResult, out: Path) -> None:
    """Write a result's tables and provenance (everything but the figures) into ``out``."""
    result.results.to_csv(out / "results.csv", index=False)
    result.summary.to_csv(out / "summary.csv", index=False)
    summary: dict[str, Any] = {"experiment": result.experiment.id, "summary": result.summary.to_dict(orient="records")}
    for name, table in result.tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
        summary[name] = table.to_dict(orient="records")
    (out / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2, default=str), encoding="utf-8")
    (out / "inputs.json").write_text(
        json.dumps(_json_safe(dict(result.inputs)), indent=2, default=str), encoding="utf-8"
    )
    (out / f"{result.experiment.id}.toml").write_text(result.experiment.text, encoding="utf-8")


def _cmd_run(args: argparse.Namespace) -> int:
    from ra_model.errors import ExperimentFailedError, InvalidValueError, SimulationFailedError
    from ra_model.plots.cohort import close, experiment_figures
    from ra_model.studies.experiments import load_experiment, run_experiment
    from ra_model.studies.experiments.cohort import RETRIEVAL_TABLE

    experiment = load_experiment(Path(args.file), reduced=args.reduced)
    posterior = _posterior_for(experiment, args) if args.uncertainty is not None else None
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidValueError(f"--out {out}: cannot create the output folder ({exc}); give a folder path") from exc
    sys.stderr.write(f"running {experiment.id} ({experiment.kind}){' at reduced size' if args.reduced else ''}\n")
    try:
        result = run_experiment(
            experiment,
            work_dir=out / "sweep",
            workers=args.workers,
            progress=not args.no_progress,
            fresh=args.fresh,
            client=args.scheduler,
        )
    except ExperimentFailedError as exc:  # keep what was computed: every failure, with its inputs
        _write_tables(exc.partial, out)
        raise SimulationFailedError(f"{exc}; all are listed in {out / 'failures.csv'}") from exc
    _write_tables(result, out)  # tables first: a figure that cannot be drawn loses no result
    figures = experiment_figures(result)
    for name, fig in figures.items():
        fig.savefig(out / f"{name}.png", dpi=110)
    close(figures)
    failures = result.tables.get("failures")
    if failures is not None and len(failures):
        sys.stderr.write(f"{len(failures)} patient(s) failed; see {out / 'failures.csv'}\n")
        for _, row in failures.head(5).iterrows():
            params = {k: v for k, v in row.items() if k not in ("message", "status")}
            sys.stderr.write(f"  {row['sample_id']}: {row['message']}\n    parameters: {params}\n")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3g}".format):
        shown = result.tables.get("comparison", result.summary)
        sys.stdout.write(shown.to_string(index=False) + "\n")
        _print_retrieval(result)
    written = "results.csv, summary.csv, summary.json, inputs.json"
    written += ", retrieval.csv" if RETRIEVAL_TABLE in result.tables else ""
    if posterior is not None:
        _run_uncertainty(experiment, result, posterior, args, out)
        written += ", uncertainty.csv, uncertainty_draws.csv, uncertainty.png"
    sys.stdout.write(f"wrote {out}/ ({written}, {len(figures)} figure(s))\n")
    return 0


def _draws(text: str) -> int:
    """Parse ``--uncertainty N``: a whole number of posterior draws >= 1 (an ``argparse`` type)."""
    from ra_model.errors import InvalidValueError
    from ra_model.studies.uncertainty import check_draws

    try:
        return check_draws(int(text))
    except ValueError as exc:
        message = str(exc) if isinstance(exc, InvalidValueError) else f"--uncertainty {text!r}: not a whole number"
        raise argparse.ArgumentTypeError(f"{message}; give the number of posterior draws, e.g. 10") from None


def _posterior_for(experiment: Experiment, args: argparse.Namespace) -> Posterior:
    """Check ``--uncertainty`` applies (a cohort) and read the posterior, before anything runs."""
    from ra_model.studies.abc_population import read_posterior
    from ra_model.studies.uncertainty import require_cohort

    require_cohort(experiment)
    return read_posterior(Path(args.posterior) if args.posterior else None, population=experiment.population())


def _run_uncertainty(
    experiment: Experiment, result: ExperimentResult, posterior: Posterior, args: argparse.Namespace, out: Path
) -> None:
    """Rerun the cohort over posterior draws; write the band table, the per-draw rates and the figure."""
    from ra_model.plots.uncertainty import close, plot_uncertainty
    from ra_model.studies.uncertainty import DRAWS_DIR, run_uncertainty

    sys.stderr.write(f"parameter uncertainty: {args.uncertainty} posterior draw(s) into {out / DRAWS_DIR}/\n")
    found = run_uncertainty(
        experiment,
        result,
        n_draws=args.uncertainty,
        posterior=posterior,
        out_dir=out / DRAWS_DIR,
        seed=args.uncertainty_seed,
        workers=args.workers,
        progress=not args.no_progress,
        fresh=args.fresh,
        client=args.scheduler,
    )
    found.table.to_csv(out / "uncertainty.csv", index=False)
    found.draws.to_csv(out / "uncertainty_draws.csv", index=False)
    fig = plot_uncertainty(found.table)
    fig.savefig(out / "uncertainty.png", dpi=110)
    close(fig)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3g}".format):
        sys.stdout.write(
            f"\nresponse rates with their sampling interval (Wilson 95%) and parameter band (2.5-97.5% over "
            f"{args.uncertainty} posterior draws; {found.reused} read back from an earlier run)\n"
        )
        sys.stdout.write(found.table.to_string(index=False) + "\n")


def _classes(n: int) -> str:
    """Return ``"1 focus class"`` or ``"8 focus classes"``."""
    return f"{n} focus class" + ("" if n == 1 else "es")


def _print_retrieval(result: ExperimentResult) -> None:
    """Print a cohort's retrieval section: its largest cohort's mean chances by histology and group."""
    from ra_model.studies import retrieval as R
    from ra_model.studies.experiments.cohort import RETRIEVAL_TABLE

    table = result.tables.get(RETRIEVAL_TABLE)
    if table is None or not len(table):
        return
    cohorts = result.experiment.cohorts
    largest = max(cohorts, key=lambda k: cohorts[k]) if cohorts else None
    if largest is not None and "cohort" in table:
        table = table[table["cohort"] == largest]
    shown = table[
        [
            R.HISTOLOGY,
            R.GROUP,
            R.N_MEN,
            R.MICRO_TESE_BASELINE,
            R.MICRO_TESE_END,
            R.CONVENTIONAL_TESE_BASELINE,
            R.CONVENTIONAL_TESE_END,
            R.EXPECTED_FOUND_MICRO_TESE_BASELINE,
            R.EXPECTED_FOUND_MICRO_TESE_END,
        ]
    ].rename(
        columns={
            R.MICRO_TESE_BASELINE: "micro_day0",
            R.MICRO_TESE_END: "micro_end",
            R.CONVENTIONAL_TESE_BASELINE: "conv_day0",
            R.CONVENTIONAL_TESE_END: "conv_end",
            R.EXPECTED_FOUND_MICRO_TESE_BASELINE: "found_micro_day0",
            R.EXPECTED_FOUND_MICRO_TESE_END: "found_micro_end",
        }
    )
    sys.stdout.write(
        f"\nsperm retrieval, cohort {largest!r} ({_classes(result.experiment.n_classes)}): mean chance that "
        f"micro-TESE / conventional TESE finds sperm on day 0 and at the end (day {result.experiment.t_end_d:g}), "
        "and the expected men with sperm found by micro-TESE (all cohorts in retrieval.csv)\n"
    )
    sys.stdout.write(shown.to_string(index=False) + "\n")


def _cmd_list(args: argparse.Namespace) -> int:
    from ra_model.studies.experiments import experiments_dir, list_experiments

    folder = Path(args.folder) if args.folder else experiments_dir()
    for exp in list_experiments(folder):
        classes = f", {_classes(exp.n_classes)}" if exp.n_classes > 1 else ""
        sys.stdout.write(f"{exp.id}  [{exp.kind}{classes}]\n  {exp.description}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run`` and ``experiments`` to the ``ra-model`` sub-command parser."""
    p = sub.add_parser("run", help="run an experiment file (experiments/<id>.toml)")
    p.add_argument("file", help="the experiment TOML file")
    p.add_argument("--out", required=True, help="output folder (rerun with the same folder to resume a cohort)")
    p.add_argument("--reduced", action="store_true", help="use the file's [reduced] table (quick run)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--scheduler",
        default=None,
        help="Dask scheduler address (tcp://host:port) to run cohorts, grids and --uncertainty draws on",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="set the earlier results in --out aside (into a replaced-<time> folder) instead of resuming",
    )
    p.add_argument(
        "--uncertainty",
        type=_draws,
        default=None,
        metavar="N",
        help="cohorts: rerun over N draws of the population posterior and report each rate's parameter band",
    )
    p.add_argument(
        "--posterior", default=None, help="posterior file for --uncertainty (default models/population_posterior.csv)"
    )
    p.add_argument("--uncertainty-seed", type=int, default=0, help="seed of the posterior draws (default 0)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("experiments", help="list the shipped experiments")
    p.add_argument("--folder", default=None, help="another folder of experiment files")
    p.set_defaults(func=_cmd_list)
