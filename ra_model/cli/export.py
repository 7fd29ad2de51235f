"""The ``ra-model export sbml``, ``ra-model export omex``, ``ra-model export petab`` and ``ra-model check`` commands."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ra_model.cli.core import parse_overrides

log = logging.getLogger("ra_model.cli")


def _cmd_export_sbml(args: argparse.Namespace) -> int:
    from ra_model.interop.sbml_export import export_sbml

    text = export_sbml(
        phenotype=args.phenotype,
        regimen=args.regimen,
        overrides=parse_overrides(args.set),
        annotate=not args.no_annotations,
        n_classes=args.classes,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {out}\n")
    return 0


def _cmd_export_omex(args: argparse.Namespace) -> int:
    from ra_model.interop.omex import (
        ArchiveRun,
        GridScenario,
        Scenario,
        experiment_file_scenarios,
        slug,
        standard_experiments,
        write_omex,
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    experiments: dict[str, list[ArchiveRun]] = {}
    if args.phenotype or args.regimen:
        phenotype = args.phenotype or "healthy"
        label = f"{phenotype}__{slug(args.regimen)}"
        experiments[label] = [
            Scenario(label=label, phenotype=phenotype, regimen=args.regimen, t_end_d=args.days, output_step_d=args.step)
        ]
    else:
        experiments.update(standard_experiments())
        from ra_model.studies.experiments import experiments_dir

        folder = Path(args.experiments) if args.experiments else experiments_dir()
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            runs = experiment_file_scenarios(path)
            if isinstance(runs, str):
                sys.stdout.write(f"skipped {path}: {runs}\n")
                continue
            experiments[path.stem] = runs
    for name, runs in experiments.items():
        path = write_omex(out / f"{name}.omex", runs)
        sys.stdout.write(f"wrote {path}\n")
        for note in dict.fromkeys(run.note for run in runs if isinstance(run, GridScenario) and run.note):
            sys.stdout.write(f"  note: {note}\n")
    return 0


def _cmd_export_petab(args: argparse.Namespace) -> int:
    from ra_model.interop.petab_export import build_petab_problem, write_petab_problem
    from ra_model.studies.fit_pk import read_pk_data

    export = build_petab_problem(pk_data=read_pk_data(Path(args.data)) if args.data else None)
    path = write_petab_problem(export, Path(args.out), force=args.force)
    sys.stdout.write(f"wrote {path} (check it with: petablint {path})\n")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from ra_model.interop.check import format_report, run_checks

    results = run_checks(Path(args.model) if args.model else None, copasi=not args.no_copasi)
    sys.stdout.write(format_report(results) + "\n")
    return 1 if any(r.failed for r in results) else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``export sbml``, ``export omex``, ``export petab`` and ``check`` to the ``ra-model`` sub-command parser."""
    export = sub.add_parser("export", help="export the model as SBML, COMBINE/OMEX archives or a PEtab problem")
    kinds = export.add_subparsers(dest="export_kind", required=True)

    p = kinds.add_parser("sbml", help="annotated SBML L3V2; with --phenotype/--regimen, a scenario")
    p.add_argument("--out", required=True, help="SBML file to write")
    p.add_argument("--phenotype", default=None, help="carry this preset's parameters and untreated steady state")
    p.add_argument("--regimen", default=None, help='carry this regimen in the dose event, e.g. "20 mg bid for 180 d"')
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="parameter override")
    p.add_argument("--no-annotations", action="store_true", help="leave out MIRIAM/SBO annotations and notes")
    p.add_argument(
        "--classes",
        type=int,
        default=1,
        metavar="N",
        help="build the testis from N tubule-focus classes (ids F1__ ... FN__; default 1, the published model)",
    )
    p.set_defaults(func=_cmd_export_sbml)

    p = kinds.add_parser(
        "omex",
        help="one COMBINE archive (SBML + SED-ML + manifest + metadata) per experiment",
        description="Without --phenotype/--regimen: every phenotype preset with no drug and with 20 mg bid for "
        "180 d, plus every single and grid scenario file in --experiments (missed doses in the dose event, a grid "
        "as a SED-ML repeatedTask per histology); cohort-like kinds (cohort, sensitivity) are skipped with the "
        "reason. Each SED-ML has a report per scenario and a plot per panel of the standard time-course figure.",
    )
    p.add_argument("--out", required=True, help="folder for the .omex files")
    p.add_argument("--phenotype", default=None, help="only this phenotype (one archive)")
    p.add_argument("--regimen", default=None, help="only this regimen (one archive)")
    p.add_argument("--days", type=float, default=365.0, help="simulated time for --phenotype/--regimen (365)")
    p.add_argument("--step", type=float, default=1.0, help="output step in days for --phenotype/--regimen (1)")
    p.add_argument("--experiments", default=None, help="folder of scenario files (default: the shipped experiments/)")
    p.set_defaults(func=_cmd_export_omex)

    p = kinds.add_parser(
        "petab",
        help="a PEtab v1 problem of the PK and healthy steady-state calibration (for pyPESTO, AMICI, COPASI ...)",
        description="SBML (as export sbml), conditions (one per study arm and the healthy steady state), observables "
        "with log-normal noise, measurements (models/pk_data.csv fit rows, healthy targets), parameters (the fitted "
        "ones on the log10 scale inside their plausible ranges, the rest fixed) and problem.yaml.",
    )
    p.add_argument("out", metavar="DIR", help="folder for the problem (new or empty)")
    p.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    p.add_argument("--data", default=None, help="PK data CSV (default: models/pk_data.csv)")
    p.set_defaults(func=_cmd_export_petab)

    p = sub.add_parser("check", help="model health report: validation, units, annotations, events, COPASI")
    p.add_argument("model", nargs="?", default=None, help="SBML file to check (default: the shipped model's export)")
    p.add_argument("--no-copasi", action="store_true", help="skip the quick COPASI agreement run")
    p.set_defaults(func=_cmd_check)
