"""A sweep's output folder: scenario keys and run settings, provenance, the lock, Parquet chunks, ``fresh``.

A result is reused only for provably the same work: every row in a chunk carries the SHA-256 *scenario
key* of what produced it (the sample's parameter values, phenotype and its content, regimen, and the run
settings: horizon, output step, metrics, model hash, solver settings, package versions), and a folder
written with other run settings (or by an earlier version, without keys) is refused until ``fresh=True``
moves its files into ``replaced-<UTC time>/``. While a sweep runs its folder is locked (``sweep.lock``,
created with O_EXCL; a lock whose holder is provably dead is taken over); chunks are written atomically,
and an unreadable one is set aside as ``*.bad`` so that its samples are recomputed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import re
import shutil
import socket
import sys
import time
import types
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ra_model.errors import FolderLockedError, InvalidValueError
from ra_model.model.phenotypes import load_phenotypes
from ra_model.studies.sweep_settings import (
    MESSAGE,
    PHENOTYPE,
    REGIMEN,
    SAMPLE_ID,
    STATUS,
    SWEEP_ATOL,
    SweepSettings,
)

log = logging.getLogger(__name__)

#: Chunk column: the SHA-256 content key of the scenario that produced the row (see ``run_sweep``).
SCENARIO_KEY = "scenario_key"
#: File names inside ``out_dir``.
PROVENANCE_FILE = "provenance.json"
CHUNK_GLOB = "chunk-*.parquet"
#: The lock file of a running sweep (JSON: pid, host, start time, command).
LOCK_FILE = "sweep.lock"
#: Suffix given to a chunk that cannot be read (it is set aside and its samples recomputed).
BAD_SUFFIX = ".bad"
#: Prefix of the sub-folder that ``fresh=True`` moves an earlier sweep's files into.
REPLACED_PREFIX = "replaced-"
#: Layout version of a sweep folder: rows keyed by content. Folders without it are refused.
FOLDER_FORMAT = 2

_CHUNK_INDEX = re.compile(r"^chunk-(\d+)\.parquet")
#: An unreadable lock file older than this (seconds) is taken to be left by a crash mid-write.
_UNREADABLE_LOCK_STALE_S = 60.0


# --------------------------------------------------------------------------- provenance
def package_versions() -> dict[str, str]:
    """Return the versions of the packages a sweep result depends on."""
    versions = {"python": platform.python_version()}
    for dist in ("ra_model", "libroadrunner", "numpy", "pandas", "scipy", "SALib", "pyarrow", "dask", "distributed"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def make_provenance(samples: pd.DataFrame, settings: SweepSettings) -> dict[str, Any]:
    """Return the record of a sweep: model hash, package versions, seed, design, settings and date.

    Args:
        samples: The sweep's samples (``attrs`` may hold ``seed`` and ``design``).
        settings: The sweep's settings.
    """
    return {
        "model_hash": settings.model_hash,
        "model_file": settings.model,
        "package_versions": package_versions(),
        "seed": samples.attrs.get("seed"),
        "design": samples.attrs.get("design"),
        "phenotype": settings.phenotype,
        "regimen": settings.regimen,
        "t_end_d": settings.t_end_d,
        "output_step_d": settings.output_step_d,
        "metrics": [name for name, _ in settings.metrics],
        "parameters": list(settings.parameter_columns),
        "fast": settings.fast,
        "split": settings.split,
        "n_classes": settings.n_classes,
        "rtol": settings.rtol,
        "n_samples": len(samples),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------- content keys
def run_settings(settings: SweepSettings) -> dict[str, Any]:
    """Return what every result of a sweep depends on besides its own sample (JSON-normal, ordered).

    A folder is resumed only by a sweep with equal run settings; the first key that differs is named
    when one is refused.

    Args:
        settings: The sweep's settings.
    """
    versions = package_versions()
    exact = not settings.fast
    run = {
        "format": FOLDER_FORMAT,
        "ra_model": versions["ra_model"],
        "libroadrunner": versions["libroadrunner"],
        "model_hash": settings.model_hash,
        "fast": settings.fast,
        "split": settings.split,
        "n_classes": settings.n_classes,
        "rtol": settings.rtol if exact else None,
        "atol": SWEEP_ATOL if exact else None,
        "t_end_d": settings.t_end_d,
        "output_step_d": settings.output_step_d,
        "metrics": [[name, _callable_id(metric)] for name, metric in settings.metrics],
    }
    normal: dict[str, Any] = json.loads(json.dumps(run))  # lists, not tuples: compares equal to a reread file
    return normal


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _callable_id(func: object, depth: int = 0) -> str:
    """Identify a metric by module, qualified name, bytecode and what it carries.

    What it carries: a partial's bound arguments, a function's defaults and closure values, a callable
    object's ``repr`` (memory addresses left out). An edited metric, a partial with other arguments or
    a closure over another value gets another id (and so other scenario keys); a helper the metric
    calls is not looked into.
    """
    if depth > 3:  # a closure that refers to itself
        return "..."
    if isinstance(func, functools.partial):
        return f"partial({_callable_id(func.func, depth + 1)}; {_values_id(func.args, func.keywords, depth)})"
    if isinstance(func, types.FunctionType):
        name = f"{func.__module__}:{func.__qualname__}#{_code_digest(func.__code__)}"
        closure = [cell.cell_contents for cell in func.__closure__ or () if _cell_filled(cell)]
        positional, keywords = [*(func.__defaults__ or ()), *closure], func.__kwdefaults__ or {}
        return f"{name}({_values_id(positional, keywords, depth)})" if positional or keywords else name
    if isinstance(func, types.BuiltinFunctionType | types.MethodType | type):
        return _ADDRESS.sub("", f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', repr(func))}")
    kind = type(func)  # a callable object: its class, the code of its __call__ and its repr
    code = getattr(kind.__call__, "__code__", None)
    digest = f"#{_code_digest(code)}" if isinstance(code, types.CodeType) else ""
    return _ADDRESS.sub("", f"{kind.__module__}:{kind.__qualname__}{digest}[{func!r}]")


def _values_id(positional: Sequence[object], keywords: Mapping[str, object], depth: int) -> str:
    def one(value: object) -> str:
        return _callable_id(value, depth + 1) if callable(value) else repr(value)

    parts = [one(v) for v in positional] + [f"{k}={one(v)}" for k, v in sorted(keywords.items())]
    return _ADDRESS.sub("", ", ".join(parts))


def _cell_filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - the access raises ValueError for an empty cell
    except ValueError:
        return False
    return True


def _code_digest(code: types.CodeType) -> str:
    """Return a short hash of a function's bytecode, constants and names (an edited metric changes it)."""
    digest = hashlib.sha256(code.co_code)
    for const in code.co_consts:
        digest.update(_code_digest(const).encode() if isinstance(const, types.CodeType) else repr(const).encode())
    digest.update(repr(code.co_names).encode())
    return digest.hexdigest()[:16]


def scenario_keys(rows: Sequence[Mapping[str, Any]], settings: SweepSettings, run: Mapping[str, Any]) -> list[str]:
    """Return the SHA-256 content key of each sample: its scenario and the run settings, one hash per sample.

    Args:
        rows: The samples, one mapping per sample (parameter values, optional phenotype and regimen).
        settings: The sweep's settings (default phenotype and regimen, parameter columns).
        run: The sweep's run settings (:func:`run_settings`).
    """
    run_text = json.dumps(run, sort_keys=True, separators=(",", ":"))
    presets = load_phenotypes()
    preset_text: dict[str, str] = {}
    names = sorted(settings.parameter_columns)
    keys = []
    for row in rows:
        phenotype = str(row.get(PHENOTYPE, settings.phenotype))
        if phenotype not in preset_text:  # the preset's values, not just its name: an edited preset is new work
            preset = presets[phenotype]
            content = [dict(preset.parameters), dict(preset.scale), dict(preset.initial_amounts)]
            preset_text[phenotype] = json.dumps(content, sort_keys=True, separators=(",", ":"))
        regimen = row.get(REGIMEN, settings.regimen)
        scenario = [
            phenotype,
            preset_text[phenotype],
            regimen if isinstance(regimen, str) else None,
            names,
            [float(row[p]) for p in names],
        ]
        text = run_text + json.dumps(scenario, separators=(",", ":"))
        keys.append(hashlib.sha256(text.encode("utf-8")).hexdigest())
    return keys


# --------------------------------------------------------------------------- column types
def stable_dtypes(frame: pd.DataFrame, settings: SweepSettings) -> pd.DataFrame:
    """Give metric columns stable dtypes: nullable boolean for yes/no metrics, float otherwise.

    Chunks and the assembled table get the same types, so a resumed sweep equals an uninterrupted one.

    Args:
        frame: Input, result and key columns; changed in place.
        settings: The sweep's settings (which columns are inputs).

    Returns:
        ``frame``.
    """
    fixed = {SAMPLE_ID, STATUS, MESSAGE, PHENOTYPE, REGIMEN, SCENARIO_KEY, *settings.parameter_columns}
    fixed |= set(settings.meta_columns)
    for column in frame.columns:
        if column in fixed:
            continue
        values = frame[column]
        present = values.dropna()
        if len(present) and all(isinstance(v, bool | np.bool_) for v in present):
            frame[column] = values.astype("boolean")
        else:
            frame[column] = pd.to_numeric(values, errors="coerce").astype(float)
    return frame


# --------------------------------------------------------------------------- the output folder
class SweepFolder:
    """A sweep's output folder: locked while in use, chunks keyed by content, bad chunks set aside.

    Use it as a context manager: entering creates the folder and takes its lock, leaving releases it.
    """

    def __init__(self, path: Path) -> None:
        """Name the folder; nothing is touched until ``with``.

        Args:
            path: The output folder (created on entry if missing).
        """
        self.path = path
        self.lock = path / LOCK_FILE
        self._token: str | None = None
        self._next = 0

    def __enter__(self) -> SweepFolder:
        """Create the folder and take its lock.

        Raises:
            InvalidValueError: The path is a file.
            FolderLockedError: A running sweep holds the lock.
        """
        if self.path.is_file():
            raise InvalidValueError(f"out_dir {self.path} is a file; give a folder")
        self.path.mkdir(parents=True, exist_ok=True)
        self._acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        """Release the lock."""
        self._release()

    # ------------------------------------------------------------------ lock
    def _acquire(self) -> None:
        """Create the lock file atomically (O_EXCL); take over a stale one; refuse a live holder."""
        token = uuid.uuid4().hex
        mine = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "command": _own_command(),
            "process_start": _process_start(os.getpid()),
            "token": token,
        }
        data = json.dumps(mine, indent=2).encode("utf-8")
        for _attempt in range(5):
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(self.lock)
                if not _lock_is_stale(self.lock, holder):
                    raise FolderLockedError(_locked_message(self.path, self.lock, holder)) from None
                log.warning(
                    "taking over the stale lock %s: %s is no longer running",
                    self.lock,
                    _describe_holder(holder),
                )
                with contextlib.suppress(FileNotFoundError):
                    self.lock.unlink()
                continue
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            self._token = token
            return
        raise FolderLockedError(
            f"{self.path}: could not take the lock {self.lock} (other runs keep taking it); "
            "run one sweep at a time per folder, or use another output folder"
        )

    def _release(self) -> None:
        """Remove the lock file if it is still ours."""
        if self._token is None:
            return
        holder = _read_lock(self.lock)
        if holder is not None and holder.get("token") == self._token:
            with contextlib.suppress(FileNotFoundError):
                self.lock.unlink()
        else:
            log.warning("the lock %s was replaced while this sweep ran; left as it is", self.lock)
        self._token = None

    # ------------------------------------------------------------------ reading
    def open(self, run: Mapping[str, Any], *, fresh: bool, metric_names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Return the finished results in the folder by scenario key (after checks and clean-up).

        Args:
            run: This sweep's run settings (:func:`run_settings`).
            fresh: Move everything from an earlier sweep aside first.
            metric_names: The sweep's metric names (which chunk columns are results).

        Raises:
            InvalidValueError: The folder holds a sweep with other run settings, or one written by an
                earlier version (rows without scenario keys).
        """
        for tmp in self.path.glob("chunk-*.parquet.tmp"):  # a write cut short by a kill
            tmp.unlink(missing_ok=True)
        if fresh:
            self._set_all_aside()
        chunks = sorted(self.path.glob(CHUNK_GLOB))
        if chunks:
            self._check_run(run)
        finished: dict[str, dict[str, Any]] = {}
        for path in chunks:
            frame = self._read(path)
            if frame is None:
                continue
            if SCENARIO_KEY not in frame.columns:
                raise InvalidValueError(self._refusal("format", None, run["format"], old_version=True))
            keep = [c for c in frame.columns if c in (STATUS, MESSAGE) or _is_metric_column(c, metric_names)]
            for key, record in zip(frame[SCENARIO_KEY], frame[keep].to_dict(orient="records"), strict=True):
                finished[str(key)] = {str(k): v for k, v in record.items() if not _is_missing(v)}
        indices = [int(m.group(1)) for p in self.path.iterdir() if (m := _CHUNK_INDEX.match(p.name))]
        self._next = max(indices, default=-1) + 1
        return finished

    def _check_run(self, run: Mapping[str, Any]) -> None:
        """Refuse a folder whose provenance records other run settings (naming the first difference)."""
        try:
            previous = json.loads((self.path / PROVENANCE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return  # nothing to compare: every row's scenario key still decides
        except (OSError, ValueError):
            previous = {}
        old_run = previous.get("run_settings") if isinstance(previous, dict) else None
        if not isinstance(old_run, dict):
            raise InvalidValueError(self._refusal("format", None, run["format"], old_version=True))
        missing = object()
        for key in [*run, *(k for k in old_run if k not in run)]:
            old, new = old_run.get(key, missing), run.get(key, missing)
            if old != new:
                raise InvalidValueError(
                    self._refusal(key, None if old is missing else old, None if new is missing else new)
                )

    def _refusal(self, key: str, old: object, new: object, *, old_version: bool = False) -> str:
        note = " (written by an earlier ra_model version, whose rows carry no scenario keys)" if old_version else ""
        return (
            f"{self.path} holds a sweep with other settings: first difference {key!r}, was {_short(old)}, "
            f"now {_short(new)}{note}. A folder is resumed only by the same sweep. To start it over, rerun "
            f"with fresh=True (--fresh on the command line), which moves the old results into "
            f"{self.path / (REPLACED_PREFIX + '<UTC time>')} (nothing is deleted), or use a new output folder"
        )

    def _read(self, path: Path) -> pd.DataFrame | None:
        """Read a chunk; set an unreadable or incomplete one aside as ``*.bad`` and return None."""
        import pyarrow as pa

        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if SAMPLE_ID in frame.columns and STATUS in frame.columns:
                return frame
            reason = "no sample_id or status column"
        bad = _free_name(path.with_name(path.name + BAD_SUFFIX))
        os.replace(path, bad)
        log.warning("chunk %s cannot be read (%s); set aside as %s, its samples are recomputed", path, reason, bad.name)
        return None

    def _set_all_aside(self) -> None:
        """Move chunks, bad chunks and provenance of earlier sweeps into ``replaced-<UTC time>/``."""
        old = [
            p for p in self.path.iterdir() if p.is_file() and (_CHUNK_INDEX.match(p.name) or p.name == PROVENANCE_FILE)
        ]
        if not old:
            return
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        target = _free_name(self.path / f"{REPLACED_PREFIX}{stamp}")
        target.mkdir()
        for path in old:
            shutil.move(path, target / path.name)
        log.warning("fresh: moved %d earlier file(s) of %s into %s", len(old), self.path, target)

    # ------------------------------------------------------------------ writing
    def write_provenance(self, provenance: Mapping[str, Any]) -> None:
        """Write ``provenance.json`` atomically.

        Args:
            provenance: The sweep's provenance, with its ``run_settings``.
        """
        path = self.path / PROVENANCE_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(provenance, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, path)

    def write_chunk(
        self,
        results: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Mapping[str, Any]],
        keys: Mapping[str, str],
        settings: SweepSettings,
    ) -> None:
        """Write one chunk atomically (temporary file, then rename): inputs, results and scenario keys.

        Args:
            results: The finished samples' result rows.
            inputs: Every sample's input row by sample id.
            keys: Every sample's scenario key by sample id.
            settings: The sweep's settings (column types).
        """
        records = [dict(inputs[r[SAMPLE_ID]]) | dict(r) | {SCENARIO_KEY: keys[r[SAMPLE_ID]]} for r in results]
        frame = stable_dtypes(pd.DataFrame.from_records(records), settings)
        path = self.path / f"chunk-{self._next:06d}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
        self._next += 1


def _is_metric_column(column: str, names: Sequence[str]) -> bool:
    return column in names or any(column.startswith(f"{name}.") for name in names)


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _short(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _free_name(path: Path) -> Path:
    """Return ``path``, or ``path.1``, ``path.2``, ... whichever does not exist yet."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


# --------------------------------------------------------------------------- lock holders
def _read_lock(lock: Path) -> dict[str, Any] | None:
    """Return the lock file's contents, or None if it is gone, empty or not JSON (being written, damaged)."""
    try:
        data = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _lock_is_stale(lock: Path, holder: Mapping[str, Any] | None) -> bool:
    """True if the lock's holder is provably gone: a dead pid on this host (or an old, unreadable lock)."""
    if holder is None:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return True
        return age > _UNREADABLE_LOCK_STALE_S
    if holder.get("host") != socket.gethostname():
        return False  # cannot see processes on another machine
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    if pid == os.getpid():
        return False  # another sweep of this very process (another thread) holds it
    return not _pid_alive(pid, holder.get("process_start"))


def _pid_alive(pid: int, process_start: object) -> bool:
    """True if ``pid`` runs on this host and is the same process (not a zombie, not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, start = stat
    return state not in ("Z", "X") and (process_start is None or start is None or start == process_start)


def _proc_stat(pid: int) -> tuple[str, int | None] | None:
    """Return (state, start time in clock ticks) from /proc (Linux), or None elsewhere."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return (fields[0] if fields else "?"), None


def _process_start(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return stat[1] if stat is not None else None


def _own_command() -> str:
    """Return this process's command line as ``ps`` shows it (for the lock file; argv is the CLI's)."""
    try:
        raw = Path("/proc/self/cmdline").read_bytes()
    except OSError:
        return f"{sys.executable} (pid {os.getpid()})"
    return " ".join(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)


def _describe_holder(holder: Mapping[str, Any] | None) -> str:
    if holder is None:
        return "an unreadable lock (a run that crashed while taking it)"
    return (
        f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}, "
        f"command {holder.get('command')!r}"
    )


def _locked_message(folder: Path, lock: Path, holder: Mapping[str, Any] | None) -> str:
    return (
        f"{folder} is in use by another sweep ({_describe_holder(holder)}). Wait for it to finish or use "
        f"another output folder; if that run is gone (e.g. it ran on another machine), delete {lock}"
    )
