"""The explorer's foci (issue 15) without a browser: the foci panel's data, the focus-class setting, its cache key."""

from __future__ import annotations

import math
import threading
import tomllib

import numpy as np
import pandas as pd
import pytest

from ra_model.app.explorer import Explorer
from ra_model.app.figures import FOCI_LINES, FOCI_TITLE, Figures
from ra_model.app.state import (
    CLASS_COUNTS,
    DEFAULT_N_CLASSES,
    FOCI_COLUMNS,
    ExplorerState,
    RunCache,
    Scenario,
    foci_table,
)
from ra_model.engines.simulate import default_engine
from ra_model.errors import InvalidValueError
from ra_model.model import columns as C
from ra_model.model.source import read_parameter_table

REGIMEN = "20 mg bid for 180 d"
N = 8


class _Recording:
    """A fake simulate function: records each call's phenotype, regimen and n_classes; never runs the model."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, int]] = []
        self.lock = threading.Lock()

    def __call__(self, phenotype: str, regimen: str | None, *, n_classes: int, **kw: object) -> pd.DataFrame:
        with self.lock:
            self.calls.append((phenotype, regimen, n_classes))
        table = pd.DataFrame({C.TIME_D: [0.0, 1.0], C.MOTILE_SPERM_PRESENT: [False, False]})
        table[C.EJACULATE_CONCENTRATION] = 0.0
        for column in FOCI_COLUMNS:
            table[column] = 0.5
        return table


def _foci_values(table: pd.DataFrame) -> np.ndarray:
    return foci_table(table)[list(FOCI_COLUMNS)].to_numpy()


# --------------------------------------------------------------------------- the panel's data
def test_complete_sertoli_cell_only_has_no_foci_and_nothing_to_retrieve() -> None:
    state = ExplorerState(cache=RunCache(4), phenotype="sertoli_cell_only_complete")
    assert state.n_classes == DEFAULT_N_CLASSES and state.drug
    assert state.refresh(), state.error
    assert state.whatif is not None and state.baseline is not None
    for table in (state.whatif, state.baseline):  # treated and untreated: no germ cells, so isotretinoin cannot help
        foci = foci_table(table)
        assert list(foci.columns) == [C.TIME_D, *FOCI_COLUMNS]
        assert len(foci) == len(table) == 366
        np.testing.assert_array_equal(foci[list(FOCI_COLUMNS)].to_numpy(), 0.0)
    # the page's foci panel draws exactly these numbers
    figures = Figures()
    assert state.whatif_plasma is not None and state.baseline_plasma is not None
    figures.draw(state.whatif, state.baseline, plasma=(state.whatif_plasma, state.baseline_plasma))
    for column in FOCI_COLUMNS:
        np.testing.assert_array_equal(figures.whatif_source.data[column], 0.0)
        np.testing.assert_array_equal(figures.baseline_source.data[column], 0.0)
    np.testing.assert_array_equal(figures.whatif_source.data[C.TIME_D], state.whatif[C.TIME_D].to_numpy())


@pytest.mark.parametrize("n_classes", [1, N])
def test_healthy_tubules_with_sperm_is_the_focus_share_times_a_certain_find(n_classes: int) -> None:
    table = read_parameter_table()
    focus_share = float(table["focus_share"].value)
    # a focus sample at the healthy density holds sample_spermatids mature spermatids on average (Poisson):
    # it shows none with probability exp(-sample_spermatids), so it shows sperm with certainty to machine precision
    found = 1.0 - math.exp(-float(table["sample_spermatids"].value))
    assert found == 1.0
    state = ExplorerState(cache=RunCache(4), phenotype="healthy", n_classes=n_classes)
    state.drug = False
    assert state.refresh(), state.error
    assert state.whatif is not None and state.baseline is not None
    assert state.whatif.attrs["model_hash"] == default_engine(n_classes).sbml_hash
    foci = foci_table(state.whatif)
    np.testing.assert_allclose(foci[C.TUBULES_WITH_SPERM], focus_share * found, rtol=1e-12, atol=0)
    # a conventional TESE misses only if all its random biopsies come from Sertoli-cell-only tubules
    tese = float(table["tese_samples"].value)
    np.testing.assert_allclose(foci[C.RETRIEVAL_CONVENTIONAL_TESE], 1 - (1 - focus_share) ** tese, rtol=1e-9)
    assert np.all(foci[C.RETRIEVAL_MICRO_TESE] >= foci[C.RETRIEVAL_CONVENTIONAL_TESE])


def test_treated_maturation_arrest_gains_tubules_with_sperm() -> None:
    """The panel shows the foci respond: more tubule regions hold sperm on isotretinoin than untreated."""
    state = ExplorerState(cache=RunCache(4), phenotype="maturation_arrest")
    assert state.refresh(), state.error
    assert state.whatif is not None and state.baseline is not None
    treated, untreated = foci_table(state.whatif), foci_table(state.baseline)
    assert treated[C.TUBULES_WITH_SPERM].max() > untreated[C.TUBULES_WITH_SPERM].max()
    for foci in (treated, untreated):
        values = foci[list(FOCI_COLUMNS)].to_numpy()
        assert np.all((values >= 0) & (values <= 1))


def test_foci_table_of_a_table_without_the_readouts_is_nan() -> None:
    table = pd.DataFrame({C.TIME_D: [0.0, 1.0, 2.0]})
    foci = foci_table(table)
    assert list(foci.columns) == [C.TIME_D, *FOCI_COLUMNS]
    assert foci[list(FOCI_COLUMNS)].isna().all().all()
    with pytest.raises(InvalidValueError, match="time_d"):
        foci_table(pd.DataFrame({C.TUBULES_WITH_SPERM: [0.0]}))


# --------------------------------------------------------------------------- the focus-class setting
def test_the_class_count_is_part_of_the_scenario_and_its_cache_key() -> None:
    fake = _Recording()
    cache = RunCache(8)
    state = ExplorerState(simulate_fn=fake, cache=cache)
    assert state.n_classes == DEFAULT_N_CLASSES == N  # the default: the mosaic presets' foci show
    assert state.scenario().n_classes == N
    state.n_classes = 1
    one = state.scenario()
    state.n_classes = N
    eight = state.scenario()
    assert (one.n_classes, eight.n_classes) == (1, N)
    assert one.key() != eight.key()
    assert (
        Scenario(phenotype="healthy", regimen=None, n_classes=N).key()
        != Scenario(phenotype="healthy", regimen=None).key()
    )
    # the baseline is built from the same classes as the what-if
    assert state.baseline_scenario(eight).n_classes == N

    state.n_classes = 1
    assert state.refresh() and cache.stats.computed == 2
    assert fake.calls == [("maturation_arrest", REGIMEN, 1), ("maturation_arrest", None, 1)]
    first = state.whatif
    state.n_classes = N  # another class count is another run, never the cached one
    assert state.refresh() and cache.stats.computed == 4
    assert fake.calls[2:] == [("maturation_arrest", REGIMEN, N), ("maturation_arrest", None, N)]
    assert state.whatif is not first
    state.n_classes = 1  # and back: from the cache
    assert state.refresh() and cache.stats.computed == 4 and state.whatif is first
    assert cache.stats.hits == 2


def test_the_class_count_reaches_the_scenario_file_and_the_labels() -> None:
    state = ExplorerState(simulate_fn=_Recording(), cache=RunCache(4), n_classes=N)
    data = tomllib.loads(state.scenario_toml())
    assert data["classes"] == N
    assert "8 focus classes" in state.scenario().label()
    state.n_classes = 1  # one class: the file is the simplest form, as before classes existed
    assert "classes" not in tomllib.loads(state.scenario_toml())
    assert "focus classes" not in state.scenario().label()


def test_the_class_count_is_one_of_those_offered() -> None:
    assert CLASS_COUNTS == (1, 8, 16) and DEFAULT_N_CLASSES in CLASS_COUNTS
    for bad in (0, 4, True, 8.5):
        with pytest.raises(InvalidValueError, match="focus classes"):
            ExplorerState(n_classes=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="from 1 to"):
        Scenario(phenotype="healthy", regimen=None, n_classes=0)
    state = ExplorerState(simulate_fn=_Recording(), cache=RunCache(4))
    state.n_classes = 99  # a caller that bypasses the page gets a message, not a traceback
    assert not state.refresh() and "n_classes = 99" in state.error


def test_the_foci_note_names_the_surgeries_and_the_spread() -> None:
    table = read_parameter_table()
    state = ExplorerState(simulate_fn=_Recording(), cache=RunCache(4), phenotype="maturation_arrest")
    assert state.n_classes == DEFAULT_N_CLASSES == N
    note = state.foci_note()
    assert f"{table['tese_samples'].value:g} random biopsies" in note
    assert f"{table['micro_tese_samples'].value:g} regions" in note
    assert "8 focus classes that differ in how much RA they make" in note  # a mosaic preset, default classes
    assert "choose 8 or 16" not in note
    state.n_classes = 1
    note = state.foci_note()
    assert f"{table['tese_samples'].value:g} random biopsies" in note
    assert "choose 8 or 16 focus classes" in note  # a mosaic preset with one class
    state.n_classes = N
    state.select_phenotype("healthy")
    assert "make the same amount of RA" in state.foci_note()


# --------------------------------------------------------------------------- the page (Panel, no browser)
def test_the_page_has_a_foci_panel_and_a_class_count_choice() -> None:
    app = Explorer(phenotype="sertoli_cell_only_complete", cache=RunCache(8))
    assert app.state.error == "" and FOCI_TITLE in app.foci_plot[0][0].object  # the title above the panel
    assert FOCI_TITLE == "Foci: tubules holding sperm, and the chance surgery finds sperm"
    assert (app.figures.foci.y_range.start, app.figures.foci.y_range.end) == (-0.02, 1.02)
    labels = {item.label["value"] for item in app.figures.foci.legend[0].items}
    assert labels == {label for label, _ in FOCI_LINES.values()} | {"baseline (dashed)"}
    assert all(app.figures.foci.x_range is f.x_range for f in app.figures.panels.values())  # one time axis
    for column in FOCI_COLUMNS:
        np.testing.assert_array_equal(app.figures.whatif_source.data[column], 0.0)
    assert list(app.focus_classes.options.values()) == list(CLASS_COUNTS)
    assert app.focus_classes.value == DEFAULT_N_CLASSES
    assert "Foci" in app.foci_note.object
    # the first runs are on the default 8-class model
    assert app.state.n_classes == N
    assert app.state.whatif is not None and app.state.whatif.attrs["model_hash"] == default_engine(N).sbml_hash
    assert "8 focus classes" in app.caption.object and "8 focus classes" in app.foci_note.object
    # choosing 1 class reruns both runs on the uniform model (untreated: quick runs)
    app.drug.value = False
    app.focus_classes.value = 1
    assert app.state.n_classes == 1 and app.state.error == ""
    assert app.state.whatif is not None and app.state.whatif.attrs["model_hash"] == default_engine(1).sbml_hash
    assert app.state.baseline is not None and app.state.baseline.attrs["model_hash"] == default_engine(1).sbml_hash
    assert "focus classes" not in app.caption.object and "With 1 focus class" in app.foci_note.object
    np.testing.assert_array_equal(_foci_values(app.state.whatif), 0.0)
    # and choosing 8 again reruns both on the 8-class model
    app.focus_classes.value = N
    assert app.state.n_classes == N and app.state.error == ""
    assert app.state.whatif is not None and app.state.whatif.attrs["model_hash"] == default_engine(N).sbml_hash
    assert app.state.baseline is not None and app.state.baseline.attrs["model_hash"] == default_engine(N).sbml_hash
    assert "8 focus classes" in app.caption.object and "8 focus classes" in app.foci_note.object
    np.testing.assert_array_equal(_foci_values(app.state.whatif), 0.0)
