"""The ``ra-model sweep`` and ``ra-model sensitivity`` commands: run a spec file into an output folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ra_model.studies.design import make_design, parse_sweep_spec, read_spec
    from ra_model.studies.metrics import resolve_metric
    from ra_model.studies.sweep import run_sweep, to_xarray

    path = Path(args.spec)
    raw = read_spec(path)
    if raw.get("kind") == "sensitivity":
        return _cmd_sensitivity(args)
    spec = parse_sweep_spec(raw, where=str(path), reduced=args.reduced)
    if args.force and not args.model:
        raise argparse.ArgumentTypeError("--force only applies to a --model file; give --model FILE or drop --force")
    out = Path(args.out)
    samples = make_design(spec.ranges, design=spec.design, n=spec.n, seed=spec.seed, fixed=spec.fixed)
    metrics = {m: resolve_metric(m, where=f"{path}, key metrics", plugins=args.plugin) for m in spec.metrics}
    table = run_sweep(
        samples,
        metrics=metrics,
        phenotype=spec.phenotype,
        regimen=spec.regimen,
        t_end_d=spec.t_end_d,
        output_step_d=spec.output_step_d,
        out_dir=out / "chunks",
        fresh=args.fresh,
        workers=args.workers,
        client=args.scheduler,
        fast=spec.fast or args.fast,
        model=Path(args.model) if args.model else None,
        progress=not args.quiet,
        n_classes=args.classes,
        force_model=args.force,
    )
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "sweep.parquet", index=False)
    table.to_csv(out / "sweep.csv", index=False)
    if spec.design == "grid":  # a grid is also an array: one dimension per parameter
        to_xarray(table).to_netcdf(out / "sweep.nc", engine="scipy")
    (out / "provenance.json").write_text(json.dumps(table.attrs["provenance"], indent=2, default=str), encoding="utf-8")
    failed = int((table["status"] != "ok").sum())
    sys.stdout.write(f"wrote {out / 'sweep.parquet'} ({len(table)} samples, {failed} failed)\n")
    return 0


def _cmd_sensitivity(args: argparse.Namespace) -> int:
    from ra_model.plots.cohort import close
    from ra_model.plots.sensitivity import index_figures
    from ra_model.studies.design import read_spec
    from ra_model.studies.sensitivity import run_sensitivity_experiment

    path = Path(args.spec)
    summary = run_sensitivity_experiment(
        read_spec(path),
        plugins=args.plugin,
        out_dir=Path(args.out),
        reduced=args.reduced,
        workers=args.workers,
        progress=not args.quiet,
        where=str(path),
        fresh=args.fresh,
        n_classes=args.classes,
    )
    indices = summary.pop("indices")
    figures = index_figures(indices, title=summary["title"])
    for name, fig in figures.items():
        fig.savefig(Path(args.out) / f"{name}.png", dpi=110)
        summary["files"].append(str(Path(args.out) / f"{name}.png"))
    close(figures)
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    key = "ST" if summary["method"] == "sobol" else "mu_star"
    rows = indices[indices["metric"] == summary["rank_by"]].sort_values(key, ascending=False)
    sys.stdout.write(f"{summary['method']} on {summary['n_runs']} runs; ranking by {summary['rank_by']} ({key}):\n")
    sys.stdout.write(rows.drop(columns="metric").to_string(index=False, float_format="{:.3g}".format) + "\n")
    for file in summary["files"]:
        sys.stdout.write(f"wrote {file}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sweep`` and ``sensitivity`` to the ``ra-model`` sub-command parser."""
    for name, func, text in (
        ("sweep", _cmd_sweep, "run a sweep spec (TOML) into a folder of Parquet chunks and a table"),
        ("sensitivity", _cmd_sensitivity, "run a sensitivity spec (TOML): indices, ranking and figures"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("spec", help="the spec file (TOML)")
        p.add_argument("--out", required=True, help="output folder (a killed run resumes from it)")
        p.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
        p.add_argument("--reduced", action="store_true", help="use the spec's n_reduced (a quick run)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument(
            "--classes",
            type=int,
            default=1,
            metavar="N",
            help="build the shipped testis from N tubule-focus classes (default 1; see README, focus classes)",
        )
        p.add_argument(
            "--plugin",
            action="append",
            default=[],
            metavar="MODULE",
            help="trust MODULE's 'MODULE:function' metrics in the spec (they run your code); repeatable",
        )
        p.add_argument(
            "--fresh",
            action="store_true",
            help="start over: move earlier results in OUT/chunks into OUT/chunks/replaced-<UTC time>/ "
            "(needed when the spec's settings changed; nothing is deleted)",
        )
        if name == "sweep":
            p.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:port)")
            p.add_argument("--fast", action="store_true", help="use the fast path (see README, Performance)")
            p.add_argument("--model", default=None, help="SBML file to sweep instead of the shipped model")
            p.add_argument(
                "--force", action="store_true", help="sweep a --model file even though it fails the SBML unit check"
            )
        p.set_defaults(func=func)
