"""Run many simulations (a parameter sweep or a virtual cohort) into one tidy table of metrics per sample.

``run_sweep`` takes one row per sample (parameter overrides, optional per-row phenotype and regimen,
pass-through ``meta_`` columns), simulates each on warm engines (in this process, in local worker
processes that each compile the model once, or on a Dask cluster), reduces each result with the
metric functions, and returns one row per sample with a ``status`` and ``message``. With ``out_dir``
the results are written in Parquet chunks as they finish, so a sweep that is killed resumes where it
stopped: finished samples are loaded, never recomputed.

The output folder (scenario keys, run settings, provenance, the lock, chunks, ``fresh``) is
:mod:`ra_model.studies.sweep_store`; the processes' lives (workers end with their parent, SIGTERM stops a
sweep cleanly with exit status 143) are :mod:`ra_model.studies.sweep_workers`; the column names,
tolerances and settings they share are :mod:`ra_model.studies.sweep_settings`, all importable from here.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ra_model.engines.engine import Engine, SolverOptions
from ra_model.errors import InvalidValueError, RAModelError, UnknownNameError
from ra_model.model.classes import check_n_classes
from ra_model.model.domain import check_columns
from ra_model.model.phenotypes import load_phenotypes
from ra_model.model.regimen import Regimen, parse_optional
from ra_model.model.source import class_parameter_table, default_sbml, read_parameter_table, sbml_hash
from ra_model.model.units import DIMENSIONLESS, pint_units
from ra_model.studies.metrics import Metric, metric_units
from ra_model.studies.sweep_settings import (
    MESSAGE,
    META_PREFIX,
    PHENOTYPE,
    REGIMEN,
    SAMPLE_ID,
    STATUS,
    STATUS_FAILED,
    STATUS_OK,
    SWEEP_ATOL,
    SWEEP_RTOL,
    SweepSettings,
)
from ra_model.studies.sweep_store import (
    BAD_SUFFIX,
    CHUNK_GLOB,
    FOLDER_FORMAT,
    LOCK_FILE,
    PROVENANCE_FILE,
    REPLACED_PREFIX,
    SCENARIO_KEY,
    SweepFolder,
    make_provenance,
    package_versions,
    run_settings,
    scenario_keys,
    stable_dtypes,
)
from ra_model.studies.sweep_workers import StopOnSignal, Stopped, follow_parent, stop_pool

if TYPE_CHECKING:
    import distributed
    import xarray

    from ra_model.engines.fastpath import FastEngine
    from ra_model.engines.splitpath import SplitEngine

__all__ = [
    "BAD_SUFFIX",
    "CHUNK_GLOB",
    "FOLDER_FORMAT",
    "LOCK_FILE",
    "MESSAGE",
    "META_PREFIX",
    "PHENOTYPE",
    "PROVENANCE_FILE",
    "REGIMEN",
    "REPLACED_PREFIX",
    "SAMPLE_ID",
    "SCENARIO_KEY",
    "STATUS",
    "STATUS_FAILED",
    "STATUS_OK",
    "SWEEP_ATOL",
    "SWEEP_RTOL",
    "package_versions",
    "run_sweep",
    "to_xarray",
    "worker_engine",
]

log = logging.getLogger(__name__)

#: Seconds to wait for a Dask scheduler given by address before stopping with an error naming it.
_SCHEDULER_TIMEOUT_S = 5.0


# --------------------------------------------------------------------------- per-process engines
_LOCAL = threading.local()


def worker_engine(
    *,
    fast: bool = False,
    rtol: float = SWEEP_RTOL,
    model: str | None = None,
    split: bool = False,
    n_classes: int = 1,
    force_model: bool = False,
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
        n_classes: Focus classes of the shipped model (:func:`ra_model.model.source.default_sbml`), on
            every path.
        force_model: Compile ``model`` although it fails the unit check (its findings are logged).
    """
    split = split and not fast and model is None
    key = f"fast-{n_classes}" if fast else f"{'split' if split else 'exact'}-{rtol:g}-{model or ''}-{n_classes}"
    engines: dict[str, Engine | FastEngine | SplitEngine] | None = getattr(_LOCAL, "engines", None)
    if engines is None:
        engines = {}
        _LOCAL.engines = engines
    if key not in engines:
        main = threading.current_thread() is threading.main_thread()
        if fast:
            from ra_model.engines.fastpath import FastEngine, fast_engine

            sbml = default_sbml(n_classes) if n_classes > 1 else None
            engines[key] = fast_engine(n_classes) if main else FastEngine(sbml)
        elif split:
            from ra_model.engines.splitpath import SplitEngine, split_engine

            options = SolverOptions(rtol=rtol, atol=SWEEP_ATOL)
            sbml = default_sbml(n_classes) if n_classes > 1 else None
            engines[key] = split_engine(rtol, SWEEP_ATOL, n_classes) if main else SplitEngine(sbml, options=options)
        elif model is not None:
            from ra_model.engines.from_file import engine_from_file

            options = SolverOptions(rtol=rtol, atol=SWEEP_ATOL)
            engines[key] = engine_from_file(Path(model), options=options, force=force_model)
        else:
            from ra_model.engines.simulate import default_engine

            shared = default_engine(n_classes) if main else None
            wanted = SolverOptions(rtol=rtol, atol=SWEEP_ATOL)
            if shared is not None and shared.options == wanted:
                engines[key] = shared
            else:
                engines[key] = Engine(default_sbml(n_classes), options=wanted)
    return engines[key]


def _init_worker(
    parent: int, fast: bool, rtol: float, model: str | None, split: bool, n_classes: int = 1, force_model: bool = False
) -> None:
    """Process-pool initializer: tie the worker to its parent, then compile the model once."""
    follow_parent(parent)
    logging.getLogger("roadrunner").setLevel(logging.ERROR)
    worker_engine(fast=fast, rtol=rtol, model=model, split=split, n_classes=n_classes, force_model=force_model)


# --------------------------------------------------------------------------- one sample
@lru_cache(maxsize=64)
def _parse_regimen(text: str) -> Regimen | None:
    return parse_optional(text)


def _run_one(row: Mapping[str, Any], settings: SweepSettings) -> dict[str, Any]:
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

        engine = worker_engine(
            fast=settings.fast,
            rtol=settings.rtol,
            model=settings.model,
            split=settings.split,
            n_classes=settings.n_classes,
            force_model=settings.force_model,
        )
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

    One conversion of the numeric columns (about 0.15 ms for a year at daily output, past the text
    column ``semen_category``), little next to the simulation.
    """
    numeric = table.select_dtypes(["number", "bool"])
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


def _run_chunk(rows: Sequence[Mapping[str, Any]], settings: SweepSettings) -> list[dict[str, Any]]:
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
    n_classes: int = 1,
    force_model: bool = False,
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
        client: A ``distributed.Client`` or a scheduler address (connected within 5 s); overrides
            ``workers``.
        fast: Use the fast path (:mod:`ra_model.engines.fastpath`) instead of exact discrete dosing.
        rtol: Relative tolerance of the exact path (default :data:`SWEEP_RTOL`; ``simulate()`` uses 1e-8).
        model: An SBML file (e.g. an export edited in COPASI) to simulate instead of the shipped model;
            validated as in :func:`ra_model.sbml_io.engine_from_file`. Exact path only.
        split: Run the exact path on the split model (:mod:`ra_model.engines.splitpath`: every dose in
            libroadrunner, the germ-cell chain compiled; about 1.7x faster, errors below 2e-4 of
            the whole model's). False runs the whole model in libroadrunner, as ``simulate()`` does.
            Ignored with ``fast`` or ``model`` (a model file always runs whole).
        progress: Show a tqdm progress bar with ETA on stderr.
        chunk_size: Samples per task and per Parquet chunk (smaller chunks are used when there are
            too few samples to keep every worker busy).
        n_classes: Build the shipped testis from this many focus classes (:mod:`ra_model.model.classes`);
            the samples may then set class parameters (``F3__ra_local``). Every path runs it: the split
            exact path (the default), the fast path and, with ``split=False``, the whole model in
            libroadrunner as ``simulate(..., n_classes=N)`` does. ``n_classes`` is part of the run
            settings (and the model hash differs per N), so folders of different N never mix.
        force_model: Run a ``model`` file that fails the SBML unit check (refused by default; the findings
            are logged as a warning instead), as ``ra-model sweep --model FILE --force``.

    Returns:
        One row per sample in the order of ``samples``: the input columns, the metric columns,
        ``status`` and ``message``. ``attrs["provenance"]`` records model hash, package versions,
        seed, design, settings (``run_settings``: what a resumed folder must match) and date.

    Raises:
        InvalidValueError: Bad samples table or settings, an ``out_dir`` holding another sweep (the
            message names the first difference and the way out: ``fresh=True`` or a new folder), or a
            scheduler address that cannot be reached.
        UnknownNameError: An input column that is not a parameter, phenotype or metric name.
        FolderLockedError: ``out_dir`` is locked by a running sweep (the message names it).
        SystemExit: SIGTERM (or SIGHUP) stopped the sweep, with status 128 + the signal number, after
            the finished chunks were saved, the workers stopped and the lock released.
    """
    settings = _validate(
        samples,
        metrics,
        phenotype,
        regimen,
        t_end_d,
        output_step_d,
        fast,
        chunk_size,
        rtol,
        model,
        split,
        n_classes,
        force_model=force_model,
    )
    if not isinstance(fresh, bool):
        raise InvalidValueError(f"fresh = {fresh!r}; use True (start the folder over) or False (resume)")
    n_workers = _n_workers(workers)
    run = run_settings(settings)
    provenance = make_provenance(samples, settings) | {"run_settings": run}
    rows = _rows(samples, settings)
    key_by_id = dict(zip((r[SAMPLE_ID] for r in rows), scenario_keys(rows, settings, run), strict=True))

    done: dict[str, dict[str, Any]] = {}
    try:
        with contextlib.ExitStack() as stack:
            guard = stack.enter_context(StopOnSignal())
            folder: SweepFolder | None = None
            if out_dir is not None:
                folder = stack.enter_context(SweepFolder(Path(out_dir)))
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
    except Stopped as stop:
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
    table.attrs["units"] = column_units(table, settings)
    n_failed = int((table[STATUS] == STATUS_FAILED).sum())
    if n_failed:
        log.warning("%d of %d samples failed; see the status and message columns", n_failed, len(table))
    return table


# --------------------------------------------------------------------------- executing chunks
def _execute(
    chunks: list[list[dict[str, Any]]],
    settings: SweepSettings,
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
        initargs=(
            os.getpid(),
            settings.fast,
            settings.rtol,
            settings.model,
            settings.split,
            settings.n_classes,
            settings.force_model,
        ),
    )
    futures: list[cf.Future[list[dict[str, Any]]]] = []
    try:
        futures = [pool.submit(_run_chunk, chunk, settings) for chunk in chunks]
        for future in cf.as_completed(futures):
            results = future.result()
            bar.update(len(results))
            yield results
    except BaseException:  # an error, Ctrl-C, a stop signal or the caller closing us: stop now, not after the queue
        stop_pool(pool, futures)
        raise
    pool.shutdown(wait=True)


def _execute_dask(
    chunks: list[list[dict[str, Any]]],
    settings: SweepSettings,
    *,
    client: distributed.Client | str,
    bar: tqdm[Any],
) -> Iterator[list[dict[str, Any]]]:
    import distributed

    own = isinstance(client, str)
    dask_client = _connect(client) if isinstance(client, str) else client
    try:
        futures = [dask_client.submit(_run_chunk, chunk, settings, pure=False) for chunk in chunks]
        try:
            # the client's own loop: with a scheduler address there is no default client for as_completed to find
            for future in distributed.as_completed(futures, loop=dask_client.loop):  # type: ignore[no-untyped-call]
                results: list[dict[str, Any]] = future.result()
                bar.update(len(results))
                yield results
        except BaseException:
            dask_client.cancel(futures)  # type: ignore[no-untyped-call]
            raise
    finally:
        if own:
            dask_client.close()  # type: ignore[no-untyped-call]


def _connect(address: str) -> distributed.Client:
    """Connect to the Dask scheduler at ``address``, or stop within a few seconds with an error naming it."""
    import distributed

    try:
        return distributed.Client(  # type: ignore[no-untyped-call]
            address, timeout=_SCHEDULER_TIMEOUT_S, set_as_default=False
        )
    except (OSError, ValueError) as exc:  # refused, timed out (TimeoutError is an OSError), unknown scheme
        raise InvalidValueError(
            f"cannot reach the Dask scheduler at {address} ({exc}); start the scheduler (dask scheduler), "
            "check the address (tcp://host:port), or leave out the scheduler (no --scheduler on the command "
            "line, client=None in Python) to run on local worker processes"
        ) from exc


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
    n_classes: int = 1,
    force_model: bool = False,
) -> SweepSettings:
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

    n = check_n_classes(n_classes)
    if model is not None and fast:
        raise InvalidValueError(f"model={model}: the fast path runs the shipped model only; use fast=False")
    if n > 1 and model is not None:
        raise InvalidValueError(
            f"n_classes = {n} with model={model}: a model file has its focus classes built in; give model= alone "
            f"(export one with ra-model export sbml --classes {n})"
        )
    if model is not None:
        from ra_model.engines.from_file import engine_from_file

        if force_model is not True and force_model is not False:
            raise InvalidValueError(f"force_model = {force_model!r}; use True or False")
        # validates the file up front, with line numbers
        model_hash = engine_from_file(Path(model), force=force_model).sbml_hash
    else:
        model_hash = sbml_hash(default_sbml(n))
    table = read_parameter_table() | class_parameter_table(n)
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
    return SweepSettings(
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
        n_classes=n,
        force_model=force_model,
    )


def _rows(samples: pd.DataFrame, settings: SweepSettings) -> list[dict[str, Any]]:
    keep = [SAMPLE_ID, *settings.parameter_columns]
    keep += [c for c in (PHENOTYPE, REGIMEN) if c in samples.columns]
    return [dict(zip(keep, values, strict=True)) for values in samples[keep].itertuples(index=False, name=None)]


# --------------------------------------------------------------------------- the table
def _assemble(samples: pd.DataFrame, done: Mapping[str, Mapping[str, Any]], settings: SweepSettings) -> pd.DataFrame:
    inputs = set(samples.columns)
    metric_columns: list[str] = []
    for result in done.values():
        for key in result:
            if key not in inputs and key not in (STATUS, MESSAGE) and key not in metric_columns:
                metric_columns.append(key)
    order = _metric_order(metric_columns, [name for name, _ in settings.metrics])
    records = [{k: done[sid].get(k, math.nan) for k in (*order, STATUS, MESSAGE)} for sid in samples[SAMPLE_ID]]
    results = stable_dtypes(pd.DataFrame.from_records(records, columns=[*order, STATUS, MESSAGE]), settings)
    results[MESSAGE] = results[MESSAGE].fillna("").astype(str)
    table = pd.concat([samples.reset_index(drop=True), results], axis=1)
    table.attrs = {}
    return table


def column_units(table: pd.DataFrame, settings: SweepSettings) -> dict[str, str]:
    """Return pint-parseable units text for every column of a sweep table.

    Parameter columns take their unit from the model (``models/parameters.csv``, class parameters included,
    via :func:`ra_model.model.units.pint_units`); metric columns the metric's (:func:`metrics.metric_units`;
    a user metric without a ``units`` attribute gets ``dimensionless`` and a log line saying how to declare
    it); labels (``sample_id``, ``phenotype``, ``regimen``, ``status``, ``message``, ``meta_*``) are
    ``dimensionless``: text, no quantity.
    """
    info = dict(read_parameter_table()) | class_parameter_table(settings.n_classes)
    by_metric = dict(settings.metrics)
    units: dict[str, str] = {}
    for column in table.columns:
        if column in settings.parameter_columns and column in info:
            units[column] = pint_units(info[column].unit)
            continue
        name = column.split(".", 1)[0]
        if name in by_metric:
            declared = metric_units(name, by_metric[name])
            if declared is None:
                log.info("metric %r declares no units (set its function's `units` attribute); dimensionless", name)
            units[column] = declared or DIMENSIONLESS
            continue
        units[column] = DIMENSIONLESS
    return units


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
    units = table.attrs.get("units", {})
    for name in (*dataset.data_vars, *dataset.coords):
        dataset[name].attrs["units"] = units.get(str(name), DIMENSIONLESS)
    return dataset
