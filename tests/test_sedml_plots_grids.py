"""SED-ML beyond one time course: the six standard panels as plot2D, grid files as repeatedTasks, missed doses.

The archives are executed by tellurium's SED-ML engine and compared with ``ra_model``'s own runs of the same
scenario files (``simulate()`` and the single-kind runner), to the tolerance of the single-scenario check in
test_export.py (``compare_tables``' defaults). Horizons are short (30 days) to keep the tellurium runs quick.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ra_model.engines.simulate import simulate
from ra_model.errors import ModelBuildError
from ra_model.interop import sbml_export
from ra_model.interop.copasi import compare_tables
from ra_model.interop.omex import (
    TIME_AXIS,
    GridScenario,
    Scenario,
    archive_grid_arms,
    experiment_file_scenarios,
    grid_changes,
    missed_until_h,
    run_omex_tellurium,
    sedml_dangling_references,
    sedml_for,
    write_omex,
)
from ra_model.model import columns as C
from ra_model.studies.experiments import load_experiment
from ra_model.studies.experiments.single import run_single

libsedml = pytest.importorskip("libsedml")
te = pytest.importorskip("tellurium")

T_END_D = 30.0
GRID_TOML = """
description = "small dose grid in two histologies"
kind = "grid"
doses = ["20 mg bid", "0.5 mg/kg/day od"]
durations_d = [20]
follow_up_d = 10
n_patients = 2
seed = 1
output_step_d = 1.0

[population]
histologies = ["maturation_arrest", "hypospermatogenesis"]

[sampling]
every_d = 10
"""
MISSED_TOML = """
description = "one dose in four missed"
phenotype = "maturation_arrest"
t_end_d = 30.0

[[runs]]
label = "misses 1 dose in 4"
regimen = "20 mg bid for 20 d"
missed_every = 4

[[runs]]
label = "full course"
regimen = "20 mg bid for 20 d"
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scenario_files")
    out = {"grid": folder / "small_grid.toml", "missed": folder / "missed.toml"}
    out["grid"].write_text(GRID_TOML, encoding="utf-8")
    out["missed"].write_text(MISSED_TOML, encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def archive(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    runs = []
    for path in files.values():
        read = experiment_file_scenarios(path)
        assert isinstance(read, list), read
        runs += read
    return write_omex(tmp_path_factory.mktemp("archive") / "both.omex", runs), runs


@pytest.fixture(scope="module")
def tellurium_tables(archive: tuple[Path, list]) -> dict[str, pd.DataFrame]:
    return run_omex_tellurium(archive[0])


def _sedml(path: Path) -> libsedml.SedDocument:
    with zipfile.ZipFile(path) as handle:
        text = handle.read("simulation.sedml").decode("utf-8")
    doc = libsedml.readSedMLFromString(text)
    assert doc.getErrorLog().getNumFailsWithSeverity(libsedml.LIBSEDML_SEV_ERROR) == 0
    return doc


def _on_grid(table: pd.DataFrame, step_d: float = 1.0) -> pd.DataFrame:
    """The rows of a simulate() table on the uniform output grid (scheduled changes add rows between)."""
    on = np.isclose(table[C.TIME_D] / step_d, np.round(table[C.TIME_D] / step_d), rtol=0, atol=1e-9)
    return table[on].reset_index(drop=True)


def _agree(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    rows = compare_tables(ours, theirs)
    assert len(rows) == 1 + len(C.OBSERVABLES)
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]


def test_six_panel_plots_reference_existing_data_generators(archive: tuple[Path, list]) -> None:
    path, runs = archive
    doc = _sedml(path)
    assert sedml_dangling_references(doc) == []
    generators = {g.getId(): g for g in doc.getListOfDataGenerators()}
    plots = [o for o in doc.getListOfOutputs() if isinstance(o, libsedml.SedPlot2D)]
    reports = [o for o in doc.getListOfOutputs() if isinstance(o, libsedml.SedReport)]
    assert len(reports) == len(runs)  # the reports stay, beside the plots
    assert [(p.getId(), p.getName()) for p in plots] == [(f"plot_{col}", title) for col, title, _ in C.STANDARD_PANELS]
    for plot, (column, title, log_scale) in zip(plots, C.STANDARD_PANELS, strict=True):
        assert plot.getXAxis().getName() == TIME_AXIS and plot.getYAxis().getName() == title
        want = libsedml.SEDML_AXISTYPE_LOG10 if log_scale else libsedml.SEDML_AXISTYPE_LINEAR
        assert plot.getYAxis().getType() == want
        curves = list(plot.getListOfCurves())
        assert len(curves) == len(runs)  # one per run; a grid's curve holds all its arms
        for curve, run in zip(curves, runs, strict=True):
            x, y = generators[curve.getXDataReference()], generators[curve.getYDataReference()]
            assert x.getName() == C.TIME_D and libsedml.formulaToL3String(x.getMath()).endswith("/ 24")
            assert x.getVariable(0).getSymbol() == "urn:sedml:symbol:time"
            assert y.getName() == column and curve.getName() == run.description
            assert x.getVariable(0).getTaskReference() == y.getVariable(0).getTaskReference()


def test_grid_file_is_a_repeated_task_per_histology(archive: tuple[Path, list]) -> None:
    path, runs = archive
    grids = [r for r in runs if isinstance(r, GridScenario)]
    assert [g.phenotype for g in grids] == ["maturation_arrest", "hypospermatogenesis"]
    assert grids[0].arms == ("20 mg bid for 20 d", "0.5 mg/kg/day od for 20 d, 70 kg")
    assert grids[0].t_end_d == T_END_D and "virtual men" in grids[0].note
    doc = _sedml(path)
    for grid in grids:
        task = doc.getTask(f"grid_{grid.label}")
        assert isinstance(task, libsedml.SedRepeatedTask) and task.getResetModel()
        master = task.getRange(task.getRangeId())
        assert list(master.getValues()) == [0.0, 1.0]
        targets = [c.getTarget() for c in task.getListOfTaskChanges()]
        assert "Gut_iso" in targets[0]  # the species first (tellurium resets parameters when it is set)
        assert any("'dose_mg'" in t for t in targets) and any("'n_doses'" in t for t in targets)
        model = doc.getModel(f"model_{grid.label}")
        assert model.getSource() == f"{grid.label}.xml"
        report = doc.getOutput(f"report_{grid.label}")
        assert {doc.getDataGenerator(ds.getDataReference()).getVariable(0).getTaskReference()
                for ds in report.getListOfDataSets()} == {task.getId()}  # fmt: skip
    assert archive_grid_arms(path) == {g.label: g.arm_labels for g in grids}


def test_grid_archive_runs_in_tellurium_to_simulate_at_every_grid_point(
    archive: tuple[Path, list], tellurium_tables: dict[str, pd.DataFrame]
) -> None:
    grids = [r for r in archive[1] if isinstance(r, GridScenario)]
    points = 0
    for grid in grids:
        for arm, key in zip(grid.arms, grid.arm_labels, strict=True):
            theirs = tellurium_tables[f"{grid.label}__{key}"]
            _agree(simulate(grid.phenotype, arm, t_end_d=T_END_D), theirs)
            points += 1
    assert points == 4
    # the arms really differ: 40 doses of 20 mg against 20 doses of 35 mg, in steady states of their own
    ma = [tellurium_tables[f"{grids[0].label}__{k}"] for k in grids[0].arm_labels]
    assert [t[C.DOSES_GIVEN].iloc[-1] for t in ma] == [40, 20]
    hypo = tellurium_tables[f"{grids[1].label}__{grids[1].arm_labels[0]}"]
    assert abs(hypo[C.STRA8].iloc[0] - ma[0][C.STRA8].iloc[0]) > 1e-3 * abs(ma[0][C.STRA8].iloc[0])


def test_missed_doses_run_in_tellurium_as_the_simulator_skips_them(
    files: dict[str, Path], archive: tuple[Path, list], tellurium_tables: dict[str, pd.DataFrame]
) -> None:
    runs = {r.label: r for r in archive[1] if isinstance(r, Scenario)}
    missed_label, full_label = "missed__misses_1_dose_in_4", "missed__full_course"
    assert runs[missed_label].missed_every == 4 and runs[full_label].missed_every is None
    results = run_single(load_experiment(files["missed"])).results  # ra_model's own run of the file
    ours = {
        missed_label: _on_grid(results[results["run"] == "misses 1 dose in 4"].drop(columns="run")),
        full_label: _on_grid(results[results["run"] == "full course"].drop(columns="run")),
    }
    for label, table in ours.items():
        _agree(table, tellurium_tables[label])
    missed, full = tellurium_tables[missed_label], tellurium_tables[full_label]
    # doses_given counts the doses due (the simulator's event fires for a missed dose too, giving 0 mg)
    assert missed[C.DOSES_GIVEN].tolist() == ours[missed_label][C.DOSES_GIVEN].tolist()
    assert missed[C.DOSES_GIVEN].iloc[-1] == full[C.DOSES_GIVEN].iloc[-1] == 40
    # the first missed dose is the 4th, on day 1.5: the same drug level up to day 1, less from day 2 on
    t, m, f = missed[C.TIME_D], missed[C.PLASMA_ISOTRETINOIN], full[C.PLASMA_ISOTRETINOIN]
    np.testing.assert_allclose(m[t <= 1], f[t <= 1], rtol=1e-9)
    assert (m[(t >= 2) & (t <= 20)] < 0.95 * f[(t >= 2) & (t <= 20)]).all()
    np.testing.assert_allclose(
        missed[C.PLASMA_ISOTRETINOIN], ours[missed_label][C.PLASMA_ISOTRETINOIN], rtol=1e-6, atol=1e-9
    )


def test_missed_dose_schedule_matches_the_simulator_near_the_end_of_a_run() -> None:
    # every 5th dose of 20 mg bid: dose 65 is due on day 32.0; a run ending then takes it (the simulator
    # un-skips a dose within its margin of the end), so the export misses doses only before 31.75 d
    assert missed_until_h("20 mg bid for 40 d", 5, 32.0) == pytest.approx(32.0 * 24 - 6)
    assert missed_until_h("20 mg bid for 40 d", 5, 33.0) is None
    assert missed_until_h("20 mg bid for 20 d", 4, T_END_D) is None


def test_grid_arms_that_differ_beyond_the_dose_event_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = sbml_export.export_sbml

    def steady_state_by_arm(**kwargs: object) -> str:  # an arm whose CYP26 changes the pre-treatment state
        if kwargs["regimen"] == "10 mg od for 20 d":
            kwargs["overrides"] = {"cyp26_expr": 10.0}
        return real(**kwargs)  # type: ignore[arg-type]

    grid = GridScenario(label="g", phenotype="maturation_arrest", arms=("20 mg bid for 20 d", "10 mg od for 20 d"))
    assert [c.id for c in grid_changes(grid)][0] == "Gut_iso"
    monkeypatch.setattr(sbml_export, "export_sbml", steady_state_by_arm)
    with pytest.raises(ModelBuildError, match=r"differ in \[.*'cyp26_expr'.*separate scenarios"):
        grid_changes(grid)


@pytest.fixture
def headless_matplotlib() -> Iterator[None]:
    """Draw with the Agg backend and tellurium's matplotlib engine; put both back afterwards."""
    import matplotlib.pyplot as plt

    backend, engine = plt.get_backend(), te.getDefaultPlottingEngine()
    plt.switch_backend("agg")
    te.setDefaultPlottingEngine("matplotlib")
    try:
        yield
    finally:
        plt.close("all")
        te.setDefaultPlottingEngine(engine)
        plt.switch_backend(backend)


@pytest.mark.usefixtures("headless_matplotlib")
def test_tellurium_draws_the_six_plots_headless(tmp_path: Path) -> None:
    runs = [
        Scenario(label="one", phenotype="maturation_arrest", regimen="20 mg bid for 3 d", t_end_d=5.0),
        GridScenario(label="grid", phenotype="maturation_arrest", arms=("10 mg od for 3 d", None), t_end_d=5.0),
    ]
    path = write_omex(tmp_path / "plots.omex", runs)
    out = tmp_path / "outputs"
    out.mkdir()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*non-interactive.*")  # plt.show() under Agg
        te.executeCombineArchive(str(path), createOutputs=True, saveOutputs=True, outputDir=str(out))
    assert {p.name for p in out.glob("*.pdf")} == {f"simulation_plot_{col}.pdf" for col, _, _ in C.STANDARD_PANELS}
    assert all(p.stat().st_size > 1000 for p in out.glob("*.pdf"))
    assert len(list(out.glob("simulation_report_*.csv"))) == 2


def test_sedml_for_refuses_nothing_it_writes() -> None:
    text = sedml_for([Scenario(label="s", t_end_d=2.0)])
    doc = libsedml.readSedMLFromString(text)
    assert sedml_dangling_references(doc) == []
    doc.getOutput("plot_" + C.STANDARD_PANELS[0][0]).getCurve(0).setYDataReference("dg_nowhere")
    assert sedml_dangling_references(doc) == [f"curve_{C.STANDARD_PANELS[0][0]}_s -> 'dg_nowhere'"]
