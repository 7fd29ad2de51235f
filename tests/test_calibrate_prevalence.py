"""The prevalence calibration recovers a spread from synthetic data, writes it back, refuses the impossible."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from ra_model.errors import InvalidValueError
from ra_model.model.source import model_dir
from ra_model.studies.calibrate_prevalence import (
    FITTED,
    azoospermic_at_baseline,
    calibrate_prevalence,
    fit_note,
    read_prevalence_targets,
)
from ra_model.studies.population import draw_patients, load_population, write_log_sd

N, SEED, TRUE_SD, BISECTIONS = 300, 5, 3.4, 6


def _target(value: float) -> pd.DataFrame:
    return pd.DataFrame(
        [{"id": "synthetic", "stage": "prevalence", "scenario": "healthy untreated", "value": value, "source": "test"}]
    )


def test_the_shipped_target_is_one_prevalence_row() -> None:
    targets = read_prevalence_targets()
    assert list(targets["id"]) == ["prev_azoospermia"] and 0 < targets["value"].iloc[0] < 1


def test_a_known_spread_is_recovered_from_a_synthetic_prevalence(tmp_path: Path) -> None:
    population = load_population()
    truth = population.with_log_sd({FITTED: TRUE_SD})
    men = draw_patients(truth, "healthy", list(range(N)), seed=SEED)
    prevalence = float(azoospermic_at_baseline(men).mean())
    assert prevalence > 0  # the synthetic cohort holds azoospermic men
    fit = calibrate_prevalence(targets=_target(prevalence), n=N, seed=SEED, bisections=BISECTIONS)
    entry = population.variability[FITTED]
    resolution = (entry.fit_upper - entry.fit_lower) / 2**BISECTIONS
    # the same men: the smallest spread reaching the prevalence, at most one bisection step above the truth
    assert fit.report["simulated"].iloc[0] == pytest.approx(prevalence)
    assert fit.fitted[FITTED] <= TRUE_SD + resolution + 1e-4
    assert (fit.trace["prevalence"].diff().dropna() >= 0).all()  # non-decreasing in the spread
    # write-back edits only the fitted entry of a copy of the variability file
    path = tmp_path / "population.toml"
    shutil.copy(model_dir() / "population.toml", path)
    before = path.read_text(encoding="utf-8")
    changes = write_log_sd(fit.fitted, path, note=fit_note(fit), by="ra-model calibrate-prevalence")
    after = path.read_text(encoding="utf-8")
    assert changes and changes[0].startswith(f"{FITTED}: log_sd")
    assert f"log_sd = {fit.fitted[FITTED]:.4g}" in after and "by ra-model calibrate-prevalence to" in after
    assert load_population(path).variability[FITTED].log_sd == pytest.approx(fit.fitted[FITTED], rel=1e-3)
    assert len(after.splitlines()) == len(before.splitlines())
    differ = [a for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert len(differ) == 2  # the entry's log_sd line and its source note, nothing else
    # a second fit replaces the first one's note instead of appending another
    write_log_sd(fit.fitted, path, note="again", by="ra-model calibrate-prevalence")
    again = path.read_text(encoding="utf-8")
    assert again.count("by ra-model calibrate-prevalence to") == after.count("by ra-model calibrate-prevalence to")


def test_a_target_out_of_reach_is_refused() -> None:
    with pytest.raises(InvalidValueError, match="outside what focus_share's fit range"):
        calibrate_prevalence(targets=_target(0.9), n=50, seed=SEED, bisections=1)


@pytest.mark.parametrize("n", [0, -5, 2.5, True])
def test_a_bad_number_of_men_is_refused(n: object) -> None:
    with pytest.raises(InvalidValueError, match="number of men"):
        calibrate_prevalence(targets=_target(0.01), n=n, seed=SEED)  # type: ignore[arg-type]
