"""Cross-check with AMICI: compile exported SBML into an AMICI model and simulate it on a regular grid.

AMICI (an optional extra: ``pip install -e ".[amici]"``) generates C++ from the SBML's math and solves it
with CVODES, a third implementation of the SBML semantics beside libroadrunner and COPASI. It compiles
the export as written (the dose event's assignment reads no assignment-rule variable,
:func:`ra_model.interop.sbml_export.inline_rules_in_event_assignments`); a model takes about half a
minute to a minute to compile, so compile once and simulate the compiled module many times.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from ra_model.errors import InvalidValueError, ModelBuildError, SimulationFailedError
from ra_model.model import columns as C

log = logging.getLogger(__name__)

#: CVODES tolerances of the cross-check (amounts in nmol or Mcell), as ``simulate()`` uses.
AMICI_RTOL = 1e-8
AMICI_ATOL = 1e-12
#: Internal solver steps allowed between two output times.
AMICI_MAX_STEPS = 1_000_000


def _amici() -> ModuleType:
    try:
        amici = importlib.import_module("amici")
        importlib.import_module("amici.sim.sundials")  # compiled model modules check its SWIG version on import
    except ImportError as exc:
        raise ModelBuildError(
            f"AMICI is not installed ({exc}); install the extra with pip install -e '.[amici]' (it compiles C++: "
            "a C++ compiler is needed, swig, cmake and BLAS come from PyPI)"
        ) from exc
    return amici


def compile_amici(sbml: str, *, out_dir: Path, model_name: str = "ra_testis_amici") -> ModuleType:
    """Compile SBML text into an AMICI model module (no sensitivity code) and import it.

    Args:
        sbml: SBML text (a ``str``, not a path), for example ``export_sbml(...)``.
        out_dir: Folder for the generated code and the compiled extension; created if needed.
        model_name: Python name of the model module (letters, digits and underscores).

    Returns:
        The model module; ``module.get_model()`` gives an AMICI model for :func:`simulate_amici`.

    Raises:
        ModelBuildError: If AMICI is not installed, or cannot import or compile the SBML (the message ends
            with AMICI's own).
    """
    if not model_name.isidentifier():
        raise InvalidValueError(f"model_name = {model_name!r}; use letters, digits and underscores")
    amici = _amici()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = os.environ.get("PATH", "")
    if shutil.which("swig") is None:  # swig comes from PyPI into the environment's bin/, which may not be on PATH
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{path}"
    try:
        importer = amici.SbmlImporter(sbml, from_file=False)
        importer.sbml2amici(model_name, out_dir, generate_sensitivity_code=False, verbose=logging.WARNING)
        module: ModuleType = amici.import_model_module(model_name, out_dir)
    except Exception as exc:  # AMICI raises whatever its importer, code generator or compiler raised
        raise ModelBuildError(f"AMICI could not compile the SBML into {out_dir}: {type(exc).__name__}: {exc}") from exc
    finally:
        os.environ["PATH"] = path
    return module


def simulate_amici(
    module: ModuleType,
    *,
    t_end_d: float,
    output_step_d: float = 1.0,
    parameters: Mapping[str, float] | None = None,
    states: Mapping[str, float] | None = None,
    rtol: float = AMICI_RTOL,
    atol: float = AMICI_ATOL,
) -> pd.DataFrame:
    """Simulate a compiled AMICI model from t = 0 and return the observables on a regular grid.

    Args:
        module: A model module from :func:`compile_amici` (the model's time unit is the hour, as in the export).
        t_end_d: Simulated time, days.
        output_step_d: Output spacing, days; ``t_end_d`` must be a whole number of steps.
        parameters: Values of the model's parameters by SBML id, instead of the file's.
        states: Initial values of state variables by SBML id (species amounts, and parameters that events
            change, such as ``t_next_dose``), instead of the file's.
        rtol: CVODES relative tolerance.
        atol: CVODES absolute tolerance.

    Returns:
        Columns ``time_d``, ``doses_given`` and one per observable (``ra_model.model.columns`` names).

    Raises:
        InvalidValueError: A bad grid, or an id the model lacks.
        SimulationFailedError: If AMICI's solver fails.
    """
    steps = t_end_d / output_step_d
    if not (math.isfinite(steps) and steps >= 1 and abs(steps - round(steps)) < 1e-9):
        raise InvalidValueError(
            f"t_end_d = {t_end_d!r} must be a positive whole number of output steps of {output_step_d!r} d"
        )
    run_simulation = importlib.import_module("amici.sim.sundials").run_simulation
    model: Any = module.get_model()
    model.set_timepoints(list(np.arange(int(round(steps)) + 1) * output_step_d * 24.0))
    free = set(model.get_free_parameter_ids())
    for name, value in (parameters or {}).items():
        if name not in free:
            raise InvalidValueError(f"the AMICI model has no parameter {name!r} (it may be a state: give it in states)")
        model.set_free_parameter_by_id(name, float(value))
    if states:
        ids = list(model.get_state_ids())
        unknown = [name for name in states if name not in ids]
        if unknown:
            raise InvalidValueError(f"the AMICI model has no state {', '.join(map(repr, unknown))}")
        initial = np.array(model.get_initial_state(), dtype=float)
        for name, value in states.items():
            initial[ids.index(name)] = float(value)
        model.set_initial_state(list(initial))
    solver = model.create_solver()
    solver.set_relative_tolerance(rtol)
    solver.set_absolute_tolerance(atol)
    solver.set_max_steps(AMICI_MAX_STEPS)
    result = run_simulation(model, solver)
    if int(result.status) != 0:
        raise SimulationFailedError(f"AMICI's solver failed (status {int(result.status)}); see its messages above")
    table = pd.DataFrame({C.TIME_D: np.asarray(result.ts, dtype=float) / 24.0})
    table[C.DOSES_GIVEN] = np.round(np.asarray(result.by_id("doses_given"), dtype=float)).astype(int)
    for obs in C.OBSERVABLES:
        table[obs.column] = np.asarray(result.by_id(obs.model_id), dtype=float)
    return table
