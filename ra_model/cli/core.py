"""The core ``ra-model`` commands: simulate, demo, phenotypes, parameters and calibrate."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ra_model.model import columns as C

log = logging.getLogger("ra_model.cli")

#: How to keep a model file's own value that a phenotype preset replaces (said with the warning).
_KEEP_FILE_VALUE = "to keep the file's value, give it with --set NAME=VALUE, or run with --phenotype healthy"

#: Focus classes of the demo's testis (the maturation-arrest preset is a mosaic of foci).
DEMO_CLASSES = 8
#: Output step of the demo, days: hourly, so the plasma panel draws the drug's within-day swing.
DEMO_STEP_D = 1.0 / 24.0


def parse_overrides(pairs: Sequence[str]) -> dict[str, float]:
    """Turn ``NAME=VALUE`` strings from ``--set`` into a dict of floats, each checked against its physical domain.

    Raises:
        argparse.ArgumentTypeError: A pair that is not ``NAME=VALUE`` with a number.
        InvalidValueError: A constant or regimen input, or a value outside the parameter's physical domain
            (``ra_model.model.domain``); the message names the parameter, the value, its domain and the fix.
    """
    from ra_model.model.domain import check_values

    values: dict[str, float] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--set {pair!r}: write NAME=VALUE, e.g. --set cyp26_expr=2")
        try:
            values[name.strip()] = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--set {pair!r}: {text!r} is not a number") from None
    return check_values(values, where="--set")


#: Units ``--step`` accepts, in days.
STEP_UNITS_D: dict[str, float] = {"min": 1.0 / 1440.0, "h": 1.0 / 24.0, "d": 1.0}


def parse_step(text: str) -> float:
    """Read an output step such as ``1h``, ``30min``, ``0.5d`` or ``2`` (days) and return it in days.

    Raises:
        argparse.ArgumentTypeError: Not a positive number with an optional unit (min, h, d).
    """
    raw = text.strip().lower()
    unit = next((u for u in sorted(STEP_UNITS_D, key=len, reverse=True) if raw.endswith(u)), "d")
    number = raw[: -len(unit)] if raw.endswith(unit) else raw
    try:
        value = float(number)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"--step {text!r}: give a positive output step with a unit, e.g. 1h, 30min or 1d (a bare number is days)"
        )
    return value * STEP_UNITS_D[unit]


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ra_model.engines.from_file import engine_from_file, preset_overrides
    from ra_model.engines.simulate import engine_classes, simulate
    from ra_model.model.phenotypes import get_phenotype

    if args.force and not args.model:
        raise argparse.ArgumentTypeError("--force only applies to a --model file; give --model FILE or drop --force")
    overrides = parse_overrides(args.set)
    engine = engine_from_file(Path(args.model), force=args.force) if args.model else None
    if engine is not None:
        preset = get_phenotype(args.phenotype).for_classes(engine_classes(engine))
        for override in preset_overrides(engine.defaults, preset):
            if override.parameter not in overrides:
                log.warning("phenotype %r %s; %s", preset.name, override, _KEEP_FILE_VALUE)
    table = simulate(
        args.phenotype,
        args.regimen,
        t_end_d=args.days,
        output_step_d=args.step,
        overrides=overrides,
        engine=engine,
        n_classes=args.classes,
    )
    write_table(table, args.out)
    if args.plot:
        write_plot([table], args.plot)
    _print_summary(table)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ra_model.engines.splitpath import simulate_split

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    regimen = "20 mg bid for 180 d"
    # the mosaic testis of the preset (8 focus classes), every dose exact on the split path; hourly rows so
    # the plasma panel shows the drug's within-day swing, not the trough at dosing time
    untreated = simulate_split("maturation_arrest", None, t_end_d=365, n_classes=DEMO_CLASSES)
    treated = simulate_split(
        "maturation_arrest", regimen, t_end_d=365, n_classes=DEMO_CLASSES, output_step_d=DEMO_STEP_D
    )
    _print_summary(treated, every_d=30)
    write_table(treated, out / "demo_maturation_arrest_20mg_bid.csv")
    write_plot(
        [untreated, treated], out / "demo.png", labels=["maturation arrest, no drug", f"maturation arrest, {regimen}"]
    )
    return 0


def _cmd_phenotypes(args: argparse.Namespace) -> int:
    from ra_model.model.phenotypes import load_phenotypes

    for preset in load_phenotypes().values():
        changes = [f"{k} = {v:g}" for k, v in preset.parameters.items()]
        changes += [f"{k} x {v:g}" for k, v in preset.scale.items()]
        if preset.initial_amounts:
            changes.append("initial " + ", ".join(f"{k} = {v:g}" for k, v in preset.initial_amounts.items()))
        sys.stdout.write(f"{preset.name}\n  {preset.description}\n  changes: {'; '.join(changes) or 'none'}\n")
        if args.verbose:
            sys.stdout.write(f"  why: {preset.rationale}\n")
    return 0


def _cmd_parameters(args: argparse.Namespace) -> int:
    from ra_model.model.source import read_parameter_table

    table = pd.DataFrame([vars(p) for p in read_parameter_table().values()])
    if args.category:
        table = table[table["category"] == args.category]
    if args.out:
        write_table(table, args.out)
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
            shown = ["id", "value", "unit", "domain", "lower", "upper", "source"]
            sys.stdout.write(table[shown].to_string(index=False) + "\n")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from ra_model.studies.calibration import calibrate, healthy_initial_amounts, write_back

    params, report = calibrate()
    out = Path(args.report)
    out.mkdir(parents=True, exist_ok=True)
    report.to_csv(out / "calibration_report.csv", index=False)
    (out / "calibrated_parameters.json").write_text(json.dumps(params, indent=2), encoding="utf-8")
    with pd.option_context("display.width", 200):
        sys.stdout.write(
            report[["target", "published_or_assumed", "simulated", "relative_residual"]].to_string() + "\n"
        )
    if args.write:
        write_back(params, initial_amounts=healthy_initial_amounts(params))
        sys.stdout.write("wrote fitted values to models/ra_testis.ant and models/parameters.csv\n")
    return 0


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """Write a results table as CSV, with its ``attrs`` (units, provenance) beside it as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    units = table.attrs.get("units")
    if units:
        meta = {k: v for k, v in table.attrs.items() if k != "dose_times_d"}
        path.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    sys.stdout.write(f"wrote {path}\n")


def write_plot(tables: list[pd.DataFrame], path: str | Path, labels: list[str] | None = None) -> None:
    """Draw the standard time-course panel for one or more tables and save it as an image."""
    from ra_model.plots.timecourse import plot_timecourse

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = plot_timecourse(tables, labels=labels)
    fig.savefig(path, dpi=110)
    sys.stdout.write(f"wrote {path}\n")


def _print_summary(table: pd.DataFrame, every_d: float = 30.0) -> None:
    cols = [
        C.TIME_D,
        C.DOSES_GIVEN,
        C.PLASMA_ISOTRETINOIN,
        C.TESTIS_ATRA,
        C.STRA8,
        C.BTB_INTEGRITY,
        C.SPERMIATION_EFFICIENCY,
        C.EJACULATE_CONCENTRATION,
        C.MOTILE_SPERM_PRESENT,
    ]
    phase = table[C.TIME_D] / every_d
    rows = table[(phase - phase.round()).abs() < 1e-9]
    short = {c: c.replace("_ng_per_mL", "").replace("_M_per_mL", "").replace("_rel", "") for c in cols}
    with pd.option_context("display.width", 200, "display.float_format", "{:.4g}".format):
        sys.stdout.write(f"{table.attrs.get('phenotype')} | {table.attrs.get('regimen') or 'no drug'}\n")
        sys.stdout.write(rows[cols].rename(columns=short).to_string(index=False) + "\n")
    present = table.loc[table[C.MOTILE_SPERM_PRESENT], C.TIME_D]
    if len(present):
        sys.stdout.write(
            f"motile sperm first present on day {present.iloc[0]:g}; "
            f"peak {table[C.EJACULATE_CONCENTRATION].max():.3g} million/mL\n"
        )
    else:
        sys.stdout.write("no motile sperm above the detection limit at any time\n")


def _cmd_calibrate_prevalence(args: argparse.Namespace) -> int:
    from ra_model.studies.calibrate_prevalence import calibrate_prevalence, fit_note
    from ra_model.studies.population import write_log_sd

    fit = calibrate_prevalence(n=args.n, seed=args.seed, n_classes=args.classes)
    out = Path(args.report)
    out.mkdir(parents=True, exist_ok=True)
    fit.report.to_csv(out / "prevalence_fit_report.csv", index=False)
    fit.trace.to_csv(out / "prevalence_fit_trace.csv", index=False)
    (out / "prevalence_fit.json").write_text(
        json.dumps({"fitted_log_sd": fit.fitted, "n": fit.n_per_histology, "seed": args.seed}, indent=2),
        encoding="utf-8",
    )
    with pd.option_context("display.width", 200, "display.float_format", "{:.4g}".format):
        sys.stdout.write(fit.report.drop(columns=["source"]).to_string(index=False) + "\n")
    sys.stdout.write(f"fitted SD of logit(focus_share): {fit.fitted['focus_share']:g}; report in {out}\n")
    if args.write:
        for line in write_log_sd(fit.fitted, note=fit_note(fit), by="ra-model calibrate-prevalence"):
            sys.stdout.write(f"wrote models/population.toml: {line}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the core commands to the ``ra-model`` sub-command parser."""
    p = sub.add_parser("simulate", help="simulate a phenotype under a regimen")
    p.add_argument("--phenotype", default="healthy", help="preset name (see `ra-model phenotypes`)")
    p.add_argument("--regimen", default=None, help='e.g. "20 mg bid for 180 d"; omit for no drug')
    p.add_argument("--days", type=float, default=365.0, help="simulated time in days (default 365)")
    p.add_argument(
        "--step",
        type=parse_step,
        default=1.0,
        metavar="STEP",
        help="output step: 1h, 30min, 1d or a number of days (default 1d; use 1h to see plasma drug within the day)",
    )
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="parameter override")
    p.add_argument("--out", required=True, help="CSV file for the results table")
    p.add_argument("--plot", default=None, help="PNG file for the standard panel")
    p.add_argument("--model", default=None, help="SBML file to simulate instead of the shipped model (e.g. an edit)")
    p.add_argument("--force", action="store_true", help="run a --model file even though it fails the SBML unit check")
    p.add_argument(
        "--classes",
        type=int,
        default=None,
        metavar="N",
        help="build the shipped testis from N tubule-focus classes (default 1; not with --model)",
    )
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "demo", help="maturation arrest (8 focus classes) with and without 20 mg bid: a table and a figure"
    )
    p.add_argument("--out", default="ra_model_demo", help="output folder (default ./ra_model_demo)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("phenotypes", help="list the phenotype presets")
    p.set_defaults(func=_cmd_phenotypes)

    p = sub.add_parser("parameters", help="list the parameter table")
    p.add_argument("--category", default=None, help="only this category (e.g. pk, germ_cell)")
    p.add_argument("--out", default=None, help="write the table as CSV instead of printing it")
    p.set_defaults(func=_cmd_parameters)

    p = sub.add_parser(
        "calibrate-prevalence",
        help="fit the spread of focus_share to the prevalence of azoospermia (models/calibration_targets.csv)",
    )
    p.add_argument("--n", type=int, default=4000, help="virtual men per evaluation (default 4000)")
    p.add_argument("--seed", type=int, default=1, help="population seed (default 1)")
    p.add_argument("--classes", type=int, default=8, metavar="N", help="focus classes of the testis (default 8)")
    p.add_argument("--report", default="prevalence_fit", help="folder for the fit report (default ./prevalence_fit)")
    p.add_argument("--write", action="store_true", help="write the fitted spread into models/population.toml")
    p.set_defaults(func=_cmd_calibrate_prevalence)

    p = sub.add_parser("calibrate", help="refit the fitted parameters to models/calibration_targets.csv")
    p.add_argument("--report", default="calibration_report", help="folder for the fit report")
    p.add_argument("--write", action="store_true", help="write fitted values back to models/")
    p.set_defaults(func=_cmd_calibrate)
