"""Run many simulations (a parameter sweep or a virtual cohort) into one tidy table of metrics per sample.

``run_sweep`` takes one row per sample (parameter overrides, optional per-row phenotype and regimen,
pass-through ``meta_`` columns), simulates each on warm engines (in this process, in local worker
processes that each compile the model once, or on a Dask cluster), reduces each result with the
metric functions, and returns one row per sample with a ``status`` and ``message``. With ``out_dir``
the results are written in Parquet chunks as they finish, so a sweep that is killed resumes where it
stopped: finished samples are loaded, never recomputed.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import importlib.metadata
import json
import logging
import math
import multiprocessing
import os
import platform
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ra_model.engines.engine import Engine, SolverOptions
from ra_model.errors import InvalidValueError, RAModelError, UnknownNameError
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
#: Output column: "ok" or "failed".
STATUS = "status"
#: Output column: the solver's (or metric's) message for a failed sample, "" when ok.
MESSAGE = "message"
#: Status values.
STATUS_OK = "ok"
STATUS_FAILED = "failed"
#: File names inside ``out_dir``.
PROVENANCE_FILE = "provenance.json"
CHUNK_GLOB = "chunk-*.parquet"

#: Settings that must match for a sweep directory to be resumed.
_RESUME_KEYS = ("model_hash", "phenotype", "regimen", "t_end_d", "output_step_d", "metrics", "fast", "rtol", "split")

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


def _init_worker(fast: bool, rtol: float, model: str | None, split: bool) -> None:
    """Process-pool initializer: compile the model once, before the first sample arrives."""
    logging.getLogger("roadrunner").setLevel(logging.ERROR)
    worker_engine(fast=fast, rtol=rtol, model=model, split=split)


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
    """A metric raised on one sample's table (recorded as a failed sample)."""


def _expand(name: str, value: object) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {f"{name}.{k}": _scalar(name, v) for k, v in value.items()}
    return {name: _scalar(name, value)}


def _scalar(name: str, value: object) -> float | bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
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
        out_dir: Folder for Parquet chunks and ``provenance.json``; finished samples found there
            (by ``sample_id``) are loaded instead of recomputed.
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
        seed, design, settings and date.

    Raises:
        InvalidValueError: Bad samples table, settings or out_dir contents from another sweep.
        UnknownNameError: An input column that is not a parameter, phenotype or metric name.
    """
    settings = _validate(
        samples, metrics, phenotype, regimen, t_end_d, output_step_d, fast, chunk_size, rtol, model, split
    )
    provenance = _provenance(samples, settings, n=len(samples))
    rows = _rows(samples, settings)

    done: dict[str, dict[str, Any]] = {}
    next_chunk = 0
    if out_dir is not None:
        out_dir = Path(out_dir)
        done, next_chunk = _load_finished(out_dir, provenance, set(samples[SAMPLE_ID]))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, default=str), encoding="utf-8")
    todo = [r for r in rows if r[SAMPLE_ID] not in done]
    if done:
        log.info("resuming: %d of %d samples already finished in %s", len(done), len(rows), out_dir)

    n_workers = _n_workers(workers)
    size = max(1, min(chunk_size, math.ceil(len(todo) / max(1, 4 * n_workers)))) if client is None else chunk_size
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    bar = tqdm(total=len(rows), initial=len(done), desc="sweep", unit="sample", disable=not progress, file=sys.stderr)
    input_by_id = {r[SAMPLE_ID]: r for r in rows}
    try:
        for chunk_rows in _execute(chunks, settings, n_workers=n_workers, client=client, bar=bar):
            for result in chunk_rows:
                done[result[SAMPLE_ID]] = result
            if out_dir is not None:
                _write_chunk(out_dir, next_chunk, chunk_rows, input_by_id, settings)
                next_chunk += 1
    finally:
        bar.close()

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
) -> Iterator[list[dict[str, Any]]]:
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
    with cf.ProcessPoolExecutor(
        max_workers=min(n_workers, len(chunks)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(settings.fast, settings.rtol, settings.model, settings.split),
    ) as pool:
        futures = [pool.submit(_run_chunk, chunk, settings) for chunk in chunks]
        try:
            for future in cf.as_completed(futures):
                results = future.result()
                bar.update(len(results))
                yield results
        except BaseException:
            for future in futures:
                future.cancel()
            raise


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


def _load_finished(
    out_dir: Path, provenance: Mapping[str, Any], wanted: set[str]
) -> tuple[dict[str, dict[str, Any]], int]:
    """Read finished samples from earlier chunks; refuse a folder written by a different sweep."""
    if not out_dir.exists():
        return {}, 0
    if out_dir.is_file():
        raise InvalidValueError(f"out_dir {out_dir} is a file; give a folder")
    chunks = sorted(out_dir.glob(CHUNK_GLOB))
    if not chunks:
        return {}, 0
    previous_file = out_dir / PROVENANCE_FILE
    if previous_file.exists():
        previous = json.loads(previous_file.read_text(encoding="utf-8"))
        differ = [k for k in _RESUME_KEYS if previous.get(k) != provenance.get(k)]
        if differ:
            raise InvalidValueError(
                f"{out_dir} holds a sweep with different {', '.join(differ)} "
                f"({', '.join(f'{k}={previous.get(k)!r}' for k in differ)}); use a new --out folder "
                "or delete the old chunks"
            )
    done: dict[str, dict[str, Any]] = {}
    last = -1
    for path in chunks:
        last = max(last, int(path.stem.split("-")[1]))
        frame = pd.read_parquet(path)
        for record in frame.to_dict(orient="records"):
            if record[SAMPLE_ID] in wanted:
                done[record[SAMPLE_ID]] = {str(k): v for k, v in record.items() if not _is_missing(v)}
    return done, last + 1


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _write_chunk(
    out_dir: Path,
    index: int,
    results: Sequence[Mapping[str, Any]],
    inputs: Mapping[str, Mapping[str, Any]],
    settings: _Settings,
) -> None:
    """Write one chunk atomically (temporary file, then rename), inputs and results side by side."""
    records = [dict(inputs[r[SAMPLE_ID]]) | dict(r) for r in results]
    frame = _typed(pd.DataFrame.from_records(records), settings)
    path = out_dir / f"chunk-{index:06d}.parquet"
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _typed(frame: pd.DataFrame, settings: _Settings) -> pd.DataFrame:
    """Give metric columns stable dtypes: nullable boolean for yes/no metrics, float otherwise."""
    fixed = {SAMPLE_ID, STATUS, MESSAGE, PHENOTYPE, REGIMEN, *settings.parameter_columns, *settings.meta_columns}
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
