"""The error hierarchy of ra_model: every error the package raises on purpose derives from RAModelError."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class RAModelError(Exception):
    """Base class of all errors raised by ra_model."""


class UnknownNameError(RAModelError, KeyError):
    """A phenotype, parameter, species or observable name that the model does not have."""

    def __init__(self, kind: str, name: str, known: Iterable[str], *, where: str = "") -> None:
        """Build the message with the closest known names.

        Args:
            kind: What sort of name it is, e.g. ``"parameter"`` or ``"phenotype"``.
            name: The name that was not found.
            known: All valid names of that kind.
            where: Optional context, e.g. a file path, added to the message.
        """
        known_list = sorted(known)
        close = difflib.get_close_matches(name, known_list, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        place = f" in {where}" if where else ""
        listing = (
            "" if close else f" Known {kind}s: {', '.join(known_list[:40])}" + (" ..." if len(known_list) > 40 else "")
        )
        self.kind = kind
        self.name = name
        self.close_matches = close
        super().__init__(f"unknown {kind} {name!r}{place}{hint}{listing}")

    def __str__(self) -> str:
        """Return the message without KeyError's quoting."""
        return str(self.args[0])


class InvalidValueError(RAModelError, ValueError):
    """A value outside its allowed domain (negative dose, zero interval, fraction above 1, ...)."""


class RegimenParseError(InvalidValueError):
    """Regimen text that cannot be parsed; the message points at the bad part."""


class ModelBuildError(RAModelError):
    """The model source could not be turned into valid SBML."""


class SimulationFailedError(RAModelError, RuntimeError):
    """The ODE solver failed; the message names the phenotype, regimen and time.

    Attributes:
        partial: What was computed before the failure, for the caller to keep (the rows of a run's table,
            or an experiment's partial result), or None.
    """

    def __init__(self, message: str, *, partial: Any = None) -> None:
        """Keep the message and whatever was computed before the failure."""
        super().__init__(message)
        self.partial = partial


class ExperimentFailedError(SimulationFailedError):
    """Every simulation of a cohort or grid failed, so there is nothing to summarise.

    ``partial`` is the experiment's result so far: the sweep table, an empty summary, the ``failures``
    table (every man, his parameters and the solver's message) and the provenance.
    """


class UnsupportedRateLawError(ModelBuildError):
    """A germ-line rate law outside the form the compiled kernel integrates (names species and reaction)."""


class FolderLockedError(RAModelError):
    """An output folder is in use by another run; the message names the holder and the way out."""
