"""A row at the time of a scheduled change reports the values just after it, as SBML simulators do.

ALDH1A activity is capacity x (1 - inhibition) x substrate saturation; at the instant the inhibitor is
stopped the retinal pool has not moved yet, so the activity on the row of the change must be exactly
(1 - 0) / (1 - 0.99) = 100 times the activity just before it. COPASI and tellurium, running the exported
scenario, report the same after-event value at that time.

A dose due at t = 0 written into the generic export (``t_next_dose = 0``; the trigger has
``initialValue=false``) is given exactly once at t = 0 by ra_model, COPASI and tellurium.
"""

from __future__ import annotations

from pathlib import Path

import libsbml
import pytest

from ra_model.engines.from_file import engine_from_file
from ra_model.engines.simulate import ParameterChange, simulate
from ra_model.interop.copasi import compare_tables, simulate_copasi
from ra_model.interop.omex import Scenario, run_omex_tellurium, write_omex
from ra_model.interop.sbml_export import export_sbml
from ra_model.model import columns as C

START_D, STOP_D, T_END_D = 2.0, 6.0, 10.0
BLOCK = ParameterChange(t_d=START_D, parameter="aldh1a_inhibition", value=0.99)
RELEASE = ParameterChange(t_d=STOP_D, parameter="aldh1a_inhibition", value=0.0)


def _row(table, t_d: float) -> dict[str, float]:
    rows = table[table[C.TIME_D] == t_d]
    assert len(rows) == 1, f"{len(rows)} rows at day {t_d:g}"
    return rows.iloc[0].to_dict()


@pytest.fixture(scope="module")
def ours():
    return simulate("healthy", None, t_end_d=T_END_D, changes=[BLOCK, RELEASE])


def test_the_row_of_a_change_reports_the_value_after_it(ours) -> None:
    still_blocked = simulate("healthy", None, t_end_d=T_END_D, changes=[BLOCK])  # identical up to the release
    before = _row(still_blocked, STOP_D)[C.ALDH1A_ACTIVITY]
    after = _row(ours, STOP_D)[C.ALDH1A_ACTIVITY]
    assert after / before == pytest.approx(100.0, rel=1e-9)
    # at the start of the block: healthy activity (1) falls by the factor 1 - 0.99 on the row of the change
    assert _row(ours, START_D)[C.ALDH1A_ACTIVITY] == pytest.approx(0.01 * _row(ours, 0.0)[C.ALDH1A_ACTIVITY], rel=1e-6)
    # states are continuous through a parameter change: the retinoid pool on that row is the one before
    assert _row(ours, STOP_D)[C.TESTIS_ATRA] == pytest.approx(_row(still_blocked, STOP_D)[C.TESTIS_ATRA], rel=1e-9)
    # one row per time, in order: the change times are not repeated
    assert ours[C.TIME_D].is_monotonic_increasing and ours[C.TIME_D].is_unique


def test_copasi_reports_the_same_after_event_value(ours) -> None:
    sbml = export_sbml(phenotype="healthy", changes=[BLOCK, RELEASE], annotate=False)
    theirs = simulate_copasi(sbml, t_end_d=T_END_D)
    assert _row(theirs, STOP_D)[C.ALDH1A_ACTIVITY] > 50 * _row(theirs, STOP_D - 1)[C.ALDH1A_ACTIVITY]
    rows = compare_tables(ours, theirs)
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]


def test_tellurium_on_the_exported_archive_reports_the_same_after_event_value(ours, tmp_path: Path) -> None:
    scenario = Scenario(label="aldh1a_block", phenotype="healthy", t_end_d=T_END_D, changes=(BLOCK, RELEASE))
    theirs = run_omex_tellurium(write_omex(tmp_path / "aldh1a.omex", [scenario]))["aldh1a_block"]
    assert _row(theirs, START_D)[C.ALDH1A_ACTIVITY] < 0.02
    rows = compare_tables(ours, theirs)
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]


# ---------------------------------------------------------------------------------------------------------------
# A first dose at t = 0 in the generic export: the dose values written into the file (the supported way).

HOUR = 1 / 24
#: 20 mg every 12 h, 10 doses, the first due at t = 0: in the first 49 h doses at 0, 12, 24, 36 and 48 h.
DOSING = {"dose_mg": 20.0, "dose_interval_h": 12.0, "n_doses": 10.0, "t_next_dose": 0.0}


@pytest.fixture(scope="module")
def generic_t0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    doc = libsbml.readSBMLFromString(export_sbml())
    for name, value in DOSING.items():
        doc.getModel().getParameter(name).setValue(value)
    path = tmp_path_factory.mktemp("t0") / "generic_t0.xml"
    path.write_text(libsbml.writeSBMLToString(doc), encoding="utf-8")
    return path


def _one_dose_nmol(text: str) -> float:
    doc = libsbml.readSBMLFromString(text)
    return DOSING["dose_mg"] * doc.getModel().getParameter("nmol_per_mg_iso").getValue()


def test_a_dose_due_at_t0_written_in_the_file_is_given_once_by_ra_model(generic_t0: Path) -> None:
    engine = engine_from_file(generic_t0)
    runs = {
        pre: simulate(
            "healthy",
            None,
            t_end_d=49 * HOUR,
            output_step_d=HOUR,
            preequilibrate=pre,
            include_species=True,
            engine=engine,
        )
        for pre in (False, True)
    }
    one_dose = _one_dose_nmol(generic_t0.read_text(encoding="utf-8"))
    for pre, table in runs.items():
        assert table[C.DOSES_GIVEN].iloc[0] == 1, pre
        assert table[C.DOSES_GIVEN].iloc[-1] == 5, pre
        # the gut holds exactly one dose at t = 0 (none untreated), with or without pre-equilibration
        assert table["amount_Gut_iso"].iloc[0] == pytest.approx(one_dose, rel=1e-12), pre
    rows = compare_tables(runs[False], runs[True])  # the file's initial amounts are the healthy steady state
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]


def test_a_dose_due_at_t0_written_in_the_file_fires_once_in_copasi_and_tellurium(generic_t0: Path) -> None:
    import tellurium as te

    text = generic_t0.read_text(encoding="utf-8")
    ours = simulate("healthy", None, t_end_d=49 * HOUR, output_step_d=HOUR, engine=engine_from_file(generic_t0))
    copasi = simulate_copasi(text, t_end_d=49 * HOUR, output_step_d=HOUR)
    assert copasi[C.DOSES_GIVEN].iloc[[0, -1]].tolist() == [1, 5]
    rows = compare_tables(ours, copasi)
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]  # a second dose at t = 0 would double the drug
    r = te.loadSBMLModel(text)
    r.timeCourseSelections = ["time", "doses_given", "Gut_iso", "plasma_isotretinoin"]
    out = r.simulate(0, 49, 50)
    assert out[0, 1] == 1 and out[-1, 1] == 5
    assert out[0, 2] == pytest.approx(_one_dose_nmol(text), rel=1e-12)
    assert out[1:, 3] == pytest.approx(ours[C.PLASMA_ISOTRETINOIN].to_numpy()[1:], rel=1e-4)


def test_in_tellurium_values_set_after_loading_need_a_reset_for_the_t0_dose() -> None:
    """The trap the README describes: libroadrunner checks the t = 0 trigger on load and on reset() only."""
    import tellurium as te

    text = export_sbml(annotate=False)
    doses = {}
    for reset in (False, True):
        r = te.loadSBMLModel(text)
        for name, value in DOSING.items():
            r[name] = value
        if reset:
            r.reset()
        r.timeCourseSelections = ["time", "doses_given"]
        doses[reset] = r.simulate(0, 49, 50)[-1, 1]
    assert doses == {False: 0, True: 5}
