"""The physical domain of every parameter, and the size limits of a run: the one check every value passes.

Each row of ``models/parameters.csv`` names its parameter's domain in the ``domain`` column:

========================  ==========  =====================================================================
domain                    interval    used for
========================  ==========  =====================================================================
``nonneg``                [0, inf)    rates, rate constants, clearances, amounts, concentrations, expression
                                      multipliers, doses: zero switches a process off
``positive``              (0, inf)    volumes, Michaelis and dissociation constants, half-maximal levels,
                                      Hill coefficients, normalising references: zero is meaningless (a
                                      division by zero, or a gate with no threshold)
``fraction``              [0, 1]      fractions, shares, probabilities, bioavailability, inhibition
``positive_fraction``     (0, 1]      half-maximal receptor occupancies and the reference occupancy
``switch``                {0, 1}      on/off inputs (``fed``)
``constant``              fixed       unit conversions, nominal volumes, sentinels and the dose event's own
                                      bookkeeping: never changed
========================  ==========  =====================================================================

Two rules go beyond one value: the regimen inputs (category ``regimen``) are set by the regimen, so
they are refused as overrides and presets but a scheduled change may alter them mid-run (a missed
dose sets ``dose_mg`` to 0); and a few parameters are bounded together (:func:`check_combination`).
A value inside its domain but outside the table's plausible ``lower``/``upper`` range is allowed and
logged as a warning, once per parameter and side per process.

Every place a parameter value enters calls this module: ``simulate()``'s overrides,
``ParameterChange``, phenotype presets, sweep spec ranges and fixed values, ``--set`` on the command
line; :func:`check_values` and :func:`check_columns` are for sample tables.

The class parameters of a testis built from focus classes (``F1__niche_share``, ``F3__ra_local``, ...;
:mod:`ra_model.model.classes`) are checked the same way: their domain and plausible range come from
:data:`~ra_model.model.classes.CLASS_PARAMETERS` (one row per parameter, generated per class by
:func:`~ra_model.model.source.class_parameter_table`), not from ``models/parameters.csv``. Whether
class ``k`` exists is the engine's question; here ``F1__`` to ``F32__`` are known. The niche shares
must add up to 1 (:func:`check_combination`).
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ra_model.errors import InvalidValueError
from ra_model.model.bounds import CONSTANT, DOMAINS, REGIMEN_CATEGORY, SWITCH, Domain
from ra_model.model.classes import CLASS_CATEGORY, CLASS_PARAMETERS, MAX_CLASSES, NICHE_SHARE, check_n_classes, class_id
from ra_model.model.source import class_parameter_table, parameter_table_path, read_parameter_table

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- the rules
@dataclass(frozen=True)
class _Rule:
    """One parameter's domain and plausible range, as the checks need them."""

    name: str
    domain: Domain
    unit: str
    category: str
    description: str
    value: float
    lower: float
    upper: float


#: Largest difference from 1 of the sum of the niche shares that counts as 1 (decimal shares such as
#: 0.1 + 0.2 + 0.3 + 0.4 add up to 1 only within round-off).
NICHE_SHARE_SUM_TOL = 1e-9

#: Where the plausible ranges come from, for messages: the table, or the class template's parameters.
_TABLE_FILE = "models/parameters.csv"
_CLASS_TABLE = "CLASS_PARAMETERS (ra_model.model.classes)"


@lru_cache(maxsize=4)
def _rules_for(path_text: str, mtime_ns: int, size: int) -> dict[str, _Rule]:
    table = read_parameter_table(Path(path_text)) | class_parameter_table(MAX_CLASSES)
    return {
        pid: _Rule(pid, DOMAINS[p.domain], p.unit, p.category, p.description, p.value, p.lower, p.upper)
        for pid, p in table.items()
    }


def _range_file(rule: _Rule) -> str:
    return _CLASS_TABLE if rule.category == CLASS_CATEGORY else _TABLE_FILE


def _rules() -> dict[str, _Rule]:
    path = parameter_table_path()
    stat = path.stat()
    return _rules_for(str(path), stat.st_mtime_ns, stat.st_size)


def domain_of(name: str) -> Domain | None:
    """Return the physical domain of a parameter of the shipped table, or None for a name not in it."""
    rule = _rules().get(name)
    return rule.domain if rule else None


def is_settable(name: str, *, scheduled: bool = False) -> bool:
    """Return True if ``name`` may be set: as an override or preset (or, with ``scheduled``, mid-run).

    Constants never are; regimen inputs only mid-run. Names not in the table are left to the engine.
    """
    return _settable(_rules().get(name), scheduled=scheduled)


def _settable(rule: _Rule | None, *, scheduled: bool) -> bool:
    if rule is None:
        return True
    if rule.domain.name == CONSTANT:
        return False
    return scheduled or rule.category != REGIMEN_CATEGORY


# ---------------------------------------------------------------------------------------------- checks
_WARNED: set[tuple[str, str]] = set()
_WARNED_LOCK = threading.Lock()


def _number(name: str, value: object, place: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidValueError(f"{place}{name} = {value!r} is not a number; give a finite number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidValueError(f"{place}{name} = {number!r} is not a finite number; give a finite number")
    return number


def _fixed_message(rule: _Rule, number: float, place: str) -> str:
    what = rule.description.rstrip(".")
    if rule.domain.name == CONSTANT and rule.category == REGIMEN_CATEGORY:
        reason = "is the dose event's own bookkeeping and cannot be set"
        fix = "remove it; the regimen sets the doses"
    elif rule.domain.name == CONSTANT:
        reason = "is a fixed constant and cannot be changed"
        fix = "remove it"
    else:
        reason = "is set by the regimen, so an override would be ignored"
        fix = (
            "give it through the regimen instead (e.g. '40 mg od for 30 d, fed'), or change it during the run "
            "with a scheduled change (ParameterChange)"
        )
    return f"{place}{rule.name} = {number:g} refused: {rule.name} ({what}) {reason}; {fix}"


def check_value(name: str, value: object, *, where: str = "", scheduled: bool = False, warn: bool = True) -> float:
    """Check one parameter value against its physical domain; return it as a float.

    Args:
        name: Parameter id. Names not in the parameter table are only checked for being finite
            numbers (the engine reports unknown names).
        value: The value.
        where: Where the value came from, for messages (``"--set"``, ``"overrides"``, a file and key).
        scheduled: The value is a change during a run (regimen inputs may change then).
        warn: Log a warning when the value is possible but outside the table's plausible range.

    Returns:
        The value as a float.

    Raises:
        InvalidValueError: Not a finite number, a constant or regimen input, or outside the domain;
            the message names the parameter, the value, its domain and the fix.
    """
    return _check(_rules(), name, value, where=where, scheduled=scheduled, warn=warn)


def _check(rules: Mapping[str, _Rule], name: str, value: object, *, where: str, scheduled: bool, warn: bool) -> float:
    """:func:`check_value` with the rules already looked up (one dict lookup per value)."""
    place = f"{where}: " if where else ""
    number = _number(name, value, place)
    rule = rules.get(name)
    if rule is None:
        return number
    domain = rule.domain
    if not _settable(rule, scheduled=scheduled):
        raise InvalidValueError(_fixed_message(rule, number, place))
    if not domain.contains(number):
        raise InvalidValueError(
            f"{place}{name} = {number:g} {domain.problem(number)}, but {name} ({rule.unit}) is {domain.meaning}; "
            f"{domain.fix} (plausible range in {_range_file(rule)}: {rule.lower:g} to {rule.upper:g})"
        )
    if warn and rule.lower < rule.upper and not rule.lower <= number <= rule.upper:
        _warn_outside(rule, number, place)
    return number


def _warn_outside(rule: _Rule, number: float, place: str) -> None:
    side = "below" if number < rule.lower else "above"
    with _WARNED_LOCK:
        if (rule.name, side) in _WARNED:
            return
        _WARNED.add((rule.name, side))
    log.warning(
        "%s%s = %g is %s the plausible range %g to %g %s in %s; the run goes ahead "
        "(further values of %s %s that range are not reported)",
        place,
        rule.name,
        number,
        side,
        rule.lower,
        rule.upper,
        rule.unit,
        _range_file(rule),
        rule.name,
        side,
    )


def check_values(
    values: Mapping[str, object], *, where: str, scheduled: bool = False, warn: bool = True
) -> dict[str, float]:
    """Check parameter values against their physical domains (see :func:`check_value`).

    This is the call for a sweep's sample row or any other mapping of parameter values.

    Args:
        values: Parameter id to value.
        where: Where the values came from, for messages, e.g. ``"samples row 'latin-0042'"``.
        scheduled: The values are changes during a run.
        warn: Log a warning for a value outside the table's plausible range.

    Returns:
        The values as floats, in the same order.

    Raises:
        InvalidValueError: For the first value that is refused.
    """
    rules = _rules()
    return {
        name: _check(rules, name, value, where=where, scheduled=scheduled, warn=warn) for name, value in values.items()
    }


def check_columns(
    columns: Mapping[str, ArrayLike], *, where: str, labels: Sequence[str] | None = None, warn: bool = True
) -> None:
    """Check whole columns of parameter values at once (a sweep's sample table), vectorised.

    Args:
        columns: Parameter id to an array of values (one per sample).
        where: Where the values came from, e.g. ``"samples"``.
        labels: Sample labels (e.g. ``sample_id``) used to name the first bad sample; defaults to row numbers.
        warn: Log a warning (once per parameter) for values outside the table's plausible range.

    Raises:
        InvalidValueError: Naming the parameter, how many samples are refused, the first of them and its value.
    """
    rules = _rules()
    for name, raw in columns.items():
        values = np.asarray(raw, dtype=float)
        rule = rules.get(name)
        finite = np.isfinite(values)
        if rule is None:
            ok = finite
        elif not _settable(rule, scheduled=False):
            ok = np.zeros(values.shape, dtype=bool)
        elif rule.domain.name == SWITCH:
            ok = (values == 0.0) | (values == 1.0)
        else:
            low = values > rule.domain.lower if rule.domain.lower_open else values >= rule.domain.lower
            ok = finite & low & (values <= rule.domain.upper)
        if not ok.all():
            bad = np.flatnonzero(~ok)
            first = int(bad[0])
            label = labels[first] if labels is not None else f"row {first}"
            count = f"{bad.size} of {values.size} samples are refused; the first is "
            check_value(name, values[first], where=f"{where} ({count}{label})", warn=False)
            raise InvalidValueError(f"{where}: {name} = {values[first]!r} ({label}) is refused")  # not reached
        if warn and rule is not None and rule.lower < rule.upper and values.size:
            low_value, high_value = float(values.min()), float(values.max())
            if low_value < rule.lower:
                _warn_outside(rule, low_value, f"{where}: ")
            if high_value > rule.upper:
                _warn_outside(rule, high_value, f"{where}: ")


def check_combination(parameters: Mapping[str, float], *, fed: bool, where: str = "", n_classes: int = 1) -> None:
    """Check the rules that bound parameters together, so that no route creates mass.

    * ``f_oxo + f_isom <= 1``: the shares of isotretinoin clearance forming 4-oxo-isotretinoin and
      all-trans RA; the rest, ``1 - f_oxo - f_isom``, is eliminated and cannot be negative.
    * ``F_fasted * food_factor <= 1`` when the doses are taken with food: the bioavailability of a fed dose.
    * With two or more focus classes, the niche shares ``F1__niche_share`` ... ``FN__niche_share`` add up
      to 1. They split the stem niche (``stem_niche``) among the classes, so any other sum would change
      the size of the testis's niche along with its make-up, which is ``stem_niche``'s job; a sum other
      than 1 is refused rather than warned about, because a run that silently grows or shrinks the testis
      answers another question than the one asked (and a renormalised share would not be the value given).

    Args:
        parameters: Values set for the run; the table's values (each class's default share) stand in for
            missing names.
        fed: Doses are taken with food (the regimen's ``fed``, or a ``fed`` of 1 in ``parameters``).
        where: Context for messages.
        n_classes: Focus classes of the model the values are for (1: no niche shares to check).

    Raises:
        InvalidValueError: Naming the values, their combination and the fix.
    """
    _check_niche_shares(parameters, check_n_classes(n_classes), where)
    rules = _rules()
    if not {"f_oxo", "f_isom", "F_fasted", "food_factor"} <= rules.keys():
        return
    place = f"{where}: " if where else ""
    f_oxo = float(parameters.get("f_oxo", rules["f_oxo"].value))
    f_isom = float(parameters.get("f_isom", rules["f_isom"].value))
    if f_oxo + f_isom > 1.0 + 1e-12:
        raise InvalidValueError(
            f"{place}f_oxo = {f_oxo:g} and f_isom = {f_isom:g} add up to {f_oxo + f_isom:g}, but they are shares "
            "of one clearance and the eliminated rest (1 - f_oxo - f_isom) would be negative, creating drug; "
            "choose values with f_oxo + f_isom <= 1"
        )
    fed = fed or float(parameters.get("fed", 0.0)) == 1.0
    f_fasted = float(parameters.get("F_fasted", rules["F_fasted"].value))
    food = float(parameters.get("food_factor", rules["food_factor"].value))
    if fed and f_fasted * food > 1.0 + 1e-12:
        raise InvalidValueError(
            f"{place}F_fasted = {f_fasted:g} x food_factor = {food:g} gives a fed bioavailability of "
            f"{f_fasted * food:g}, above 1: more drug would be absorbed than was swallowed; "
            f"choose F_fasted * food_factor <= 1 (e.g. food_factor <= {1 / f_fasted:.3g} with this F_fasted)"
        )


def _check_niche_shares(parameters: Mapping[str, float], n_classes: int, where: str) -> None:
    """Refuse niche shares of an ``n_classes``-class testis that do not add up to 1 (see :func:`check_combination`)."""
    if n_classes == 1:
        return
    spec = next(p for p in CLASS_PARAMETERS if p.name == NICHE_SHARE)
    names = [class_id(NICHE_SHARE, k, n_classes) for k in range(1, n_classes + 1)]
    shares = [float(parameters.get(name, spec.default(n_classes))) for name in names]
    total = math.fsum(shares)
    if abs(total - 1.0) <= NICHE_SHARE_SUM_TOL:
        return
    place = f"{where}: " if where else ""
    given = ", ".join(f"{name} = {value:g}" for name, value in zip(names, shares, strict=True) if name in parameters)
    raise InvalidValueError(
        f"{place}the niche shares of the {n_classes} focus classes add up to {total:g}, not 1 ({given}; "
        f"unset classes keep {spec.default(n_classes):g}): they split the stem niche (stem_niche) among the "
        f"classes, so a sum of {total:g} would make the testis's niche {total:g} x stem_niche and change its "
        "size along with its make-up; give shares that add up to 1 (e.g. divide each by their sum), and "
        "change stem_niche to change the niche's size"
    )
