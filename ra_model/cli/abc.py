"""The ``ra-model calibrate-abc`` command: fit population spreads by ABC-SMC and write the posterior and report."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

log = logging.getLogger("ra_model.cli")


def _positive(text: str) -> int:
    """Parse a whole number >= 1 (an ``argparse`` type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give one >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1; give a whole number >= 1")
    return value


def _minutes(text: str) -> float:
    """Parse a number of minutes > 0 (an ``argparse`` type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give minutes > 0, e.g. 90") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value:g} minutes: give a number of minutes > 0, e.g. 90")
    return value


def _command(args: argparse.Namespace) -> str:
    """Return the command line that reproduces this run (for the posterior's header and the report)."""
    parts = [
        "ra-model calibrate-abc",
        f"--out {args.out}",
        f"--population-size {args.population_size}",
        f"--generations {args.generations}",
        f"--men {args.men}",
        f"--classes {args.classes}",
        f"--seed {args.seed}",
        f"--abc-seed {args.abc_seed}",
        f"--workers {args.workers}",
        f"--check-draws {args.check_draws}",
    ]
    if args.problem:
        parts.append(f"--problem {args.problem}")
    if args.max_minutes is not None:
        parts.append(f"--max-minutes {args.max_minutes:g}")
    if args.resume:
        parts.append("--resume")
    if args.write:
        parts.append("--write")
    return " ".join(parts)


def _cmd_calibrate_abc(args: argparse.Namespace) -> int:
    import pyabc  # type: ignore[import-untyped]  # noqa: F401  (its import adds its own handler to the "ABC" logger)

    from ra_model.errors import InvalidValueError
    from ra_model.model.source import model_dir
    from ra_model.studies import abc_population as A

    logging.getLogger("ABC").handlers.clear()  # its progress goes through ra-model's logging (-v) only
    problem = A.load_problem(Path(args.problem) if args.problem else None)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidValueError(f"--out {out}: cannot create the output folder ({exc}); give a folder path") from exc
    size = A.SimulationSize(men=args.men, n_classes=args.classes, seed=args.seed, workers=args.workers)
    settings = A.AbcSettings(
        population_size=args.population_size,
        generations=args.generations,
        size=size,
        seed=args.abc_seed,
        workers=args.workers,
        max_minutes=args.max_minutes,
    )
    command = _command(args)
    sys.stderr.write(
        f"population ABC: {len(problem.parameters)} values, {len(problem.fitted)} targets "
        f"({', '.join(t.id for t in problem.fitted)}); checks kept out: {', '.join(t.id for t in problem.checks)}\n"
    )
    result = A.run_abc(problem, out_dir=out, settings=settings, resume=args.resume)
    header = A.posterior_header(result, command=command)
    A.write_posterior(result.posterior, out / A.POSTERIOR_FILE, header=header)
    result.generations.to_csv(out / "generations.csv", index=False)
    posterior = A.read_posterior(out / A.POSTERIOR_FILE, population=problem.population)
    checks = A.check_table(problem, posterior, size=size, draws=args.check_draws, seed=args.abc_seed)
    checks.to_csv(out / "checks.csv", index=False)
    text = A.report(result, checks, command=command, check_draws=args.check_draws)
    (out / "population_abc.md").write_text(text, encoding="utf-8")
    summary = A.posterior_summary(result.posterior, problem.prior_box())
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3g}".format):
        sys.stdout.write(summary.to_string(index=False) + "\n\n")
        shown = checks[[A.TARGET, A.ROLE, A.VALUE, A.SIM_MEDIAN, A.SIM_LOW, A.SIM_HIGH]]
        sys.stdout.write(shown.to_string(index=False) + "\n")
    sys.stdout.write(
        f"{result.evaluations} candidates in {result.elapsed_s / 60:.1f} min; wrote {out}/ ({A.POSTERIOR_FILE}, "
        "population_abc.md, checks.csv, generations.csv, abc.db)\n"
    )
    if not result.converged:
        sys.stderr.write(
            f"the run stopped at temperature {result.final_temperature:.3g}, before 1: the posterior is provisional "
            f"(wider than the fit's); carry on with the same command and --resume\n"
        )
    if args.write:
        A.write_posterior(result.posterior, model_dir() / A.POSTERIOR_FILE, header=header)
        fits = model_dir() / "fits"
        fits.mkdir(exist_ok=True)
        (fits / "population_abc.md").write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {model_dir() / A.POSTERIOR_FILE} and {fits / 'population_abc.md'}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``calibrate-abc`` to the ``ra-model`` sub-command parser."""
    p = sub.add_parser(
        "calibrate-abc",
        help="fit population spreads and histology medians by ABC-SMC (models/population_abc.toml)",
    )
    p.add_argument("--out", required=True, help="folder for the pyABC database, posterior, report and checks")
    p.add_argument("--problem", default=None, help="ABC problem file (default models/population_abc.toml)")
    p.add_argument("--population-size", type=_positive, default=40, help="particles per generation (default 40)")
    p.add_argument("--generations", type=_positive, default=3, help="ABC-SMC generations (default 3)")
    p.add_argument("--men", type=_positive, default=60, help="men per histology per candidate (default 60)")
    p.add_argument("--classes", type=_positive, default=4, metavar="N", help="focus classes (default 4)")
    p.add_argument("--seed", type=int, default=16, help="population seed of the simulated men (default 16)")
    p.add_argument("--abc-seed", type=int, default=1, help="seed of pyABC's sampling (default 1)")
    p.add_argument(
        "--workers", type=_positive, default=2, help="candidates simulated at once, one process each (default 2)"
    )
    p.add_argument(
        "--check-draws", type=_positive, default=10, help="posterior draws simulated for the checks (default 10)"
    )
    p.add_argument(
        "--max-minutes",
        type=_minutes,
        default=None,
        help="stop after the first generation that ends past this many minutes (the posterior is then provisional)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="carry on the run in --out's abc.db (same problem and sizes) from its last finished generation",
    )
    p.add_argument(
        "--write",
        action="store_true",
        help="also write models/population_posterior.csv and models/fits/population_abc.md",
    )
    p.set_defaults(func=_cmd_calibrate_abc)
