"""Dosing regimens: a validated value object and its text form.

A :class:`Regimen` describes repeated oral administrations of isotretinoin:
a dose (fixed in mg, or weight-based in mg/kg/day), a dosing interval, a
start day, either a treatment duration or a number of doses, and whether the
drug is taken with food. A regimen validates itself on construction and
raises :class:`~ra_model.errors.InvalidValueError` for any value outside its
domain; it never clips or coerces a bad value. "No drug" is represented by
``None`` elsewhere in the package, not by a special regimen.

Text form (case-insensitive on input, canonical on output)::

    <dose> <unit> <interval> (for <N> <time-unit> | x <N> doses) [from day <N>] [, <option>]...

* ``<unit>``: ``mg`` (per administration) or ``mg/kg/day`` (also ``mg/kg/d``),
  the latter needing a body weight option ``, <N> kg``.
* ``<interval>``: ``od``/``qd`` (24 h), ``bid`` (12 h), ``tid`` (8 h),
  ``qid`` (6 h), ``q<N>h``, or ``every <N> h`` (also ``q <N> h``; the unit
  also ``hr``, ``hrs``, ``hour``, ``hours``, or ``d``, ``day``, ``days``).
* ``<time-unit>`` of a duration: ``d``, ``day``, ``days``; ``w``, ``wk``,
  ``wks``, ``week``, ``weeks`` (7 d); ``mo``, ``month``, ``months`` (a month
  is taken as exactly 30 d).
* ``x <N> doses`` (also ``× <N> doses``, ``for <N> doses``, ``dose``) gives
  the whole number of doses instead.
* ``from day <N>`` (also ``from d <N>``) must come before the options.
* ``<option>``: ``fed``, ``fasted`` (the default) or a body weight ``<N> kg``
  (also ``kgs``), each at most once.

Numbers may have a sign, a decimal point and an exponent (``1e-3``). The exact
words and forms are the table ``_GRAMMAR`` in the "text form" section below.

Canonical output writes the interval as od/bid/tid/qid when it is exactly
24/12/8/6 h and ``every <N> h`` otherwise, the duration in days (``for N d``),
``from day N`` only for a non-zero start, then ``, N kg`` when a body weight
is set and ``, fed`` when fed. Numbers are written in their shortest form that
reads back to the identical float, so ``Regimen.parse(r.to_text()) == r``.

Examples:
    >>> Regimen.parse("20 mg bid for 180 d").number_of_doses
    360
    >>> str(Regimen.parse("0.5 MG/KG/D qd for 12 weeks, 70 kg, fasted"))
    '0.5 mg/kg/day od for 84 d, 70 kg'
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from ra_model.errors import InvalidValueError, RegimenParseError

log = logging.getLogger(__name__)

__all__ = ["MAX_BODY_WEIGHT_KG", "MAX_DOSES", "NO_DRUG", "Regimen", "parse_optional"]

#: Model parameters the dose event reads and updates (its armed values are a regimen's state in the model).
DOSE_EVENT_PARAMETERS: tuple[str, ...] = ("dose_mg", "dose_interval_h", "n_doses", "fed", "doses_given", "t_next_dose")

#: Body weights at or above this (kg) are rejected as implausible.
MAX_BODY_WEIGHT_KG = 500.0

#: Body weights below this (kg) are rejected: the model is of an adult man, and ``0.001 kg`` is a typo.
MIN_BODY_WEIGHT_KG = 20.0

#: Doses per administration at or above this (mg) are rejected: 25 of the largest (40 mg) capsules.
MAX_DOSE_MG = 1000.0

#: Weight-based doses at or above this (mg/kg/day) are rejected: 5x the highest labelled dose.
MAX_DOSE_MG_PER_KG_DAY = 10.0

#: Intervals below this (h) are rejected: no oral regimen doses more often than hourly.
MIN_INTERVAL_H = 1.0

#: Daily doses above this (mg/kg/day) are allowed with a warning: the highest labelled isotretinoin
#: dose (2 mg/kg/day for severe acne; the NOA trials used about 0.5). A fixed dose is judged at the
#: regimen's body weight, or at ``REFERENCE_WEIGHT_KG`` when it has none.
LABEL_MAX_MG_PER_KG_DAY = 2.0

#: Body weight (kg) at which a fixed dose without a weight is judged against the labelled maximum.
REFERENCE_WEIGHT_KG = 70.0

#: Regimens with more administrations than this are rejected (a guard against
#: typos such as ``every 0.0001 h`` that would otherwise exhaust memory).
MAX_DOSES = 1_000_000

_HOURS_PER_DAY = 24.0

#: Relative tolerance under which ``duration / interval`` counts as a whole
#: number, so that a dose falling exactly at the end of the treatment period
#: is excluded despite floating-point rounding (``for 0.1 d`` at ``every 2.4 h``
#: is one dose, not two).
_WHOLE_NUMBER_RTOL = 1e-9

_CANONICAL_INTERVAL_NAMES: dict[float, str] = {24.0: "od", 12.0: "bid", 8.0: "tid", 6.0: "qid"}

_VALID_EXAMPLES = (
    "'20 mg bid for 180 d', '0.5 mg/kg/day od for 90 d, 70 kg', '20 mg every 36 h x 10 doses from day 7, fed'"
)


def _format_number(value: float) -> str:
    """Format a float in its shortest ``g``-style form that reads back exactly.

    Args:
        value: A finite float.

    Returns:
        ``format(value, '.15g')`` when that round-trips, else ``repr(value)``.
    """
    text = format(value, ".15g")
    if float(text) != value:
        text = repr(value)
    return text


def _count_doses(duration_d: float, interval_h: float) -> float:
    """Count administration times ``k * interval`` strictly below the duration.

    Args:
        duration_d: Treatment duration in days (> 0, finite).
        interval_h: Dosing interval in hours (> 0, finite).

    Returns:
        The number of doses as a float (``inf`` or huge when the ratio overflows;
        the caller compares it against :data:`MAX_DOSES`).
    """
    ratio = duration_d * _HOURS_PER_DAY / interval_h
    if not math.isfinite(ratio):
        return math.inf
    nearest = round(ratio)
    is_whole = abs(ratio - nearest) <= _WHOLE_NUMBER_RTOL * max(1.0, ratio)
    count = float(nearest) if is_whole else float(math.ceil(ratio))
    # The dose at the start always lies strictly before start + duration.
    return max(count, 1.0)


class _FieldProblemError(Exception):
    """Internal: a validation failure tied to one field (used to place carets)."""

    def __init__(self, field_name: str, message: str) -> None:
        """Store the field name and the user-facing message.

        Args:
            field_name: The dataclass field the problem is about.
            message: The full message for :class:`InvalidValueError`.
        """
        super().__init__(message)
        self.field_name = field_name
        self.message = message


def _describe(value: object) -> str:
    """Return ``repr(value)`` with its type when that is not obvious."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"{value!r} (of type {type(value).__name__})"
    return repr(value)


def _real(
    name: str,
    value: object,
    *,
    what: str,
    example: str,
    allow_zero: bool = False,
    lower: float | None = None,
    upper: float | None = None,
) -> float:
    """Check a real-valued field and return it as a float.

    Args:
        name: Field name, used in the message.
        value: The value given.
        what: Description with unit, e.g. ``"the dosing interval in hours"``.
        example: A valid setting to suggest, e.g. ``"interval_h=12.0"``.
        allow_zero: Accept 0 (otherwise the value must be > 0).
        lower: Inclusive lower bound above 0, if any (a plausibility bound).
        upper: Exclusive upper bound, if any.

    Returns:
        The value as a float.

    Raises:
        _FieldProblemError: If the value is not a finite real number in range.
    """
    bound = ">= 0" if allow_zero else "> 0"
    if lower is not None:
        bound = f">= {_format_number(lower)}"
    if upper is not None:
        bound += f" and < {_format_number(upper)}"
    fix = f"{name} must be a finite number {bound} ({what}), e.g. {example}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _FieldProblemError(name, f"invalid {name} {_describe(value)}: {fix}")
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError):
        raise _FieldProblemError(name, f"invalid {name} {_describe(value)}: {fix}") from None
    ok = math.isfinite(number) and (number >= 0.0 if allow_zero else number > 0.0)
    if ok and lower is not None:
        ok = number >= lower
    if ok and upper is not None:
        ok = number < upper
    if not ok:
        raise _FieldProblemError(name, f"invalid {name} {value!r}: {fix}")
    return number


_WARNED_ABOVE_LABEL: set[str] = set()


def _warn_above_label(regimen: Regimen) -> None:
    """Log once per regimen a daily dose above the labelled maximum (allowed: it is physically possible)."""
    weight = regimen.body_weight_kg or REFERENCE_WEIGHT_KG
    per_kg_day = regimen.dose_per_administration_mg * (_HOURS_PER_DAY / regimen.interval_h) / weight
    if per_kg_day <= LABEL_MAX_MG_PER_KG_DAY:
        return
    text = regimen.to_text()
    if text not in _WARNED_ABOVE_LABEL:
        _WARNED_ABOVE_LABEL.add(text)
        at = "" if regimen.body_weight_kg else f" at {REFERENCE_WEIGHT_KG:g} kg"
        log.warning(
            "regimen %r gives %.3g mg/kg/day%s, above the labelled maximum of %g mg/kg/day; the model has "
            "no data at such doses",
            text,
            per_kg_day,
            at,
            LABEL_MAX_MG_PER_KG_DAY,
        )


@dataclass(frozen=True, kw_only=True)
class Regimen:
    """A validated oral dosing regimen.

    Exactly one of ``dose_mg`` and ``dose_mg_per_kg_day`` must be given, and
    exactly one of ``duration_d`` and ``n_doses``. Integer values of real
    fields are stored as floats; anything else that is not a finite number in
    range raises :class:`~ra_model.errors.InvalidValueError`.

    Attributes:
        dose_mg: Fixed dose per administration in mg (> 0).
        dose_mg_per_kg_day: Weight-based daily dose in mg/kg/day (> 0); needs
            ``body_weight_kg``. The per-administration dose is then
            ``dose_mg_per_kg_day * body_weight_kg * interval_h / 24``.
        body_weight_kg: Body weight in kg (> 0 and < 500). Required for
            weight-based doses; optional (kept for information) for fixed doses.
        interval_h: Time between administrations in hours (> 0).
        start_d: Day of the first administration (>= 0).
        duration_d: Treatment period in days (> 0). The doses are those at
            ``start, start + interval, ...`` strictly before ``start + duration``.
        n_doses: Number of administrations (an ``int`` >= 1).
        fed: Whether the drug is taken with food (default: fasted).
    """

    dose_mg: float | None = None
    dose_mg_per_kg_day: float | None = None
    body_weight_kg: float | None = None
    interval_h: float = 24.0
    start_d: float = 0.0
    duration_d: float | None = None
    n_doses: int | None = None
    fed: bool = False

    def __post_init__(self) -> None:
        """Validate all fields and normalise real-valued ones to float.

        Raises:
            InvalidValueError: If any field is missing, of the wrong type or out
                of range; the message names the bad value and how to fix it.
        """
        try:
            normalised = _validated_fields(
                dose_mg=self.dose_mg,
                dose_mg_per_kg_day=self.dose_mg_per_kg_day,
                body_weight_kg=self.body_weight_kg,
                interval_h=self.interval_h,
                start_d=self.start_d,
                duration_d=self.duration_d,
                n_doses=self.n_doses,
                fed=self.fed,
            )
        except _FieldProblemError as problem:
            raise InvalidValueError(problem.message) from None
        for name, value in normalised.items():
            object.__setattr__(self, name, value)
        _warn_above_label(self)

    @property
    def dose_per_administration_mg(self) -> float:
        """The amount given at each administration, in mg."""
        if self.dose_mg is not None:
            return self.dose_mg
        assert self.dose_mg_per_kg_day is not None and self.body_weight_kg is not None
        return self.dose_mg_per_kg_day * self.body_weight_kg * self.interval_h / _HOURS_PER_DAY

    @property
    def number_of_doses(self) -> int:
        """The number of administrations."""
        if self.n_doses is not None:
            return self.n_doses
        assert self.duration_d is not None
        return int(_count_doses(self.duration_d, self.interval_h))

    def dose_times_h(self) -> tuple[float, ...]:
        """Return the administration times in hours from t = 0.

        Returns:
            ``start_d * 24 + k * interval_h`` for ``k = 0 .. number_of_doses - 1``.
        """
        start_h = self.start_d * _HOURS_PER_DAY
        return tuple(start_h + k * self.interval_h for k in range(self.number_of_doses))

    @property
    def total_dose_mg(self) -> float:
        """The cumulative dose over the whole regimen, in mg."""
        return self.dose_per_administration_mg * self.number_of_doses

    @property
    def end_d(self) -> float:
        """The time of the last administration, in days from t = 0."""
        last_h = self.start_d * _HOURS_PER_DAY + (self.number_of_doses - 1) * self.interval_h
        return last_h / _HOURS_PER_DAY

    def to_text(self) -> str:
        """Return the canonical text form, which :meth:`parse` reads back exactly.

        Returns:
            E.g. ``"20 mg bid for 180 d"`` or ``"0.5 mg/kg/day od for 90 d, 70 kg, fed"``.
        """
        if self.dose_mg is not None:
            dose = f"{_format_number(self.dose_mg)} mg"
        else:
            assert self.dose_mg_per_kg_day is not None
            dose = f"{_format_number(self.dose_mg_per_kg_day)} mg/kg/day"
        interval = _CANONICAL_INTERVAL_NAMES.get(self.interval_h)
        if interval is None:
            interval = f"every {_format_number(self.interval_h)} h"
        if self.duration_d is not None:
            extent = f"for {_format_number(self.duration_d)} d"
        else:
            extent = f"x {self.n_doses} doses"
        parts = [f"{dose} {interval} {extent}"]
        if self.start_d != 0.0:
            parts.append(f" from day {_format_number(self.start_d)}")
        if self.body_weight_kg is not None:
            parts.append(f", {_format_number(self.body_weight_kg)} kg")
        if self.fed:
            parts.append(", fed")
        return "".join(parts)

    def __str__(self) -> str:
        """Return the canonical text form (see :meth:`to_text`)."""
        return self.to_text()

    @classmethod
    def parse(cls, text: str) -> Regimen:
        """Read a regimen from its text form (see the module docstring).

        Args:
            text: E.g. ``"20 mg bid for 180 d"``; case and extra whitespace are
                ignored.

        Returns:
            The validated regimen.

        Raises:
            RegimenParseError: If the text does not follow the grammar or a value
                in it is out of range; the message quotes the text with a caret
                line under the offending part and gives valid examples.
        """
        if not isinstance(text, str):
            raise RegimenParseError(
                f"Regimen.parse expects a str, got {_describe(text)}; valid examples: {_VALID_EXAMPLES}"
            )
        return _parse(text)


def _validated_fields(
    *,
    dose_mg: object,
    dose_mg_per_kg_day: object,
    body_weight_kg: object,
    interval_h: object,
    start_d: object,
    duration_d: object,
    n_doses: object,
    fed: object,
) -> dict[str, float | int | None]:
    """Validate regimen fields and return the real-valued ones normalised.

    Args:
        dose_mg: See :class:`Regimen`.
        dose_mg_per_kg_day: See :class:`Regimen`.
        body_weight_kg: See :class:`Regimen`.
        interval_h: See :class:`Regimen`.
        start_d: See :class:`Regimen`.
        duration_d: See :class:`Regimen`.
        n_doses: See :class:`Regimen`.
        fed: See :class:`Regimen`.

    Returns:
        Field name to normalised value (floats for real fields, int for
        ``n_doses``); ``fed`` is not included since it is never changed.

    Raises:
        _FieldProblemError: On the first invalid field.
    """
    out: dict[str, float | int | None] = {}
    if (dose_mg is None) == (dose_mg_per_kg_day is None):
        both = "both were given" if dose_mg is not None else "neither was given"
        raise _FieldProblemError(
            "dose_mg",
            f"exactly one of dose_mg and dose_mg_per_kg_day must be given, but {both} "
            f"(dose_mg={dose_mg!r}, dose_mg_per_kg_day={dose_mg_per_kg_day!r}); "
            "e.g. dose_mg=20.0, or dose_mg_per_kg_day=0.5 with body_weight_kg=70.0",
        )
    if dose_mg is not None:
        out["dose_mg"] = _real(
            "dose_mg", dose_mg, what="mg per administration", example="dose_mg=20.0", upper=MAX_DOSE_MG
        )
    else:
        out["dose_mg_per_kg_day"] = _real(
            "dose_mg_per_kg_day",
            dose_mg_per_kg_day,
            what="mg/kg/day",
            example="dose_mg_per_kg_day=0.5",
            upper=MAX_DOSE_MG_PER_KG_DAY,
        )
    if body_weight_kg is None:
        if dose_mg_per_kg_day is not None:
            raise _FieldProblemError(
                "body_weight_kg",
                f"dose_mg_per_kg_day={dose_mg_per_kg_day!r} needs a body weight, but body_weight_kg is None; "
                "give body_weight_kg (e.g. body_weight_kg=70.0, or ', 70 kg' in regimen text)",
            )
    else:
        out["body_weight_kg"] = _real(
            "body_weight_kg",
            body_weight_kg,
            what="body weight in kg",
            example="body_weight_kg=70.0",
            lower=MIN_BODY_WEIGHT_KG,
            upper=MAX_BODY_WEIGHT_KG,
        )
    interval = _real(
        "interval_h", interval_h, what="hours between doses", example="interval_h=12.0 for bid", lower=MIN_INTERVAL_H
    )
    out["interval_h"] = interval
    out["start_d"] = _real("start_d", start_d, what="day of the first dose", example="start_d=0.0", allow_zero=True)
    if fed is not True and fed is not False:
        raise _FieldProblemError("fed", f"invalid fed {_describe(fed)}: fed must be True or False")
    if (duration_d is None) == (n_doses is None):
        both = "both were given" if duration_d is not None else "neither was given"
        raise _FieldProblemError(
            "duration_d",
            f"exactly one of duration_d and n_doses must be given, but {both} "
            f"(duration_d={duration_d!r}, n_doses={n_doses!r}); e.g. duration_d=180.0 or n_doses=10",
        )
    if duration_d is not None:
        duration = _real("duration_d", duration_d, what="treatment period in days", example="duration_d=180.0")
        out["duration_d"] = duration
        count = _count_doses(duration, interval)
        if count > MAX_DOSES:
            raise _FieldProblemError(
                "duration_d",
                f"duration_d={duration_d!r} at interval_h={interval_h!r} gives {count:.3g} doses, more than "
                f"MAX_DOSES={MAX_DOSES}; check the units (duration in days, interval in hours)",
            )
    else:
        if isinstance(n_doses, bool) or not isinstance(n_doses, numbers.Integral):
            raise _FieldProblemError(
                "n_doses",
                f"invalid n_doses {n_doses!r} (of type {type(n_doses).__name__}): "
                f"n_doses must be an int >= 1, e.g. n_doses=10",
            )
        n = int(n_doses)
        if n < 1 or n > MAX_DOSES:
            raise _FieldProblemError(
                "n_doses", f"invalid n_doses {n_doses!r}: n_doses must be an int >= 1 and <= {MAX_DOSES}"
            )
        out["n_doses"] = n
    return out


# -- the text form: a table of words and forms, read by one loop -------------------------------------------------
#
# Text is split into tokens (numbers, words, commas), then read clause by clause in the order of _GRAMMAR. A
# clause's form is chosen by its first token; each later token must fit its slot, else the error says what
# the slot expects ("expected an interval unit 'h' ..., got 'x'") with a caret under the token. Each form
# sets one Regimen field: a word alone gives the value ("bid" = 12 h), a number is multiplied by the factor
# of its unit word ("2 weeks" = 2 * 7 d). The fields are validated last, with the caret under the number.


class _Token(NamedTuple):
    """A lexical token of regimen text."""

    kind: str  # "num", "qnh", "word", "comma", "other" or "end"
    value: str  # lower-cased text (for "qnh": the number inside)
    start: int
    end: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
    | (?P<qnh>[qQ](?P<qn>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[hH](?![A-Za-z0-9]))
    | (?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    | (?P<word>[A-Za-z]+(?:/[A-Za-z]+)*|×)
    | (?P<comma>,)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def _tokenize(text: str) -> list[_Token]:
    """Split regimen text into tokens, ending with an ``end`` token."""
    tokens: list[_Token] = []
    for match in _TOKEN_RE.finditer(text):
        kind = match.lastgroup
        assert kind is not None
        if kind == "qnh":
            tokens.append(_Token("qnh", match.group("qn"), match.start(), match.end()))
        elif kind != "ws":
            tokens.append(_Token(kind, match.group().lower(), match.start(), match.end()))
    tokens.append(_Token("end", "", len(text), len(text)))
    return tokens


#: What a word sets: a field and either its value (a word alone, "bid") or the factor on the number
#: before it (a unit, "weeks"); ``None`` for a word that only opens a form ("every").
_Meaning = tuple[str, float | bool] | None


class _Slot(NamedTuple):
    """One token of a form: a number, or one of a set of words."""

    what: str  # reported as "expected <what>, got ..." when the token does not fit (unused for a form's first)
    kind: str  # "num" (any number), "int" (a whole number), "qnh" (as in "q36h") or "word"
    words: dict[str, _Meaning] = {}  # for "word": the words allowed here and what each sets
    field: str = ""  # for a number: the field it sets when no word in the form names one


def _words(what: str, **fields: dict[str, float | bool]) -> _Slot:
    """A word slot: ``field={"synonym synonym": value or factor, ...}`` for each field its words set."""
    meanings: dict[str, _Meaning] = {}
    for field, values in fields.items():
        for words, value in values.items():
            meanings |= dict.fromkeys(words.split(), (field, value))
    return _Slot(what, "word", meanings)


def _opener(words: str) -> _Slot:
    """A word slot that only opens a form, e.g. ``"every q"``."""
    return _Slot("", "word", dict.fromkeys(words.split()))


# fmt: off
_NUMBER = _Slot("", "num")
_QNH = _Slot("", "qnh", field="interval_h")
_DOSE_UNIT = _words("a unit 'mg' or 'mg/kg/day'", dose_mg={"mg": 1.0}, dose_mg_per_kg_day={"mg/kg/day mg/kg/d": 1.0})
_NAMED_INTERVAL = _words("", interval_h={"od qd": 24.0, "bid": 12.0, "tid": 8.0, "qid": 6.0})
_INTERVAL_LENGTH = _Slot("an interval length (a number such as 36, as in 'every 36 h')", "num")
_INTERVAL_UNIT = _words("an interval unit 'h' (or 'hours', 'd')",
                        interval_h={"h hr hrs hour hours": 1.0, "d day days": _HOURS_PER_DAY})
_DOSE_COUNT = _Slot("a whole number of doses (as in 'x 10 doses')", "int")
_DOSES = _words("'doses' (as in 'x 10 doses')", n_doses={"dose doses": 1})
_DURATION = _Slot("a duration (a number such as 180, as in 'for 180 d')", "num")
_DURATION_UNIT = _words("a duration unit: d, days, weeks or months (or 'doses')", n_doses={"dose doses": 1},
                        duration_d={"d day days": 1.0, "w wk wks week weeks": 7.0, "mo month months": 30.0})
_DAY = _words("'day' (as in 'from day 14')", start_d={"day d": 1.0})
_START_DAY = _Slot("a start day (a number such as 14)", "num")
_FOOD = _words("", fed={"fed": True, "fasted": False})
_KG = _words("'kg' after a body weight (as in ', 70 kg')", body_weight_kg={"kg kgs": 1.0})

#: The text form, clause by clause in reading order: how often the clause comes, what is expected when no
#: form of it fits, and its forms (each a tuple of slots, chosen by its first token).
_GRAMMAR: tuple[tuple[str, str, tuple[tuple[_Slot, ...], ...]], ...] = (
    ("once", "a dose (a number such as 20)", ((_NUMBER, _DOSE_UNIT),)),
    ("once", "a dosing interval: od, qd, bid, tid, qid, 'every N h' or 'qNh'",
     ((_QNH,), (_NAMED_INTERVAL,), (_opener("every q"), _INTERVAL_LENGTH, _INTERVAL_UNIT))),
    ("once", "'for N d' or 'x N doses'",
     ((_opener("x ×"), _DOSE_COUNT, _DOSES), (_opener("for"), _DURATION, _DURATION_UNIT))),
    ("optional", "", ((_opener("from"), _DAY, _START_DAY),)),
    ("each after ','", "'fed', 'fasted' or a body weight such as '70 kg' after ','", ((_FOOD,), (_NUMBER, _KG))),
)
_END = "', fed', ', fasted', ', N kg', 'from day N' or end of text"
_OPTION_NAMES = {"fed": "fed/fasted", "body_weight_kg": "body weight"}
_SHOWN_WITH_UNIT = frozenset({"interval_h", "duration_d"})  # carets under "36 h", but under "20" of "20 mg"
# fmt: on


def _fits(slot: _Slot, token: _Token) -> bool:
    """Whether ``token`` can fill ``slot``."""
    if slot.kind == "int":
        return token.kind == "num" and token.value.isdigit()
    return token.kind == slot.kind and (slot.kind != "word" or token.value in slot.words)


class _Reader:
    """Regimen text as tokens, read left to right; builds errors that point into the text."""

    def __init__(self, text: str) -> None:
        """Tokenize ``text``.

        Args:
            text: The regimen text.
        """
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> _Token:
        """Return the next token without consuming it."""
        return self.tokens[self.pos]

    def skip_comma(self) -> bool:
        """Consume the next token if it is a comma; return whether it was."""
        if self.tokens[self.pos].kind != "comma":
            return False
        self.pos += 1
        return True

    def take(self, slot: _Slot) -> _Token:
        """Consume the next token, which must fit ``slot``."""
        token = self.tokens[self.pos]
        if not _fits(slot, token):
            raise self.expected(slot.what, token)
        self.pos += 1
        return token

    def error(self, message: str, start: int, end: int) -> RegimenParseError:
        """Build a parse error quoting the text with a caret line under ``[start, end)``."""
        shown = "".join(" " if ch.isspace() else ch for ch in self.text)
        caret = " " * start + "^" * max(1, end - start)
        return RegimenParseError(
            f"cannot parse regimen {self.text!r}: {message}\n    {shown}\n    {caret}\n"
            f"valid examples: {_VALID_EXAMPLES}"
        )

    def expected(self, what: str, token: _Token) -> RegimenParseError:
        """Build the error for ``token`` where ``what`` was expected."""
        got = "end of text" if token.kind == "end" else repr(self.text[token.start : token.end])
        return self.error(f"expected {what}, got {got}", token.start, token.end)

    def value_of(self, form: tuple[_Slot, ...], tokens: list[_Token]) -> tuple[str, float | bool, tuple[int, int]]:
        """Return the field a form read as ``tokens`` sets, its value and the text span to blame for a bad value."""
        field, factor, number = "", 1.0, None
        for slot, token in zip(form, tokens, strict=True):
            if slot.kind != "word":
                field, number = slot.field or field, token
            elif (word := slot.words[token.value]) is not None:
                field, factor = word
        if number is None:
            return field, factor, (tokens[0].start, tokens[-1].end)
        if field == "n_doses":
            if not number.value.isdigit():
                raise self.expected(_DOSE_COUNT.what, number)
            return field, int(number.value), (number.start, number.end)
        end = tokens[-1].end if field in _SHOWN_WITH_UNIT else number.end
        return field, float(number.value) * factor, (number.start, end)


def _parse(text: str) -> Regimen:
    """Read regimen text by the table :data:`_GRAMMAR` (see :meth:`Regimen.parse`)."""
    reader = _Reader(text)
    values: dict[str, Any] = {field.name: field.default for field in dataclasses.fields(Regimen)}
    spans: dict[str, tuple[int, int]] = {}
    for how, what, forms in _GRAMMAR:
        first: dict[str, _Token] = {}  # field -> where the text first set it (options may not repeat)
        while how != "each after ','" or reader.skip_comma():
            form = next((form for form in forms if _fits(form[0], reader.peek())), None)
            if form is None and how == "optional":
                break
            if form is None:
                raise reader.expected(what, reader.peek())
            tokens = [reader.take(slot) for slot in form]
            field, values[field], spans[field] = reader.value_of(form, tokens)
            if field in first:
                given = text[first[field].start : first[field].end]
                message = f"{_OPTION_NAMES[field]} given twice (first as {given!r})"
                raise reader.error(message, tokens[0].start, tokens[-1].end)
            first[field] = tokens[0]
            if field == "dose_mg_per_kg_day":  # a missing body weight is blamed on the unit that needs it
                spans["body_weight_kg"] = (tokens[-1].start, tokens[-1].end)
            if how != "each after ','":
                break
    if reader.peek().kind != "end":
        raise reader.expected(_END, reader.peek())
    try:
        _validated_fields(**values)
    except _FieldProblemError as problem:
        start, end = spans.get(problem.field_name, (0, len(text)))
        raise reader.error(problem.message, start, end) from None
    return Regimen(**values)


#: Text that means "no drug" wherever a regimen is given as text (scenario files, sweep tables).
NO_DRUG = "none"


def parse_optional(text: str) -> Regimen | None:
    """Parse regimen text where "none" (any case) or an empty string means no drug.

    Args:
        text: Regimen text, e.g. ``"20 mg bid for 180 d"``, or ``"none"``.

    Returns:
        The regimen, or None for no drug.

    Raises:
        RegimenParseError: If the text is neither empty, "none", nor a valid regimen.
    """
    if not isinstance(text, str):
        raise RegimenParseError(
            f"regimen text must be a str, got {_describe(text)}; write {NO_DRUG!r} for no drug, "
            f"or e.g. {_VALID_EXAMPLES}"
        )
    text = text.strip()
    if not text or text.lower() == NO_DRUG:
        return None
    return Regimen.parse(text)
