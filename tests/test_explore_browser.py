"""End to end: the explorer served on 127.0.0.1, driven in headless Chromium through Playwright.

Set RA_MODEL_EXPLORE_SCREENSHOT=/some/file.png to keep a copy of the final screenshot.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ra_model.app.explorer import Explorer
from ra_model.app.figures import log_floor
from ra_model.app.guide import phenotype_name, regimen_words
from ra_model.app.server import RunningServer, serve
from ra_model.app.state import (
    DEFAULT_N_CLASSES,
    PARAMETER_LABELS,
    Scenario,
    default_simulate,
    run_scenario,
    summarise,
)
from ra_model.model import columns as C
from ra_model.model.phenotypes import load_phenotypes
from ra_model.model.source import read_parameter_table

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium is not installed (.ci/run installs it: apt-get install chromium)"
)
# flags this machine needs: no sandbox as root, and no background connections to a closed network
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
REGIMEN = "20 mg bid for 180 d"
WAIT_MS = 30_000


def _shown(phenotype: str, regimen: str | None, overrides: dict[str, float] | None = None) -> pd.DataFrame:
    """What the page runs for a scenario: the explorer's own function at its default class count (8: split path)."""
    scenario = Scenario(phenotype=phenotype, regimen=regimen, overrides=overrides or {}, n_classes=DEFAULT_N_CLASSES)
    return run_scenario(scenario, default_simulate).table


# what the page's first what-if line source holds, read from the Bokeh document in the browser
READ_PLOT = """name => {
    const doc = Bokeh.documents[0];
    const source = doc.get_model_by_name(name);
    return Array.from(source.data['ejaculate_concentration_M_per_mL']);
}"""


@pytest.fixture(scope="module")
def expected() -> dict[str, pd.DataFrame]:
    """The runs the page should show, computed here before the server starts."""
    return {
        "start": _shown("maturation_arrest", REGIMEN),
        "healthy": _shown("healthy", REGIMEN),
        "healthy_untreated": _shown("healthy", None),
        "healthy_cyp26_max": _shown("healthy", REGIMEN, overrides={"cyp26_expr": 10.0}),
    }


@pytest.fixture(scope="module")
def server(expected: dict[str, pd.DataFrame]) -> Iterator[tuple[RunningServer, list[Explorer]]]:
    apps: list[Explorer] = []

    def factory():  # type: ignore[no-untyped-def]
        app = Explorer()
        apps.append(app)
        return app.view()

    running = serve(host="127.0.0.1", app_factory=factory)
    yield running, apps
    running.stop()


def _plotted(table: pd.DataFrame) -> np.ndarray:
    return np.maximum(table[C.EJACULATE_CONCENTRATION].to_numpy(), log_floor(table))


def test_change_phenotype_and_slider_in_chromium(
    server: tuple[RunningServer, list[Explorer]], expected: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    running, apps = server
    assert running.url.startswith("http://127.0.0.1:")
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1500, "height": 1100},
            accept_downloads=True,
        )
        try:
            page = context.new_page()
            page.goto(running.url)
            whatif_line = page.locator(".ra-summary p").first
            whatif_line.wait_for(timeout=WAIT_MS)

            # 1. first view: the preset's treated run, drawn and summarised
            start = expected["start"]
            playwright_api.expect(whatif_line).to_contain_text(summarise(start), timeout=WAIT_MS)
            np.testing.assert_allclose(page.evaluate(READ_PLOT, "whatif_source"), _plotted(start), rtol=1e-9)
            first_plot = np.array(page.evaluate(READ_PLOT, "whatif_source"))

            # 2. change the phenotype in the drop-down (it lists the presets by their plain names)
            healthy_name = phenotype_name("healthy", load_phenotypes()["healthy"])
            page.locator(".ra-phenotype select").select_option(label=healthy_name)
            healthy = expected["healthy"]
            what = f"What-if ({healthy_name}; {regimen_words(REGIMEN)}"
            playwright_api.expect(whatif_line).to_contain_text(what, timeout=WAIT_MS)
            playwright_api.expect(whatif_line).to_contain_text(summarise(healthy), timeout=WAIT_MS)
            baseline_line = page.locator(".ra-summary p").nth(1)
            playwright_api.expect(baseline_line).to_contain_text(
                summarise(expected["healthy_untreated"]), timeout=WAIT_MS
            )
            healthy_plot = np.array(page.evaluate(READ_PLOT, "whatif_source"))
            np.testing.assert_allclose(healthy_plot, _plotted(healthy), rtol=1e-9)
            assert not np.allclose(healthy_plot, first_plot)
            np.testing.assert_allclose(
                page.evaluate(READ_PLOT, "baseline_source"), _plotted(expected["healthy_untreated"]), rtol=1e-9
            )

            # 3. move the CYP26 slider to its upper end with the keyboard (as a user can)
            handle = page.locator(".ra-param-cyp26_expr .noUi-handle").first
            assert handle.get_attribute("aria-valuemax") == "10.0"  # models/parameters.csv upper bound
            handle.focus()
            handle.press("End")
            changed = expected["healthy_cyp26_max"]
            playwright_api.expect(whatif_line).to_contain_text(f"{PARAMETER_LABELS['cyp26_expr']} 10", timeout=WAIT_MS)
            playwright_api.expect(whatif_line).to_contain_text(summarise(changed), timeout=WAIT_MS)
            cyp_plot = np.array(page.evaluate(READ_PLOT, "whatif_source"))
            np.testing.assert_allclose(cyp_plot, _plotted(changed), rtol=1e-9)
            assert not np.allclose(cyp_plot, healthy_plot)
            handle.press("ArrowRight")  # already at the upper end: the value cannot go past it
            assert handle.get_attribute("aria-valuenow") == "10.0"

            # 4. hovering the (i) beside the slider shows the parameter table's description and source
            row = read_parameter_table()["cyp26_expr"]
            page.locator(".ra-param-cyp26_expr-tip").first.hover()
            playwright_api.expect(page.get_by_text(f"Source: {row.source}")).to_be_visible(timeout=WAIT_MS)
            page.mouse.move(0, 0)

            # 5. the scenario download is the file ra-model run reads, for what the page shows
            with page.expect_download(timeout=WAIT_MS) as info:
                page.locator(".ra-toml button").click()
            downloaded = Path(info.value.path()).read_text(encoding="utf-8")
            assert apps, "no session was created"
            assert downloaded == apps[-1].state.scenario_toml()
            assert 'phenotype = "healthy"' in downloaded and "cyp26_expr = 10.0" in downloaded
            assert f"classes = {DEFAULT_N_CLASSES}" in downloaded

            shot = tmp_path / "explore.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            keep = os.environ.get("RA_MODEL_EXPLORE_SCREENSHOT")
            if keep:
                Path(keep).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, keep)
        finally:
            context.close()


def test_a_token_server_works_in_chromium_with_the_printed_address_only(tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    running = serve(host="127.0.0.1", token="browser-token", app_factory=lambda: Explorer().view())
    try:
        assert running.url.endswith("/?token=browser-token")
        with playwright_api.sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = context.new_page()
                refused = page.goto(running.url.split("?")[0])
                assert refused is not None and refused.status == 403
                served = page.goto(running.url)
                assert served is not None and served.status == 200
                # the page's websocket is let in too (the token travels with it): the first result arrives
                summary = page.locator(".ra-summary p").first
                expected = summarise(_shown("maturation_arrest", REGIMEN))
                playwright_api.expect(summary).to_contain_text(expected, timeout=WAIT_MS)
                # and the cookie the address set lets this browser back in without the token
                again = page.goto(running.url.split("?")[0])
                assert again is not None and again.status == 200
                playwright_api.expect(page.locator(".ra-summary p").first).to_contain_text(expected, timeout=WAIT_MS)
            finally:
                context.close()
    finally:
        running.stop()
