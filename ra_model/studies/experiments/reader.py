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
from ra_model.studies.experiments.spec import (
    COMMON_KEYS,
    DEFAULT_CLASSES,
    FIGURES,
    KINDS,
    Experiment,
    Reader,
    show,
)


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
        InvalidValueError: Unknown key (or another kind's key), bad value or type (``classes`` not a whole
            number from 1 to :data:`~ra_model.model.classes.MAX_CLASSES`), unparseable regimen,
            histology mix not summing to 1, a run too big (:data:`~ra_model.studies.experiments.spec.MAX_RUNS`),
            a file that is not UTF-8 or not TOML (the message names the file, the key, the value and the fix).
        UnknownNameError: Unknown phenotype or parameter (with close matches).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidValueError(f"{path}: cannot read the experiment file ({exc}); check the path") from exc
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise InvalidValueError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start : exc.start + 1]!r} at line {line}, "
            f"offset {exc.start}); save the file as UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidValueError(f"{path}: not valid TOML ({exc}); fix the syntax") from exc
    r = Reader(path)
    kind = data.get("kind", "single")
    if not isinstance(kind, str) or kind not in KINDS:
        close = difflib.get_close_matches(kind, KINDS, n=1) if isinstance(kind, str) else []
        raise r.fail(
            "kind",
            f"unknown kind {show(kind)}",
            f"write kind = one of {', '.join(map(repr, KINDS))}" + (f" (did you mean {close[0]!r}?)" if close else ""),
        )
    if kind == "sensitivity":  # its own module reads the other keys; `classes` is read here for every kind
        return Experiment(
            id=path.stem,
            path=path,
            text=text,
            kind=kind,
            description=str(data.get("description", "")).strip(),
            raw=MappingProxyType(dict(data)),
            reduced=reduced,
            n_classes=r.classes(data.get("classes", DEFAULT_CLASSES)),
        )
    r.unknown("", data, COMMON_KEYS | KINDS[kind], kind=kind, elsewhere=KINDS)
    if "description" not in data:
        raise r.fail("description", "is missing", 'add description = "what the experiment asks"')
    if "reduced" in data:  # checked even when not applied, so a broken [reduced] is not found only in CI
        extra = r.table("reduced", data["reduced"], "write [reduced] with the keys to replace")
        r.unknown("reduced.", extra, KINDS[kind] | {"figures", "classes"}, kind=kind, elsewhere=KINDS)
        if "classes" in extra:  # its value too, named reduced.classes
            probe = Reader(path)
            probe.reduced_keys = frozenset({"classes"})
            probe.classes(extra["classes"])
        if reduced:
            data = {k: v for k, v in data.items() if k != "reduced"} | extra
            r.reduced_keys = frozenset(extra)
    figures = data.get("figures", list(FIGURES[kind]))
    if not isinstance(figures, list):
        raise r.fail("figures", f"{show(figures)} is not a list", f"write figures = {list(FIGURES[kind])!r}")
    for i, name in enumerate(figures):
        if name not in FIGURES[kind]:
            raise r.fail(
                f"figures[{i}]",
                f"{show(name)} is not a figure of a {kind} experiment",
                f"choose from {', '.join(map(repr, FIGURES[kind])) or 'none (this kind draws no figures)'}",
            )
    common: dict[str, Any] = dict(
        id=path.stem,
        path=path,
        text=text,
        kind=kind,
        description=r.text("description", data["description"]).strip(),
        reduced=reduced,
        n_classes=r.classes(data.get("classes", DEFAULT_CLASSES)),
        figures=tuple(figures),
        overrides=MappingProxyType(r.overrides("overrides", data.get("overrides", {}))),
        output_step_d=r.number("output_step_d", data.get("output_step_d", 1.0)),
        raw=MappingProxyType(dict(data)),
    )
    if kind == "single":
        fields = read_single(r, data)
    elif kind == "cohort":
        fields = read_cohort(r, data)
    else:
        fields = read_grid(r, data)
    r.run_size(
        fields["t_end_d"],
        common["output_step_d"],
        t_key="durations_d" if kind == "grid" else "t_end_d",
        extra_rows=len(fields.get("changes", ())) + sum(len(run.changes) for run in fields.get("runs", ())),
    )
    return Experiment(**common, **fields)


def list_experiments(folder: Path | None = None) -> list[Experiment]:
    """Return every experiment in a folder (default: the source tree's ``experiments/``), by id."""
    folder = folder or experiments_dir()
    return [load_experiment(p) for p in sorted(folder.glob("*.toml"))]
