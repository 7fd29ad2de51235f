"""Cohort bar charts say how many men stand behind each bar (issue 17: n on each bar)."""

from __future__ import annotations

import pandas as pd

from ra_model.plots.cohort import plot_response
from ra_model.studies.clinical import proportion_ci


def _row(cohort: str, group: str, k: int, n: int) -> dict[str, object]:
    low, high = proportion_ci(k, n)
    return {"cohort": cohort, "group": group, "responders": k, "n": n, "rate": k / n, "ci_low": low, "ci_high": high}


def test_every_bar_is_labelled_with_responders_over_men() -> None:
    summary = pd.DataFrame(
        [
            _row("trial", "overall", 11, 30),
            _row("trial", "maturation_arrest", 10, 11),
            _row("virtual", "overall", 363, 1000),
            _row("virtual", "maturation_arrest", 327, 367),
        ]
    )
    low, high = proportion_ci(11, 30)
    low_ma, high_ma = proportion_ci(6, 11)
    comparison = pd.DataFrame(
        {
            "group": ["overall", "maturation_arrest"],
            "published_responders": [11, 6],
            "published_n": [30, 11],
            "published_rate": [11 / 30, 6 / 11],
            "published_ci_low": [low, low_ma],
            "published_ci_high": [high, high_ma],
        }
    )
    texts = [t.get_text() for t in plot_response(summary, comparison).axes[0].texts]
    assert sorted(texts) == sorted(["11/30", "10/11", "363/1000", "327/367", "11/30", "6/11"])


def test_a_group_without_men_gets_no_label() -> None:
    summary = pd.DataFrame([_row("trial", "overall", 0, 30)])
    summary.loc[1] = {
        "cohort": "trial",
        "group": "sertoli_cell_only",
        "responders": 0,
        "n": 0,
        "rate": float("nan"),
        "ci_low": float("nan"),
        "ci_high": float("nan"),
    }
    texts = [t.get_text() for t in plot_response(summary).axes[0].texts]
    assert texts == ["0/30"]


def test_an_empty_panel_says_why() -> None:
    from ra_model.plots.cohort import plot_peak_concentration, plot_time_to_response

    results = pd.DataFrame({"peak": [0.0, 0.0], "histology": ["sertoli_cell_only"] * 2, "enrolled": [False, False]})
    fig = plot_peak_concentration(results, column="peak", by="histology", mask=results["enrolled"])
    assert [t.get_text() for t in fig.axes[0].texts] == ["0 of 2 men eligible: no peak to show"]
    curves = pd.DataFrame(columns=["cohort", "group", "day", "fraction_responded"])
    texts = [t.get_text() for t in plot_time_to_response(curves, cohort="trial").axes[0].texts]
    assert texts == ["no men enrolled in the trial cohort: nothing to follow"]
