"""Tests for ra_model.model.regimen: validation, dose arithmetic and the text form."""

from __future__ import annotations

import dataclasses
import math
import random
import re

import pytest

from ra_model.errors import InvalidValueError, RegimenParseError
from ra_model.model.regimen import MAX_DOSES, Regimen

CANONICAL = [
    "20 mg bid for 180 d",
    "10 mg od for 180 d",
    "10 mg od for 1 d",
    "5 mg tid for 7 d",
    "5 mg qid for 7 d",
    "0.5 mg/kg/day od for 90 d, 70 kg",
    "0.5 mg/kg/day bid for 120 d, 80 kg, fed",
    "20 mg bid for 180 d, fed",
    "20 mg bid x 10 doses",
    "20 mg od x 1 doses",
    "40 mg od for 30 d from day 14",
    "20 mg every 36 h for 60 d from day 7, fed",
    "20 mg every 0.5 h x 3 doses",
    "0.1 mg every 2.4 h for 0.1 d from day 0.25",
    "20 mg bid for 10 d, 70 kg",
    "1e-05 mg od for 1 d",
    "0.30000000000000004 mg od for 1 d",
]


def caret_under(message: str, text: str, fragment: str) -> bool:
    """Whether the caret line of ``message`` starts under ``fragment`` within the quoted ``text``."""
    lines = message.splitlines()
    shown = "".join(" " if ch.isspace() else ch for ch in text)
    for i, line in enumerate(lines):
        if "^" in line and set(line.strip()) == {"^"} and i > 0 and lines[i - 1].endswith(shown):
            offset = len(lines[i - 1]) - len(shown)
            start = line.index("^") - offset
            width = len(line.strip())
            return text[start : start + width] == fragment or (fragment == "" and start == len(text) and width == 1)
    return False


# -- round trips ------------------------------------------------------------------


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_text_round_trips_exactly(text: str) -> None:
    regimen = Regimen.parse(text)
    assert regimen.to_text() == text
    assert str(regimen) == text
    assert Regimen.parse(regimen.to_text()) == regimen


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("20 MG BID FOR 180 DAYS", "20 mg bid for 180 d"),
        ("  20mg   bid  for 180d  ", "20 mg bid for 180 d"),
        ("20 mg\tbid\nfor 180 day", "20 mg bid for 180 d"),
        ("10 mg qd for 2 weeks", "10 mg od for 14 d"),
        ("10 mg od for 2 w", "10 mg od for 14 d"),
        ("10 mg od for 6 months", "10 mg od for 180 d"),
        ("10 mg od for 1 month, fasted", "10 mg od for 30 d"),
        ("20 mg q36h for 60 d", "20 mg every 36 h for 60 d"),
        ("20 mg every 12 hours for 60 d", "20 mg bid for 60 d"),
        ("20 mg every 24 h for 60 d from day 0", "20 mg od for 60 d"),
        ("0.5 mg/kg/d od for 90 d, 70 kg", "0.5 mg/kg/day od for 90 d, 70 kg"),
        ("0.5 mg/kg/day od for 90 d, fed, 70 kg", "0.5 mg/kg/day od for 90 d, 70 kg, fed"),
        ("20 mg bid for 10 doses", "20 mg bid x 10 doses"),
        ("20 mg bid x 1 dose", "20 mg bid x 1 doses"),
    ],
)
def test_accepted_variants_parse_to_canonical(text: str, canonical: str) -> None:
    assert Regimen.parse(text).to_text() == canonical


def _random_float(rng: random.Random, low: float, high: float) -> float:
    """A random float, either 'nice' (few digits) or with full precision."""
    value = rng.uniform(low, high)
    if rng.random() < 0.5:
        return value
    return max(low, round(value, rng.choice([0, 1, 2])))


def _random_regimen(rng: random.Random) -> Regimen:
    weight_based = rng.random() < 0.4
    interval = rng.choice([6.0, 8.0, 12.0, 24.0, 36.0, _random_float(rng, 1.0, 72.0)])
    use_duration = rng.random() < 0.6
    return Regimen(
        dose_mg=None if weight_based else _random_float(rng, 0.1, 80.0),
        dose_mg_per_kg_day=_random_float(rng, 0.05, 2.0) if weight_based else None,
        body_weight_kg=_random_float(rng, 30.0, 150.0) if weight_based or rng.random() < 0.2 else None,
        interval_h=interval,
        start_d=0.0 if rng.random() < 0.5 else _random_float(rng, 0.0, 60.0),
        duration_d=_random_float(rng, 0.5, 400.0) if use_duration else None,
        n_doses=None if use_duration else rng.randint(1, 500),
        fed=rng.random() < 0.5,
    )


def test_random_regimens_round_trip() -> None:
    rng = random.Random(0)
    for _ in range(500):
        regimen = _random_regimen(rng)
        text = regimen.to_text()
        again = Regimen.parse(text)
        assert again == regimen, text
        assert again.to_text() == text
        assert again.number_of_doses == regimen.number_of_doses


# -- dose counts and arithmetic ------------------------------------------------------


def test_bid_for_180_days_is_360_doses() -> None:
    regimen = Regimen.parse("20 mg bid for 180 d")
    assert regimen.number_of_doses == 360
    times = regimen.dose_times_h()
    assert len(times) == 360
    assert times[0] == 0.0
    assert times[1] == 12.0
    assert times[-1] == 180 * 24 - 12
    assert all(isinstance(t, float) for t in times)
    assert regimen.end_d == pytest.approx(179.5)
    assert regimen.total_dose_mg == pytest.approx(7200.0)


def test_one_day_once_daily_is_one_dose() -> None:
    regimen = Regimen.parse("10 mg od for 1 d")
    assert regimen.number_of_doses == 1
    assert regimen.dose_times_h() == (0.0,)
    assert regimen.end_d == 0.0


def test_partial_interval_counts_the_dose_inside_the_period() -> None:
    # doses at 0, 36, 72 h are < 80 h; the next (108 h) is not.
    regimen = Regimen(dose_mg=20.0, interval_h=36.0, duration_d=80 / 24)
    assert regimen.number_of_doses == 3


def test_dose_exactly_at_the_end_is_excluded_despite_rounding() -> None:
    assert Regimen(dose_mg=1.0, interval_h=2.4, duration_d=0.1).number_of_doses == 1
    assert Regimen(dose_mg=1.0, interval_h=0.1, duration_d=0.3).number_of_doses == 72


def test_any_positive_duration_includes_the_first_dose() -> None:
    regimen = Regimen(dose_mg=1.0, interval_h=1e12, duration_d=1e-3)
    assert regimen.number_of_doses == 1
    assert regimen.dose_times_h() == (0.0,)


def test_n_doses_form() -> None:
    regimen = Regimen.parse("20 mg bid x 10 doses")
    assert regimen.number_of_doses == 10
    assert regimen.n_doses == 10
    assert regimen.duration_d is None
    assert regimen.dose_times_h()[-1] == 9 * 12.0
    assert regimen.total_dose_mg == 200.0


def test_start_day_offsets_dose_times() -> None:
    regimen = Regimen.parse("40 mg od for 30 d from day 14")
    times = regimen.dose_times_h()
    assert times[0] == 14 * 24.0
    assert times[-1] == (14 + 29) * 24.0
    assert regimen.end_d == 43.0
    assert regimen.start_d == 14.0


def test_weight_based_dose_arithmetic() -> None:
    regimen = Regimen.parse("0.5 mg/kg/day bid for 10 d, 80 kg")
    assert regimen.dose_mg is None
    assert regimen.dose_mg_per_kg_day == 0.5
    assert regimen.body_weight_kg == 80.0
    assert regimen.dose_per_administration_mg == pytest.approx(20.0)
    assert regimen.total_dose_mg == pytest.approx(0.5 * 80 * 10)
    once_daily = Regimen(dose_mg_per_kg_day=0.5, body_weight_kg=80.0, interval_h=24.0, n_doses=1)
    assert once_daily.dose_per_administration_mg == pytest.approx(40.0)


def test_fed_flag_and_defaults() -> None:
    assert Regimen.parse("20 mg bid for 10 d, fed").fed is True
    assert Regimen.parse("20 mg bid for 10 d, fasted").fed is False
    regimen = Regimen(dose_mg=20.0, n_doses=3)
    assert regimen.interval_h == 24.0
    assert regimen.start_d == 0.0
    assert regimen.fed is False


def test_integer_inputs_are_stored_as_float() -> None:
    regimen = Regimen(dose_mg=20, interval_h=12, duration_d=10)
    assert isinstance(regimen.dose_mg, float)
    assert isinstance(regimen.interval_h, float)
    assert isinstance(regimen.duration_d, float)
    assert regimen == Regimen.parse("20 mg bid for 10 d")


def test_regimen_is_frozen_and_hashable() -> None:
    regimen = Regimen.parse("20 mg bid for 180 d")
    with pytest.raises(dataclasses.FrozenInstanceError):
        regimen.dose_mg = 40.0  # type: ignore[misc]
    assert hash(regimen) == hash(Regimen.parse("20 MG BID for 180 days"))


def test_fields_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Regimen(20.0)  # type: ignore[call-arg]


# -- parse errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bad", "fragment"),
    [
        ("20 mgg bid for 180 d", "mgg", "expected a unit 'mg' or 'mg/kg/day'"),
        ("mg bid for 10 d", "mg", "expected a dose"),
        ("20 mg bd for 10 d", "bd", "expected a dosing interval"),
        ("20 mg bid for 10 fortnights", "fortnights", "expected a duration unit"),
        ("20 mg bid during 10 d", "during", "expected 'for N d' or 'x N doses'"),
        ("20 mg bid x 2.5 doses", "2.5", "whole number of doses"),
        ("20 mg bid for 10 d, hungry", "hungry", "'fed', 'fasted'"),
        ("20 mg bid for 10 d junk", "junk", "end of text"),
        ("20 mg bid for 10 d, 70 lb", "lb", "'kg'"),
        ("20 mg bid for 10 d from week 2", "week", "'day'"),
        ("20 mg bid for 10 d, fed, fasted", "fasted", "given twice"),
        ("nan mg bid for 10 d", "nan", "expected a dose"),
    ],
)
def test_parse_errors_point_at_the_bad_token(text: str, bad: str, fragment: str) -> None:
    with pytest.raises(RegimenParseError) as info:
        Regimen.parse(text)
    message = str(info.value)
    assert fragment in message
    assert text in message
    assert caret_under(message, text, bad), message
    assert "20 mg bid for 180 d" in message  # an example of valid text


def test_unknown_unit_message_layout() -> None:
    with pytest.raises(RegimenParseError) as info:
        Regimen.parse("20 mgg bid for 180 d")
    lines = str(info.value).splitlines()
    text_line = next(line for line in lines if line.endswith("20 mgg bid for 180 d"))
    caret_line = lines[lines.index(text_line) + 1]
    assert caret_line.rstrip() == " " * text_line.index("mgg") + "^^^"


def test_missing_interval_at_end_of_text() -> None:
    with pytest.raises(RegimenParseError) as info:
        Regimen.parse("20 mg")
    message = str(info.value)
    assert "got end of text" in message
    assert caret_under(message, "20 mg", "")


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text(text: str) -> None:
    with pytest.raises(RegimenParseError, match="expected a dose"):
        Regimen.parse(text)


def test_parse_rejects_non_string() -> None:
    with pytest.raises(RegimenParseError, match="expects a str"):
        Regimen.parse(20)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "bad", "fragment"),
    [
        ("-20 mg bid for 10 d", "-20", "dose_mg -20.0"),
        ("0 mg bid for 10 d", "0", "dose_mg 0.0"),
        ("20 mg every 0 h for 10 d", "0 h", "interval_h 0.0"),
        ("20 mg q0h for 10 d", "q0h", "interval_h 0.0"),
        ("20 mg bid for 0 d", "0 d", "duration_d 0.0"),
        ("20 mg bid x 0 doses", "0", "n_doses 0"),
        ("20 mg bid for 10 d, 0 kg", "0", "body_weight_kg 0.0"),
        ("20 mg bid for 10 d, 700 kg", "700", "body_weight_kg 700.0"),
        ("1e999 mg bid for 10 d", "1e999", "dose_mg inf"),
        ("0.5 mg/kg/day od for 90 d", "mg/kg/day", "body_weight_kg"),
        ("20 mg bid for 1e9 d", "1e9 d", "MAX_DOSES"),
    ],
)
def test_out_of_range_values_in_text(text: str, bad: str, fragment: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        Regimen.parse(text)
    assert isinstance(info.value, RegimenParseError)
    message = str(info.value)
    assert fragment in message
    assert caret_under(message, text, bad), message


# -- constructor validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"dose_mg": -20.0, "duration_d": 10.0}, "dose_mg -20.0"),
        ({"dose_mg": 0.0, "duration_d": 10.0}, "dose_mg 0.0"),
        ({"dose_mg": math.nan, "duration_d": 10.0}, "dose_mg nan"),
        ({"dose_mg": math.inf, "duration_d": 10.0}, "dose_mg inf"),
        ({"dose_mg": True, "duration_d": 10.0}, "dose_mg True"),
        ({"dose_mg": "20", "duration_d": 10.0}, "dose_mg '20'"),
        ({"duration_d": 10.0}, "exactly one of dose_mg and dose_mg_per_kg_day"),
        ({"dose_mg": 20.0, "dose_mg_per_kg_day": 0.5, "body_weight_kg": 70.0, "duration_d": 10.0}, "both"),
        ({"dose_mg_per_kg_day": 0.5, "duration_d": 10.0}, "body_weight_kg"),
        ({"dose_mg_per_kg_day": 0.5, "body_weight_kg": math.nan, "duration_d": 10.0}, "body_weight_kg nan"),
        ({"dose_mg_per_kg_day": 0.5, "body_weight_kg": 500.0, "duration_d": 10.0}, "body_weight_kg 500.0"),
        ({"dose_mg_per_kg_day": -0.5, "body_weight_kg": 70.0, "duration_d": 10.0}, "dose_mg_per_kg_day -0.5"),
        ({"dose_mg": 20.0, "interval_h": 0.0, "duration_d": 10.0}, "interval_h 0.0"),
        ({"dose_mg": 20.0, "interval_h": math.inf, "duration_d": 10.0}, "interval_h inf"),
        ({"dose_mg": 20.0, "interval_h": None, "duration_d": 10.0}, "interval_h None"),
        ({"dose_mg": 20.0, "start_d": -1.0, "duration_d": 10.0}, "start_d -1.0"),
        ({"dose_mg": 20.0, "start_d": math.nan, "duration_d": 10.0}, "start_d nan"),
        ({"dose_mg": 20.0, "duration_d": 10.0, "n_doses": 20}, "exactly one of duration_d and n_doses"),
        ({"dose_mg": 20.0}, "exactly one of duration_d and n_doses"),
        ({"dose_mg": 20.0, "duration_d": -1.0}, "duration_d -1.0"),
        ({"dose_mg": 20.0, "duration_d": math.nan}, "duration_d nan"),
        ({"dose_mg": 20.0, "n_doses": 0}, "n_doses 0"),
        ({"dose_mg": 20.0, "n_doses": 2.0}, "n_doses 2.0"),
        ({"dose_mg": 20.0, "n_doses": True}, "n_doses True"),
        ({"dose_mg": 20.0, "n_doses": MAX_DOSES + 1}, "n_doses"),
        ({"dose_mg": 20.0, "interval_h": 1e-6, "duration_d": 1e3}, "MAX_DOSES"),
        ({"dose_mg": 20.0, "n_doses": 3, "fed": 1}, "fed 1"),
        ({"dose_mg": 20.0, "n_doses": 3, "fed": "yes"}, "fed 'yes'"),
    ],
)
def test_invalid_fields_raise_invalid_value_error(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        Regimen(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_invalid_value_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=re.escape("dose_mg -1.0")):
        Regimen(dose_mg=-1.0, n_doses=1)
