"""Property-based tests (Hypothesis): the regimen grammar and the readers of spec and scenario files.

Whatever a user types or writes, the answer is a result or one of the package's own errors, never a
Python traceback; and what the package writes it reads back unchanged. Seeds are fixed by Hypothesis'
derandomised profile, so a run is reproducible.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ra_model.errors import RAModelError, RegimenParseError
from ra_model.model.regimen import (
    MAX_DOSE_MG,
    MAX_DOSE_MG_PER_KG_DAY,
    MIN_BODY_WEIGHT_KG,
    MIN_INTERVAL_H,
    Regimen,
)
from ra_model.studies.design import parse_sweep_spec
from ra_model.studies.experiments import load_experiment

SETTINGS = settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def regimens(draw: st.DrawFn) -> Regimen:
    """Any regimen inside the plausibility bounds, by fixed dose or by weight, by duration or by count."""
    interval = draw(st.floats(min_value=MIN_INTERVAL_H, max_value=24.0 * 30))
    by_weight = draw(st.booleans())
    weight = draw(st.one_of(st.none(), st.floats(min_value=MIN_BODY_WEIGHT_KG, max_value=499.0)))
    if by_weight and weight is None:
        weight = 70.0
    by_count = draw(st.booleans())
    return Regimen(
        dose_mg=None if by_weight else draw(st.floats(min_value=1e-3, max_value=MAX_DOSE_MG * 0.999)),
        dose_mg_per_kg_day=draw(st.floats(min_value=1e-3, max_value=MAX_DOSE_MG_PER_KG_DAY * 0.999))
        if by_weight
        else None,
        body_weight_kg=weight,
        interval_h=interval,
        start_d=draw(st.floats(min_value=0.0, max_value=3650.0)),
        duration_d=None if by_count else draw(st.floats(min_value=interval / 24.0, max_value=3650.0)),
        n_doses=draw(st.integers(min_value=1, max_value=2000)) if by_count else None,
        fed=draw(st.booleans()),
    )


@SETTINGS
@given(regimens())
def test_regimen_text_round_trips(regimen: Regimen) -> None:
    assert Regimen.parse(regimen.to_text()) == regimen
    assert Regimen.parse(regimen.to_text().upper()) == regimen


WORDS = ["20", "0.5", "mg", "mg/kg/day", "bid", "od", "every", "12", "h", "for", "180", "d", "x", "doses", ",",
         "fed", "70", "kg", "from", "day", "-1", "1e999", "weeks", "q8h", "nan", "é", "", " "]  # fmt: skip


@SETTINGS
@given(st.one_of(st.text(max_size=60), st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)))
def test_any_text_is_a_regimen_or_a_regimen_parse_error(text: str) -> None:
    try:
        regimen = Regimen.parse(text)
    except RegimenParseError as exc:
        assert "regimen" in str(exc).lower()  # the message says what could not be read
    else:
        assert Regimen.parse(regimen.to_text()) == regimen


toml_scalars = st.one_of(st.booleans(), st.integers(min_value=-(10**6), max_value=10**6), finite, st.text(max_size=12))
#: Table keys: names the readers know (a metric, a parameter, range and scenario keys) or any text.
names = st.one_of(
    st.sampled_from(["responder", "cyp26_expr", "lower", "upper", "log", "t_d", "parameter", "value", "label"]),
    st.text(max_size=8),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=3)),
    max_leaves=8,
)
SPEC_KEYS = ["design", "n", "seed", "phenotype", "regimen", "t_end_d", "output_step_d", "metrics", "parameters",
             "fixed", "fill_nan", "kind", "method", "rank_by", "n_reduced", "description"]  # fmt: skip
VALID_SPEC = {
    "design": "random",
    "n": 2,
    "seed": 1,
    "phenotype": "maturation_arrest",
    "regimen": "20 mg bid for 10 d",
    "t_end_d": 12.0,
    "metrics": ["responder"],
    "parameters": {"cyp26_expr": [2.0, 5.0]},
}


@settings(max_examples=1000, derandomize=True, deadline=None)
@given(st.dictionaries(st.sampled_from(SPEC_KEYS), toml_values, max_size=2))
def test_a_sweep_spec_is_valid_or_a_package_error(changes: dict[str, object]) -> None:
    data = VALID_SPEC | changes
    with contextlib.suppress(RAModelError):  # any other exception fails the test
        parse_sweep_spec(data, where="spec.toml")


VALID_SCENARIO = {"phenotype": "maturation_arrest", "regimen": "20 mg bid for 10 d", "t_end_d": 20.0}
SCENARIO_KEYS = ["phenotype", "regimen", "regimens", "t_end_d", "output_step_d", "kind", "overrides", "runs",
                 "figures", "include_species", "description", "reduced", "seed", "population", "sampling",
                 "response", "cohorts", "published"]  # fmt: skip


@settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(SCENARIO_KEYS), toml_values, max_size=3))
def test_a_scenario_file_loads_or_gives_a_package_error(tmp_path_factory: object, changes: dict[str, object]) -> None:
    folder: Path = tmp_path_factory.mktemp("scenario")  # type: ignore[attr-defined]
    path = folder / "probe.toml"
    path.write_text(tomli_w.dumps(VALID_SCENARIO | changes), encoding="utf-8")
    with contextlib.suppress(RAModelError):  # any other exception fails the test
        load_experiment(path)
