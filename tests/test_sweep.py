"""The sweep engine: identical results whatever the parallelism, resume without loss or repeats, failures kept."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ra_model.engines.simulate import simulate
from ra_model.engines.splitpath import simulate_split
from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.model import columns as C
from ra_model.model.source import read_parameter_table
from ra_model.studies import metrics as M
from ra_model.studies.metrics import BUILTIN_METRICS, peak_ejaculate_concentration, resolve_metric, responder
from ra_model.studies.sweep import run_sweep, worker_engine

REGIMEN = "20 mg bid for 30 d"
T_END_D = 60.0
PHENOTYPE = "maturation_arrest"


def _samples(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "sample_id": [f"p{i:03d}" for i in range(n)],
            "cyp26_expr": rng.uniform(2.0, 8.0, n),
            "stra6_expr": rng.uniform(0.2, 0.6, n),
            "meta_site": [f"site{i % 3}" for i in range(n)],
        }
    )


# A metric that counts its calls (in this process) and can be told to interrupt the sweep.
_CALLS = {"n": 0, "interrupt_at": 0}


def counting_metric(table: pd.DataFrame) -> float:
    _CALLS["n"] += 1
    if _CALLS["interrupt_at"] and _CALLS["n"] >= _CALLS["interrupt_at"]:
        raise KeyboardInterrupt
    return float(table[C.TESTIS_ATRA].iloc[-1])


def stats_metric(table: pd.DataFrame, *, column: str) -> dict[str, float]:
    return {"min": float(table[column].min()), "max": float(table[column].max())}


def broken_metric(table: pd.DataFrame) -> float:
    raise ValueError("this metric is broken on purpose")


METRICS = {
    "peak_ejaculate_concentration": peak_ejaculate_concentration,
    "responder": responder,
    "stra8": functools.partial(stats_metric, column=C.STRA8),
}


def test_sweep_rows_equal_simulate_and_metrics() -> None:
    samples = _samples(3)
    result = run_sweep(
        samples, metrics=METRICS, phenotype=PHENOTYPE, regimen=REGIMEN, t_end_d=T_END_D, workers=1, progress=False
    )
    assert list(result["sample_id"]) == list(samples["sample_id"])
    assert list(result.columns[:4]) == list(samples.columns)
    assert (result["status"] == "ok").all() and (result["message"] == "").all()
    assert list(result["meta_site"]) == list(samples["meta_site"])
    for _, row in result.iterrows():
        overrides = {"cyp26_expr": row["cyp26_expr"], "stra6_expr": row["stra6_expr"]}
        table = simulate_split(  # the sweep's exact path: the split model at rtol SWEEP_RTOL
            PHENOTYPE, REGIMEN, t_end_d=T_END_D, overrides=overrides, engine=worker_engine(split=True)
        )
        assert row["peak_ejaculate_concentration"] == table[C.EJACULATE_CONCENTRATION].max()
        present = table[C.MOTILE_SPERM_PRESENT].to_numpy(dtype=bool)
        assert row["responder"] == bool(not present[0] and present[1:].any())
        assert row["stra8.min"] == table[C.STRA8].min()
        assert row["stra8.max"] == table[C.STRA8].max()
        whole = simulate(PHENOTYPE, REGIMEN, t_end_d=T_END_D, overrides=overrides, engine=worker_engine())
        assert row["peak_ejaculate_concentration"] == pytest.approx(whole[C.EJACULATE_CONCENTRATION].max(), rel=1e-4)
        assert row["stra8.max"] == pytest.approx(whole[C.STRA8].max(), rel=1e-5)
    prov = result.attrs["provenance"]
    assert prov["split"] is True
    assert len(prov["model_hash"]) == 16
    assert {"libroadrunner", "numpy", "pandas", "SALib"} <= set(prov["package_versions"])
    assert prov["phenotype"] == PHENOTYPE and prov["regimen"] == REGIMEN


def test_workers_and_processes_give_identical_results() -> None:
    samples = _samples(6)
    kwargs = dict(metrics=METRICS, phenotype=PHENOTYPE, regimen=REGIMEN, t_end_d=T_END_D, progress=False)
    serial = run_sweep(samples, workers=1, **kwargs)  # type: ignore[arg-type]
    parallel = run_sweep(samples, workers=2, chunk_size=2, **kwargs)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(serial, parallel)


def test_per_row_phenotype_and_regimen() -> None:
    samples = pd.DataFrame(
        {"sample_id": ["untreated", "treated"], "phenotype": [PHENOTYPE, PHENOTYPE], "regimen": ["", REGIMEN]}
    )
    result = run_sweep(samples, metrics={"auc": M.testis_atRA_auc}, t_end_d=T_END_D, workers=1, progress=False)
    untreated = simulate_split(PHENOTYPE, None, t_end_d=T_END_D, engine=worker_engine(split=True))
    treated = simulate_split(PHENOTYPE, REGIMEN, t_end_d=T_END_D, engine=worker_engine(split=True))
    assert result["auc"].iloc[0] == pytest.approx(M.testis_atRA_auc(untreated), rel=1e-12)
    assert result["auc"].iloc[1] == pytest.approx(M.testis_atRA_auc(treated), rel=1e-12)
    assert result["auc"].iloc[1] > result["auc"].iloc[0]


def test_interrupted_sweep_resumes_without_loss_or_repeats(tmp_path: Path) -> None:
    samples = _samples(10)
    samples.attrs.update(seed=7, design="random")
    kwargs = dict(
        metrics={"atRA_end": counting_metric},
        phenotype=PHENOTYPE,
        regimen=REGIMEN,
        t_end_d=T_END_D,
        out_dir=tmp_path,
        workers=1,
        chunk_size=2,
        progress=False,
    )
    _CALLS.update(n=0, interrupt_at=7)  # killed while the 7th sample (4th chunk) is being evaluated
    with pytest.raises(KeyboardInterrupt):
        run_sweep(samples, **kwargs)  # type: ignore[arg-type]
    chunks = sorted(tmp_path.glob("chunk-*.parquet"))
    assert len(chunks) == 3  # chunks of 2: samples 1-6 finished and on disk
    _CALLS.update(n=0, interrupt_at=0)
    resumed = run_sweep(samples, **kwargs)  # type: ignore[arg-type]
    assert _CALLS["n"] == 4  # only the 4 unfinished samples are evaluated again
    on_disk = pd.concat([pd.read_parquet(p) for p in sorted(tmp_path.glob("chunk-*.parquet"))])
    assert sorted(on_disk["sample_id"]) == sorted(samples["sample_id"])  # each sample stored exactly once
    _CALLS.update(n=0)
    again = run_sweep(samples, **kwargs)  # type: ignore[arg-type]
    assert _CALLS["n"] == 0  # a finished sweep is loaded, not recomputed
    fresh = run_sweep(samples, **(kwargs | {"out_dir": None}))  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(resumed, fresh)
    pd.testing.assert_frame_equal(again, fresh)
    provenance = json.loads((tmp_path / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["seed"] == 7 and provenance["design"] == "random"


def test_resume_refuses_a_folder_from_another_sweep(tmp_path: Path) -> None:
    samples = _samples(2)
    run_sweep(samples, metrics={"r": responder}, phenotype=PHENOTYPE, t_end_d=10.0, out_dir=tmp_path, progress=False)
    with pytest.raises(InvalidValueError, match="t_end_d"):
        run_sweep(samples, metrics={"r": responder}, phenotype=PHENOTYPE, t_end_d=20.0, out_dir=tmp_path)


def test_failed_samples_are_recorded_not_fatal(tmp_path: Path) -> None:
    # Km_cyp26 = 1e-300 is inside its domain (> 0) but makes CVODE fail (test_domain.py)
    default = read_parameter_table()["Km_cyp26"].value
    samples = pd.DataFrame({"sample_id": ["good", "bad"], "Km_cyp26": [default, 1e-300]})
    result = run_sweep(
        samples, metrics=BUILTIN_METRICS, t_end_d=10.0, workers=1, out_dir=tmp_path, progress=False, chunk_size=1
    )
    assert list(result["status"]) == ["ok", "failed"]
    assert "solver failed" in result["message"].iloc[1] and "Km_cyp26" in result["message"].iloc[1]
    assert math.isnan(result["peak_ejaculate_concentration"].iloc[1])
    # the healthy man has motile sperm from the start: seen, but no responder
    assert bool(result["motile_sperm_seen"].iloc[0]) and not bool(result["responder"].iloc[0])
    assert pd.isna(result["responder"].iloc[1]) and pd.isna(result["motile_sperm_seen"].iloc[1])
    broken = run_sweep(samples.iloc[:1], metrics={"b": broken_metric}, t_end_d=10.0, workers=1, progress=False)
    assert broken["status"].iloc[0] == "failed" and "broken on purpose" in broken["message"].iloc[0]


def test_dask_local_cluster_matches_serial() -> None:
    distributed = pytest.importorskip("distributed")
    samples = _samples(4)
    kwargs = dict(metrics=METRICS, phenotype=PHENOTYPE, regimen=REGIMEN, t_end_d=T_END_D, progress=False)
    serial = run_sweep(samples, workers=1, **kwargs)  # type: ignore[arg-type]
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
    ):
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1")
        # an address alone, with no client made by the caller (as `ra-model sweep --scheduler` runs)
        by_address = run_sweep(samples, client=cluster.scheduler_address, chunk_size=2, **kwargs)  # type: ignore[arg-type]
        with distributed.Client(cluster) as client:
            on_dask = run_sweep(samples, client=client, chunk_size=1, **kwargs)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(serial, on_dask)
    pd.testing.assert_frame_equal(serial, by_address)


def test_bad_samples_are_rejected_with_a_fix() -> None:
    ok = dict(metrics={"r": responder}, t_end_d=10.0, progress=False)
    with pytest.raises(UnknownNameError, match="cyp26_expr"):
        run_sweep(pd.DataFrame({"sample_id": ["a"], "cyp26_exp": [1.0]}), **ok)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="sample_id"):
        run_sweep(pd.DataFrame({"cyp26_expr": [1.0]}), **ok)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="unique"):
        run_sweep(pd.DataFrame({"sample_id": ["a", "a"]}), **ok)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="astype"):
        run_sweep(pd.DataFrame({"sample_id": [1, 2]}), **ok)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="empty"):
        run_sweep(pd.DataFrame({"sample_id": []}), **ok)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="missing or non-numeric"):
        run_sweep(pd.DataFrame({"sample_id": ["a"], "cyp26_expr": [float("nan")]}), **ok)  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError, match="maturation_arrest"):
        run_sweep(pd.DataFrame({"sample_id": ["a"]}), phenotype="maturation_arest", **ok)  # type: ignore[arg-type]


def test_builtin_metrics_on_a_hand_made_table() -> None:
    table = pd.DataFrame(
        {
            C.TIME_D: [0.0, 1.0, 2.0, 3.0],
            C.EJACULATE_CONCENTRATION: [0.0, 0.001, 0.004, 0.002],
            C.MOTILE_CONCENTRATION: [0.0, 0.0005, 0.002, 0.001],
            C.TESTIS_ATRA: [1.0, 3.0, 3.0, 1.0],
        }
    )
    table[C.MOTILE_SPERM_PRESENT] = table[C.MOTILE_CONCENTRATION] >= 0.001
    table.attrs["motile_detection_limit_M_per_mL"] = 0.001
    assert peak_ejaculate_concentration(table) == 0.004
    # crossing 0.001 between 0.0005 (day 1) and 0.002 (day 2): one third of the way
    assert M.time_to_first_motile_sperm_d(table) == pytest.approx(1.0 + 1.0 / 3.0)
    assert M.testis_atRA_auc(table) == pytest.approx(2.0 + 3.0 + 2.0)
    assert responder(table) is True and M.motile_sperm_seen(table) is True
    # a man with motile sperm before treatment is no responder (the cohort excludes him), yet has sperm
    table[C.MOTILE_SPERM_PRESENT] = True
    assert responder(table) is False and M.motile_sperm_seen(table) is True
    table[C.MOTILE_SPERM_PRESENT] = False
    assert math.isnan(M.time_to_first_motile_sperm_d(table)) and responder(table) is False
    assert resolve_metric("responder") is responder
    assert resolve_metric("ra_model.studies.metrics:testis_atRA_auc") is M.testis_atRA_auc
    with pytest.raises(UnknownNameError, match="responder"):
        resolve_metric("responders")
    with pytest.raises(InvalidValueError, match="no function"):
        resolve_metric("ra_model.studies.metrics:nope")


def test_a_user_edited_sbml_file_sweeps_like_simulate(tmp_path: Path) -> None:
    """Issue 3's import path: an exported, edited file runs through the sweep engine too."""
    import libsbml

    from ra_model.engines.from_file import engine_from_file
    from ra_model.interop.sbml_export import export_sbml

    doc = libsbml.readSBMLFromString(export_sbml())
    doc.getModel().getParameter("cyp26_expr").setValue(9.0)  # an edit made in another tool
    path = tmp_path / "edited.xml"
    path.write_text(libsbml.writeSBMLToString(doc), encoding="utf-8")
    samples = pd.DataFrame({"sample_id": ["a"], "stra6_expr": [0.4]})
    result = run_sweep(
        samples,
        metrics={"auc": M.testis_atRA_auc},
        phenotype="healthy",
        t_end_d=20,
        model=path,
        workers=1,
        progress=False,
    )
    engine = engine_from_file(path, options=worker_engine().options)
    expected = M.testis_atRA_auc(simulate("healthy", None, t_end_d=20, overrides={"stra6_expr": 0.4}, engine=engine))
    default = M.testis_atRA_auc(simulate("healthy", None, t_end_d=20, overrides={"stra6_expr": 0.4}))
    assert result["auc"].iloc[0] == pytest.approx(expected, rel=1e-12)
    assert abs(expected / default - 1) > 0.05  # the edit took effect
    assert result.attrs["provenance"]["model_file"] == str(path.resolve())
    with pytest.raises(InvalidValueError, match="fast path"):
        run_sweep(samples, metrics={"auc": M.testis_atRA_auc}, t_end_d=20, model=path, fast=True, progress=False)


def test_a_grid_sweep_becomes_an_array_with_one_dimension_per_parameter(tmp_path: Path) -> None:
    import xarray

    from ra_model.studies.design import default_ranges, make_design
    from ra_model.studies.sweep import to_xarray

    samples = make_design(default_ranges(["cyp26_expr", "stra6_expr"]), design="grid", n=3, seed=0)
    metrics = {"auc": M.testis_atRA_auc, "responder": responder}
    table = run_sweep(samples, metrics=metrics, phenotype=PHENOTYPE, regimen="20 mg bid for 5 d", t_end_d=10, workers=1)
    grid = to_xarray(table)
    assert dict(grid.sizes) == {"cyp26_expr": 3, "stra6_expr": 3}
    for _, row in table.iterrows():
        cell = grid.sel(cyp26_expr=row["cyp26_expr"], stra6_expr=row["stra6_expr"])
        assert float(cell["auc"]) == row["auc"] and str(cell["sample_id"].item()) == row["sample_id"]
        assert bool(cell["responder"]) == bool(row["responder"]) and str(cell["status"].item()) == "ok"
    assert json.loads(grid.attrs["provenance"])["design"] == "grid"
    path = tmp_path / "sweep.nc"
    grid.to_netcdf(path, engine="scipy")  # what `ra-model sweep` writes for a grid design
    with xarray.open_dataset(path, engine="scipy") as back:
        np.testing.assert_array_equal(back["auc"].values, grid["auc"].values)
    scattered = table.assign(cyp26_expr=np.arange(len(table), dtype=float))
    with pytest.raises(InvalidValueError, match="not a full grid"):
        to_xarray(scattered)
    with pytest.raises(InvalidValueError, match="no column 'cyp26_exp'"):
        to_xarray(table, parameters=["cyp26_exp"])


def test_a_sample_outside_its_physical_domain_refuses_the_sweep() -> None:
    samples = pd.DataFrame({"sample_id": ["good", "bad"], "Km_rdh10": [35.0, -35.0]})
    with pytest.raises(InvalidValueError, match="Km_rdh10") as info:
        run_sweep(samples, metrics=BUILTIN_METRICS, t_end_d=10.0, workers=1, progress=False)
    assert "the first is bad" in str(info.value)
