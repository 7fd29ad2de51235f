"""ra_model: retinoic-acid signalling in the human testis and oral isotretinoin, as a mechanistic ODE model.

Typical use::

    from ra_model.engines import simulate
    table = simulate("maturation_arrest", "20 mg bid for 180 d", t_end_d=365)
"""

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
from ra_model.model.phenotypes import Phenotype, get_phenotype, load_phenotypes
from ra_model.model.regimen import Regimen
from ra_model.model.source import read_parameter_table

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
    "get_phenotype",
    "load_phenotypes",
    "read_parameter_table",
    "simulate",
]
__version__ = "0.1.0"
