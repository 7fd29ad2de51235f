"""The model source: locate the Antimony file and parameter table, and turn the source into SBML text."""

from __future__ import annotations

import csv
import hashlib
import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import antimony

from ra_model.errors import InvalidValueError, ModelBuildError
from ra_model.model.domain import check_table_row

#: Id of the model inside the Antimony source.
MODEL_ID = "ra_testis"
#: File names inside the model directory.
ANTIMONY_FILE = "ra_testis.ant"
PARAMETER_FILE = "parameters.csv"
PHENOTYPE_FILE = "phenotypes.toml"

#: Columns of the parameter table (``domain``: the physical domain, see :mod:`ra_model.model.domain`).
PARAMETER_COLUMNS = ("id", "value", "unit", "category", "description", "source", "lower", "upper", "domain")

_ANTIMONY_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def model_dir() -> Path:
    """Return the directory holding the model source, parameter table and phenotype presets.

    Returns:
        The ``models/`` directory of the project (shipped in the package as ``ra_model._models``).
    """
    return Path(str(resources.files("ra_model._models")))


@lru_cache(maxsize=1)
def parameter_table_path() -> Path:
    """Return the shipped parameter table, ``models/parameters.csv``."""
    return model_dir() / PARAMETER_FILE


def antimony_to_sbml(source: Path | str) -> str:
    """Convert Antimony to SBML text.

    Antimony keeps global state; this is the one place that touches it, under a lock.

    Args:
        source: A ``Path`` is read as a file; a ``str`` is Antimony text.

    Returns:
        SBML Level 3 Version 2 text.

    Raises:
        ModelBuildError: If Antimony cannot parse the source.
    """
    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    with _ANTIMONY_LOCK:
        antimony.clearPreviousLoads()
        if antimony.loadAntimonyString(text) < 0:
            raise ModelBuildError(f"Antimony could not parse the model: {antimony.getLastError()}")
        sbml = antimony.getSBMLString(antimony.getMainModuleName())
        antimony.clearPreviousLoads()
    if not sbml:
        raise ModelBuildError("Antimony produced no SBML; check the model source for a `model ... end` block")
    return str(sbml)


@lru_cache(maxsize=4)
def _default_sbml(path: str, mtime_ns: int) -> str:
    return antimony_to_sbml(Path(path))


def default_sbml() -> str:
    """Return the SBML text of the shipped model (cached until the source file changes)."""
    path = model_dir() / ANTIMONY_FILE
    return _default_sbml(str(path), path.stat().st_mtime_ns)


def sbml_hash(sbml: str) -> str:
    """Return a short, stable hash of SBML text, used for provenance."""
    return hashlib.sha256(sbml.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class ParameterInfo:
    """One row of the parameter table: value, unit, meaning, source, plausible range and physical domain."""

    id: str
    value: float
    unit: str
    category: str
    description: str
    source: str
    lower: float
    upper: float
    domain: str

    def __post_init__(self) -> None:
        """Check the row is coherent: finite numbers, a source, lower <= value <= upper, all inside the domain."""
        for name in ("value", "lower", "upper"):
            if not math.isfinite(getattr(self, name)):
                raise InvalidValueError(f"parameter {self.id!r}: {name} is not a finite number")
        if not self.source.strip():
            raise InvalidValueError(f"parameter {self.id!r} has no source; write a citation or 'assumed'")
        if not self.lower <= self.value <= self.upper:
            raise InvalidValueError(
                f"parameter {self.id!r}: value {self.value:g} lies outside its range "
                f"[{self.lower:g}, {self.upper:g}]; widen the range or correct the value"
            )
        check_table_row(self)


def read_parameter_table(path: Path | None = None) -> dict[str, ParameterInfo]:
    """Read the parameter table (parsed once per file and modification time; each call gets its own dict).

    Args:
        path: The CSV file; defaults to the shipped ``models/parameters.csv``.

    Returns:
        Rows keyed by parameter id, in file order.

    Raises:
        InvalidValueError: If a row is malformed, or a column (``domain`` included) is missing.
    """
    path = path or parameter_table_path()
    stat = path.stat()
    return dict(_read_parameter_table(str(path), stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=8)
def _read_parameter_table(path_text: str, mtime_ns: int, size: int) -> dict[str, ParameterInfo]:
    path = Path(path_text)
    rows: dict[str, ParameterInfo] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != PARAMETER_COLUMNS:
            raise InvalidValueError(f"{path}: columns must be {', '.join(PARAMETER_COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            try:
                info = ParameterInfo(
                    id=row["id"],
                    value=float(row["value"]),
                    unit=row["unit"],
                    category=row["category"],
                    description=row["description"],
                    source=row["source"],
                    lower=float(row["lower"]),
                    upper=float(row["upper"]),
                    domain=row["domain"],
                )
            except ValueError as exc:
                raise InvalidValueError(f"{path}, line {line}: {exc}") from exc
            if info.id in rows:
                raise InvalidValueError(f"{path}, line {line}: parameter {info.id!r} appears twice")
            rows[info.id] = info
    return rows
