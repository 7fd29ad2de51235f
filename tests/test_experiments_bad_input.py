"""Bad scenario files: every one gives a one-line error naming the file, the key, the value and the fix.

Each case writes a small valid file of one kind (``BASE``) with exactly one key broken, runs
``ra-model run FILE --out DIR --reduced`` in this process and expects exit code 2, no traceback, and
the key and the value in the message. The expected outcomes follow the file format's rules (README,
"Virtual patients and experiments"; :mod:`ra_model.studies.experiments.spec`), not the code's output.
A cohort or grid in which every man fails to simulate exits 1, says so with the first failure's
solver message and inputs, and still writes ``failures.csv`` with every man.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tomli_w

from ra_model.cli import main
from ra_model.studies.experiments import load_experiment
from ra_model.studies.experiments.spec import MAX_RUNS

# --------------------------------------------------------------------------- valid bases, one per kind
BASE: dict[str, dict[str, Any]] = {
    "single": {
        "description": "a maturation-arrest man on 20 mg bid",
        "phenotype": "maturation_arrest",
        "regimens": ["20 mg bid for 180 d", "none"],
        "t_end_d": 365.0,
        "output_step_d": 1.0,
        "changes": [{"t_d": 30.0, "parameter": "retinol_plasma_uM", "value": 2.5}],
        "sampling": {"every_d": 30, "last_d": 360},
        "overrides": {"cyp26_expr": 5.0},
    },
    "cohort": {
        "description": "two men with maturation arrest",
        "kind": "cohort",
        "regimen": "20 mg bid for 60 d",
        "t_end_d": 60.0,
        "seed": 1,
        "population": {"histology_mix": {"maturation_arrest": 1.0}},
        "cohorts": {"trial": 2},
        "sampling": {"every_d": 30},
        "response": {"consecutive": 2, "screen": True},
        "published": [{"group": "overall", "responders": 1, "n": 2, "source": "made up", "cohort": "trial"}],
    },
    "grid": {
        "description": "two men per cell",
        "kind": "grid",
        "doses": ["10 mg od", "20 mg bid"],
        "durations_d": [60, 90],
        "follow_up_d": 30,
        "n_patients": 2,
        "seed": 7,
        "population": {"histologies": ["maturation_arrest"]},
        "sampling": {"every_d": 30},
        "response": {"consecutive": 2},
    },
}

Edit = Callable[[dict[str, Any], Path], None]


def put(path: str, value: object) -> Edit:
    """Return an edit setting the dotted ``path`` (``"population.histology_mix"``, ``"published.0.n"``)."""

    def edit(data: dict[str, Any], folder: Path) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


def drop(path: str) -> Edit:
    """Return an edit removing the dotted ``path``."""

    def edit(data: dict[str, Any], folder: Path) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return edit


def both(*edits: Edit) -> Edit:
    """Return an edit applying several (a broken key that needs another key removed or added)."""

    def edit(data: dict[str, Any], folder: Path) -> None:
        for e in edits:
            e(data, folder)

    return edit


def variability_file(content: bytes) -> Edit:
    """Return an edit pointing ``population.variability`` at a file holding ``content``."""

    def edit(data: dict[str, Any], folder: Path) -> None:
        (folder / "pop.toml").write_bytes(content)
        data["population"]["variability"] = "pop.toml"

    return edit


# (case id, kind, edit, words every message must hold besides the file path: the key and the value)
CASES: list[tuple[str, str, Edit, list[str]]] = [
    # ---- keys every kind shares
    ("kind-list", "single", put("kind", ["cohort"]), ["'kind'", "['cohort']"]),
    ("kind-unknown", "single", put("kind", "cohrt"), ["'kind'", "'cohrt'", "'cohort'"]),
    ("description-number", "single", put("description", 17), ["'description'", "17"]),
    ("description-missing", "single", drop("description"), ["'description'", "missing"]),
    ("figures-text", "single", put("figures", "timecourse"), ["'figures'", "'timecourse'"]),
    ("figures-unknown", "single", put("figures", ["heatmap"]), ["'figures[0]'", "'heatmap'"]),
    ("reduced-number", "single", put("reduced", 17), ["'reduced'", "17"]),
    ("reduced-unknown-key", "single", put("reduced", {"colour": "red"}), ["'reduced.colour'", "'red'"]),
    ("reduced-bad-value", "single", put("reduced", {"output_step_d": "2"}), ["'reduced.output_step_d'", "'2'"]),
    ("overrides-number", "single", put("overrides", 17), ["'overrides'", "17"]),
    ("overrides-text", "single", put("overrides.cyp26_expr", "high"), ["'overrides.cyp26_expr'", "'high'"]),
    ("overrides-negative", "single", put("overrides.cyp26_expr", -2.0), ["'overrides.cyp26_expr'", "-2"]),
    ("overrides-unknown", "single", put("overrides.cyp26_exp", 2.0), ["'overrides.cyp26_exp'", "'cyp26_expr'"]),
    ("overrides-table", "single", put("overrides.cyp26_expr", {"a": 1}), ["'overrides.cyp26_expr'", "{'a': 1}"]),
    ("output-step-text", "single", put("output_step_d", "1"), ["'output_step_d'", "'1'"]),
    ("output-step-zero", "single", put("output_step_d", 0), ["'output_step_d'", "0"]),
    ("output-step-rows", "single", put("output_step_d", 1e-4), ["'output_step_d'", "0.0001", "rows"]),
    ("t-end-text", "single", put("t_end_d", "365"), ["'t_end_d'", "'365'"]),
    ("t-end-huge", "single", put("t_end_d", 1e6), ["'t_end_d'", "1e+06", "20 years"]),
    ("t-end-too-big-int", "single", put("t_end_d", 10**400), ["'t_end_d'", "too large"]),
    ("other-kind-key", "single", put("n_patients", 3), ["'n_patients'", "3", "'grid'"]),
    # ---- single
    ("regimens-text", "single", put("regimens", "20 mg bid for 180 d"), ["'regimens'", "'20 mg bid for 180 d'"]),
    ("regimens-entry-number", "single", put("regimens", [20]), ["'regimens[0]'", "20"]),
    ("regimens-unparseable", "single", put("regimens", ["20 mg twice for 9 d"]), ["'regimens[0]'", "twice"]),
    ("regimens-and-runs", "single", put("runs", [{"label": "a"}]), ["'regimens'", "runs"]),
    ("runs-number", "single", both(drop("regimens"), put("runs", 17)), ["'runs'", "17"]),
    ("runs-entry-number", "single", both(drop("regimens"), put("runs", [17])), ["'runs[0]'", "17"]),
    (
        "runs-missed-text",
        "single",
        both(drop("regimens"), put("runs", [{"regimen": "20 mg bid for 60 d", "missed_every": "4"}])),
        ["'runs[0].missed_every'", "'4'"],
    ),
    (
        "runs-missed-one",
        "single",
        both(drop("regimens"), put("runs", [{"regimen": "20 mg bid for 60 d", "missed_every": 1}])),
        ["'runs[0].missed_every'", "1"],
    ),
    ("runs-label-number", "single", both(drop("regimens"), put("runs", [{"label": 17}])), ["'runs[0].label'", "17"]),
    (
        "runs-changes-number",
        "single",
        both(drop("regimens"), put("runs", [{"changes": 17}])),
        ["'runs[0].changes'", "17"],
    ),
    ("runs-unknown-key", "single", both(drop("regimens"), put("runs", [{"dose": 17}])), ["'runs[0].dose'", "17"]),
    ("changes-number", "single", put("changes", 17), ["'changes'", "17"]),
    ("changes-entry-number", "single", put("changes", [17]), ["'changes[0]'", "17"]),
    ("changes-t-text", "single", put("changes.0.t_d", "day 30"), ["'changes[0].t_d'", "'day 30'"]),
    ("changes-parameter-number", "single", put("changes.0.parameter", 17), ["'changes[0].parameter'", "17"]),
    ("changes-value-text", "single", put("changes.0.value", "a lot"), ["'changes[0].value'", "'a lot'"]),
    ("changes-value-domain", "single", put("changes.0.value", -1.0), ["'changes[0].value'", "-1"]),
    ("changes-missing-value", "single", drop("changes.0.value"), ["'changes[0]'", "'value'"]),
    ("changes-after-end", "single", put("changes.0.t_d", 500.0), ["'changes[0].t_d'", "500"]),
    ("include-species-text", "single", put("include_species", "yes"), ["'include_species'", "'yes'"]),
    ("phenotype-number", "single", put("phenotype", 17), ["'phenotype'", "17"]),
    ("phenotype-unknown", "single", put("phenotype", "maturation_arest"), ["'phenotype'", "'maturation_arest'"]),
    ("sampling-number", "single", put("sampling", 17), ["'sampling'", "17"]),
    ("visit-days-number", "single", put("sampling", {"visit_days": 45}), ["'sampling.visit_days'", "45"]),
    ("visit-days-text", "single", put("sampling", {"visit_days": "30"}), ["'sampling.visit_days'", "'30'"]),
    (
        "visit-days-entry-text",
        "single",
        put("sampling", {"visit_days": ["30"]}),
        ["'sampling.visit_days[0]'", "'30'"],
    ),
    ("visit-days-none-after-0", "single", put("sampling", {"visit_days": [0]}), ["'sampling'", "baseline"]),
    ("visit-after-end", "single", put("sampling", {"visit_days": [400]}), ["'sampling'", "400"]),
    ("every-d-text", "single", put("sampling.every_d", "30"), ["'sampling.every_d'", "'30'"]),
    ("every-d-tiny", "single", put("sampling.every_d", 1e-3), ["'sampling.every_d'", "0.001", "1,000"]),
    ("last-d-text", "single", put("sampling.last_d", "end"), ["'sampling.last_d'", "'end'"]),
    # ---- cohort
    ("population-number", "cohort", put("population", 17), ["'population'", "17"]),
    ("population-missing", "cohort", drop("population"), ["'population'", "missing"]),
    (
        "population-histologies-in-cohort",
        "cohort",
        put("population.histologies", ["maturation_arrest"]),
        ["'population.histologies'", "['maturation_arrest']", "'grid'"],
    ),
    ("histology-mix-number", "cohort", put("population.histology_mix", 17), ["'population.histology_mix'", "17"]),
    (
        "histology-mix-share-text",
        "cohort",
        put("population.histology_mix.maturation_arrest", "all"),
        ["'population.histology_mix.maturation_arrest'", "'all'"],
    ),
    (
        "histology-mix-sum",
        "cohort",
        put("population.histology_mix.maturation_arrest", 0.5),
        ["'population.histology_mix'", "0.5"],
    ),
    (
        "histology-mix-unknown",
        "cohort",
        put("population.histology_mix", {"maturation_arest": 1.0}),
        ["population.histology_mix.maturation_arest", "'maturation_arest'"],
    ),
    (
        "population-phenotype-number",
        "cohort",
        both(drop("population.histology_mix"), put("population.phenotype", 17)),
        ["'population.phenotype'", "17"],
    ),
    ("population-mix-and-phenotype", "cohort", put("population.phenotype", "healthy"), ["'population'", "phenotype"]),
    ("variability-number", "cohort", put("population.variability", 17), ["'population.variability'", "17"]),
    ("variability-no-file", "cohort", put("population.variability", "nope.toml"), ["'population.variability'", "nope"]),
    (
        "variability-broken-file",
        "cohort",
        variability_file(b"variability = 17\n"),
        ["'population.variability'", "'pop.toml'"],
    ),
    (
        "variability-not-toml",
        "cohort",
        variability_file(b"variability = [\n"),
        ["'population.variability'", "'pop.toml'"],
    ),
    (
        "variability-not-utf8",
        "cohort",
        variability_file(b"truncate_sd = 3\n# caf\xe9\n"),
        ["'population.variability'", "'pop.toml'"],
    ),
    ("cohorts-number", "cohort", put("cohorts", 17), ["'cohorts'", "17"]),
    ("cohorts-empty", "cohort", put("cohorts", {}), ["'cohorts'", "empty"]),
    ("cohorts-size-text", "cohort", put("cohorts.trial", "30"), ["'cohorts.trial'", "'30'"]),
    ("cohorts-size-zero", "cohort", put("cohorts.trial", 0), ["'cohorts.trial'", "0"]),
    ("cohorts-size-float", "cohort", put("cohorts.trial", 1e8), ["'cohorts.trial'", "100000000.0"]),
    (
        "cohorts-size-huge",
        "cohort",
        put("cohorts.trial", 100_000_000),
        ["'cohorts.trial'", "100000000", f"{MAX_RUNS:,}", "simulations", "runs/s per core"],
    ),
    ("regimen-number", "cohort", put("regimen", 20), ["'regimen'", "20"]),
    ("regimen-unparseable", "cohort", put("regimen", "20 mg twice for 9 d"), ["'regimen'", "twice"]),
    ("regimen-missing", "cohort", drop("regimen"), ["'regimen'", "missing"]),
    (
        "regimen-with-weight",
        "cohort",
        put("regimen", "0.5 mg/kg/day od for 60 d, 80 kg"),
        ["'regimen'", "'0.5 mg/kg/day od for 60 d, 80 kg'", "own weight"],
    ),
    ("cohort-sampling-number", "cohort", put("sampling", 17), ["'sampling'", "17"]),
    ("cohort-visit-days-number", "cohort", put("sampling", {"visit_days": 45}), ["'sampling.visit_days'", "45"]),
    ("response-number", "cohort", put("response", 17), ["'response'", "17"]),
    ("response-consecutive-text", "cohort", put("response.consecutive", "2"), ["'response.consecutive'", "'2'"]),
    ("response-consecutive-zero", "cohort", put("response.consecutive", 0), ["'response.consecutive'", "0"]),
    (
        "response-threshold-text",
        "cohort",
        put("response.threshold_M_per_mL", "low"),
        ["'response.threshold_M_per_mL'", "'low'"],
    ),
    (
        "response-threshold-bool",
        "cohort",
        put("response.threshold_M_per_mL", True),
        ["'response.threshold_M_per_mL'", "True"],
    ),
    ("response-screen-text", "cohort", put("response.screen", "yes"), ["'response.screen'", "'yes'"]),
    ("response-unknown-key", "cohort", put("response.window", 90), ["'response.window'", "90"]),
    ("published-number", "cohort", put("published", 17), ["'published'", "17"]),
    ("published-entry-number", "cohort", put("published", [17]), ["'published[0]'", "17"]),
    ("published-n-text", "cohort", put("published.0.n", "30"), ["'published[0].n'", "'30'"]),
    ("published-n-missing", "cohort", drop("published.0.n"), ["'published[0].n'", "missing"]),
    ("published-n-huge", "cohort", put("published.0.n", 10**30), ["'published[0].n'", f"{10**30:,}"]),
    ("published-responders-negative", "cohort", put("published.0.responders", -1), ["'published[0].responders'", "-1"]),
    ("published-responders-above-n", "cohort", put("published.0.responders", 3), ["'published[0].responders'", "3"]),
    ("published-group-number", "cohort", put("published.0.group", 17), ["'published[0].group'", "17"]),
    ("published-group-unknown", "cohort", put("published.0.group", "sertoli"), ["'published[0].group'", "'sertoli'"]),
    ("published-cohort-unknown", "cohort", put("published.0.cohort", "trail"), ["'published[0].cohort'", "'trail'"]),
    ("published-cohort-number", "cohort", put("published.0.cohort", 17), ["'published[0].cohort'", "17"]),
    ("published-unknown-key", "cohort", put("published.0.year", 2025), ["'published[0].year'", "2025"]),
    ("seed-text", "cohort", put("seed", "2025"), ["'seed'", "'2025'"]),
    ("seed-negative", "cohort", put("seed", -1), ["'seed'", "-1"]),
    ("seed-float", "cohort", put("seed", 1.5), ["'seed'", "1.5"]),
    ("seed-missing", "cohort", drop("seed"), ["'seed'", "missing"]),
    ("max-screen-text", "cohort", put("max_screen_factor", "3"), ["'max_screen_factor'", "'3'"]),
    ("max-screen-below-1", "cohort", put("max_screen_factor", 0.5), ["'max_screen_factor'", "0.5"]),
    ("cohort-doses-key", "cohort", put("doses", ["20 mg od"]), ["'doses'", "'grid'"]),
    ("cohort-t-end-text", "cohort", put("t_end_d", "60"), ["'t_end_d'", "'60'"]),
    # ---- grid
    ("doses-text", "grid", put("doses", "20 mg od"), ["'doses'", "'20 mg od'"]),
    ("doses-entry-number", "grid", put("doses", [20]), ["'doses[0]'", "20"]),
    ("doses-unparseable", "grid", put("doses", ["20 mg twice"]), ["'doses[0]'", "'20 mg twice"]),
    (
        "doses-with-duration",
        "grid",
        put("doses", ["20 mg od for 9 d"]),
        ["'doses[0]'", "'20 mg od for 9 d'", "durations_d"],
    ),
    ("doses-none", "grid", put("doses", ["none"]), ["'doses[0]'", "'none"]),
    ("doses-repeat", "grid", put("doses", ["20 mg od", "20 mg od"]), ["'doses'", "20 mg od", "more than once"]),
    ("doses-missing", "grid", drop("doses"), ["'doses'", "missing"]),
    ("durations-number", "grid", put("durations_d", 90), ["'durations_d'", "90"]),
    ("durations-entry-text", "grid", put("durations_d", ["90"]), ["'durations_d[0]'", "'90'"]),
    ("durations-repeat", "grid", put("durations_d", [90, 90.0]), ["'durations_d'", "90", "more than once"]),
    ("durations-empty", "grid", put("durations_d", []), ["'durations_d'", "empty"]),
    ("follow-up-text", "grid", put("follow_up_d", "3 months"), ["'follow_up_d'", "'3 months'"]),
    ("n-patients-text", "grid", put("n_patients", "2"), ["'n_patients'", "'2'"]),
    ("n-patients-missing", "grid", drop("n_patients"), ["'n_patients'", "missing"]),
    (
        "n-patients-huge",
        "grid",
        put("n_patients", 100_000_000),
        ["'n_patients'", "100000000", f"{MAX_RUNS:,}", "1 histologies x 2 doses x 2 durations", "runs/s per core"],
    ),
    (
        "grid-histology-mix",
        "grid",
        put("population.histology_mix", {"maturation_arrest": 1.0}),
        ["'population.histology_mix'", "{'maturation_arrest': 1.0}", "'cohort'"],
    ),
    (
        "grid-population-phenotype",
        "grid",
        put("population.phenotype", "healthy"),
        ["'population.phenotype'", "'healthy'", "'cohort'"],
    ),
    (
        "histologies-text",
        "grid",
        put("population.histologies", "maturation_arrest"),
        ["'population.histologies'", "'maturation_arrest'"],
    ),
    ("histologies-entry-number", "grid", put("population.histologies", [17]), ["'population.histologies[0]'", "17"]),
    ("grid-sampling-text", "grid", put("sampling", "every month"), ["'sampling'", "'every month'"]),
    ("grid-sampling-list", "grid", put("sampling", [17]), ["'sampling'", "[17]"]),
    ("grid-sampling-last-d", "grid", put("sampling.last_d", 120), ["'sampling.last_d'", "remove"]),
    (
        "grid-no-visit-in-shortest-arm",
        "grid",
        both(put("durations_d", [30, 180]), put("follow_up_d", 0), put("sampling.every_d", 60)),
        ["'sampling'", "shortest arm", "30 days"],
    ),
    ("grid-regimen-key", "grid", put("regimen", "20 mg od for 90 d"), ["'regimen'", "'cohort'"]),
    ("grid-seed-text", "grid", put("seed", "7"), ["'seed'", "'7'"]),
]


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def _run(path: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["run", str(path), "--out", str(out), "--reduced", "--workers", "1", "--no-progress", *extra])
    return code, capsys.readouterr().err


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("ra-model: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("kind", sorted(BASE))
def test_bases_are_valid(tmp_path: Path, kind: str) -> None:
    """The control: each base file loads, so every case below fails on its one broken key."""
    exp = load_experiment(_write(tmp_path, copy.deepcopy(BASE[kind])), reduced=True)
    assert exp.kind == kind


@pytest.mark.parametrize(("case", "kind", "edit", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_file_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, kind: str, edit: Edit, words: list[str]
) -> None:
    data = copy.deepcopy(BASE[kind])
    edit(data, tmp_path)
    path = _write(tmp_path, data)
    code, err = _run(path, tmp_path / "out", capsys)
    assert code == 2, err
    assert "Traceback" not in err
    line = _error_line(err)
    assert str(path) in line, line
    for word in words:
        assert word in line, (word, line)
    assert not (tmp_path / "out" / "sweep").exists()  # refused before anything ran


@pytest.mark.parametrize(
    ("case", "content", "words"),
    [
        ("toml-syntax", b'description = "unclosed\nkind = "cohort"\n', ["not valid TOML", "line 1"]),
        ("toml-duplicate-key", b'description = "a"\ndescription = "b"\n', ["not valid TOML", "line 2"]),
        ("not-utf8", b'description = "caf\xe9"\nregimens = ["none"]\n', ["not UTF-8", "xe9", "line 1"]),
        ("empty-file", b"", ["'description'", "missing"]),
    ],
)
def test_unreadable_file_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, content: bytes, words: list[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    code, err = _run(path, tmp_path / "out", capsys)
    assert code == 2 and "Traceback" not in err
    line = _error_line(err)
    assert str(path) in line
    for word in words:
        assert word in line, (word, line)


def test_missing_file_and_out_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(tmp_path / "nowhere.toml", tmp_path / "out", capsys)
    assert code == 2 and "Traceback" not in err and "nowhere.toml" in _error_line(err)
    good = _write(tmp_path, copy.deepcopy(BASE["single"]))
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    code, err = _run(good, blocker, capsys)
    assert code == 2 and "Traceback" not in err and "--out" in _error_line(err)


# --------------------------------------------------------------------------- every man fails
#: A CYP26 expression the solver cannot integrate (inside the parameter's domain, so it is accepted).
UNSOLVABLE = {"cyp26_expr": 1e300}


@pytest.mark.parametrize(
    ("kind", "men"),
    [
        # cohort: the first screening round of 2 places draws ceil(2 x 1.25) + 2 = 5 candidates
        ("cohort", math.ceil(2 * 1.25) + 2),
        # grid: 2 men x 1 histology x 2 doses x 2 durations
        ("grid", 2 * 1 * 2 * 2),
    ],
)
def test_every_man_fails_says_so_and_keeps_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, men: int
) -> None:
    data = copy.deepcopy(BASE[kind]) | {"overrides": UNSOLVABLE}
    out = tmp_path / "out"
    code, err = _run(_write(tmp_path, data), out, capsys)
    assert code == 1, err
    assert "Traceback" not in err
    line = _error_line(err)
    assert "every man failed" in line and f"({men} of {men})" in line
    assert "add 0 to the visit days" not in line  # the old, wrong cause
    assert "solver" in line.lower() or "CVODE" in line  # the first failure's own message
    inputs = line[line.index("his inputs: {") :]
    assert "cyp26_expr: " in inputs and "e+300" in inputs  # ... and his inputs (his CYP26 varies around the override)
    assert str(out / "failures.csv") in line
    failures = pd.read_csv(out / "failures.csv")
    assert len(failures) == men and (failures["status"] == "failed").all()
    assert failures["message"].str.len().min() > 0
    assert failures["sample_id"].is_unique
    assert (out / "inputs.json").exists() and (out / "results.csv").exists()


def test_single_run_failure_names_file_and_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = copy.deepcopy(BASE["single"]) | {"overrides": UNSOLVABLE, "regimens": ["20 mg bid for 60 d"]}
    path = _write(tmp_path, data)
    code, err = _run(path, tmp_path / "out", capsys)
    assert code == 1 and "Traceback" not in err
    line = _error_line(err)
    assert str(path) in line and "run '20 mg bid for 60 d'" in line and "cyp26_expr" in line


def test_reduced_table_is_checked_without_reduced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken [reduced] is refused on a full run too, not first found by the quick run in CI."""
    path = _write(tmp_path, copy.deepcopy(BASE["single"]) | {"reduced": {"n_patients": 3}})
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "'reduced.n_patients'" in _error_line(err) and "'grid'" in _error_line(err)
