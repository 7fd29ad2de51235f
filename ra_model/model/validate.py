"""Validate SBML text and read SBML files: libsbml's consistency and unit checks, with line numbers."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import libsbml

from ra_model.errors import ModelBuildError
from ra_model.model.bounds import format_bytes

log = logging.getLogger(__name__)

#: Largest SBML file read: 20 MB. The shipped model is about 0.16 MB; libsbml's validation of a file
#: a hundred times larger takes minutes and gigabytes, so a bigger file is almost surely the wrong one.
MAX_SBML_BYTES = 20_000_000


@dataclass(frozen=True)
class Finding:
    """One message of the SBML validator.

    Attributes:
        error_id: libsbml's numeric error id (e.g. 99505).
        severity: ``"Error"``, ``"Fatal"``, ``"Warning"`` or ``"Informational"``.
        category: libsbml's category name (e.g. ``"Units consistency"``).
        line: Line in the SBML text (0 if unknown).
        column: Column in the SBML text (0 if unknown).
        message: The validator's message, on one line.
    """

    error_id: int
    severity: str
    category: str
    line: int
    column: int
    message: str

    @property
    def is_error(self) -> bool:
        """True for errors and fatal errors."""
        return self.severity in ("Error", "Fatal")

    @property
    def is_unit(self) -> bool:
        """True for findings of the unit-consistency validator."""
        return 10501 <= self.error_id <= 10599 or 99505 <= self.error_id <= 99508

    def __str__(self) -> str:
        """Return ``line L, col C: Severity ID: message``."""
        return f"line {self.line}, col {self.column}: {self.severity} {self.error_id}: {self.message}"


@dataclass(frozen=True)
class ValidationReport:
    """All validator findings for one SBML text, with counts.

    Attributes:
        findings: Every message, in validator order.
        level: SBML level of the document (0 if unreadable).
        version: SBML version of the document (0 if unreadable).
    """

    findings: tuple[Finding, ...]
    level: int = 0
    version: int = 0

    @property
    def errors(self) -> tuple[Finding, ...]:
        """Errors and fatal errors of any category."""
        return tuple(f for f in self.findings if f.is_error)

    @property
    def unit_findings(self) -> tuple[Finding, ...]:
        """Findings of the unit-consistency check (errors and warnings)."""
        return tuple(f for f in self.findings if f.is_unit)

    @property
    def ok(self) -> bool:
        """True when there are no errors."""
        return not self.errors

    def counts(self) -> Counter[str]:
        """Number of findings per severity."""
        return Counter(f.severity for f in self.findings)

    def summary(self, limit: int = 20) -> str:
        """Return the findings as text, one per line, at most ``limit`` of them."""
        lines = [str(f) for f in self.findings[:limit]]
        if len(self.findings) > limit:
            lines.append(f"... and {len(self.findings) - limit} more")
        return "\n".join(lines)


def validate_sbml(text: str, *, units: bool = True) -> ValidationReport:
    """Run libsbml's full consistency check (and the unit check) on SBML text.

    Args:
        text: SBML text (a ``str``, not a path).
        units: Include the unit-consistency check.

    Returns:
        The findings of the XML reader and of every validator category, with line numbers.
    """
    doc = libsbml.readSBMLFromString(text)
    findings = _findings(doc)
    if any(f.is_error for f in findings) or doc.getModel() is None:
        return ValidationReport(tuple(findings), doc.getLevel(), doc.getVersion())
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, units)
    doc.checkConsistency()
    findings = _findings(doc)
    return ValidationReport(tuple(findings), doc.getLevel(), doc.getVersion())


def _findings(doc: libsbml.SBMLDocument) -> list[Finding]:
    out = []
    for i in range(doc.getNumErrors()):
        err = doc.getError(i)
        out.append(
            Finding(
                error_id=int(err.getErrorId()),
                severity=str(err.getSeverityAsString()),
                category=str(err.getCategoryAsString()),
                line=int(err.getLine()),
                column=int(err.getColumn()),
                message=" ".join(str(err.getMessage()).split()),
            )
        )
    return out


def read_sbml(path: Path) -> str:
    """Read an SBML file and check it is valid SBML the engine can use.

    Unit warnings are logged, not fatal: a file edited in another tool may lose unit declarations.

    Args:
        path: The SBML file.

    Returns:
        The SBML text.

    Raises:
        ModelBuildError: If the file cannot be read, is larger than :data:`MAX_SBML_BYTES`, or the validator
            reports errors; the message lists them with line numbers.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelBuildError(f"cannot read SBML file {path}: {exc}") from exc
    if size > MAX_SBML_BYTES:
        raise ModelBuildError(
            f"{path} is {format_bytes(size)}, larger than the {format_bytes(MAX_SBML_BYTES)} limit for an SBML model "
            "file (the shipped model is about 0.16 MB; validating and compiling a file this size would take minutes "
            "and gigabytes): check that it is the right file, e.g. not a results table or an archive"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelBuildError(f"cannot read SBML file {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ModelBuildError(
            f"SBML file {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8 XML"
        ) from exc
    report = validate_sbml(text)
    if not report.ok:
        raise ModelBuildError(
            f"{path} is not valid SBML ({len(report.errors)} error(s)); fix these and try again:\n"
            + ValidationReport(report.errors).summary()
        )
    if report.findings:
        log.warning("%s: %d validator warning(s):\n%s", path, len(report.findings), report.summary(5))
    return text
