"""The what-if explorer without a browser: summary sentences, widgets, scenarios, downloads, errors, CLI."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ra_model.app.explorer import Explorer
from ra_model.app.server import serve
from ra_model.app.state import (
    BASELINE_SAME_REGIMEN,
    DOSE_PER_KG_DAY,
    KEY_PARAMETERS,
    ExplorerState,
    Scenario,
    summarise,
    summary_facts,
)
from ra_model.cli import build_parser
from ra_model.engines.simulate import simulate
from ra_model.errors import InvalidValueError, SimulationFailedError, UnknownNameError
from ra_model.model import columns as C
from ra_model.model.source import read_parameter_table

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
    return frame


def test_summary_first_appearance_peak_and_return_to_azoospermia() -> None:
    # doses on days 0-2; motile sperm on days 3-5 (peak 7 on day 4); none from day 6 on
    table = _table(
        [False, False, False, True, True, True, False, False, False, False, False],
        [0, 0, 0.5, 3, 7, 2, 0.01, 0, 0, 0, 0],
        doses=[0.0, 1.0, 2.0],
    )
    assert summarise(table) == (
        "Motile sperm first appear on day 3; peak 7 million sperm/mL in the ejaculate on day 4; "
        "back to azoospermia 4 days after stopping (day 6; last dose day 2)."
    )
    facts = summary_facts(table)
    assert (facts.first_motile_d, facts.peak_M_per_mL, facts.peak_d) == (3.0, 7.0, 4.0)
    assert (facts.last_dose_d, facts.azoospermic_again_d, facts.t_end_d) == (2.0, 6.0, 10.0)


def test_summary_never_motile() -> None:
    table = _table([False] * 5, [0, 1e-4, 2e-4, 1e-4, 0], doses=[0.0])
    assert summarise(table) == (
        "No motile sperm at any time in the 4 days simulated; peak 0.0002 million sperm/mL in the ejaculate on day 2."
    )


def test_summary_still_present_at_end_and_present_from_start() -> None:
    table = _table([True] * 6, [40, 41, 45, 44, 43, 42], doses=[0.0, 1.0])
    assert summarise(table) == (
        "Motile sperm are present from the start (day 0); peak 45 million sperm/mL in the ejaculate on day 2; "
        "still present at the end of the run, 4 days after stopping (last dose day 1)."
    )


def test_summary_without_drug_and_with_treatment_to_the_end() -> None:
    untreated = _table([False, True, True, False], [0, 2, 3, 0])
    assert summarise(untreated) == (
        "Motile sperm first appear on day 1; peak 3 million sperm/mL in the ejaculate on day 2; "
        "back to azoospermia on day 3."
    )
    to_end = _table([False, True, True, True], [0, 2, 3, 4], doses=[0.0, 1.0, 2.0, 3.0])
    assert summarise(to_end).endswith("the treatment lasts to the end of the run (day 3).")


def test_summary_sperm_gone_before_the_last_dose() -> None:
    table = _table([False, True, False, False, False], [0, 2, 0, 0, 0], doses=[0.0, 1.0, 2.0, 3.0])
    assert summarise(table).endswith("back to azoospermia on day 2, before the last dose (day 3).")


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


def test_default_app_runs_the_treated_and_untreated_preset(app: Explorer) -> None:
    assert app.state.error == ""
    expected = simulate("maturation_arrest", REGIMEN, t_end_d=365.0)
    untreated = simulate("maturation_arrest", None, t_end_d=365.0)
    assert app.state.whatif is not None and app.state.baseline is not None
    _same(app.state.whatif, expected)
    _same(app.state.baseline, untreated)
    assert summarise(expected) in app.summary.object
    assert summarise(untreated) in app.summary.object
    # brief: the isotretinoin-responsive maturation arrest is azoospermic untreated and makes sperm treated
    assert "No motile sperm at any time" in summarise(untreated)
    assert "Motile sperm first appear on day" in summarise(expected)


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
    expected = simulate("maturation_arrest", REGIMEN, t_end_d=365.0, overrides={"cyp26_expr": 10.0})
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
    app.phenotype.value = "hypospermatogenesis"
    # models/phenotypes.toml: stem_niche scaled by 0.05, aldh1a_expr = 0.5
    assert app.parameters["stem_niche"].value == pytest.approx(0.05 * defaults["stem_niche"], rel=1e-12)
    assert app.parameters["aldh1a_expr"].value == 0.5
    assert app.parameters["stem_niche"].start <= app.parameters["stem_niche"].value
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
    _same(app.state.baseline, simulate("maturation_arrest", REGIMEN, t_end_d=365.0))
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
        assert set(data) == {"description", "phenotype", "regimens", "t_end_d", "output_step_d", "overrides"}
        assert data["phenotype"] == "maturation_arrest"
        assert data["regimens"] == [REGIMEN]
        assert data["overrides"] == {"cyp26_expr": 10.0}
        assert (data["t_end_d"], data["output_step_d"]) == (365.0, 1.0)
        again = simulate(
            data["phenotype"],
            None if data["regimens"][0] == "none" else data["regimens"][0],
            t_end_d=data["t_end_d"],
            output_step_d=data["output_step_d"],
            overrides=data["overrides"],
        )
        _same(again, app.state.whatif)
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
        assert main(["run", str(scenario), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
        ran = pd.read_csv(tmp_path / "out" / "results.csv").drop(columns="run")
        shown = pd.read_csv(io.StringIO(app.state.csv_text()))
        pd.testing.assert_frame_equal(ran, shown)
        assert shown[C.DOSES_GIVEN].iloc[-1] == 360
    finally:
        app.dose_mg.value = 20.0
        app.parameters["cyp26_expr"].value = 5.0


def _failing_simulate(phenotype: str, regimen: str | None, *, overrides: Mapping[str, float] | None, **kw: float):  # type: ignore[no-untyped-def]
    if overrides and overrides.get("cyp26_expr", 0) > 9:
        raise SimulationFailedError("CVODE error at t = 1234 h: CV_CONV_FAILURE (forced by the test)")
    if overrides and overrides.get("cyp26_expr", 0) > 8:
        raise ZeroDivisionError("a bug")
    return simulate(phenotype, regimen, overrides=overrides, **kw)


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
    def run(phenotype: str, regimen: str | None, *, overrides: Mapping[str, float] | None, **kw: float):  # type: ignore[no-untyped-def]
        calls.append((phenotype, regimen, overrides))
        return simulate(phenotype, regimen, overrides=overrides, **kw)

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
    assert state.refresh() and state.error == ""
    expected = simulate("maturation_arrest", REGIMEN, t_end_d=365.0)
    untreated = simulate("maturation_arrest", None, t_end_d=365.0)
    assert state.whatif is not None and state.baseline is not None
    assert list(state.whatif.columns) == list(expected.columns)
    _same(state.whatif, expected)
    _same(state.baseline, untreated)
    assert state.scenarios == (state.scenario(), state.baseline_scenario(state.scenario()))
    assert summarise(expected) in state.summary_text() and summarise(untreated) in state.summary_text()
    assert calls == [("maturation_arrest", REGIMEN, None), ("maturation_arrest", None, None)]
    assert state.refresh() and state.run(state.scenario()) is state.whatif
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
