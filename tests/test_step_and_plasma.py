"""Sub-daily output (``--step``) and a plasma panel that never shows a sampling artefact as the level (issue 17).

On 20 mg twice daily the drug swings within each day; sampled once a day at dosing time the table shows the
trough. The CLI takes ``--step 1h``; the figure draws sub-daily plasma as the daily mean with the day's range, and
says so on a dosed table sampled once per dosing interval or less often.
"""

from __future__ import annotations

import argparse

import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from ra_model import simulate
from ra_model.cli import main
from ra_model.cli.core import parse_step
from ra_model.model import columns as C
from ra_model.plots.timecourse import PLASMA_BAND_NOTE, plot_timecourse


@pytest.mark.parametrize(
    ("text", "days"), [("1h", 1 / 24), ("30min", 30 / 1440), ("0.5d", 0.5), ("2", 2.0), (" 6H ", 0.25)]
)
def test_step_reads_units(text: str, days: float) -> None:
    assert parse_step(text) == pytest.approx(days)


@pytest.mark.parametrize("text", ["0", "-1h", "h", "1 week", "inf", "nan"])
def test_bad_step_is_refused_with_the_fix(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="1h, 30min or 1d"):
        parse_step(text)


def test_cli_step_gives_hourly_rows_and_the_within_day_swing(tmp_path) -> None:
    out = tmp_path / "hourly.csv"
    argv = ["simulate", "--regimen", "20 mg bid for 4 d", "--days", "4", "--step", "1h", "--out", str(out)]
    assert main(argv) == 0
    table = pd.read_csv(out)
    assert len(table) == 4 * 24 + 1
    day3 = table[(table[C.TIME_D] >= 3) & (table[C.TIME_D] < 4)][C.PLASMA_ISOTRETINOIN]
    trough_at_dosing = table.loc[(table[C.TIME_D] - 3).abs() < 1e-9, C.PLASMA_ISOTRETINOIN].iloc[0]
    # bid dosing: the level at dosing time is the day's lowest, well below the mean and the peak
    assert trough_at_dosing == pytest.approx(day3.min(), rel=0.02)
    assert day3.max() > 1.5 * day3.min()
    assert day3.min() < day3.mean() < day3.max()


def test_plasma_panel_draws_the_daily_band_and_says_how() -> None:
    hourly = simulate("healthy", "20 mg bid for 3 d", t_end_d=3.0, output_step_d=1 / 24)
    fig = plot_timecourse(hourly)
    plasma = fig.axes[0]
    assert any(isinstance(c, PolyCollection) for c in plasma.collections)  # the min-max band
    assert PLASMA_BAND_NOTE in [t.get_text() for t in plasma.texts]


def test_daily_samples_of_a_dosed_run_are_labelled_not_shown_as_the_level() -> None:
    daily = simulate("healthy", "20 mg bid for 3 d", t_end_d=3.0)
    texts = [t.get_text() for t in plot_timecourse(daily).axes[0].texts]
    assert any("swing is not shown" in t and "--step 1h" in t for t in texts), texts
    untreated = simulate("healthy", None, t_end_d=3.0)
    assert not plot_timecourse(untreated).axes[0].texts
