"""The ``ra-model fit pk`` and ``ra-model fit healthy`` commands: PEtab and pyPESTO fits with profile likelihoods."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

log = logging.getLogger("ra_model.cli")

#: Default folder of the fit reports (``models/fits`` of the project).
FITS_FOLDER = "fits"


def _cmd_fit(args: argparse.Namespace) -> int:
    from ra_model.interop.petab_export import build_petab_problem
    from ra_model.model.source import model_dir
    from ra_model.plots.fit import plot_profiles
    from ra_model.studies.fit_pk import PK_DATA_FILE, fit_stage, read_fitted_values, read_pk_data, report_markdown

    stage = args.fit_stage
    data_path = Path(args.data) if getattr(args, "data", None) else model_dir() / PK_DATA_FILE
    fixed = read_fitted_values(Path(args.pk_from)) if getattr(args, "pk_from", None) else None
    problem = build_petab_problem(pk_data=read_pk_data(data_path)).problem()
    fit = fit_stage(
        problem, stage=stage, fixed=fixed, n_starts=args.starts, seed=args.seed, profiles=not args.no_profiles
    )
    out = Path(args.out) if args.out else model_dir() / FITS_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{stage}_fit"
    plot_file = f"{stem}_profiles.png"
    if stage == "pk":
        note = f"Data: the fit rows of {data_path.name} (reconstructed from label summaries; see its source column)."
    else:
        note = "Data: the healthy targets of calibration_targets.csv" + (
            f"; PK held at {Path(args.pk_from).name}." if fixed else "; PK at the parameter table's values."
        )
    report = report_markdown(fit, plot_file="" if args.no_profiles else plot_file, data_note=note)
    (out / f"{stem}.md").write_text(report, encoding="utf-8")
    fit.parameters.to_csv(out / f"{stem}.csv", index=False)
    fit.targets.to_csv(out / f"{stem}_targets.csv", index=False)
    paths = [out / f"{stem}.md", out / f"{stem}.csv", out / f"{stem}_targets.csv"]
    if not args.no_profiles:
        fit.profiles.to_csv(out / f"{stem}_profiles.csv", index=False)
        threshold = float(fit.settings["profile_threshold"])  # type: ignore[arg-type]
        figure = plot_profiles(fit.profiles, fit.parameters, threshold=threshold, title=f"{stage} stage: profiles")
        figure.savefig(out / plot_file, dpi=110)
        paths += [out / f"{stem}_profiles.csv", out / plot_file]
    shown = ["parameter", "fitted", "profile_lower", "profile_upper", "identifiable"]
    with pd.option_context("display.width", 200, "display.float_format", "{:.4g}".format):
        sys.stdout.write(fit.parameters[shown].to_string(index=False) + "\n")
    for path in paths:
        sys.stdout.write(f"wrote {path}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``fit pk`` and ``fit healthy`` to the ``ra-model`` sub-command parser."""
    fit = sub.add_parser(
        "fit",
        help="fit a calibration stage as a PEtab problem with pyPESTO, with profile likelihoods",
        description="Multi-start fit of one stage of the model's PEtab problem (ra-model export petab) with pyPESTO "
        "and its roadrunner backend, then a profile likelihood per fitted parameter; writes a report "
        "(Markdown, CSV tables, a profile plot) into --out.",
    )
    stages = fit.add_subparsers(dest="fit_stage", required=True)
    for stage, text in (
        ("pk", "isotretinoin PK against the concentration-time points of models/pk_data.csv"),
        ("healthy", "the healthy steady state against the healthy targets of models/calibration_targets.csv"),
    ):
        p = stages.add_parser(stage, help=text)
        p.add_argument("--out", default=None, help="folder for the report (default: models/fits)")
        p.add_argument("--starts", type=int, default=20, help="number of optimizer starts (default 20)")
        p.add_argument("--seed", type=int, default=1, help="seed of the start points (default 1)")
        p.add_argument("--no-profiles", action="store_true", help="skip the profile likelihoods (faster)")
        if stage == "pk":
            p.add_argument("--data", default=None, help="PK data CSV (default: models/pk_data.csv)")
        else:
            p.add_argument(
                "--pk-from", default=None, metavar="CSV", help="hold PK at the fitted values of this pk_fit.csv"
            )
        p.set_defaults(func=_cmd_fit)
