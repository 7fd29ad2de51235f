"""Run many simulations (a parameter sweep or a virtual cohort) into one tidy table of metrics per sample.

``run_sweep`` takes one row per sample (parameter overrides, optional per-row phenotype and regimen,
pass-through ``meta_`` columns), simulates each on warm engines (in this process, in local worker
processes that each compile the model once, or on a Dask cluster), reduces each result with the
metric functions, and returns one row per sample with a ``status`` and ``message``. With ``out_dir``
the results are written in Parquet chunks as they finish, so a sweep that is killed resumes where it
stopped: finished samples are loaded, never recomputed.

A result is reused only for provably the same work: every row in a chunk carries the SHA-256 *scenario
key* of what produced it (the sample's parameter values, phenotype and its content, regimen, horizon,
output step, metrics, model hash, solver settings, package versions), and a folder written with other
run settings (or by an earlier version, without keys) is refused until ``fresh=True`` sets it aside.
While a sweep runs its folder is locked (``sweep.lock``); worker processes end with their parent, and
SIGTERM stops a sweep cleanly (finished chunks kept, pool stopped, lock released, exit status 143).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import datetime as _dt
import functools
import hashlib
import importlib.metadata
import json
import logging
import math
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import sys
import threading
import time
import types
import uuid
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ra_model.engines.engine import Engine, SolverOptions
from ra_model.errors import FolderLockedError, InvalidValueError, RAModelError, UnknownNameError
from ra_model.model.domain import check_columns
from ra_model.model.phenotypes import load_phenotypes
from ra_model.model.regimen import Regimen, parse_optional
from ra_model.model.source import default_sbml, read_parameter_table, sbml_hash
from ra_model.studies.metrics import Metric

if TYPE_CHECKING:
    import distributed
    import xarray

    from ra_model.engines.fastpath import FastEngine
    from ra_model.engines.splitpath import SplitEngine

log = logging.getLogger(__name__)

#: Required input column: a unique, stable string id per sample.
SAMPLE_ID = "sample_id"
#: Optional input column: phenotype preset name for this sample (overrides the sweep default).
PHENOTYPE = "phenotype"
#: Optional input column: regimen text for this sample, "" for no drug (overrides the sweep default).
REGIMEN = "regimen"
#: Prefix of input columns copied to the output untouched.
META_PREFIX = "meta_"
#: Output column: "ok" or "failed" (solver failure, metric error, or NaN/inf in the simulation table).
STATUS = "status"
#: Output column: the solver's (or metric's) message for a failed sample, "" when ok.
MESSAGE = "message"
#: Status values.
STATUS_OK = "ok"
STATUS_FAILED = "failed"
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
#: How often a worker checks that its parent is still alive, seconds.
_PARENT_POLL_S = 0.5
#: Linux prctl option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1
#: Signals that stop a sweep cleanly (where their handler is the default, i.e. they would kill it).
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))

#: Solver of the exact path of a sweep: discrete doses, CVODE at rtol 1e-6. Against an rtol 1e-10
#: reference the largest relative error on any observable is about 1e-4 (benchmarks/bench_sweep.py),
#: inside the 1e-3 a sweep needs, at about 60% of the cost of ``simulate()``'s default rtol 1e-8.
SWEEP_RTOL = 1e-6
#: Absolute tolerance of the exact path (nmol or Mcell per state). 1e-12 left errors of 2e-3 on
#: daily sperm production where it is near 1e-9 million/day; 1e-13 brings them under 1e-3 at the
#: same cost (measured on 12 benchmark men; 1e-14 costs 20% more).
SWEEP_ATOL = 1e-13


@dataclass(frozen=True, kw_only=True)
class _Settings:
    """What every sample of one sweep shares (picklable, sent to workers)."""

    phenotype: str
    regimen: str | None
    t_end_d: float
    output_step_d: float
    metrics: tuple[tuple[str, Metric], ...]
    fast: bool
    rtol: float
    model: str | None
    model_hash: str
    split: bool
    parameter_columns: tuple[str, ...]
    meta_columns: tuple[str, ...]


# --------------------------------------------------------------------------- per-process engines
_LOCAL = threading.local()


def worker_engine(
    *, fast: bool = False, rtol: float = SWEEP_RTOL, model: str | None = None, split: bool = False
) -> Engine | FastEngine | SplitEngine:
    """Return this thread's compiled engine for the exact or fast path, compiling it on first use.

    Each worker process (or Dask worker thread) compiles the model once and keeps it; the main
    thread shares the process-wide engine of :func:`ra_model.engines.simulate.default_engine` when the
    tolerance is the same.

    Args:
        fast: The engine of the fast path (the split model of :mod:`ra_model.engines.fastpath`).
        rtol: Relative tolerance of the exact path.
        model: Path of an SBML file to simulate instead of the shipped model (exact path only).
        split: The exact path on the split model (:mod:`ra_model.engines.splitpath`); shipped model only.
    """
    split = split and not fast and model is None
    key = "fast" if fast else f"{'split' if split else 'exact'}-{rtol:g}-{model or ''}"
    engines: dict[str, Engine | FastEngine | SplitEngine] | None = getattr(_LOCAL, "engines", None)
    if engines is None:
        engines = {}
        _LOCAL.engines = engines
    if key not in engines:
        main = threading.current_thread() is threading.main_thread()
        if fast:
            from ra_model.engines.fastpath import FastEngine, fast_engine

            engines[key] = fast_engine() if main else FastEngine()
        elif split:
            from ra_model.engines.splitpath import SplitEngine, split_engine

            options = SolverOptions(rtol=rtol, atol=SWEEP_ATOL)
            engines[key] = split_engine(rtol, SWEEP_ATOL) if main else SplitEngine(options=options)
        elif model is not None:
            from ra_model.engines.from_file import engine_from_file

            engines[key] = engine_from_file(Path(model), options=SolverOptions(rtol=rtol, atol=SWEEP_ATOL))
        else:
            from ra_model.engines.simulate import default_engine

            shared = default_engine() if main else None
            wanted = SolverOptions(rtol=rtol, atol=SWEEP_ATOL)
            if shared is not None and shared.options == wanted:
                engines[key] = shared
            else:
                engines[key] = Engine(default_sbml(), options=wanted)
    return engines[key]


def _init_worker(parent: int, fast: bool, rtol: float, model: str | None, split: bool) -> None:
    """Process-pool initializer: tie the worker to its parent, then compile the model once."""
    _follow_parent(parent)
    logging.getLogger("roadrunner").setLevel(logging.ERROR)
    worker_engine(fast=fast, rtol=rtol, model=model, split=split)


def _follow_parent(parent: int) -> None:
    """End this worker process when the sweep's process ends, however it ends (even by SIGKILL).

    On Linux the kernel sends SIGTERM when the parent dies (``prctl(PR_SET_PDEATHSIG)``); on every
    platform a daemon thread checks ``os.getppid()`` twice a second and exits when it changes.

    Args:
        parent: Process id of the sweep's process (the pool's owner).
    """
    # A forked worker inherits the sweep's SIGTERM handler, which only raises (the pool would catch it
    # and carry on): SIGTERM must end a worker. Ctrl-C reaches the whole process group; the parent stops
    # the pool, so workers ignore SIGINT rather than report a KeyboardInterrupt per task.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watcher thread below still ends the worker
            log.debug("prctl(PR_SET_PDEATHSIG) unavailable; relying on the parent watcher")
    if os.getppid() != parent:  # the parent died before the kernel could be told
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="ra-model-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    """Exit this process as soon as its parent is no longer ``parent`` (it died; we were re-parented)."""
    while True:
        time.sleep(_PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(1)


# --------------------------------------------------------------------------- one sample
@lru_cache(maxsize=64)
def _parse_regimen(text: str) -> Regimen | None:
    return parse_optional(text)


def _run_one(row: Mapping[str, Any], settings: _Settings) -> dict[str, Any]:
    """Simulate one sample and evaluate the metrics; failures become a row with status "failed"."""
    out: dict[str, Any] = {SAMPLE_ID: row[SAMPLE_ID]}
    phenotype = str(row.get(PHENOTYPE, settings.phenotype))
    regimen_text = row.get(REGIMEN, settings.regimen)
    overrides = {p: float(row[p]) for p in settings.parameter_columns}
    try:
        regimen = _parse_regimen(regimen_text) if isinstance(regimen_text, str) else None
        from ra_model.engines.fastpath import FastEngine, simulate_fast
        from ra_model.engines.simulate import simulate
        from ra_model.engines.splitpath import SplitEngine, simulate_split

        engine = worker_engine(fast=settings.fast, rtol=settings.rtol, model=settings.model, split=settings.split)
        common = {"t_end_d": settings.t_end_d, "overrides": overrides, "output_step_d": settings.output_step_d}
        if isinstance(engine, FastEngine):
            table = simulate_fast(phenotype, regimen, engine=engine, **common)  # type: ignore[arg-type]
        elif isinstance(engine, SplitEngine):
            table = simulate_split(phenotype, regimen, engine=engine, **common)  # type: ignore[arg-type]
        else:
            table = simulate(phenotype, regimen, engine=engine, **common)  # type: ignore[arg-type]
        _check_finite(table)
        values: dict[str, Any] = {}
        for name, metric in settings.metrics:
            try:
                result = metric(table)
            except Exception as exc:  # noqa: BLE001 - a user metric may raise anything; recorded, not fatal
                raise _MetricError(f"metric {name!r} raised {type(exc).__name__}: {exc}") from exc
            values.update(_expand(name, result))
    except (RAModelError, _MetricError) as exc:
        out[STATUS] = STATUS_FAILED
        out[MESSAGE] = str(exc)
        return out
    out.update(values)
    out[STATUS] = STATUS_OK
    out[MESSAGE] = ""
    return out


class _MetricError(Exception):
    """A metric raised on one sample's table, or the table is not finite (recorded as a failed sample)."""


def _check_finite(table: pd.DataFrame) -> None:
    """Raise _MetricError if the simulation table holds NaN or inf (a diverged or broken run).

    One conversion of the whole table (about 30 us for a year at daily output), so it costs nothing
    next to the simulation.
    """
    try:
        values = table.to_numpy(dtype=float)
        columns = list(table.columns)
    except (TypeError, ValueError):  # a non-numeric column (an edited model's table): check the numbers
        numeric = table.select_dtypes("number")
        values, columns = numeric.to_numpy(dtype=float), list(numeric.columns)
    finite = np.isfinite(values)
    if finite.all():
        return
    row, col = np.argwhere(~finite)[0]
    time_d = table.iloc[row, 0] if len(table.columns) else math.nan
    raise _MetricError(
        f"the simulation returned non-finite values ({int((~finite).sum())} NaN/inf; first: {columns[col]!r} = "
        f"{values[row, col]} at row {row}, {table.columns[0]} = {time_d}); no metric is computed from it. "
        "The solver diverged or a parameter value is outside what the model handles: check this sample's values"
    )


def _expand(name: str, value: object) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {f"{name}.{k}": _scalar(name, v) for k, v in value.items()}
    return {name: _scalar(name, value)}


def _scalar(name: str, value: object) -> float | bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
        if math.isinf(number):  # NaN stays (a metric's "undefined", e.g. a censored time); inf is never a result
            raise _MetricError(f"metric {name!r} returned {number}; a metric must return a finite number or NaN")
        return number
    raise _MetricError(f"metric {name!r} returned {type(value).__name__}; return a float, a bool or a dict of floats")


def _run_chunk(rows: Sequence[Mapping[str, Any]], settings: _Settings) -> list[dict[str, Any]]:
    """Run a chunk of samples on this worker's warm engine."""
    return [_run_one(row, settings) for row in rows]


# --------------------------------------------------------------------------- public entry point
def run_sweep(
    samples: pd.DataFrame,
    *,
    metrics: Mapping[str, Metric],
    phenotype: str = "healthy",
    regimen: str | None = None,
    t_end_d: float,
    output_step_d: float = 1.0,
    out_dir: Path | None = None,
    fresh: bool = False,
    workers: int | None = None,
    client: distributed.Client | str | None = None,
    fast: bool = False,
    rtol: float = SWEEP_RTOL,
    model: Path | None = None,
    split: bool = True,
    progress: bool = True,
    chunk_size: int = 50,
) -> pd.DataFrame:
    """Simulate every sample and reduce each result to metrics.

    Args:
        samples: One row per sample. ``sample_id`` (unique str) is required; every other column is a
            model parameter id (its value overrides the phenotype's), ``phenotype`` (preset name per
            row), ``regimen`` (regimen text per row, "" for no drug) or a ``meta_*`` pass-through.
            ``samples.attrs`` may hold ``seed`` and ``design``; they go into the provenance.
        metrics: Metric functions by name, each called with one ``simulate()`` table; a Mapping
            result expands to ``<name>.<key>`` columns. They must be picklable for parallel runs.
        phenotype: Default phenotype preset.
        regimen: Default regimen text, or None for no drug.
        t_end_d: Simulated time per sample, days.
        output_step_d: Output spacing, days.
        out_dir: Folder for Parquet chunks and ``provenance.json``, locked while the sweep runs. A
            finished result found there is reused only if its scenario key equals the sample's (same
            parameter values, phenotype, regimen and run settings); other samples are computed. A
            folder written with other run settings (horizon, output step, metrics, model, solver,
            package versions) or by an earlier version is refused; unreadable chunks are renamed
            ``*.bad`` and their samples recomputed.
        fresh: Start ``out_dir`` over: move its earlier chunks and provenance into a
            ``replaced-<UTC time>`` sub-folder (nothing is deleted) and compute every sample.
        workers: Local worker processes (None = all cores; 1 = in this process).
        client: A ``distributed.Client`` or a scheduler address; overrides ``workers``.
        fast: Use the fast path (:mod:`ra_model.engines.fastpath`) instead of exact discrete dosing.
        rtol: Relative tolerance of the exact path (default :data:`SWEEP_RTOL`; ``simulate()`` uses 1e-8).
        model: An SBML file (e.g. an export edited in COPASI) to simulate instead of the shipped model;
            validated as in :func:`ra_model.sbml_io.engine_from_file`. Exact path only.
        split: Run the exact path on the split model (:mod:`ra_model.engines.splitpath`: every dose in
            libroadrunner, the germ-cell chain compiled; about 1.7x faster, errors below 2e-4 of
            the whole model's). False runs the whole model in libroadrunner, as ``simulate()`` does.
            Ignored with ``fast`` or ``model`` (a custom model always runs whole).
        progress: Show a tqdm progress bar with ETA on stderr.
        chunk_size: Samples per task and per Parquet chunk (smaller chunks are used when there are
            too few samples to keep every worker busy).

    Returns:
        One row per sample in the order of ``samples``: the input columns, the metric columns,
        ``status`` and ``message``. ``attrs["provenance"]`` records model hash, package versions,
        seed, design, settings (``run_settings``: what a resumed folder must match) and date.

    Raises:
        InvalidValueError: Bad samples table or settings, or an ``out_dir`` holding another sweep
            (the message names the first difference and the way out: ``fresh=True`` or a new folder).
        UnknownNameError: An input column that is not a parameter, phenotype or metric name.
        FolderLockedError: ``out_dir`` is locked by a running sweep (the message names it).
        SystemExit: SIGTERM (or SIGHUP) stopped the sweep, with status 128 + the signal number, after
            the finished chunks were saved, the workers stopped and the lock released.
    """
    settings = _validate(
        samples, metrics, phenotype, regimen, t_end_d, output_step_d, fast, chunk_size, rtol, model, split
    )
    if not isinstance(fresh, bool):
        raise InvalidValueError(f"fresh = {fresh!r}; use True (start the folder over) or False (resume)")
    n_workers = _n_workers(workers)
    run = _run_settings(settings)
    provenance = _provenance(samples, settings, n=len(samples)) | {"run_settings": run}
    rows = _rows(samples, settings)
    key_by_id = dict(zip((r[SAMPLE_ID] for r in rows), _scenario_keys(rows, settings, run), strict=True))

    done: dict[str, dict[str, Any]] = {}
    try:
        with contextlib.ExitStack() as stack:
            guard = stack.enter_context(_StopOnSignal())
            folder: _SweepFolder | None = None
            if out_dir is not None:
                folder = stack.enter_context(_SweepFolder(Path(out_dir)))
                finished = folder.open(run, fresh=fresh, metric_names=[name for name, _ in settings.metrics])
                done = {sid: finished[key] for sid, key in key_by_id.items() if key in finished}
                folder.write_provenance(provenance)
                if done:
                    log.info("resuming: %d of %d samples already finished in %s", len(done), len(rows), out_dir)
            todo = [r for r in rows if r[SAMPLE_ID] not in done]
            size = (
                max(1, min(chunk_size, math.ceil(len(todo) / max(1, 4 * n_workers)))) if client is None else chunk_size
            )
            chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
            bar = stack.enter_context(
                tqdm(
                    total=len(rows),
                    initial=len(done),
                    desc="sweep",
                    unit="sample",
                    disable=not progress,
                    file=sys.stderr,
                )
            )
            input_by_id = {r[SAMPLE_ID]: r for r in rows}
            results = stack.enter_context(
                contextlib.closing(_execute(chunks, settings, n_workers=n_workers, client=client, bar=bar))
            )
            for chunk_rows in results:
                with guard.held():  # a stop request waits until the chunk is on disk and counted
                    if folder is not None:
                        folder.write_chunk(chunk_rows, input_by_id, key_by_id, settings)
                    for result in chunk_rows:
                        done[result[SAMPLE_ID]] = result
    except _Stopped as stop:
        saved = f" and saved in {out_dir}; run the same sweep into it again to resume" if out_dir is not None else ""
        log.warning(
            "sweep stopped by %s: %d of %d samples finished%s",
            signal.Signals(stop.signum).name,
            len(done),
            len(rows),
            saved or " (nothing saved: no out_dir)",
        )
        raise

    table = _assemble(samples, done, settings)
    table.attrs["provenance"] = provenance
    n_failed = int((table[STATUS] == STATUS_FAILED).sum())
    if n_failed:
        log.warning("%d of %d samples failed; see the status and message columns", n_failed, len(table))
    return table


def _execute(
    chunks: list[list[dict[str, Any]]],
    settings: _Settings,
    *,
    n_workers: int,
    client: distributed.Client | str | None,
    bar: tqdm[Any],
) -> Generator[list[dict[str, Any]], None, None]:
    """Yield finished chunks (in completion order) from the chosen executor."""
    if not chunks:
        return
    if client is not None:
        yield from _execute_dask(chunks, settings, client=client, bar=bar)
        return
    if n_workers == 1 or len(chunks) == 1 and len(chunks[0]) == 1:
        for chunk in chunks:
            results = []
            for row in chunk:
                results.append(_run_one(row, settings))
                bar.update(1)
            yield results
        return
    # fork: workers start warm (modules imported, the parent's compiled engine inherited) and scripts
    # need no ``if __name__ == "__main__"`` guard; elsewhere spawn, and each worker compiles once.
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pool = cf.ProcessPoolExecutor(
        max_workers=min(n_workers, len(chunks)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(os.getpid(), settings.fast, settings.rtol, settings.model, settings.split),
    )
    futures: list[cf.Future[list[dict[str, Any]]]] = []
    try:
        futures = [pool.submit(_run_chunk, chunk, settings) for chunk in chunks]
        for future in cf.as_completed(futures):
            results = future.result()
            bar.update(len(results))
            yield results
    except BaseException:  # an error, Ctrl-C, a stop signal or the caller closing us: stop now, not after the queue
        _stop_pool(pool, futures)
        raise
    pool.shutdown(wait=True)


def _stop_pool(pool: cf.ProcessPoolExecutor, futures: Sequence[cf.Future[Any]]) -> None:
    """Cancel what has not started, end the workers (chunks in progress are lost) and reap them."""
    for future in futures:
        future.cancel()
    processes = list((getattr(pool, "_processes", None) or {}).values())  # private, but stable since 3.2
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5.0)
        if process.is_alive():
            log.warning("worker process %s ignored SIGTERM; killing it", process.pid)
            process.kill()
            process.join(timeout=5.0)


def _execute_dask(
    chunks: list[list[dict[str, Any]]],
    settings: _Settings,
    *,
    client: distributed.Client | str,
    bar: tqdm[Any],
) -> Iterator[list[dict[str, Any]]]:
    import distributed

    own = isinstance(client, str)
    dask_client = distributed.Client(client) if isinstance(client, str) else client  # type: ignore[no-untyped-call]
    try:
        futures = [dask_client.submit(_run_chunk, chunk, settings, pure=False) for chunk in chunks]
        try:
            for future in distributed.as_completed(futures):  # type: ignore[no-untyped-call]
                results: list[dict[str, Any]] = future.result()
                bar.update(len(results))
                yield results
        except BaseException:
            dask_client.cancel(futures)  # type: ignore[no-untyped-call]
            raise
    finally:
        if own:
            dask_client.close()  # type: ignore[no-untyped-call]


def _n_workers(workers: int | None) -> int:
    if workers is None:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidValueError(f"workers = {workers!r}; use a positive integer, or None for all local cores")
    return workers


# --------------------------------------------------------------------------- validation
def _validate(
    samples: pd.DataFrame,
    metrics: Mapping[str, Metric],
    phenotype: str,
    regimen: str | None,
    t_end_d: float,
    output_step_d: float,
    fast: bool,
    chunk_size: int,
    rtol: float,
    model: Path | None,
    split: bool,
) -> _Settings:
    if not (isinstance(rtol, float) and 1e-12 <= rtol <= 1e-3):
        raise InvalidValueError(
            f"rtol = {rtol!r}; use a float between 1e-12 and 1e-3 (sweeps default to {SWEEP_RTOL:g})"
        )
    if not isinstance(samples, pd.DataFrame):
        raise InvalidValueError(f"samples must be a pandas DataFrame, not {type(samples).__name__}")
    if SAMPLE_ID not in samples.columns:
        raise InvalidValueError("samples has no 'sample_id' column; add one unique string id per row")
    if len(samples) == 0:
        raise InvalidValueError("samples is empty; the design produced no samples (check n and the ranges)")
    ids = samples[SAMPLE_ID]
    if not all(isinstance(v, str) and v for v in ids):
        raise InvalidValueError(
            "samples['sample_id'] must hold non-empty strings; convert with samples['sample_id'].astype(str)"
        )
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise InvalidValueError(f"sample_id values must be unique; repeated: {', '.join(map(repr, dup[:5]))}")
    if not metrics:
        raise InvalidValueError("no metrics given; pass e.g. {'responder': ra_model.studies.metrics.responder}")
    for name, metric in metrics.items():
        if not isinstance(name, str) or not name or not callable(metric):
            raise InvalidValueError(f"metric {name!r}: give a non-empty name and a callable")
        if name in samples.columns or name in (STATUS, MESSAGE):
            raise InvalidValueError(f"metric name {name!r} clashes with a column of the samples or output")
    for name, value in (("t_end_d", t_end_d), ("output_step_d", output_step_d)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise InvalidValueError(f"{name} = {value!r}; use a finite number of days > 0")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidValueError(f"chunk_size = {chunk_size!r}; use a positive integer")

    if model is not None and fast:
        raise InvalidValueError(f"model={model}: the fast path runs the shipped model only; use fast=False")
    if model is not None:
        from ra_model.engines.from_file import engine_from_file

        model_hash = engine_from_file(Path(model)).sbml_hash  # validates the file up front, with line numbers
    else:
        model_hash = sbml_hash(default_sbml())
    table = read_parameter_table()
    presets = load_phenotypes()
    known = set(table) | {PHENOTYPE, REGIMEN, SAMPLE_ID}
    parameter_columns: list[str] = []
    meta_columns: list[str] = []
    for column in samples.columns:
        if not isinstance(column, str):
            raise InvalidValueError(f"samples column {column!r} is not a string name")
        if column in (SAMPLE_ID, PHENOTYPE, REGIMEN):
            continue
        if column.startswith(META_PREFIX):
            meta_columns.append(column)
        elif column in table:
            parameter_columns.append(column)
        else:
            raise UnknownNameError("parameter", column, known, where="samples columns (or prefix it with 'meta_')")
    for column in parameter_columns:
        values = pd.to_numeric(samples[column], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            first = samples.loc[bad, SAMPLE_ID].iloc[0]
            raise InvalidValueError(f"samples[{column!r}] has a missing or non-numeric value (sample {first!r})")
    check_columns(
        {c: pd.to_numeric(samples[c]).to_numpy(dtype=float) for c in parameter_columns},
        where="samples",
        labels=[str(v) for v in samples[SAMPLE_ID]],
    )
    for name in {phenotype, *samples.get(PHENOTYPE, [])}:
        if name not in presets:
            raise UnknownNameError("phenotype", str(name), presets)
    for text in {regimen or "", *samples.get(REGIMEN, [])}:
        if not isinstance(text, str):
            raise InvalidValueError(f"regimen {text!r} is not text; write e.g. '20 mg bid for 180 d' or ''")
        _parse_regimen(text)  # raises RegimenParseError with the bad part
    return _Settings(
        phenotype=phenotype,
        regimen=regimen,
        t_end_d=float(t_end_d),
        output_step_d=float(output_step_d),
        metrics=tuple(metrics.items()),
        fast=bool(fast),
        rtol=float(rtol),
        model=str(Path(model).resolve()) if model is not None else None,
        model_hash=model_hash,
        split=bool(split) and not fast and model is None,
        parameter_columns=tuple(parameter_columns),
        meta_columns=tuple(meta_columns),
    )


def _rows(samples: pd.DataFrame, settings: _Settings) -> list[dict[str, Any]]:
    keep = [SAMPLE_ID, *settings.parameter_columns]
    keep += [c for c in (PHENOTYPE, REGIMEN) if c in samples.columns]
    return [dict(zip(keep, values, strict=True)) for values in samples[keep].itertuples(index=False, name=None)]


# --------------------------------------------------------------------------- provenance and files
def package_versions() -> dict[str, str]:
    """Return the versions of the packages a sweep result depends on."""
    versions = {"python": platform.python_version()}
    for dist in ("ra_model", "libroadrunner", "numpy", "pandas", "scipy", "SALib", "pyarrow", "dask", "distributed"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def _provenance(samples: pd.DataFrame, settings: _Settings, *, n: int) -> dict[str, Any]:
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
        "rtol": settings.rtol,
        "n_samples": n,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------- content keys
def _run_settings(settings: _Settings) -> dict[str, Any]:
    """Return what every result of a sweep depends on besides its own sample (JSON-normal, ordered).

    A folder is resumed only by a sweep with equal run settings; the first key that differs is named
    when one is refused.
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


def _scenario_keys(rows: Sequence[Mapping[str, Any]], settings: _Settings, run: Mapping[str, Any]) -> list[str]:
    """Return the SHA-256 content key of each sample: its scenario and the run settings, one hash per sample."""
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


# --------------------------------------------------------------------------- the output folder
class _SweepFolder:
    """A sweep's output folder: locked while in use, chunks keyed by content, bad chunks set aside."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = path / LOCK_FILE
        self._token: str | None = None
        self._next = 0

    def __enter__(self) -> _SweepFolder:
        if self.path.is_file():
            raise InvalidValueError(f"out_dir {self.path} is a file; give a folder")
        self.path.mkdir(parents=True, exist_ok=True)
        self._acquire()
        return self

    def __exit__(self, *exc: object) -> None:
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
            run: This sweep's run settings (:func:`_run_settings`).
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
            f"with fresh=True (ra-model sweep/sensitivity ... --fresh), which moves the old results into "
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
        """Write ``provenance.json`` atomically."""
        path = self.path / PROVENANCE_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(provenance, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, path)

    def write_chunk(
        self,
        results: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Mapping[str, Any]],
        keys: Mapping[str, str],
        settings: _Settings,
    ) -> None:
        """Write one chunk atomically (temporary file, then rename): inputs, results and scenario keys."""
        records = [dict(inputs[r[SAMPLE_ID]]) | dict(r) | {SCENARIO_KEY: keys[r[SAMPLE_ID]]} for r in results]
        frame = _typed(pd.DataFrame.from_records(records), settings)
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


# --------------------------------------------------------------------------- stop signals
class _Stopped(SystemExit):
    """A stop signal (SIGTERM, SIGHUP) ended the sweep; exit status 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


class _StopOnSignal:
    """While a sweep runs in the main thread, turn SIGTERM/SIGHUP into :class:`_Stopped`.

    Only signals whose handler is the default (which would kill the process on the spot) are taken
    over, and the previous handlers are restored on exit. Inside :meth:`held` a signal waits until the
    block ends (a chunk being written is finished first); a second signal while stopping is ignored.
    """

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._held = 0
        self._pending: int | None = None
        self._stopping = False

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in _STOP_SIGNALS:
                if signal.getsignal(signum) is signal.SIG_DFL:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        if self._stopping:
            log.warning("%s again: the sweep is already stopping", signal.Signals(signum).name)
            return
        if self._held:
            self._pending = signum
            return
        self._stopping = True
        raise _Stopped(signum)

    @contextlib.contextmanager
    def held(self) -> Generator[None, None, None]:
        """Hold stop signals until the block ends."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held and self._pending is not None and not self._stopping:
                signum, self._pending = self._pending, None
                self._stopping = True
                raise _Stopped(signum)


def _typed(frame: pd.DataFrame, settings: _Settings) -> pd.DataFrame:
    """Give metric columns stable dtypes: nullable boolean for yes/no metrics, float otherwise."""
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


def _assemble(samples: pd.DataFrame, done: Mapping[str, Mapping[str, Any]], settings: _Settings) -> pd.DataFrame:
    inputs = set(samples.columns)
    metric_columns: list[str] = []
    for result in done.values():
        for key in result:
            if key not in inputs and key not in (STATUS, MESSAGE) and key not in metric_columns:
                metric_columns.append(key)
    order = _metric_order(metric_columns, [name for name, _ in settings.metrics])
    records = [{k: done[sid].get(k, math.nan) for k in (*order, STATUS, MESSAGE)} for sid in samples[SAMPLE_ID]]
    results = _typed(pd.DataFrame.from_records(records, columns=[*order, STATUS, MESSAGE]), settings)
    results[MESSAGE] = results[MESSAGE].fillna("").astype(str)
    table = pd.concat([samples.reset_index(drop=True), results], axis=1)
    table.attrs = {}
    return table


def _metric_order(columns: Iterable[str], names: Sequence[str]) -> list[str]:
    rank = {n: i for i, n in enumerate(names)}
    return sorted(columns, key=lambda c: (rank.get(c.split(".", 1)[0], len(rank)), c))


def to_xarray(table: pd.DataFrame, *, parameters: Sequence[str] | None = None) -> xarray.Dataset:
    """Return a grid sweep's table as an xarray Dataset with one dimension per swept parameter.

    Metric, ``status``, ``message``, ``sample_id`` and ``meta_`` columns become data variables on
    the grid; yes/no metrics stay boolean where no sample failed and become 1.0/0.0/NaN otherwise.
    The provenance is kept as JSON text in ``attrs["provenance"]`` (netCDF attributes hold text).

    Args:
        table: What :func:`run_sweep` returned for a grid design (``make_design(design="grid")``).
        parameters: The swept parameter columns; default: the provenance's ``parameters``.

    Returns:
        The Dataset, coordinates sorted ascending.

    Raises:
        InvalidValueError: If the parameter columns are unknown or the rows are not a full grid
            (for example a Latin-hypercube design: use the table as it is).
    """
    provenance = table.attrs.get("provenance", {})
    names = list(parameters if parameters is not None else provenance.get("parameters", []))
    if not names:
        raise InvalidValueError(
            "to_xarray needs the swept parameter columns: pass parameters=[...] or a table from run_sweep"
        )
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise InvalidValueError(f"to_xarray: the table has no column {missing[0]!r}; columns are {list(table.columns)}")
    levels = [table[n].nunique() for n in names]
    if table.duplicated(subset=names).any() or math.prod(levels) != len(table):
        raise InvalidValueError(
            f"to_xarray: the {len(table)} rows are not a full grid over {names} ({' x '.join(map(str, levels))} "
            "levels); only grid designs map onto an array, use the table as it is"
        )
    frame = table.drop(columns=[c for c in (PHENOTYPE, REGIMEN) if c in table.columns and table[c].nunique() <= 1])
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.BooleanDtype):
            values = frame[column]
            frame[column] = values.astype(bool) if not values.isna().any() else values.astype("Float64").astype(float)
        elif pd.api.types.is_string_dtype(frame[column].dtype):
            frame[column] = frame[column].astype(object)
    dataset = frame.set_index(names).sort_index().to_xarray()
    dataset.attrs["provenance"] = json.dumps(provenance, default=str)
    return dataset
