"""The what-if explorer without a browser: summary sentences, widgets, scenarios, downloads, errors, CLI."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ra_model.app import server as server_module
from ra_model.app import state as state_module
from ra_model.app.explorer import Explorer
from ra_model.app.server import choose_token, serve
from ra_model.app.state import (
    BASELINE_SAME_REGIMEN,
    DEFAULT_N_CLASSES,
    DOSE_PER_KG_DAY,
    KEY_PARAMETERS,
    ExplorerState,
    RunCache,
    Scenario,
    default_simulate,
    run_scenario,
    summarise,
    summary_facts,
)
from ra_model.cli import build_parser
from ra_model.errors import InvalidValueError, SimulationFailedError, UnknownNameError
from ra_model.model import columns as C
from ra_model.model.source import model_dir, read_parameter_table

REGIMEN = "20 mg bid for 180 d"


# --------------------------------------------------------------------------- summarise (hand-made tables)
def _table(present: list[bool], concentration: list[float], doses: list[float] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            C.TIME_D: np.arange(len(present), dtype=float),
            C.MOTILE_SPERM_PRESENT: present,
            C.EJACULATE_CONCENTRATION: concentration,
        }
    )
    frame.attrs["dose_times_d"] = doses or []
    frame.attrs["pellet_detection_limit_M_per_mL"] = 1e-5  # a made-up limit: the summary reads it from here
    return frame


def test_summary_first_appearance_peak_and_return_to_azoospermia() -> None:
    # doses on days 0-2; motile sperm on days 3-5 (peak 7 on day 4); none from day 6 on
    table = _table(
        [False, False, False, True, True, True, False, False, False, False, False],
        [0, 0, 0.5, 3, 7, 2, 0.01, 0, 0, 0, 0],
        doses=[0.0, 1.0, 2.0],
    )
    assert summarise(table) == (
        "Motile sperm first appear on day 3; peak 7 million sperm/mL on day 4; "
        "no motile sperm again 4 days after stopping (day 6; last dose day 2)."
    )
    facts = summary_facts(table)
    assert (facts.first_motile_d, facts.peak_M_per_mL, facts.peak_d) == (3.0, 7.0, 4.0)
    assert (facts.last_dose_d, facts.azoospermic_again_d, facts.t_end_d) == (2.0, 6.0, 10.0)


def test_summary_never_motile() -> None:
    table = _table([False] * 5, [0, 1e-4, 2e-4, 1e-4, 0], doses=[0.0])
    assert summarise(table) == (
        "No motile sperm at any time in the 4 days simulated; sperm in the semen peak 200 sperm/mL on day 2."
    )
    below = _table([False] * 5, [0, 1e-6, 2e-6, 1e-6, 0], doses=[0.0])  # all below the table's limit (1e-5)
    assert summarise(below) == (
        "Sperm in the semen: none detectable at any time in the 4 days simulated "
        "(below 10 sperm/mL, the lowest a search of the centrifuged pellet finds)."
    )


def test_summary_still_present_at_end_and_present_from_start() -> None:
    table = _table([True] * 6, [40, 41, 45, 44, 43, 42], doses=[0.0, 1.0])
    assert summarise(table) == (
        "Motile sperm are present from the start (day 0); peak 45 million sperm/mL on day 2; "
        "still present at the end of the run, 4 days after stopping (last dose day 1)."
    )


def test_summary_without_drug_and_with_treatment_to_the_end() -> None:
    untreated = _table([False, True, True, False], [0, 2, 3, 0])
    assert summarise(untreated) == (
        "Motile sperm first appear on day 1; peak 3 million sperm/mL on day 2; no motile sperm again from day 3."
    )
    to_end = _table([False, True, True, True], [0, 2, 3, 4], doses=[0.0, 1.0, 2.0, 3.0])
    assert summarise(to_end).endswith("the treatment lasts to the end of the run (day 3).")


def test_summary_sperm_gone_before_the_last_dose() -> None:
    table = _table([False, True, False, False, False], [0, 2, 0, 0, 0], doses=[0.0, 1.0, 2.0, 3.0])
    assert summarise(table).endswith("no motile sperm again from day 2, before the last dose (day 3).")


def test_summary_rejects_a_table_without_the_columns() -> None:
    with pytest.raises(InvalidValueError, match="missing columns"):
        summarise(pd.DataFrame({C.TIME_D: [0.0, 1.0]}))
    with pytest.raises(InvalidValueError, match="0 rows"):
        summarise(_table([], []))


# --------------------------------------------------------------------------- the app object
@pytest.fixture(scope="module")
def app() -> Explorer:
    return Explorer()


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def _shown(
    phenotype: str,
    regimen: str | None,
    *,
    n_classes: int,
    overrides: Mapping[str, float] | None = None,
    t_end_d: float = 365.0,
) -> pd.DataFrame:
    """What the explorer runs for a scenario with ``n_classes`` focus classes: the same function, so equal exactly.

    With 1 class that is the whole model (``simulate``); with more, the exact split path (``simulate_split``); a
    treated run on hourly rows, kept at whole days (``run_scenario``).
    """
    scenario = Scenario(
        phenotype=phenotype, regimen=regimen, overrides=overrides or {}, t_end_d=t_end_d, n_classes=n_classes
    )
    return run_scenario(scenario, default_simulate).table


def test_default_app_runs_the_treated_and_untreated_preset(app: Explorer) -> None:
    assert app.state.error == ""
    assert app.state.n_classes == DEFAULT_N_CLASSES
    expected = _shown("maturation_arrest", REGIMEN, n_classes=DEFAULT_N_CLASSES)
    untreated = _shown("maturation_arrest", None, n_classes=DEFAULT_N_CLASSES)
    assert app.state.whatif is not None and app.state.baseline is not None
    _same(app.state.whatif, expected)
    _same(app.state.baseline, untreated)
    assert summarise(expected) in app.summary.object
    assert summarise(untreated) in app.summary.object
    # brief: the isotretinoin-responsive maturation arrest makes sperm on the drug, far more than untreated
    treated_peak = expected[C.EJACULATE_CONCENTRATION].max()
    assert treated_peak > 100 * untreated[C.EJACULATE_CONCENTRATION].max()
    assert "none detectable" not in summarise(expected)


def test_sliders_are_bounded_by_the_parameter_table_and_show_its_source(app: Explorer) -> None:
    table = read_parameter_table()
    app.phenotype.value = "healthy"
    for pid in KEY_PARAMETERS:
        widget = app.parameters[pid]
        row = table[pid]
        assert (widget.start, widget.end) == (row.lower, row.upper)
        assert widget.value == row.value  # healthy = the table's default
        assert row.source in widget.tip and row.description in widget.tip
        before = widget.value
        with pytest.raises(ValueError, match="at most"):
            widget.value = row.upper * 1.01
        with pytest.raises(ValueError, match="at least"):
            widget.value = row.lower * 0.99
        assert widget.value == before
    with pytest.raises(ValueError):
        app.dose_mg.value = 1000.0
    with pytest.raises(ValueError):
        app.duration_d.value = 0.0
    assert app.state.overrides() == {}


def test_changing_a_slider_reruns_and_changes_summary_and_plot(app: Explorer) -> None:
    app.phenotype.value = "maturation_arrest"
    before_summary = app.summary.object
    before_plot = np.array(app.figures.whatif_source.data[C.TESTIS_ATRA])
    app.parameters["cyp26_expr"].value = 10.0  # twice the preset's 5
    assert app.state.overrides() == {"cyp26_expr": 10.0}
    expected = _shown("maturation_arrest", REGIMEN, n_classes=app.state.n_classes, overrides={"cyp26_expr": 10.0})
    assert app.state.whatif is not None
    _same(app.state.whatif, expected)
    assert app.summary.object != before_summary
    assert summarise(expected) in app.summary.object
    after_plot = np.array(app.figures.whatif_source.data[C.TESTIS_ATRA])
    np.testing.assert_array_equal(after_plot, expected[C.TESTIS_ATRA].to_numpy())
    # more RA-degrading enzyme: less testis atRA on every treated day
    on_drug = (expected[C.TIME_D] > 5) & (expected[C.TIME_D] < 175)
    assert np.all(after_plot[on_drug.to_numpy()] < before_plot[on_drug.to_numpy()])
    app.parameters["cyp26_expr"].value = 5.0
    assert app.state.overrides() == {}


def test_phenotype_change_moves_the_sliders_to_the_preset(app: Explorer) -> None:
    defaults = {pid: row.value for pid, row in read_parameter_table().items()}
    presets = tomllib.loads((model_dir() / "phenotypes.toml").read_text(encoding="utf-8"))
    app.phenotype.value = "hypospermatogenesis"
    # models/phenotypes.toml: every slider shows the preset's value (set outright, or the default scaled),
    # and a slider the preset leaves alone goes back to the default (from maturation_arrest's 0.3 / 5.0)
    preset = presets["hypospermatogenesis"]
    for pid in KEY_PARAMETERS:
        scale = preset.get("scale", {}).get(pid, 1.0)
        want = preset.get("parameters", {}).get(pid, scale * defaults[pid])
        assert app.parameters[pid].value == pytest.approx(want, rel=1e-12), pid
        assert app.parameters[pid].start <= app.parameters[pid].value <= app.parameters[pid].end, pid
    assert app.parameters["aldh1a_expr"].value == 0.5
    assert app.parameters["stra6_expr"].value == defaults["stra6_expr"]
    assert app.parameters["cyp26_expr"].value == defaults["cyp26_expr"]
    assert app.state.overrides() == {}
    assert app.state.whatif is not None and app.state.whatif.attrs["phenotype"] == "hypospermatogenesis"
    app.phenotype.value = "maturation_arrest"
    assert app.parameters["stem_niche"].start == read_parameter_table()["stem_niche"].lower
    assert [app.parameters[p].value for p in ("stra6_expr", "aldh1a_expr", "cyp26_expr")] == [0.3, 0.15, 5.0]


def test_regimen_controls(app: Explorer) -> None:
    app.phenotype.value = "maturation_arrest"
    app.dose_basis.value = "mg/kg/day"
    assert app.dose_mg_per_kg_day.visible and not app.dose_mg.visible
    app.dose_mg_per_kg_day.value = 0.5
    app.body_weight_kg.value = 80.0
    app.frequency.value = "once daily (od)"
    app.start_d.value = 14.0
    app.duration_d.value = 90.0
    app.fed.value = True
    assert str(app.state.regimen()) == "0.5 mg/kg/day od for 90 d from day 14, 80 kg, fed"
    assert app.state.whatif is not None
    doses = app.state.whatif.attrs["dose_times_d"]
    assert doses[0] == 14.0 and len(doses) == 90 and doses[-1] == 103.0
    assert app.state.whatif[C.DOSES_GIVEN].iloc[-1] == 90
    app.drug.value = False
    assert app.state.regimen() is None and not app.frequency.visible
    assert app.state.whatif is not None and app.state.baseline is not None
    _same(app.state.whatif, app.state.baseline)  # no drug and no changes: the what-if is the untreated baseline
    for widget, value in (
        (app.drug, True),
        (app.dose_basis, "mg per dose"),
        (app.frequency, "twice daily (bid)"),
        (app.start_d, 0.0),
        (app.duration_d, 180.0),
        (app.fed, False),
    ):
        widget.value = value
    assert str(app.state.regimen()) == REGIMEN


def test_baseline_choice_same_regimen_without_changes(app: Explorer) -> None:
    app.phenotype.value = "maturation_arrest"
    app.parameters["stra6_expr"].value = 1.0
    app.baseline_choice.value = BASELINE_SAME_REGIMEN
    assert app.state.baseline is not None and app.state.whatif is not None
    assert app.state.baseline.attrs["regimen"] == app.state.whatif.attrs["regimen"] == REGIMEN
    assert app.state.baseline.attrs["overrides"] == {} and app.state.whatif.attrs["overrides"] == {"stra6_expr": 1.0}
    _same(app.state.baseline, _shown("maturation_arrest", REGIMEN, n_classes=app.state.n_classes))
    app.baseline_choice.value = "untreated (same phenotype, no drug)"
    app.parameters["stra6_expr"].value = 0.3
    assert app.state.overrides() == {}


def test_downloads_reproduce_the_run(app: Explorer) -> None:
    app.phenotype.value = "maturation_arrest"
    app.parameters["cyp26_expr"].value = 10.0
    try:
        assert app.state.whatif is not None
        csv = pd.read_csv(io.StringIO(app.state.csv_text()))
        assert list(csv.columns) == list(app.state.whatif.columns)
        np.testing.assert_allclose(
            csv[C.EJACULATE_CONCENTRATION].to_numpy(),
            app.state.whatif[C.EJACULATE_CONCENTRATION].to_numpy(),
            rtol=1e-12,
        )
        data = tomllib.loads(app.state.scenario_toml())
        # "classes" is written only for a testis of more than one focus class (the default is 8)
        keys = {"description", "phenotype", "regimens", "t_end_d", "output_step_d", "overrides"}
        assert app.state.n_classes == DEFAULT_N_CLASSES != 1
        assert set(data) == keys | {"classes"}
        assert data["classes"] == app.state.n_classes
        assert data["phenotype"] == "maturation_arrest"
        assert data["regimens"] == [REGIMEN]
        assert data["overrides"] == {"cyp26_expr": 10.0}
        assert (data["t_end_d"], data["output_step_d"]) == (365.0, 1.0)
        scenario = Scenario(  # what the explorer runs for the file
            phenotype=data["phenotype"],
            regimen=None if data["regimens"][0] == "none" else data["regimens"][0],
            t_end_d=data["t_end_d"],
            output_step_d=data["output_step_d"],
            overrides=data["overrides"],
            n_classes=data.get("classes", 1),
        )
        _same(run_scenario(scenario, default_simulate).table, app.state.whatif)
        # the page runs a treated scenario on hourly rows (for the plasma panel) and keeps the whole days: a run
        # at the file's own step agrees to the solver's tolerance (the split path's output grid moves its steps)
        at_step = default_simulate(
            scenario.phenotype,
            scenario.regimen,
            t_end_d=scenario.t_end_d,
            output_step_d=scenario.output_step_d,
            overrides=dict(scenario.overrides),
            n_classes=scenario.n_classes,
        )
        pd.testing.assert_frame_equal(at_step, app.state.whatif, check_exact=False, rtol=1e-4, atol=1e-9)
    finally:
        app.parameters["cyp26_expr"].value = 5.0


def test_untreated_scenario_file_says_none_and_has_no_overrides() -> None:
    data = tomllib.loads(Scenario(phenotype="healthy", regimen=None, description="x").to_toml())
    assert data == {
        "description": "x",
        "phenotype": "healthy",
        "regimens": ["none"],
        "t_end_d": 365.0,
        "output_step_d": 1.0,
    }


@pytest.mark.skipif(
    importlib.util.find_spec("ra_model.studies.experiments") is None,
    reason="ra_model.studies.experiments (ra-model run) is not there",
)
def test_ra_model_run_reproduces_the_downloaded_scenario(app: Explorer, tmp_path: Path) -> None:
    from ra_model.cli import main

    app.phenotype.value = "maturation_arrest"
    app.parameters["cyp26_expr"].value = 10.0
    app.dose_mg.value = 10.0
    try:
        scenario = tmp_path / "whatif_cyp26.toml"
        scenario.write_text(app.state.scenario_toml(), encoding="utf-8")
        written = tomllib.loads(scenario.read_text(encoding="utf-8"))
        assert written["classes"] == app.state.n_classes == DEFAULT_N_CLASSES
        assert main(["run", str(scenario), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
        ran = pd.read_csv(tmp_path / "out" / "results.csv").drop(columns="run")
        shown = pd.read_csv(io.StringIO(app.state.csv_text()))
        # ra-model run (a "single" experiment) runs the whole model of 8 focus classes (simulate), the explorer the
        # exact split path (simulate_split), which agrees with the whole model within about 1e-5 relative
        # (tests/test_focus_classes_compiled.py): so the floats agree within rtol 1e-4, with an absolute floor of
        # 1e-9 for values near zero (concentrations of ~1e-4 M/mL differ by ~1e-10); time, doses, the presence
        # flag and the semen category are compared exactly (assert_frame_equal's tolerances apply to floats only)
        pd.testing.assert_frame_equal(ran, shown, check_exact=False, rtol=1e-4, atol=1e-9)
        for column in (C.TIME_D, C.DOSES_GIVEN, C.MOTILE_SPERM_PRESENT):
            pd.testing.assert_series_equal(ran[column], shown[column], check_exact=True)
        assert shown[C.DOSES_GIVEN].iloc[-1] == 360
    finally:
        app.dose_mg.value = 20.0
        app.parameters["cyp26_expr"].value = 5.0


def _failing_simulate(phenotype: str, regimen: str | None, *, overrides: Mapping[str, float] | None, **kw: Any):  # type: ignore[no-untyped-def]
    if overrides and overrides.get("cyp26_expr", 0) > 9:
        raise SimulationFailedError("CVODE error at t = 1234 h: CV_CONV_FAILURE (forced by the test)")
    if overrides and overrides.get("cyp26_expr", 0) > 8:
        raise ZeroDivisionError("a bug")
    return default_simulate(phenotype, regimen, overrides=overrides, **kw)  # what the explorer runs otherwise


def test_a_failed_run_shows_a_message_and_the_app_stays_usable() -> None:
    app = Explorer(simulate_fn=_failing_simulate)
    good_summary = app.summary.object
    assert not app.alert.visible
    app.parameters["cyp26_expr"].value = 9.5
    assert app.alert.visible
    assert "The simulation failed" in app.alert.object and "CV_CONV_FAILURE" in app.alert.object
    assert app.state.whatif is None and app.state.csv_text() == ""
    assert "No result" in app.summary.object
    assert len(app.figures.whatif_source.data[C.TIME_D]) == 0
    app.parameters["cyp26_expr"].value = 8.5  # an unexpected exception is also shown, not raised
    assert app.alert.visible and "ZeroDivisionError" in app.alert.object
    app.parameters["cyp26_expr"].value = 5.0
    assert not app.alert.visible and app.state.error == ""
    assert app.summary.object == good_summary
    assert len(app.figures.whatif_source.data[C.TIME_D]) == 366


# --------------------------------------------------------------------------- the state object (no widgets)
def test_state_module_loads_without_panel_bokeh_or_param() -> None:
    code = (
        "import sys, ra_model.app.state; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('panel', 'bokeh', 'param')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout


def _recording(calls: list[tuple[str, str | None, Mapping[str, float] | None]]):  # type: ignore[no-untyped-def]
    def run(phenotype: str, regimen: str | None, *, overrides: Mapping[str, float] | None, **kw: Any):  # type: ignore[no-untyped-def]
        calls.append((phenotype, regimen, overrides))
        return default_simulate(phenotype, regimen, overrides=overrides, **kw)

    return run


def test_state_scenario_follows_its_controls_and_nothing_runs_before_refresh() -> None:
    calls: list[tuple[str, str | None, Mapping[str, float] | None]] = []
    text = "10 mg od for 90 d from day 14, fed"
    state = ExplorerState(simulate_fn=_recording(calls), phenotype="maturation_arrest", regimen=text, t_end_d=180.0)
    assert calls == [] and state.whatif is None and state.baseline is None
    assert [state.parameters[p] for p in ("stra6_expr", "aldh1a_expr", "cyp26_expr")] == [0.3, 0.15, 5.0]
    assert state.overrides() == {}
    state.parameters["cyp26_expr"] = 10.0
    whatif = state.scenario()
    assert (whatif.phenotype, whatif.regimen, dict(whatif.overrides)) == (
        "maturation_arrest",
        text,
        {"cyp26_expr": 10.0},
    )
    assert (whatif.t_end_d, whatif.output_step_d) == (180.0, 1.0)
    data = tomllib.loads(state.scenario_toml())
    assert (data["phenotype"], data["regimens"], data["overrides"]) == (
        "maturation_arrest",
        [text],
        {"cyp26_expr": 10.0},
    )
    assert (data["t_end_d"], data["output_step_d"]) == (180.0, 1.0)
    state.dose_basis = DOSE_PER_KG_DAY
    state.dose_mg_per_kg_day = 0.5
    state.body_weight_kg = 80.0
    assert str(state.regimen()) == "0.5 mg/kg/day od for 90 d from day 14, 80 kg, fed"
    state.drug = False
    assert state.regimen() is None and state.scenario().regimen is None
    state.select_phenotype("healthy")  # the sliders go to the preset's values: no overrides left
    assert state.phenotype == "healthy" and state.overrides() == {}
    assert state.parameters == {pid: read_parameter_table()[pid].value for pid in KEY_PARAMETERS}
    assert calls == []


def test_state_rejects_what_the_page_does_not_offer() -> None:
    with pytest.raises(UnknownNameError, match="maturation_arrest"):
        ExplorerState(phenotype="maturation_arest")
    with pytest.raises(InvalidValueError, match="offers"):
        ExplorerState(t_end_d=100.0)
    with pytest.raises(InvalidValueError, match="od or bid"):
        ExplorerState(regimen="20 mg every 8 h for 10 d")
    with pytest.raises(UnknownNameError, match="healthy"):
        ExplorerState().select_phenotype("helthy")


def test_state_baseline_is_the_phenotype_untreated_or_on_the_same_regimen() -> None:
    state = ExplorerState()
    state.parameters["stra6_expr"] = 1.0
    whatif = state.scenario()
    assert (whatif.regimen, dict(whatif.overrides)) == (REGIMEN, {"stra6_expr": 1.0})
    untreated = state.baseline_scenario(whatif)
    assert (untreated.phenotype, untreated.regimen, dict(untreated.overrides)) == ("maturation_arrest", None, {})
    assert (untreated.t_end_d, untreated.output_step_d) == (whatif.t_end_d, whatif.output_step_d)
    state.baseline_choice = BASELINE_SAME_REGIMEN
    same = state.baseline_scenario(whatif)
    assert (same.phenotype, same.regimen, dict(same.overrides)) == ("maturation_arrest", REGIMEN, {})
    assert (same.t_end_d, same.output_step_d) == (whatif.t_end_d, whatif.output_step_d)


def test_state_runs_both_scenarios_once_and_summarises_them() -> None:
    calls: list[tuple[str, str | None, Mapping[str, float] | None]] = []
    state = ExplorerState(simulate_fn=_recording(calls))
    assert state.n_classes == DEFAULT_N_CLASSES
    assert state.refresh() and state.error == ""
    expected = _shown("maturation_arrest", REGIMEN, n_classes=DEFAULT_N_CLASSES)
    untreated = _shown("maturation_arrest", None, n_classes=DEFAULT_N_CLASSES)
    assert state.whatif is not None and state.baseline is not None
    assert list(state.whatif.columns) == list(expected.columns)
    _same(state.whatif, expected)
    _same(state.baseline, untreated)
    assert state.scenarios == (state.scenario(), state.baseline_scenario(state.scenario()))
    assert summarise(expected) in state.summary_text() and summarise(untreated) in state.summary_text()
    assert calls == [("maturation_arrest", REGIMEN, None), ("maturation_arrest", None, None)]
    assert state.refresh() and state.run(state.scenario()).table is state.whatif
    assert len(calls) == 2  # both served from the cache
    assert list(pd.read_csv(io.StringIO(state.csv_text())).columns) == list(expected.columns)


def test_state_keeps_the_reason_a_run_failed() -> None:
    state = ExplorerState(simulate_fn=_failing_simulate)
    state.parameters["cyp26_expr"] = 9.5
    assert not state.refresh()
    assert state.error.startswith("The simulation failed: ") and "CV_CONV_FAILURE" in state.error
    assert state.whatif is None and state.csv_text() == "" and state.summary_text() == ""
    state.parameters["cyp26_expr"] = 8.5
    assert not state.refresh() and state.error == "Unexpected error (ZeroDivisionError): a bug"
    state.parameters["cyp26_expr"] = 5.0
    state.duration_d = 0.0
    assert not state.refresh() and state.error.startswith("These settings do not work: ")
    assert "duration_d" in state.error


# --------------------------------------------------------------------------- server and CLI
def _listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    with open("/proc/net/tcp", encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                raw = bytes.fromhex(address)[::-1]
                found.add(".".join(str(b) for b in raw))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp")
def test_server_listens_on_loopback_only_by_default() -> None:
    server = serve(app_factory=lambda: Explorer().view())
    try:
        assert server.url == f"http://127.0.0.1:{server.port}/"
        assert _listening_addresses(server.port) == {"127.0.0.1"}
        with urllib.request.urlopen(server.url, timeout=30) as response:
            assert response.status == 200
    finally:
        server.stop()


def test_cli_options() -> None:
    args = build_parser().parse_args(["explore"])
    assert (args.host, args.port, args.no_browser) == ("127.0.0.1", 0, False)
    args = build_parser().parse_args(["explore", "--no-browser", "--host", "0.0.0.0", "--port", "8123"])
    assert (args.host, args.port, args.no_browser) == ("0.0.0.0", 8123, True)


def test_cli_opens_the_browser_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ra_model.app.server as explore
    import ra_model.cli.explore as cli_explore

    calls: list[dict[str, object]] = []

    class _Server:
        url = "http://127.0.0.1:1/"

        def stop(self) -> None:
            calls.append({"stopped": True})

    def fake_serve(**kwargs: object) -> _Server:
        calls.append(kwargs)
        return _Server()

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(explore, "serve", fake_serve)
    monkeypatch.setattr(cli_explore, "_wait_until_interrupted", interrupted)
    from ra_model.cli import main

    assert main(["explore"]) == 0
    assert calls[0]["show"] is True and calls[0]["host"] == "127.0.0.1" and calls[0]["port"] is None
    assert calls[1] == {"stopped": True}
    assert "http://127.0.0.1:1/" in capsys.readouterr().out
    assert main(["explore", "--no-browser"]) == 0
    assert calls[2]["show"] is False
    assert main(["explore", "--port", "70000"]) == 2


def test_cli_command_prints_the_url_and_serves_the_page(tmp_path) -> None:
    code = "import sys; from ra_model.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "explore", "--no-browser"],
        cwd=tmp_path,  # not the repository, so the installed package (with its data) is imported
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ra-model explorer running at http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split(" at ")[1].strip()
        with urllib.request.urlopen(url, timeout=60) as response:
            assert response.status == 200
            assert "ra_model what-if explorer" in response.read().decode("utf-8")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --------------------------------------------------------------------------- issue 14: busy port, bad host, token
CLI = "import sys; from ra_model.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture()
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 held by a listening socket that never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _explorer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ra-model-explorer" and t.is_alive()]


def test_cli_on_a_busy_port_says_so_and_exits_2(busy_port: int, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "explore", "--no-browser", "--port", str(busy_port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"ra-model explore on a busy port did not exit; it printed {out!r} {err!r}")
    assert proc.returncode == 2, err
    assert "running at" not in out
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith(f"ra-model: error: --port {busy_port}: port {busy_port} is already in use on 127.0.0.1")
    assert "choose another --port, or leave --port out to pick a free one" in err


def test_serve_on_a_busy_port_raises_and_leaves_no_thread(busy_port: int) -> None:
    with pytest.raises(InvalidValueError, match=f"port {busy_port} is already in use"):
        serve(port=busy_port, app_factory=lambda: Explorer().view())
    assert _explorer_threads() == []


def test_a_free_port_taken_before_the_bind_is_replaced(busy_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    offered: list[int] = []
    real_free_port = server_module.free_port

    def racing_free_port(host: str = "127.0.0.1") -> int:
        # the first port offered is taken by another program before the server binds it
        offered.append(busy_port if not offered else real_free_port(host))
        return offered[-1]

    monkeypatch.setattr(server_module, "free_port", racing_free_port)
    running = serve(app_factory=lambda: Explorer().view())
    try:
        assert offered[0] == busy_port and running.port == offered[-1] != busy_port
        with urllib.request.urlopen(running.url, timeout=60) as response:  # our server answers, not the busy socket
            assert "ra_model what-if explorer" in response.read().decode("utf-8")
    finally:
        running.stop()
    assert _explorer_threads() == []


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("999.1.1.1", "--host '999.1.1.1' is not a valid IP address; use --host 127.0.0.1"),
        ("1.2.3", "--host '1.2.3' is not a valid IP address"),
        # TEST-NET-1 (RFC 5737) is never this computer's: the bind fails, and nothing is sent anywhere
        ("192.0.2.1", "--host '192.0.2.1' is not an address of this computer"),
    ],
)
def test_cli_with_an_unusable_host_says_so_and_exits_2(
    host: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ra_model.cli import main

    assert main(["explore", "--no-browser", "--host", host]) == 2
    out, err = capsys.readouterr()
    assert "running at" not in out
    assert err.startswith(f"ra-model: error: {message}"), err
    assert "--host 0.0.0.0" in err and err.count("\n") == 1
    # with a port given the host is found unusable in the server's thread; the same message
    assert main(["explore", "--no-browser", "--host", host, "--port", "8123"]) == 2
    assert capsys.readouterr().err.startswith(f"ra-model: error: {message}")
    assert _explorer_threads() == []


def test_token_is_required_beyond_loopback_only() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert choose_token(host) is None
    tokens = {choose_token(host) for host in ("0.0.0.0", "::", "192.168.1.20", "10.0.0.1")}
    assert None not in tokens and len(tokens) == 4  # a new random token each time
    assert all(t is not None and len(t) >= 32 and server_module.TOKEN_PATTERN.fullmatch(t) for t in tokens)
    assert choose_token("127.0.0.1", "abc") == "abc"  # a token given is required even on loopback
    assert choose_token("0.0.0.0", "abc") == "abc"
    assert choose_token("0.0.0.0", require_token=False) is None  # --no-token
    with pytest.raises(InvalidValueError, match="contradict"):
        choose_token("0.0.0.0", "abc", require_token=False)
    with pytest.raises(InvalidValueError, match="--token 'a b&c'"):
        choose_token("127.0.0.1", "a b&c")


def _status(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers.get("Set-Cookie") or ""
    except urllib.error.HTTPError as exc:
        return exc.code, ""


async def _websocket_status(url: str, headers: Mapping[str, str]) -> int:
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    try:
        ws = await websocket_connect(HTTPRequest(url, headers=dict(headers), request_timeout=60))
    except HTTPClientError as exc:
        return exc.code
    ws.close()
    return 101


def test_a_server_with_a_token_refuses_requests_without_it() -> None:
    running = serve(token="s3cret-Token_1", app_factory=lambda: Explorer().view())
    try:
        base = f"http://127.0.0.1:{running.port}/"
        assert running.url == base + "?token=s3cret-Token_1" and running.token == "s3cret-Token_1"
        assert _status(base)[0] == 403
        assert _status(base + "?token=s3cret-Token_2")[0] == 403
        assert _status(base + "?token=")[0] == 403
        assert _status(base, {"Cookie": f"ra_model_token_{running.port}=wrong"})[0] == 403
        status, cookie = _status(running.url)
        assert status == 200
        assert cookie.startswith(f"ra_model_token_{running.port}=s3cret-Token_1") and "HttpOnly" in cookie
        # the cookie carries the token for the rest of the session: the page again, and its websocket
        jar = {"Cookie": f"ra_model_token_{running.port}=s3cret-Token_1"}
        assert _status(base, jar)[0] == 200
        ws = f"ws://127.0.0.1:{running.port}/ws"
        assert asyncio.run(_websocket_status(ws, {})) == 403
        assert asyncio.run(_websocket_status(ws, jar)) != 403
    finally:
        running.stop()


def test_cli_beyond_loopback_requires_a_token_and_warns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ra_model.cli.explore as cli_explore
    from ra_model.cli import main

    calls: list[dict[str, object]] = []

    class _Server:
        url = "http://127.0.0.1:1/?token=xyz"

        def stop(self) -> None:
            pass

    def fake_serve(**kwargs: object) -> _Server:
        calls.append(kwargs)
        return _Server()

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(server_module, "serve", fake_serve)
    monkeypatch.setattr(cli_explore, "_wait_until_interrupted", interrupted)

    assert main(["explore", "--no-browser", "--host", "0.0.0.0"]) == 0
    assert (calls[-1]["token"], calls[-1]["require_token"]) == (None, None)  # serve makes a random token
    out, err = capsys.readouterr()
    assert "running at http://127.0.0.1:1/?token=xyz" in out
    assert "warning: listening on 0.0.0.0, so other computers can reach this page" in err
    assert "carries the token" in err and "--no-token" not in err

    assert main(["explore", "--no-browser", "--host", "0.0.0.0", "--no-token"]) == 0
    assert (calls[-1]["token"], calls[-1]["require_token"]) == (None, False)
    err = capsys.readouterr().err
    assert "other computers can reach this page" in err
    assert "warning: --no-token: anyone who can reach this computer can use the explorer" in err

    assert main(["explore", "--no-browser", "--token", "abc"]) == 0
    assert (calls[-1]["token"], calls[-1]["require_token"]) == ("abc", None)
    assert capsys.readouterr().err == ""  # loopback: no warning
    with pytest.raises(SystemExit) as exited:  # argparse: the two options exclude each other
        main(["explore", "--token", "abc", "--no-token"])
    assert exited.value.code == 2


# --------------------------------------------------------------------------- issue 14: runs shared by sessions
def _tiny_table(phenotype: str) -> pd.DataFrame:
    table = _table([False, True], [0.0, 1.0])
    table.attrs["phenotype"] = phenotype
    return table


class _CountingSimulate:
    """A fake simulate function: counts calls, can hold a run until released, never touches the engine."""

    def __init__(self, *, hold: str | None = None) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.hold = hold
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, phenotype: str, regimen: str | None, **kw: object) -> pd.DataFrame:
        with self.lock:
            self.calls.append((phenotype, regimen))
        if phenotype == self.hold:
            assert self.release.wait(timeout=60), "the test never released the held run"
        return _tiny_table(phenotype)


def _wait_for(condition, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def test_sessions_share_runs_through_the_process_wide_cache() -> None:
    fake = _CountingSimulate()
    first, second = ExplorerState(simulate_fn=fake), ExplorerState(simulate_fn=fake)
    assert first.refresh() and second.refresh()
    assert fake.calls == [("maturation_arrest", REGIMEN), ("maturation_arrest", None)]  # computed once
    assert second.whatif is first.whatif and second.baseline is first.baseline
    # a session with another simulate function never gets these runs
    other = _CountingSimulate()
    assert ExplorerState(simulate_fn=other).refresh() and len(other.calls) == 2
    # and a session with its own cache computes them again
    own = ExplorerState(simulate_fn=fake, cache=RunCache(4))
    assert own.refresh() and len(fake.calls) == 4


def test_identical_concurrent_requests_are_computed_once() -> None:
    fake = _CountingSimulate(hold="healthy")
    cache = RunCache(8)
    scenario = Scenario(phenotype="healthy", regimen=None)
    results: list[Any] = []
    states = [ExplorerState(simulate_fn=fake, cache=cache) for _ in range(6)]
    threads = [threading.Thread(target=lambda s=s: results.append(s.run(scenario))) for s in states]
    for thread in threads:
        thread.start()
    _wait_for(lambda: cache.stats.waited == 5)  # one computes, five wait for it
    assert len(fake.calls) == 1
    fake.release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(fake.calls) == 1 and len(results) == 6
    assert all(r is results[0] for r in results)
    assert cache.stats.computed == 1 and len(cache) == 1
    assert states[0].run(scenario) is results[0] and cache.stats.hits == 1


def test_a_failed_run_reaches_every_waiter_and_is_not_kept() -> None:
    cache = RunCache(8)
    started, release = threading.Event(), threading.Event()
    attempts: list[int] = []

    def failing() -> pd.DataFrame:
        attempts.append(1)
        started.set()
        release.wait(timeout=60)
        raise SimulationFailedError("CVODE gave up (forced by the test)")

    errors: list[BaseException] = []

    def ask() -> None:
        try:
            cache.get("key", failing)
        except SimulationFailedError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    threads[0].start()
    assert started.wait(timeout=30)
    for thread in threads[1:]:
        thread.start()
    _wait_for(lambda: cache.stats.waited == 2)
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(attempts) == 1 and len(errors) == 3 and all("CVODE gave up" in str(e) for e in errors)
    assert len(cache) == 0
    assert cache.get("key", lambda: _tiny_table("x")).attrs["phenotype"] == "x"  # tried again, and kept


def test_the_run_cache_keeps_the_most_recently_used_runs() -> None:
    cache = RunCache(2)
    made: list[str] = []

    def make(name: str):  # type: ignore[no-untyped-def]
        return lambda: made.append(name) or _tiny_table(name)

    cache.get("a", make("a"))
    cache.get("b", make("b"))
    cache.get("a", make("a"))  # a is now the most recently used
    cache.get("c", make("c"))  # so b is dropped
    assert len(cache) == 2 and made == ["a", "b", "c"]
    cache.get("a", make("a"))
    cache.get("b", make("b"))
    assert made == ["a", "b", "c", "b"]
    with pytest.raises(InvalidValueError, match="RunCache size = 0"):
        RunCache(0)


def test_a_slow_run_in_one_session_does_not_block_another_scenario() -> None:
    fake = _CountingSimulate(hold="maturation_arrest")
    cache = RunCache(8)  # one cache: computing one key must not hold up another
    slow = ExplorerState(simulate_fn=fake, cache=cache)
    fast = ExplorerState(simulate_fn=fake, cache=cache, phenotype="healthy")
    slow_done = threading.Event()
    worker = threading.Thread(target=lambda: (slow.refresh(), slow_done.set()))
    worker.start()
    try:
        _wait_for(lambda: fake.calls == [("maturation_arrest", REGIMEN)])  # the slow run is under way
        fast_done = threading.Event()
        other = threading.Thread(target=lambda: (fast.refresh(), fast_done.set()))
        other.start()
        assert fast_done.wait(timeout=10), "a different scenario waited for the slow run"
        assert fast.error == "" and fast.whatif is not None and fast.whatif.attrs["phenotype"] == "healthy"
        assert not slow_done.is_set()
    finally:
        fake.release.set()
        worker.join(timeout=30)
    assert slow_done.is_set() and slow.error == ""


def test_the_default_engine_runs_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int, bool]] = []

    def fake(path: str):  # type: ignore[no-untyped-def]
        def run(*args: object, n_classes: int, **kwargs: object) -> pd.DataFrame:
            seen.append((path, n_classes, state_module._ENGINE_LOCK.locked()))
            return _tiny_table("healthy")

        return run

    # one class: the whole model; the default class count (and any other above 1): the exact split path
    monkeypatch.setattr(state_module, "simulate", fake("whole"))
    monkeypatch.setattr(state_module, "simulate_split", fake("split"))
    default_simulate("healthy", None, t_end_d=10.0, overrides=None, output_step_d=1.0)
    default_simulate("healthy", None, t_end_d=10.0, overrides=None, output_step_d=1.0, n_classes=1)
    default_simulate("healthy", None, t_end_d=10.0, overrides=None, output_step_d=1.0, n_classes=DEFAULT_N_CLASSES)
    assert seen == [("whole", 1, True), ("whole", 1, True), ("split", DEFAULT_N_CLASSES, True)]
    assert not state_module._ENGINE_LOCK.locked()
