"""The scenario key ``classes``: checked on load, and passed as ``n_classes`` by every kind that simulates."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ra_model.errors import InvalidValueError, RAModelError
from ra_model.model.classes import MAX_CLASSES
from ra_model.studies.experiments import experiments_dir, load_experiment, run_experiment
from ra_model.studies.experiments.common import inputs_record

EXPERIMENTS = experiments_dir()

SINGLE = """description = "A short healthy run"
phenotype = "healthy"
regimens = ["none"]
t_end_d = 3.0
"""


def _file(tmp_path: Path, text: str, name: str = "scenario.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _with_classes(name: str, line: str) -> str:
    """Return a shipped file's text with its top-level ``classes`` line replaced (or added) by ``line``."""
    lines = (EXPERIMENTS / f"{name}.toml").read_text(encoding="utf-8").splitlines()
    kept = [x for x in lines if not x.startswith("classes")]
    return "\n".join([line, *kept]) + "\n"


class _StopError(Exception):
    """Raised by a stand-in for run_sweep once it has seen its arguments."""


# --------------------------------------------------------------------------- reading
def test_classes_default_to_one_and_are_read_for_every_kind(tmp_path: Path) -> None:
    assert load_experiment(_file(tmp_path, SINGLE)).n_classes == 1
    assert load_experiment(_file(tmp_path, "classes = 4\n" + SINGLE)).n_classes == 4
    assert load_experiment(_file(tmp_path, f"classes = {MAX_CLASSES}\n" + SINGLE)).n_classes == MAX_CLASSES
    for name in ("jessup2025", "pre_micro_tese"):
        assert load_experiment(EXPERIMENTS / f"{name}.toml").n_classes == 8
        assert load_experiment(EXPERIMENTS / f"{name}.toml", reduced=True).n_classes == 8
    grid = _file(tmp_path, _with_classes("dose_duration", "classes = 3"), "grid.toml")
    assert load_experiment(grid).n_classes == 3
    sensitivity = _file(tmp_path, _with_classes("ma_response_sensitivity", "classes = 2"), "sens.toml")
    assert load_experiment(sensitivity).n_classes == 2


def test_reduced_may_set_classes(tmp_path: Path) -> None:
    path = _file(tmp_path, "classes = 8\n" + SINGLE + "[reduced]\nclasses = 2\n")
    assert load_experiment(path).n_classes == 8
    assert load_experiment(path, reduced=True).n_classes == 2


@pytest.mark.parametrize("value", ["0", str(MAX_CLASSES + 1), "-1", "2.5", "8.0", '"8"', "true", "[8]"])
def test_bad_classes_are_refused_naming_file_value_and_fix(tmp_path: Path, value: str) -> None:
    path = _file(tmp_path, f"classes = {value}\n" + SINGLE)
    with pytest.raises(InvalidValueError) as info:
        load_experiment(path)
    message = str(info.value)
    assert isinstance(info.value, RAModelError)
    assert str(path) in message and "'classes'" in message
    assert f"1 to {MAX_CLASSES}" in message and "classes = 8" in message
    shown = {"true": "True", '"8"': "'8'"}.get(value, value)
    assert shown in message


def test_bad_classes_are_refused_in_every_kind_and_in_reduced(tmp_path: Path) -> None:
    for name in ("jessup2025", "dose_duration", "ma_response_sensitivity"):
        path = _file(tmp_path, _with_classes(name, "classes = 0"), f"{name}.toml")
        with pytest.raises(InvalidValueError, match="'classes'"):
            load_experiment(path)
    path = _file(tmp_path, SINGLE + "[reduced]\nclasses = 99\n")
    with pytest.raises(InvalidValueError) as info:
        load_experiment(path)  # checked even when [reduced] is not applied
    assert "'reduced.classes'" in str(info.value) and "99" in str(info.value)


# --------------------------------------------------------------------------- passed on
def test_single_simulates_with_the_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ra_model.studies.experiments.single as single

    seen: list[object] = []
    real = single.simulate

    def spy(*args: object, **kwargs: object) -> pd.DataFrame:
        seen.append(kwargs.get("n_classes"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(single, "simulate", spy)
    result = run_experiment(load_experiment(_file(tmp_path, "classes = 2\n" + SINGLE)), workers=1, progress=False)
    assert seen == [2]
    assert result.inputs["n_classes"] == 2
    assert len(result.results) == 4  # days 0..3


@pytest.mark.parametrize(("name", "classes"), [("jessup2025", 3), ("dose_duration", 5)])
def test_cohort_and_grid_sweep_with_the_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, classes: int
) -> None:
    import ra_model.studies.sweep as sweep

    seen: list[object] = []

    def stop(samples: pd.DataFrame, **kwargs: object) -> pd.DataFrame:
        seen.append(kwargs.get("n_classes"))
        raise _StopError

    monkeypatch.setattr(sweep, "run_sweep", stop)
    exp = load_experiment(_file(tmp_path, _with_classes(name, f"classes = {classes}"), f"{name}.toml"), reduced=True)
    with pytest.raises(_StopError):
        run_experiment(exp, workers=1, progress=False)
    assert seen == [classes]


def test_sensitivity_sweeps_with_the_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ra_model.studies.sensitivity as sensitivity

    seen: list[object] = []

    def stop(samples: pd.DataFrame, **kwargs: object) -> pd.DataFrame:
        seen.append(kwargs.get("n_classes"))
        raise _StopError

    monkeypatch.setattr(sensitivity, "run_sweep", stop)
    path = _file(tmp_path, _with_classes("ma_response_sensitivity", "classes = 2"), "sens.toml")
    with pytest.raises(_StopError):  # the spec reader never sees `classes` (it would refuse an unknown key)
        run_experiment(load_experiment(path, reduced=True), work_dir=tmp_path / "out", workers=1, progress=False)
    assert seen == [2]


def test_provenance_names_the_classes_and_their_model(tmp_path: Path) -> None:
    one = inputs_record(load_experiment(_file(tmp_path, SINGLE, "one.toml")))
    two = inputs_record(load_experiment(_file(tmp_path, "classes = 2\n" + SINGLE, "two.toml")))
    assert (one["n_classes"], two["n_classes"]) == (1, 2)
    assert one["model_hash"] and two["model_hash"] and one["model_hash"] != two["model_hash"]
