"""Issue 14, the sweep's part: never a stale result, never a traceback, never a stray process.

Each test names the behaviour it guards; every one was checked to fail with that behaviour broken.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ra_model.cli import main as cli_main
from ra_model.errors import FolderLockedError, InvalidValueError
from ra_model.model import columns as C
from ra_model.studies import metrics as M
from ra_model.studies.metrics import BUILTIN_METRICS
from ra_model.studies.sweep import run_sweep
from ra_model.studies.sweep_store import LOCK_FILE, PROVENANCE_FILE, SCENARIO_KEY

PHENOTYPE = "maturation_arrest"
REGIMEN = "20 mg bid for 5 d"
T_END_D = 10.0


def _samples(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    return pd.DataFrame(
        {
            "sample_id": [f"p{i:03d}" for i in range(n)],
            "cyp26_expr": rng.uniform(2.0, 8.0, n),
            "meta_site": [f"site{i % 2}" for i in range(n)],
        }
    )


_CALLS = {"n": 0, "interrupt_at": 0}


def counting_atra(table: pd.DataFrame) -> float:
    """Testis atRA at the end; counts its calls in this process (workers=1) and can interrupt the sweep."""
    _CALLS["n"] += 1
    if _CALLS["interrupt_at"] and _CALLS["n"] >= _CALLS["interrupt_at"]:
        raise KeyboardInterrupt
    return float(table[C.TESTIS_ATRA].iloc[-1])


def infinite_metric(table: pd.DataFrame) -> float:
    return float("inf")


def _sweep(samples: pd.DataFrame, out_dir: Path | None, **changes: Any) -> pd.DataFrame:
    """A small fast-path sweep in this process; ``_CALLS["n"]`` counts the samples it computes."""
    kwargs: dict[str, Any] = dict(
        metrics={"atra": counting_atra},
        phenotype=PHENOTYPE,
        regimen=REGIMEN,
        t_end_d=T_END_D,
        fast=True,
        workers=1,
        chunk_size=2,
        out_dir=out_dir,
        progress=False,
    )
    _CALLS.update(n=0, interrupt_at=0)
    return run_sweep(samples, **(kwargs | changes))


def _chunks(folder: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(folder.glob("chunk-*.parquet"))], ignore_index=True)


# --------------------------------------------------------------------------- content keys and refusal
def test_changed_settings_are_refused_naming_the_difference_and_fresh_recomputes(tmp_path: Path) -> None:
    samples = _samples(4)
    first = _sweep(samples, tmp_path)
    assert _CALLS["n"] == 4
    written = {p.name: p.read_bytes() for p in tmp_path.glob("chunk-*.parquet")}
    run_settings = json.loads((tmp_path / PROVENANCE_FILE).read_text(encoding="utf-8"))["run_settings"]

    again = _sweep(samples, tmp_path)  # the same sweep: everything loaded, nothing recomputed
    assert _CALLS["n"] == 0
    pd.testing.assert_frame_equal(again, first)
    assert json.loads((tmp_path / PROVENANCE_FILE).read_text(encoding="utf-8"))["run_settings"] == run_settings

    with pytest.raises(InvalidValueError) as refused:
        _sweep(samples, tmp_path, t_end_d=12.0)
    message = str(refused.value)
    assert "first difference 't_end_d', was 10.0, now 12.0" in message
    assert "--fresh" in message and "fresh=True" in message and "replaced-" in message
    with pytest.raises(InvalidValueError, match="first difference 'metrics'"):
        _sweep(samples, tmp_path, metrics={"auc": M.testis_atRA_auc})
    with pytest.raises(InvalidValueError, match="first difference 'fast', was True, now False"):
        _sweep(samples, tmp_path, fast=False)
    assert _CALLS["n"] == 0
    assert {p.name: p.read_bytes() for p in tmp_path.glob("chunk-*.parquet")} == written  # refused, untouched
    assert not (tmp_path / LOCK_FILE).exists()

    renewed = _sweep(samples, tmp_path, t_end_d=12.0, fresh=True)
    assert _CALLS["n"] == 4  # everything recomputed
    (replaced,) = tmp_path.glob("replaced-*")
    assert sorted(p.name for p in replaced.iterdir()) == sorted([*written, PROVENANCE_FILE])  # set aside, kept
    pd.testing.assert_frame_equal(renewed, _sweep(samples, None, t_end_d=12.0))
    _sweep(samples, tmp_path, t_end_d=12.0)
    assert _CALLS["n"] == 0  # the fresh folder resumes like any other


def last_value(table: pd.DataFrame, *, column: str) -> float:
    return float(table[column].iloc[-1])


def test_a_metric_with_other_arguments_is_other_work(tmp_path: Path) -> None:
    samples = _samples(2)
    stra8 = {"last": functools.partial(last_value, column=C.STRA8)}
    _sweep(samples, tmp_path, metrics=stra8)
    again = _sweep(samples, tmp_path, metrics={"last": functools.partial(last_value, column=C.STRA8)})
    assert (again["status"] == "ok").all()  # an equal partial (another object) is the same work: resumed
    with pytest.raises(InvalidValueError, match="first difference 'metrics'.*column='testis_atRA_nM'"):
        _sweep(samples, tmp_path, metrics={"last": functools.partial(last_value, column=C.TESTIS_ATRA)})
    with pytest.raises(InvalidValueError, match="first difference 'metrics'"):
        _sweep(samples, tmp_path, metrics={"last": _last_of(C.STRA8)})  # same name, another function


def _last_of(column: str) -> Callable[[pd.DataFrame], float]:
    def last(table: pd.DataFrame) -> float:
        return float(table[column].iloc[-1])

    return last


def test_a_closure_over_another_value_is_other_work(tmp_path: Path) -> None:
    samples = _samples(2)
    _sweep(samples, tmp_path, metrics={"last": _last_of(C.STRA8)})
    _sweep(samples, tmp_path, metrics={"last": _last_of(C.STRA8)})
    with pytest.raises(InvalidValueError, match="first difference 'metrics'.*testis_atRA_nM"):
        _sweep(samples, tmp_path, metrics={"last": _last_of(C.TESTIS_ATRA)})


def test_another_spec_into_the_same_folder_never_pairs_old_metrics_with_new_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's report: spec B after spec A (other seed and range) into one folder gave A's metrics."""
    spec = """
design = "random"
n = 6
seed = {seed}
phenotype = "maturation_arrest"
regimen = "20 mg bid for 5 d"
t_end_d = {t_end}
fast = true
metrics = ["testis_atRA_auc", "responder"]
[parameters]
cyp26_expr = [{lo}, {hi}]
"""
    a, b, b_longer = tmp_path / "a.toml", tmp_path / "b.toml", tmp_path / "b_longer.toml"
    a.write_text(spec.format(seed=1, lo=2.0, hi=5.0, t_end=10), encoding="utf-8")
    b.write_text(spec.format(seed=2, lo=5.0, hi=9.0, t_end=10), encoding="utf-8")
    b_longer.write_text(spec.format(seed=2, lo=5.0, hi=9.0, t_end=12), encoding="utf-8")
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    common = ["--workers", "1", "--quiet"]
    assert cli_main(["sweep", str(a), "--out", str(shared), *common]) == 0
    assert cli_main(["sweep", str(b), "--out", str(shared), *common]) == 0
    assert cli_main(["sweep", str(b), "--out", str(alone), *common]) == 0
    into_shared = pd.read_parquet(shared / "sweep.parquet")
    pd.testing.assert_frame_equal(into_shared, pd.read_parquet(alone / "sweep.parquet"))
    assert into_shared["cyp26_expr"].min() >= 5.0
    capsys.readouterr()

    assert cli_main(["sweep", str(b_longer), "--out", str(shared), *common]) == 2
    error = capsys.readouterr().err
    assert "first difference 't_end_d', was 10.0, now 12.0" in error and "--fresh" in error
    assert cli_main(["sweep", str(b_longer), "--out", str(shared), *common, "--fresh"]) == 0
    assert len(list((shared / "chunks").glob("replaced-*"))) == 1


def test_a_changed_sensitivity_spec_is_refused_until_fresh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = """
kind = "sensitivity"
method = "morris"
n = 2
seed = 3
phenotype = "maturation_arrest"
regimen = "20 mg bid for 5 d"
t_end_d = {t_end}
fast = true
metrics = ["testis_atRA_auc"]
[parameters]
cyp26_expr = [2.0, 8.0]
"""
    short, longer = tmp_path / "short.toml", tmp_path / "longer.toml"
    short.write_text(spec.format(t_end=10), encoding="utf-8")
    longer.write_text(spec.format(t_end=12), encoding="utf-8")
    out = tmp_path / "out"
    common = ["--workers", "1", "--quiet"]
    assert cli_main(["sensitivity", str(short), "--out", str(out), *common]) == 0
    capsys.readouterr()
    assert cli_main(["sensitivity", str(longer), "--out", str(out), *common]) == 2
    error = capsys.readouterr().err
    assert "first difference 't_end_d', was 10.0, now 12.0" in error and "--fresh" in error
    assert cli_main(["sensitivity", str(longer), "--out", str(out), *common, "--fresh"]) == 0
    assert len(list((out / "chunks").glob("replaced-*"))) == 1


def test_a_sample_whose_parameter_changed_is_recomputed_not_reused(tmp_path: Path) -> None:
    samples = _samples(4)
    _sweep(samples, tmp_path)
    on_disk = _chunks(tmp_path)
    assert on_disk[SCENARIO_KEY].str.fullmatch("[0-9a-f]{64}").all() and on_disk[SCENARIO_KEY].is_unique

    changed = samples.copy()
    changed.loc[1, "cyp26_expr"] = 7.5  # one sample's value changes; its id and every setting stay
    result = _sweep(changed, tmp_path)
    assert _CALLS["n"] == 1
    assert SCENARIO_KEY not in result.columns
    pd.testing.assert_frame_equal(result, _sweep(changed, None))

    relabelled = changed.assign(sample_id=[f"q{i}" for i in range(4)], meta_site="elsewhere")
    _sweep(relabelled, tmp_path)
    assert _CALLS["n"] == 0  # the same scenarios under other ids and meta columns: reused by content
    _sweep(changed, tmp_path, phenotype="healthy")
    assert _CALLS["n"] == 4  # the default phenotype is part of every sample's scenario
    _sweep(changed.assign(regimen="20 mg bid for 4 d"), tmp_path)
    assert _CALLS["n"] == 4  # and so is a per-row regimen


def test_a_folder_written_without_keys_is_refused(tmp_path: Path) -> None:
    samples = _samples(2)
    _sweep(samples, tmp_path)
    old_version = tmp_path / "old_version"  # what the previous release wrote: no run settings, no keys
    old_version.mkdir()
    provenance = json.loads((tmp_path / PROVENANCE_FILE).read_text(encoding="utf-8"))
    del provenance["run_settings"]
    (old_version / PROVENANCE_FILE).write_text(json.dumps(provenance), encoding="utf-8")
    chunk = _chunks(tmp_path).drop(columns=SCENARIO_KEY)
    chunk.to_parquet(old_version / "chunk-000000.parquet", index=False)
    with pytest.raises(InvalidValueError, match="first difference 'format'.*earlier ra_model version.*--fresh"):
        _sweep(samples, old_version)
    (old_version / PROVENANCE_FILE).write_text(  # keys missing from the chunk alone are refused too
        (tmp_path / PROVENANCE_FILE).read_text(encoding="utf-8"), encoding="utf-8"
    )
    with pytest.raises(InvalidValueError, match="earlier ra_model version.*--fresh"):
        _sweep(samples, old_version)
    pd.testing.assert_frame_equal(_sweep(samples, old_version, fresh=True), _sweep(samples, None))


# --------------------------------------------------------------------------- lock
def _write_lock(folder: Path, *, pid: int, host: str, command: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lock = {"pid": pid, "host": host, "started": "2026-01-01T00:00:00+00:00", "command": command, "token": "x"}
    (folder / LOCK_FILE).write_text(json.dumps(lock), encoding="utf-8")


def test_a_held_lock_refuses_a_second_run_and_a_dead_holders_lock_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    samples = _samples(2)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(tmp_path, pid=holder.pid, host=socket.gethostname(), command="ra-model sweep other.toml")
        before = (tmp_path / LOCK_FILE).read_text(encoding="utf-8")
        with pytest.raises(FolderLockedError) as locked:
            _sweep(samples, tmp_path)
        message = str(locked.value)
        assert f"pid {holder.pid} on {socket.gethostname()}" in message and "ra-model sweep other.toml" in message
        assert (tmp_path / LOCK_FILE).read_text(encoding="utf-8") == before  # not ours: left alone
        assert _CALLS["n"] == 0 and not list(tmp_path.glob("chunk-*"))
    finally:
        holder.kill()
        holder.wait()

    with caplog.at_level(logging.WARNING, logger="ra_model.studies.sweep_store"):
        result = _sweep(samples, tmp_path)  # the holder is dead now: its lock is stale
    assert f"taking over the stale lock {tmp_path / LOCK_FILE}: pid {holder.pid}" in caplog.text
    assert (result["status"] == "ok").all() and _CALLS["n"] == 2
    assert not (tmp_path / LOCK_FILE).exists()  # released after the run

    _write_lock(tmp_path, pid=holder.pid, host="some-other-machine", command="ra-model sweep x.toml")
    with pytest.raises(FolderLockedError, match="some-other-machine.*delete"):
        _sweep(samples, tmp_path)  # a dead pid elsewhere proves nothing
    (tmp_path / LOCK_FILE).unlink()

    _CALLS.update(n=0, interrupt_at=1)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(samples, metrics={"atra": counting_atra}, t_end_d=T_END_D, fast=True, out_dir=tmp_path, workers=1)
    assert not (tmp_path / LOCK_FILE).exists()  # released on the way out of an interrupted run


# --------------------------------------------------------------------------- bad chunks
def test_unreadable_chunks_are_set_aside_and_recomputed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    samples = _samples(6)
    _sweep(samples, tmp_path)
    first, second, _third = sorted(tmp_path.glob("chunk-*.parquet"))
    first.write_bytes(b"")  # zero bytes
    second.write_bytes(second.read_bytes()[: second.stat().st_size // 2])  # truncated
    (tmp_path / "chunk-000009.parquet.tmp").write_bytes(b"half a write")  # a write cut short by a kill
    with caplog.at_level(logging.WARNING, logger="ra_model.studies.sweep_store"):
        result = _sweep(samples, tmp_path)
    assert _CALLS["n"] == 4  # the four samples of the two bad chunks, no others
    for bad in (first, second):
        assert bad.with_name(bad.name + ".bad").exists()
        assert f"chunk {bad} cannot be read" in caplog.text and f"set aside as {bad.name}.bad" in caplog.text
    assert not list(tmp_path.glob("*.tmp"))
    pd.testing.assert_frame_equal(result, _sweep(samples, None))
    assert sorted(_chunks(tmp_path)["sample_id"]) == sorted(samples["sample_id"])  # each sample once
    _sweep(samples, tmp_path)
    assert _CALLS["n"] == 0


# --------------------------------------------------------------------------- an unreachable scheduler
def test_an_unreachable_scheduler_is_a_one_line_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("distributed")
    with socket.socket() as probe:  # a port on 127.0.0.1 that nothing listens on: bound, read, released
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    spec = tmp_path / "spec.toml"
    spec.write_text(
        """
design = "random"
n = 2
seed = 1
phenotype = "maturation_arrest"
regimen = "20 mg bid for 5 d"
t_end_d = 10
fast = true
metrics = ["testis_atRA_auc"]
[parameters]
cyp26_expr = [2.0, 8.0]
""",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    started = time.monotonic()
    assert cli_main(["sweep", str(spec), "--out", str(out), "--scheduler", address, "--quiet"]) == 2
    assert time.monotonic() - started < 30  # a short connect timeout, not distributed's default
    error = capsys.readouterr().err
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1
    assert address in error and "--scheduler" in error
    assert not (out / "chunks" / LOCK_FILE).exists()  # the folder is released on the way out


# --------------------------------------------------------------------------- non-finite results
def test_non_finite_results_are_failed_not_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    from ra_model.engines import fastpath

    real = fastpath.simulate_fast
    poisoned = 5.5

    def diverging(*args: Any, **kwargs: Any) -> pd.DataFrame:
        table = real(*args, **kwargs)
        if kwargs["overrides"]["cyp26_expr"] == poisoned:  # as if the solver had diverged for this man
            table.loc[3:, C.MOTILE_CONCENTRATION] = np.nan
            table.loc[3:, C.MOTILE_SPERM_PRESENT] = False
        return table

    monkeypatch.setattr(fastpath, "simulate_fast", diverging)
    samples = pd.DataFrame({"sample_id": ["fine", "nan"], "cyp26_expr": [5.0, poisoned]})
    result = _sweep(samples, None, metrics=BUILTIN_METRICS)
    fine, nan = result.iloc[0], result.iloc[1]
    assert fine["status"] == "ok" and fine["responder"] is not pd.NA and not fine["responder"]
    assert np.isnan(fine["time_to_first_motile_sperm_d"])  # NaN from a finite table: "never", still ok
    assert nan["status"] == "failed"
    assert "non-finite" in nan["message"] and C.MOTILE_CONCENTRATION in nan["message"]
    assert pd.isna(nan["responder"]) and np.isnan(nan["peak_ejaculate_concentration"])  # not a non-responder

    infinite = _sweep(samples.iloc[:1], None, metrics={"inf": infinite_metric})
    assert infinite["status"].iloc[0] == "failed" and "metric 'inf' returned inf" in infinite["message"].iloc[0]


# --------------------------------------------------------------------------- signals and processes
_SLOW_METRIC = '''
import os
import time


def slow_atra(table):
    """Testis atRA at the end, after a pause (RA_TEST_SLEEP_S) that makes the sweep last."""
    time.sleep(float(os.environ.get("RA_TEST_SLEEP_S", "0")))
    return float(table["testis_atRA_nM"].iloc[-1])
'''
_SLOW_SPEC = """
design = "latin"
n = {n}
seed = 5
phenotype = "maturation_arrest"
regimen = "20 mg bid for 10 d"
t_end_d = 20
fast = true
metrics = ["slowmetric:slow_atra", "responder"]
[parameters]
cyp26_expr = [2.0, 8.0]
stra6_expr = [0.2, 0.6]
"""
_N_SLOW = 400  # 2 workers x 0.05 s per sample: about 11 s, so the signal lands mid-run
_SCRIPT = Path(sys.executable).with_name("ra-model")
_RA_MODEL = (
    [str(_SCRIPT)]
    if _SCRIPT.exists()
    else [sys.executable, "-c", "import sys; from ra_model.cli import main; sys.exit(main())"]
)


def _slow_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, dict[str, str]]:
    (tmp_path / "slowmetric.py").write_text(_SLOW_METRIC, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))  # the in-process runs import the metric too
    spec = tmp_path / "spec.toml"
    spec.write_text(_SLOW_SPEC.format(n=_N_SLOW), encoding="utf-8")
    # no empty entry: an empty PYTHONPATH item means the working directory, where the source tree would
    # shadow the installed package (its data folders are mapped in only by the installation)
    paths = [str(tmp_path), *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(paths)}
    return spec, tmp_path / "out", env


def _start(spec: Path, out: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [*_RA_MODEL, "sweep", str(spec), "--out", str(out), "--workers", "2", "--plugin", "slowmetric"]
    return subprocess.Popen(
        [*command, "--quiet"], env=env | {"RA_TEST_SLEEP_S": "0.05"}, stderr=subprocess.PIPE, text=True
    )


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def _children(pid: int) -> list[int]:
    """Descendant pids of ``pid`` (psutil if installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            parents[int(stat.parent.name)] = int(fields[1])
        found, frontier = [], [pid]
        while frontier:
            parent = frontier.pop()
            kids = [p for p, pp in parents.items() if pp == parent]
            found += kids
            frontier += kids
        return found
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def _running(pids: Iterable[int]) -> list[int]:
    """The pids that still run (a zombie waiting to be reaped does not count: it holds no memory)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            alive.append(pid)
    return alive


def _kill_leftovers(pids: Iterable[int]) -> None:
    """Never leave a stray process, even when a test fails."""
    for pid in _running(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _wait_for_end(workers: list[int], timeout_s: float = 5.0) -> None:
    """Wait up to ``timeout_s`` for the workers to end; kill (and report) any left."""
    deadline = time.monotonic() + timeout_s
    while _running(workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _running(workers)
    if left:
        _kill_leftovers(left)
        raise AssertionError(f"workers {left} still ran {timeout_s} s after their parent ended (killed now)")


def _started_sweep(spec: Path, out: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], list[int]]:
    """Start the slow sweep; return it and its worker pids once a chunk is on disk."""
    process = _start(spec, out, env)
    try:
        _wait_for(lambda: any((out / "chunks").glob("chunk-*.parquet")) or process.poll() is not None, 90, "a chunk")
        assert process.poll() is None, process.communicate()[1]
        workers = _children(process.pid)
        assert len(workers) == 2, workers
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, workers


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_cleanly_and_the_resumed_union_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, out, env = _slow_sweep(tmp_path, monkeypatch)
    process, workers = _started_sweep(spec, out, env)
    try:
        with pytest.raises(FolderLockedError, match=f"pid {process.pid} on .*sweep {re.escape(str(spec))}"):
            run_sweep(_samples(1), metrics={"a": M.testis_atRA_auc}, t_end_d=1.0, out_dir=out / "chunks")
        process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        _wait_for_end(workers)
    assert time.monotonic() - stopped_at < 10
    assert process.returncode == 128 + signal.SIGTERM
    assert "sweep stopped by SIGTERM" in stderr and "Traceback" not in stderr
    chunks = out / "chunks"
    assert not (chunks / LOCK_FILE).exists() and not list(chunks.glob("*.tmp")) and not list(chunks.glob("*.bad"))
    partial = _chunks(chunks)
    assert 0 < len(partial) < _N_SLOW and partial["sample_id"].is_unique

    common = ["--workers", "2", "--quiet", "--plugin", "slowmetric"]  # resume: the rest only (no pause)
    resumed = subprocess.run(
        [*_RA_MODEL, "sweep", str(spec), "--out", str(out), *common],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    union = _chunks(chunks)
    assert len(union) == _N_SLOW and union["sample_id"].is_unique  # every sample exactly once
    uninterrupted = ["--out", str(tmp_path / "uninterrupted"), "--workers", "1", "--quiet", "--plugin", "slowmetric"]
    assert cli_main(["sweep", str(spec), *uninterrupted]) == 0
    reference = pd.read_parquet(tmp_path / "uninterrupted" / "sweep.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(out / "sweep.parquet"), reference)
    by_id = union.set_index("sample_id").loc[reference["sample_id"]]
    np.testing.assert_array_equal(by_id["slowmetric:slow_atra"].to_numpy(), reference["slowmetric:slow_atra"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_the_sweep_ends_its_workers_and_the_stale_lock_is_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    spec, out, env = _slow_sweep(tmp_path, monkeypatch)
    process, workers = _started_sweep(spec, out, env)
    process.kill()
    process.wait()
    _wait_for_end(workers)
    assert (out / "chunks" / LOCK_FILE).exists()  # SIGKILL leaves the lock; its pid is dead

    with caplog.at_level(logging.WARNING, logger="ra_model.studies.sweep_store"):
        assert (
            cli_main(["sweep", str(spec), "--out", str(out), "--workers", "1", "--quiet", "--plugin", "slowmetric"])
            == 0
        )
    assert f"taking over the stale lock {out / 'chunks' / LOCK_FILE}: pid {process.pid}" in caplog.text
    union = _chunks(out / "chunks")
    assert len(union) == _N_SLOW and union["sample_id"].is_unique
    assert (pd.read_parquet(out / "sweep.parquet")["status"] == "ok").all()
