"""The matplotlib foci figure: tubules holding sperm and both retrieval chances over time, without pyplot state."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from ra_model.errors import InvalidValueError
from ra_model.model import columns as C
from ra_model.plots.timecourse import FOCI_LINES, FOCI_TITLE, plot_foci


def _table(share: float, *, phenotype: str = "x", doses: list[float] | None = None) -> pd.DataFrame:
    days = np.arange(11, dtype=float)
    rise = np.clip(days / 10.0, 0.0, 1.0)
    table = pd.DataFrame(
        {
            C.TIME_D: days,
            C.TUBULES_WITH_SPERM: share * rise,
            C.RETRIEVAL_CONVENTIONAL_TESE: 1 - (1 - share * rise) ** 3,
            C.RETRIEVAL_MICRO_TESE: 1 - (1 - share * rise) ** 20,
        }
    )
    table.attrs.update(phenotype=phenotype, regimen=None, dose_times_d=doses or [])
    return table


def test_plot_foci_draws_three_lines_per_table_on_a_0_to_1_axis() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    tables = [_table(0.5, doses=[0.0, 1.0, 2.0]), _table(0.05)]
    fig = plot_foci(tables, labels=["treated", "untreated"])
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == before  # made without pyplot: no figure kept in its global state
    (ax,) = fig.axes
    assert ax.get_title() == FOCI_TITLE
    assert ax.get_ylim() == (-0.02, 1.02)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == [
        f"{name}: {what}" for name in ("treated", "untreated") for what, _ in FOCI_LINES.values()
    ]
    for line, (table, column) in zip(lines, [(t, c) for t in tables for c in FOCI_LINES], strict=True):
        np.testing.assert_array_equal(line.get_xdata(), table[C.TIME_D].to_numpy())
        np.testing.assert_array_equal(line.get_ydata(), table[column].to_numpy())
    # one colour per table, one line style per quantity
    assert len({line.get_color() for line in lines[:3]}) == 1 and lines[0].get_color() != lines[3].get_color()
    assert [line.get_linestyle() for line in lines[:3]] == ["-", "--", ":"]
    legend = ax.get_legend()
    assert legend is not None and "treatment" in [t.get_text() for t in legend.get_texts()]


def test_plot_foci_takes_one_table_and_labels_it_by_phenotype() -> None:
    fig = plot_foci(_table(0.98, phenotype="healthy"))
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == [f"healthy: no drug: {what}" for what, _ in FOCI_LINES.values()]
    assert "treatment" not in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_plot_foci_saves(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "foci.png"
    plot_foci(_table(0.5)).savefig(out)
    assert out.stat().st_size > 1000


def test_plot_foci_refuses_bad_input() -> None:
    with pytest.raises(InvalidValueError, match="no results table"):
        plot_foci([])
    with pytest.raises(InvalidValueError, match="2 labels for 1 tables"):
        plot_foci([_table(0.5)], labels=["a", "b"])
    with pytest.raises(InvalidValueError, match="retrieval_micro_TESE"):
        plot_foci(_table(0.5).drop(columns=C.RETRIEVAL_MICRO_TESE))
