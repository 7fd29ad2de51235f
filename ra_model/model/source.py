"""The model source: locate the Antimony file and parameter table, and turn the source into SBML text.

The source can build a testis of ``n_classes`` tubule-focus classes (:func:`expand_classes`): the class
template is written once in ``models/ra_testis.ant`` between marker comments, and is written once per
class, its ids prefixed ``F1__``, ``F2__``, ..., when the SBML is built. With one class (the default) the
source is used as written.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import antimony

from ra_model.errors import InvalidValueError, ModelBuildError
from ra_model.model.bounds import check_table_row
from ra_model.model.classes import (
    CLASS_CATEGORY,
    CLASS_PARAMETERS,
    check_n_classes,
    class_copy_name,
    class_id,
    expand_classes,
)

#: Id of the model inside the Antimony source.
MODEL_ID = "ra_testis"
#: File names inside the model directory.
ANTIMONY_FILE = "ra_testis.ant"
PARAMETER_FILE = "parameters.csv"
PHENOTYPE_FILE = "phenotypes.toml"

#: Columns of the parameter table (``name``: a short human name, the SBML ``name``; ``doi`` and ``pmid``: the
#: DOI(s) and PubMed id(s) of the publication(s) the source cites, empty when none is known, several separated
#: by spaces; ``domain``: the physical domain, see :mod:`ra_model.model.domain`).
PARAMETER_COLUMNS = (
    "id",
    "name",
    "value",
    "unit",
    "category",
    "description",
    "source",
    "doi",
    "pmid",
    "lower",
    "upper",
    "domain",
)
#: Longest human name an element may have (names are labels, the description says the rest).
NAME_MAX_LENGTH = 80
#: A DOI as written in the ``doi`` column: ``10.<registrant>/<suffix>``, bare (no ``doi:`` or URL prefix).
DOI_PATTERN = re.compile(r"10\.\d{4,9}/\S+")
#: A PubMed id as written in the ``pmid`` column: digits only.
PMID_PATTERN = re.compile(r"[1-9]\d{0,8}")

_ANTIMONY_LOCK = threading.Lock()

log = logging.getLogger(__name__)


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


def antimony_to_sbml(source: Path | str, *, n_classes: int = 1) -> str:
    """Convert Antimony to SBML text.

    Antimony keeps global state; this is the one place that touches it, under a lock.

    Args:
        source: A ``Path`` is read as a file; a ``str`` is Antimony text.
        n_classes: Tubule-focus classes to build the testis from (:func:`expand_classes`); with 1 the
            source is converted as written.

    Returns:
        SBML Level 3 Version 2 text.

    Raises:
        ModelBuildError: If Antimony cannot parse the source, or its class template is malformed.
        InvalidValueError: If ``n_classes`` is not a whole number from 1 to ``MAX_CLASSES``.
    """
    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    text = expand_classes(text, n_classes)
    with _ANTIMONY_LOCK:
        antimony.clearPreviousLoads()
        if antimony.loadAntimonyString(text) < 0:
            raise ModelBuildError(f"Antimony could not parse the model: {antimony.getLastError()}")
        sbml = antimony.getSBMLString(antimony.getMainModuleName())
        antimony.clearPreviousLoads()
    if not sbml:
        raise ModelBuildError("Antimony produced no SBML; check the model source for a `model ... end` block")
    return str(sbml)


@lru_cache(maxsize=8)
def _default_sbml(path: str, mtime_ns: int, n_classes: int) -> str:
    return antimony_to_sbml(Path(path), n_classes=n_classes)


def default_sbml(n_classes: int = 1) -> str:
    """Return the SBML text of the shipped model (cached until the source file changes).

    Args:
        n_classes: Tubule-focus classes the testis is built from (:func:`expand_classes`). With 1, the
            default, this is the published model (``models/ra_testis.xml`` before annotation), ids unprefixed.

    Returns:
        SBML Level 3 Version 2 text.

    Raises:
        InvalidValueError: If ``n_classes`` is not a whole number from 1 to ``MAX_CLASSES``.
    """
    path = model_dir() / ANTIMONY_FILE
    return _default_sbml(str(path), path.stat().st_mtime_ns, check_n_classes(n_classes))


def model_antimony(n_classes: int = 1) -> str:
    """Return the Antimony text of the shipped model built from ``n_classes`` focus classes.

    Args:
        n_classes: Tubule-focus classes (:func:`expand_classes`); with 1 the source file as written.

    Returns:
        Plain Antimony (no class template left in it) that converts to :func:`default_sbml`'s SBML.
    """
    return expand_classes((model_dir() / ANTIMONY_FILE).read_text(encoding="utf-8"), n_classes)


def sbml_hash(sbml: str) -> str:
    """Return a short, stable hash of SBML text, used for provenance."""
    return hashlib.sha256(sbml.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class ParameterInfo:
    """One row of the parameter table: name, value, unit, meaning, source, plausible range and physical domain.

    Attributes:
        id: Model id.
        name: Short human-readable name (the SBML ``name`` of the parameter or compartment).
        value: Default value.
        unit: Unit id.
        category: Model module or role (``pk``, ``retinoid``, ``readout``, ...).
        description: What it means, in a sentence.
        source: Citation, or ``assumed`` with the reasoning.
        lower: Plausible lower bound.
        upper: Plausible upper bound.
        domain: Physical domain (:mod:`ra_model.model.domain`).
        doi: DOI(s) of the publication(s) the source cites, bare (``10.1007/...``), separated by spaces; empty
            when none is known.
        pmid: PubMed id(s) of the publication(s) the source cites, separated by spaces; empty when none is known.
    """

    id: str
    name: str
    value: float
    unit: str
    category: str
    description: str
    source: str
    lower: float
    upper: float
    domain: str
    doi: str = ""
    pmid: str = ""

    def __post_init__(self) -> None:
        """Check the row is coherent: a name, finite numbers, a source, references, lower <= value <= upper."""
        check_name(self.id, self.name, where="models/parameters.csv, column name")
        for name in ("value", "lower", "upper"):
            if not math.isfinite(getattr(self, name)):
                raise InvalidValueError(f"parameter {self.id!r}: {name} is not a finite number")
        if not self.source.strip():
            raise InvalidValueError(f"parameter {self.id!r} has no source; write a citation or 'assumed'")
        for doi in self.doi.split():
            if not DOI_PATTERN.fullmatch(doi):
                raise InvalidValueError(
                    f"parameter {self.id!r}: doi {doi!r} is not a DOI; write the bare DOI, which starts with '10.' "
                    "and has a '/' (e.g. 10.1007/BF00542225), without 'doi:' or https://doi.org/, several "
                    "separated by spaces"
                )
        for pmid in self.pmid.split():
            if not PMID_PATTERN.fullmatch(pmid):
                raise InvalidValueError(
                    f"parameter {self.id!r}: pmid {pmid!r} is not a PubMed id; write its digits only "
                    "(e.g. 12345678), without 'PMID:', several separated by spaces"
                )
        if not self.lower <= self.value <= self.upper:
            raise InvalidValueError(
                f"parameter {self.id!r}: value {self.value:g} lies outside its range "
                f"[{self.lower:g}, {self.upper:g}]; widen the range or correct the value"
            )
        check_table_row(self)

    @property
    def references(self) -> tuple[str, ...]:
        """Return the row's DOIs and PubMed ids as identifiers.org compact ids (``doi:10...``, ``pubmed:123``)."""
        return tuple(f"doi:{d}" for d in self.doi.split()) + tuple(f"pubmed:{p}" for p in self.pmid.split())


def check_name(element_id: str, name: str, *, where: str) -> str:
    """Check a human name of a model element: one short line, not empty and not just the id.

    Args:
        element_id: The element's id.
        name: Its human name.
        where: Where the name is written (for the message), e.g. ``"models/parameters.csv, column name"``.

    Returns:
        ``name``.

    Raises:
        InvalidValueError: If the name is empty, the id itself, several lines or longer than
            :data:`NAME_MAX_LENGTH` characters.
    """
    text = name.strip()
    if not text or text == element_id:
        raise InvalidValueError(
            f"{element_id!r} has no human name ({where}); write a short readable one that is not the id, "
            "e.g. 'CYP26 degradation of atRA'"
        )
    if "\n" in text or len(text) > NAME_MAX_LENGTH or text != name:
        raise InvalidValueError(
            f"{element_id!r}: name {name!r} ({where}) must be one line of at most {NAME_MAX_LENGTH} characters "
            "without leading or trailing spaces; put the rest in the description"
        )
    return name


def read_parameter_table(path: Path | None = None) -> dict[str, ParameterInfo]:
    """Read the parameter table (parsed once per file and modification time; each call gets its own dict).

    Args:
        path: The CSV file; defaults to the shipped ``models/parameters.csv``.

    Returns:
        Rows keyed by parameter id, in file order.

    Raises:
        InvalidValueError: If a row is malformed (a DOI that does not start with ``10.``, a PubMed id that is not
            digits, a missing name, ...), or a column (``name``, ``doi``, ``pmid`` and ``domain`` included) is missing.
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
                    name=row["name"],
                    value=float(row["value"]),
                    unit=row["unit"],
                    category=row["category"],
                    description=row["description"],
                    source=row["source"],
                    lower=float(row["lower"]),
                    upper=float(row["upper"]),
                    domain=row["domain"],
                    doi=row["doi"],
                    pmid=row["pmid"],
                )
            except ValueError as exc:
                raise InvalidValueError(f"{path}, line {line}: {exc}") from exc
            if info.id in rows:
                raise InvalidValueError(f"{path}, line {line}: parameter {info.id!r} appears twice")
            rows[info.id] = info
    return rows


def class_parameter_table(n_classes: int) -> dict[str, ParameterInfo]:
    """Return the parameter-table rows of the class parameters of a testis of ``n_classes`` classes.

    Generated from :data:`CLASS_PARAMETERS`, one row per parameter and class, with each row's unit,
    source, plausible range and domain; empty for one class, whose model has no class parameters.

    Args:
        n_classes: Number of focus classes.

    Returns:
        Rows keyed by id (``F1__niche_share``, ...), classes in order.
    """
    n = check_n_classes(n_classes)
    if n == 1:
        return {}
    rows = {}
    for k in range(1, n + 1):
        for spec in CLASS_PARAMETERS:
            pid = class_id(spec.name, k, n)
            rows[pid] = ParameterInfo(
                id=pid,
                name=class_copy_name(spec.label, k, n),
                value=spec.default(n, k),
                unit=spec.unit,
                category=CLASS_CATEGORY,
                description=f"Focus class F{k}: {spec.description}",
                source=spec.source,
                lower=spec.lower,
                upper=spec.upper,
                domain=spec.domain,
            )
    return rows
