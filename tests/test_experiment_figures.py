"""Experiment figures say what was done: scheduled changes are marked; "no drug" means nothing changed (issue 17)."""

from __future__ import annotations

from ra_model import simulate
from ra_model.engines.simulate import ParameterChange
from ra_model.plots.timecourse import CHANGE_COLOUR, plot_timecourse
from ra_model.studies.experiments import experiments_dir, load_experiment
from ra_model.studies.experiments.single import NO_DRUG

EXPERIMENTS = experiments_dir()


def test_a_run_with_scheduled_changes_is_not_called_no_drug() -> None:
    exp = load_experiment(EXPERIMENTS / "aldh1a_inhibition.toml", reduced=True)
    (run,) = exp.runs
    assert run.regimen is None and run.label != NO_DRUG
    assert run.label.startswith(f"{NO_DRUG}; ") and "aldh1a_inhibition 0.99 from day 1, 0 from day 181" in run.label
    plain = load_experiment(EXPERIMENTS / "case_report_10mg.toml", reduced=True)
    assert all("from day" not in r.label for r in plain.runs)  # nothing scheduled: labels unchanged


def test_the_figure_marks_each_change_on_every_panel() -> None:
    changes = [
        ParameterChange(t_d=2.0, parameter="aldh1a_inhibition", value=0.99),
        ParameterChange(t_d=4.0, parameter="aldh1a_inhibition", value=0.0),
    ]
    table = simulate("healthy", None, t_end_d=6.0, changes=changes)
    fig = plot_timecourse(table)
    for ax in fig.axes:
        marked = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_color() == CHANGE_COLOUR)
        assert marked == [2.0, 4.0]
    names = [t.get_text() for t in fig.axes[1].texts]
    assert names == ["aldh1a_inhibition = 0.99", "aldh1a_inhibition = 0"]
    untreated = plot_timecourse(simulate("healthy", None, t_end_d=6.0))
    assert not any(line.get_color() == CHANGE_COLOUR for ax in untreated.axes for line in ax.get_lines())


def test_shares_are_drawn_on_their_whole_range_and_levels_from_zero() -> None:
    from ra_model.model import columns as C
    from ra_model.plots.timecourse import STANDARD_PANELS

    fig = plot_timecourse(simulate("healthy", None, t_end_d=3.0))
    by_column = {column: ax for ax, (column, _, _) in zip(fig.axes, STANDARD_PANELS, strict=True)}
    for column in (C.BTB_INTEGRITY, C.SPERMIATION_EFFICIENCY):
        assert by_column[column].get_ylim() == (0.0, 1.02)
    for column in (C.PLASMA_ISOTRETINOIN, C.TESTIS_ATRA, C.STRA8):
        assert by_column[column].get_ylim()[0] == 0.0  # an untreated man's 0.03% wiggle is not blown up
