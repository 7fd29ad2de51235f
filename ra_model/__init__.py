"""ra_model: retinoic-acid signalling in the human testis and oral isotretinoin, as a mechanistic ODE model.

The verbs people use, in pipeline order (model -> engines -> studies -> interop, plots)::

    from ra_model import Regimen, simulate, make_design, run_sweep, run_experiment, export_sbml, plot_timecourse

    table = simulate("maturation_arrest", "20 mg bid for 180 d", t_end_d=365)
    plot_timecourse([table], labels=["20 mg bid"]).savefig("run.png")

``plot_timecourse`` is imported on first use, so ``import ra_model`` does not load matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ra_model.engines.engine import Engine, SolverOptions
from ra_model.engines.simulate import ParameterChange, simulate
from ra_model.errors import (
    InvalidValueError,
    ModelBuildError,
    RAModelError,
    RegimenParseError,
    SimulationFailedError,
    UnknownNameError,
)
from ra_model.interop.sbml_export import export_sbml
from ra_model.model.phenotypes import Phenotype, get_phenotype, load_phenotypes
from ra_model.model.regimen import Regimen
from ra_model.model.source import read_parameter_table
from ra_model.studies.design import make_design
from ra_model.studies.experiments import load_experiment, run_experiment
from ra_model.studies.sweep import run_sweep

if TYPE_CHECKING:
    from ra_model.plots.timecourse import plot_timecourse

__all__ = [
    "Engine",
    "InvalidValueError",
    "ModelBuildError",
    "ParameterChange",
    "Phenotype",
    "RAModelError",
    "Regimen",
    "RegimenParseError",
    "SimulationFailedError",
    "SolverOptions",
    "UnknownNameError",
    "export_sbml",
    "get_phenotype",
    "load_experiment",
    "load_phenotypes",
    "make_design",
    "plot_timecourse",
    "read_parameter_table",
    "run_experiment",
    "run_sweep",
    "simulate",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import the figure functions on first use (matplotlib is not loaded by ``import ra_model``)."""
    if name == "plot_timecourse":
        from ra_model.plots.timecourse import plot_timecourse

        return plot_timecourse
    raise AttributeError(f"module 'ra_model' has no attribute {name!r}")
