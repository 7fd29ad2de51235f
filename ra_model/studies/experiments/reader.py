"""Read experiment files: the keys every kind shares, then the kind's own keys; list the shipped files."""

from __future__ import annotations

import difflib
import tomllib
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ra_model.errors import InvalidValueError
from ra_model.studies.experiments.cohort import read_cohort
from ra_model.studies.experiments.grid import read_grid
from ra_model.studies.experiments.single import read_single
from ra_model.studies.experiments.spec import COMMON_KEYS, FIGURES, KINDS, Experiment, Reader


def experiments_dir() -> Path:
    """Return the folder of the shipped experiment files (``experiments/``, packaged as ``ra_model._experiments``)."""
    return Path(str(resources.files("ra_model._experiments")))


def load_experiment(path: Path, *, reduced: bool = False) -> Experiment:
    """Read and validate an experiment file.

    Args:
        path: The TOML file; its stem is the experiment id.
        reduced: Apply the file's ``[reduced]`` table (smaller cohorts, coarser grids).

    Returns:
        The validated experiment.

    Raises:
        InvalidValueError: Unknown key, bad value, unparseable regimen, histology mix not summing to 1
            (the message names the file, the key and the fix).
        UnknownNameError: Unknown phenotype or parameter (with close matches).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidValueError(f"{path}: cannot read the experiment file ({exc}); check the path") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidValueError(f"{path}: not valid TOML ({exc}); fix the syntax") from exc
    r = Reader(path)
    kind = data.get("kind", "single")
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        raise r.fail(
            "kind",
            f"unknown kind {kind!r}",
            f"use one of {', '.join(KINDS)}" + (f" (did you mean {close[0]!r}?)" if close else ""),
        )
    if kind == "sensitivity":
        return Experiment(
            id=path.stem,
            path=path,
            text=text,
            kind=kind,
            description=str(data.get("description", "")).strip(),
            raw=MappingProxyType(dict(data)),
            reduced=reduced,
        )
    r.unknown("", set(data), COMMON_KEYS | KINDS[kind])
    if "description" not in data:
        raise r.fail("description", "is missing", 'add description = "what the experiment asks"')
    if reduced and "reduced" in data:
        extra = data["reduced"]
        if not isinstance(extra, dict):
            raise r.fail("reduced", "is not a table", "write [reduced] with the keys to replace")
        r.unknown("reduced.", set(extra), KINDS[kind] | {"figures"})
        data = {k: v for k, v in data.items() if k != "reduced"} | extra
    figures = data.get("figures", list(FIGURES[kind]))
    if not isinstance(figures, list) or any(f not in FIGURES[kind] for f in figures):
        raise r.fail("figures", f"{figures!r} names an unknown figure", f"choose from {', '.join(FIGURES[kind])}")
    common: dict[str, Any] = dict(
        id=path.stem,
        path=path,
        text=text,
        kind=kind,
        description=r.text("description", data["description"]).strip(),
        reduced=reduced,
        figures=tuple(figures),
        overrides=MappingProxyType(r.overrides("overrides", data.get("overrides", {}))),
        output_step_d=r.number("output_step_d", data.get("output_step_d", 1.0)),
        raw=MappingProxyType(dict(data)),
    )
    if kind == "single":
        return Experiment(**common, **read_single(r, data))
    if kind == "cohort":
        return Experiment(**common, **read_cohort(r, data))
    return Experiment(**common, **read_grid(r, data))


def list_experiments(folder: Path | None = None) -> list[Experiment]:
    """Return every experiment in a folder (default: the source tree's ``experiments/``), by id."""
    folder = folder or experiments_dir()
    return [load_experiment(p) for p in sorted(folder.glob("*.toml"))]
