"""The explorer judged by a student who has never seen the model (issue 17).

An orientation with suggested experiments that set the controls; plain names in menus and text (ids in
tooltips); "none detectable" below the detection limit; fixed, meaningful axes with the detection limit
always on the ejaculate panel; a (?) on every panel and legends outside the curves; plasma drug drawn from
an hourly grid as the day's mean and range instead of the daily trough. The last test drives the page in
headless Chromium and saves screenshots (RA_MODEL_STUDENT_SCREENSHOTS=DIR keeps them).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ra_model.app.explorer import Explorer
from ra_model.app.figures import EJACULATE_LINES, SHARE_PANELS, Figures, log_floor
from ra_model.app.guide import EXPERIMENTS, PANEL_HELP, PANEL_TITLES, phenotype_name, regimen_words
from ra_model.app.server import RunningServer, serve
from ra_model.app.state import (
    DEFAULT_N_CLASSES,
    PLASMA_DAY_MAX,
    PLASMA_DAY_MEAN,
    PLASMA_DAY_MIN,
    WITHIN_DAY_STEP_D,
    ExplorerState,
    RunCache,
    Scenario,
    concentration_words,
    default_simulate,
    detection_limit,
    plasma_by_day,
    run_scenario,
    summarise,
)
from ra_model.engines.simulate import default_engine, simulate
from ra_model.model import columns as C
from ra_model.model import semen
from ra_model.model.phenotypes import load_phenotypes
from ra_model.model.source import read_parameter_table

REGIMEN = "20 mg bid for 180 d"
#: What a model id looks like: lower-case words joined by underscores (``maturation_arrest``, ``stem_niche``).
SNAKE_ID = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b")
#: Other code names a student should not read: file paths and the science brief's section numbers.
CODE_WORDS = re.compile(r"models/|\.toml|\.csv|\bbrief \d")
LIMITS = {
    semen.LIMIT_ATTRS["pellet_detection_limit"]: 1e-3,
    "motile_detection_limit_M_per_mL": 1e-3,
    semen.LIMIT_ATTRS["fresh_detection_limit"]: 0.1,
    semen.LIMIT_ATTRS["oligozoospermia_limit"]: 15.0,
}


def _table(concentration: list[float], *, limits: Mapping[str, float] = LIMITS, step_d: float = 1.0) -> pd.DataFrame:
    """A hand-made results table: sperm concentrations, the other panels flat, the limits in attrs."""
    n = len(concentration)
    c = np.asarray(concentration, dtype=float)
    limit = limits.get("motile_detection_limit_M_per_mL", 0.0)
    frame = pd.DataFrame(
        {
            C.TIME_D: np.arange(n) * step_d,
            C.PLASMA_ISOTRETINOIN: np.full(n, 1.6),
            C.TESTIS_ATRA: np.full(n, 7.0),
            C.STRA8: np.full(n, 1.0),
            C.BTB_INTEGRITY: 0.9 + 0.003 * np.sin(np.arange(n)),  # a 0.3% wiggle
            C.SPERMIATION_EFFICIENCY: np.full(n, 0.9),
            C.EJACULATE_CONCENTRATION: c,
            C.MOTILE_SPERM_PRESENT: 0.5 * c >= limit if limit else 0.5 * c > 0,
            C.SEMEN_CATEGORY: semen.semen_category(
                c,
                pellet=limits.get(semen.LIMIT_ATTRS["pellet_detection_limit"], 1e-3),
                fresh=limits.get(semen.LIMIT_ATTRS["fresh_detection_limit"], 0.1),
                oligo=limits.get(semen.LIMIT_ATTRS["oligozoospermia_limit"], 15.0),
            ),
            C.TUBULES_WITH_SPERM: np.full(n, 0.5),
            C.RETRIEVAL_CONVENTIONAL_TESE: np.full(n, 0.5),
            C.RETRIEVAL_MICRO_TESE: np.full(n, 0.5),
        }
    )
    frame.attrs.update(limits)
    frame.attrs["dose_times_d"] = ()
    return frame


class _Fake:
    """A fake simulate function: a flat untreated table at the step asked for; records each call's step."""

    def __init__(self) -> None:
        self.steps: list[tuple[str | None, float]] = []

    def __call__(self, phenotype: str, regimen: str | None, *, t_end_d: float, output_step_d: float, **kw: Any):  # type: ignore[no-untyped-def]
        self.steps.append((regimen, output_step_d))
        n = int(round(t_end_d / output_step_d)) + 1
        table = _table([0.0] * n, step_d=output_step_d)
        # a plasma level that swings within each day: 100 + 50 sin(2 pi t)
        table[C.PLASMA_ISOTRETINOIN] = 100.0 + 50.0 * np.sin(2 * np.pi * table[C.TIME_D].to_numpy())
        table.attrs["phenotype"] = phenotype
        return table


@pytest.fixture(scope="module")
def sco_runs() -> dict[str, pd.DataFrame]:
    """Complete Sertoli-cell-only (no germ cells), one class: the whole model, treated and untreated."""
    state = ExplorerState(cache=RunCache(4), phenotype="sertoli_cell_only_complete", n_classes=1, t_end_d=180.0)
    assert state.refresh(), state.error
    assert state.whatif is not None and state.baseline is not None
    return {"treated": state.whatif, "untreated": state.baseline}


# --------------------------------------------------------------------------- none detectable
def test_below_the_detection_limit_the_summary_says_none_detectable_not_a_tiny_number() -> None:
    text = summarise(_table([0.0, 2e-10, 5e-10, 1e-10]))  # the "peak 2e-10 million sperm/mL"
    assert "none detectable" in text and "e-10" not in text and "e-1" not in text
    assert "1,000 sperm/mL" in text  # the limit in the table's attrs (1e-3 million/mL), in words
    # just above the limit it is detectable: the peak and its category are named instead
    above = summarise(_table([0.0, 2e-3, 5e-4]))
    assert "none detectable" not in above
    assert "peak 2,000 sperm/mL on day 1 (cryptozoospermia: found only by centrifuging the sample)" in above
    # the limit comes from the table, not from the code: the same numbers under a lower limit are detectable
    lower = {**LIMITS, semen.LIMIT_ATTRS["pellet_detection_limit"]: 1e-10, "motile_detection_limit_M_per_mL": 1e-10}
    assert "none detectable" not in summarise(_table([0.0, 2e-10, 5e-10, 1e-10], limits=lower))
    # a table without limits: only zero is none detectable
    bare = _table([0.0, 0.0], limits={})
    assert "none detectable" in summarise(bare)


def test_concentrations_are_written_in_words_a_reader_knows() -> None:
    assert concentration_words(7.53) == "7.53 million sperm/mL"
    assert concentration_words(0.0123) == "12,300 sperm/mL"
    assert concentration_words(1.49e-4) == "149 sperm/mL"
    assert concentration_words(1.55e-5) == "15.5 sperm/mL"
    assert concentration_words(1.0 / 3.0 * 1e-6) == "0.33 sperm/mL"


def test_sertoli_cell_only_without_germ_cells_has_none_detectable(sco_runs: dict[str, pd.DataFrame]) -> None:
    # the limit the summary uses is the model's derived one: one sperm in the searched pellet of the ejaculate
    derived = semen.detection_limits(default_engine(1).defaults)["pellet_detection_limit"]
    for table in sco_runs.values():
        assert detection_limit(table) == pytest.approx(derived, rel=1e-9)
        assert table[C.EJACULATE_CONCENTRATION].max() < derived
        assert "none detectable" in summarise(table)


# --------------------------------------------------------------------------- plain names, ids in tooltips
def _visible_texts(app: Explorer) -> list[str]:
    """Every text the page shows without hovering: menus, labels, buttons, Markdown."""
    texts = [str(app.orientation.object), str(app.look_for.object), str(app.summary.object), str(app.caption.object)]
    texts += [str(app.phenotype_note.object), str(app.foci_note.object), str(app.status.object)]
    texts += list(app.phenotype.options)  # the menu's labels
    texts += [str(w.label) for w in (app.phenotype, app.horizon, app.focus_classes, app.drug, app.fed)]
    texts += [str(w.label) for w in app.parameters.values()]
    texts += [str(b.label) for b in app.experiments.values()]
    texts += list(PANEL_TITLES.values())
    return texts


def test_menus_and_text_use_plain_names_and_keep_the_ids_in_tooltips() -> None:
    app = Explorer(simulate_fn=_Fake(), cache=RunCache(8))
    presets = load_phenotypes()
    assert set(app.phenotype.options.values()) == set(presets)  # labels -> ids
    shown: list[str] = []
    for name in presets:
        app.phenotype.value = name
        assert app.state.error == ""
        shown += _visible_texts(app)
        assert name in app.phenotype.description  # the id stays in the menu's tooltip
    app.parameters["stem_niche"].value = app.parameters["stem_niche"].end  # an override reaches the labels
    shown += _visible_texts(app)
    for text in shown:
        assert not SNAKE_ID.search(text), f"a model id in the page: {SNAKE_ID.search(text)} in {text!r}"
        assert not CODE_WORDS.search(text), f"a code name in the page: {text!r}"
    for pid, slider in app.parameters.items():
        assert pid in slider.tip  # ...and each parameter's id is in its slider's tooltip
    # the plain names come from the presets' own descriptions unless a short name is set
    hypo = presets["hypospermatogenesis"]
    assert phenotype_name("hypospermatogenesis", hypo) == hypo.description.split(":")[0] == "Hypospermatogenesis"
    assert regimen_words("0.5 mg/kg/day od for 90 d from day 14, 80 kg, fed") == (
        "0.5 mg/kg a day (80 kg) once daily for 90 days from day 14, with food"
    )
    assert regimen_words(REGIMEN) == "20 mg twice daily for 180 days"


# --------------------------------------------------------------------------- orientation and experiments
def test_the_orientation_says_what_noa_is_and_its_experiments_set_the_controls() -> None:
    app = Explorer(simulate_fn=_Fake(), cache=RunCache(16))
    text = app.orientation.object
    assert "Non-obstructive azoospermia (NOA)" in text and "isotretinoin" in text.lower()
    assert 2 <= len(app.experiments) <= 3 and set(app.experiments) == {e.key for e in EXPERIMENTS}
    table = read_parameter_table()
    for experiment in EXPERIMENTS:
        # a student has moved things first: every control the experiment names must come back
        app.phenotype.value = "healthy"
        app.parameters["cyp26_expr"].value = 7.0
        app.drug.value = False
        app.baseline_choice.value = app.baseline_choice.options[1]
        app.experiments[experiment.key].clicks += 1  # as a click in the page does
        assert app.state.error == ""
        scenario = app.state.scenario()
        assert app.phenotype.value == scenario.phenotype == experiment.phenotype
        assert scenario.regimen == experiment.regimen and app.drug.value == (experiment.regimen is not None)
        assert scenario.overrides == {}  # the sliders sit at the preset's own values
        preset = load_phenotypes()[experiment.phenotype].resolve(default_engine(1).defaults)
        assert app.parameters["cyp26_expr"].value == pytest.approx(preset.get("cyp26_expr", table["cyp26_expr"].value))
        assert app.baseline_choice.value == app.baseline_choice.options[0]  # untreated
        assert app.state.baseline_scenario(scenario).regimen is None
        assert experiment.look_for in app.look_for.object
        assert app.state.scenarios == (scenario, app.state.baseline_scenario(scenario))  # and it ran


# --------------------------------------------------------------------------- axes, help, legends
def test_axes_have_fixed_meaningful_ranges_and_the_detection_limit_is_always_on_the_ejaculate_panel() -> None:
    figures = Figures()
    for peaks in ([0.0, 0.0, 0.0], [0.0, 2e-10, 1e-10], [0.0, 50.0, 80.0], [0.0, 500.0, 900.0]):
        table = _table(peaks)
        figures.draw(table, _table([0.0, 0.0, 0.0]), plasma=(plasma_by_day(table), plasma_by_day(table)))
        for column in SHARE_PANELS:  # shares: 0 to 1 whatever they do (the BTB's 0.3% wiggle stays small)
            y = figures.panels[column].y_range
            assert y.start <= 0.0 and y.end >= 1.0 and y.end - y.start <= 1.05
        for column, fig in figures.panels.items():
            if column != C.EJACULATE_CONCENTRATION and column not in SHARE_PANELS:
                assert fig.y_range.start == 0.0 and fig.y_range.end > 0.0  # linear panels start at zero
        y = figures.panels[C.EJACULATE_CONCENTRATION].y_range
        limit = table.attrs[semen.LIMIT_ATTRS["pellet_detection_limit"]]
        assert y.start < log_floor(table) < limit < y.end  # zero is drawn below the limit, inside the panel
        assert y.end > max(peaks)
        for key, line in figures.limit_lines.items():
            assert line.visible and line.location == table.attrs[key]
    assert set(EJACULATE_LINES) == set(figures.limit_lines)


def test_every_panel_has_help_and_its_legend_sits_outside_the_curves() -> None:
    app = Explorer(simulate_fn=_Fake(), cache=RunCache(4))
    assert set(app.panel_help) == {*app.figures.panels, "foci"} == set(PANEL_HELP) == set(PANEL_TITLES)
    for key, icon in app.panel_help.items():
        assert icon.value.content == PANEL_HELP[key] and len(PANEL_HELP[key]) > 80
    assert "meiosis" in PANEL_HELP[C.STRA8]
    assert "barrier" in PANEL_HELP[C.BTB_INTEGRITY] and "Sertoli" in PANEL_HELP[C.BTB_INTEGRITY]
    assert "release" in PANEL_HELP[C.SPERMIATION_EFFICIENCY]
    for fig in (*app.figures.panels.values(), app.figures.foci):
        inside = [r for r in fig.center if type(r).__name__ == "Legend"]
        outside = [r for r in (*fig.below, *fig.right, *fig.above, *fig.left) if type(r).__name__ == "Legend"]
        assert not inside and len(outside) == 1


# --------------------------------------------------------------------------- plasma drug within the day
def test_run_scenario_simulates_treated_runs_hourly_and_keeps_daily_rows() -> None:
    fake = _Fake()
    treated = run_scenario(Scenario(phenotype="healthy", regimen=REGIMEN, t_end_d=10.0), fake)
    untreated = run_scenario(Scenario(phenotype="healthy", regimen=None, t_end_d=10.0), fake)
    assert fake.steps == [(REGIMEN, WITHIN_DAY_STEP_D), (None, 1.0)]
    for run in (treated, untreated):
        np.testing.assert_array_equal(run.table[C.TIME_D].to_numpy(), np.arange(11.0))
        assert run.table.attrs["phenotype"] == "healthy"
    # the fake's plasma swings 100 +- 50 within every day: the hourly rows see it, the daily rows cannot
    day = treated.plasma_day.iloc[:10]
    np.testing.assert_allclose(day[PLASMA_DAY_MEAN], 100.0, atol=1e-9)
    np.testing.assert_allclose(day[PLASMA_DAY_MAX], 150.0, atol=1e-9)
    np.testing.assert_allclose(day[PLASMA_DAY_MIN], 100.0 - 50.0 * np.sin(2 * np.pi * 6 / 24), atol=1e-9)
    np.testing.assert_allclose(treated.table[C.PLASMA_ISOTRETINOIN], 100.0, atol=1e-9)  # the daily sample
    assert len(untreated.plasma_day) == 11  # a daily table: one sample a day, so mean = min = max


def test_the_plasma_panel_shows_the_days_mean_and_swing_not_the_trough() -> None:
    state = ExplorerState(cache=RunCache(4), phenotype="healthy", n_classes=1, t_end_d=180.0)
    assert state.refresh(), state.error
    assert state.whatif is not None and state.whatif_plasma is not None and state.baseline_plasma is not None
    figures = Figures()
    assert state.baseline is not None
    figures.draw(state.whatif, state.baseline, plasma=(state.whatif_plasma, state.baseline_plasma))
    drawn = pd.DataFrame(figures.whatif_plasma_source.data)
    # the reference: the same run every 15 minutes, day 100 (steady state of 20 mg twice daily)
    fine = simulate("healthy", REGIMEN, t_end_d=101.0, output_step_d=1.0 / 96.0)
    day = fine[(fine[C.TIME_D] >= 100.0) & (fine[C.TIME_D] < 101.0)][C.PLASMA_ISOTRETINOIN]
    row = drawn.iloc[100]
    assert 100.0 < row[C.TIME_D] < 101.0
    assert row[PLASMA_DAY_MEAN] == pytest.approx(day.mean(), rel=0.01)
    assert row[PLASMA_DAY_MAX] == pytest.approx(day.max(), rel=0.01)
    assert row[PLASMA_DAY_MIN] == pytest.approx(day.min(), rel=1e-4)  # dosing is on the hour: the trough is seen
    # the daily row is the trough at dosing time: drawing it would show a level well below the day's mean
    trough = float(state.whatif.loc[state.whatif[C.TIME_D] == 100.0, C.PLASMA_ISOTRETINOIN].iloc[0])
    assert trough == pytest.approx(day.min(), rel=1e-4) and row[PLASMA_DAY_MEAN] > 1.3 * trough
    assert figures.panels[C.PLASMA_ISOTRETINOIN].y_range.end > row[PLASMA_DAY_MAX]


# --------------------------------------------------------------------------- in the browser
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000
# every text in the page, shadow roots included (Panel draws its widgets in them), and the menus' options
READ_TEXT = """() => {
    const out = [];
    const walk = node => {
        if (node.shadowRoot) walk(node.shadowRoot);
        for (const child of node.childNodes) {
            if (child.nodeType === Node.TEXT_NODE) out.push(child.textContent);
            else if (child.nodeType === Node.ELEMENT_NODE && !['SCRIPT', 'STYLE'].includes(child.tagName)) walk(child);
        }
    };
    walk(document.body);
    return out.join(' ');
}"""


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = serve(host="127.0.0.1", app_factory=lambda: Explorer().view())
    yield running
    running.stop()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (.ci/run installs it)")
def test_a_student_clicks_a_suggested_experiment_in_chromium(server: RunningServer, tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    expect = playwright_api.expect
    experiment = next(e for e in EXPERIMENTS if e.phenotype == "sertoli_cell_only_complete")
    whatif = Scenario(phenotype=experiment.phenotype, regimen=experiment.regimen, n_classes=DEFAULT_N_CLASSES)
    expected = run_scenario(whatif, default_simulate).table  # what the page runs for it
    keep = os.environ.get("RA_MODEL_STUDENT_SCREENSHOTS")
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1500, "height": 1100},
        )
        try:
            page = context.new_page()
            page.goto(server.url)
            summary = page.locator(".ra-summary p").first
            summary.wait_for(timeout=WAIT_MS)
            expect(page.locator(".ra-orientation")).to_contain_text("Non-obstructive azoospermia", timeout=WAIT_MS)
            page.screenshot(path=str(tmp_path / "student_start.png"), full_page=True)
            words = page.evaluate(READ_TEXT)
            assert "Non-obstructive azoospermia" in words and "Try first" in words
            for found in (SNAKE_ID.search(words), CODE_WORDS.search(words)):
                assert found is None, f"a code name in the page: {found}"

            # the suggested experiment sets the controls and runs
            page.locator(f".ra-try-{experiment.key} button").click()
            expect(summary).to_contain_text("Sertoli-cell-only, no germ cells at all", timeout=WAIT_MS)
            expect(summary).to_contain_text(summarise(expected), timeout=WAIT_MS)
            expect(summary).to_contain_text("none detectable", timeout=WAIT_MS)
            menu = page.locator(".ra-phenotype select")
            assert menu.evaluate("s => s.options[s.selectedIndex].text") == "Sertoli-cell-only, no germ cells at all"
            dose = page.locator(".ra-dose-mg .noUi-handle").first
            assert float(dose.get_attribute("aria-valuenow") or "nan") == 20.0
            expect(page.locator(".ra-look-for")).to_contain_text(experiment.look_for, timeout=WAIT_MS)

            # the (?) beside a panel explains it
            page.locator(f".ra-help-{C.STRA8}").first.hover()
            assert "the switch for spermatogonia" in PANEL_HELP[C.STRA8]
            expect(page.get_by_text("the switch for spermatogonia")).to_be_visible(timeout=WAIT_MS)
            page.screenshot(path=str(tmp_path / "student_sco_help.png"), full_page=True)
        finally:
            context.close()
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for shot in tmp_path.glob("student_*.png"):
            shutil.copyfile(shot, Path(keep) / shot.name)
