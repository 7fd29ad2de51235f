"""Compile a user's SBML file (for example the export, edited in COPASI) into an engine, checking its ids."""

from __future__ import annotations

from pathlib import Path

from ra_model.engines.engine import Engine, SolverOptions
from ra_model.errors import ModelBuildError
from ra_model.model import columns as C
from ra_model.model import semen
from ra_model.model.validate import read_sbml


def engine_from_file(path: Path, *, options: SolverOptions | None = None) -> Engine:
    """Compile an SBML file (for example the export, edited in COPASI) into an engine for ``simulate``.

    The file must keep the ids the package relies on (the observables, the dose-event parameters and the
    readout limits).

    Args:
        path: The SBML file.
        options: Solver settings.

    Returns:
        An engine to pass as ``simulate(..., engine=engine_from_file(path))``.

    Raises:
        ModelBuildError: If the file is not valid SBML or lacks an id the package needs.
    """
    text = read_sbml(path)
    engine = Engine(text, options=options)
    needed = [o.model_id for o in C.OBSERVABLES] + [
        "dose_mg",
        "dose_interval_h",
        "n_doses",
        "fed",
        "doses_given",
        "t_next_dose",
        "nmol_per_mg_iso",
        "motile_detection_limit",
        *semen.LIMIT_PARAMETERS,
    ]
    known = set(engine.parameter_ids) | set(engine.species_ids)
    missing = [n for n in needed if n not in known]
    if missing:
        raise ModelBuildError(
            f"{path} lacks ids that ra_model needs: {', '.join(missing)}; keep the exported ids when editing"
        )
    return engine
