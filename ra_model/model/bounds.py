"""What is physically possible: the six parameter domains and the size limits of a run.

Pure definitions, no parameter table: :mod:`ra_model.model.source` checks each table row against its
domain here (:func:`check_table_row`), and :mod:`ra_model.model.domain` checks every value that
enters a run against its parameter's row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ra_model.errors import InvalidValueError


class TableRow(Protocol):
    """What :func:`check_table_row` reads of a parameter-table row (``ra_model.model.source.ParameterInfo``)."""

    @property
    def id(self) -> str:
        """Parameter id."""

    @property
    def value(self) -> float:
        """Value in the table."""

    @property
    def lower(self) -> float:
        """Plausible lower bound."""

    @property
    def upper(self) -> float:
        """Plausible upper bound."""

    @property
    def domain(self) -> str:
        """Name of the physical domain."""


#: Domain names of the ``domain`` column.
NONNEG = "nonneg"
POSITIVE = "positive"
FRACTION = "fraction"
POSITIVE_FRACTION = "positive_fraction"
SWITCH = "switch"
CONSTANT = "constant"
REAL = "real"
#: Category of the parameters the regimen sets (refused as overrides, allowed as scheduled changes).
REGIMEN_CATEGORY = "regimen"

# ---------------------------------------------------------------------------------------------- size limits
#: Longest simulated horizon, days: 20 years. Spermatogenesis takes about 74 days and a course of
#: isotretinoin months; no question this model answers needs decades, and 1e6 days is a typo.
MAX_T_END_D = 20 * 365.25
#: Most output rows in one run's table: 2 million (a 20-year run every 5 minutes). Each row holds about
#: 20 numbers (70 with the species), so this is already about 1 GB with the copies a run makes.
MAX_OUTPUT_ROWS = 2_000_000
#: Copies of the output a run holds at once (the solver's result, the stacked blocks, the table).
OUTPUT_COPIES = 3
#: Bytes per output number (float64).
BYTES_PER_VALUE = 8


@dataclass(frozen=True)
class Domain:
    """A physical domain: the values a parameter can take.

    Attributes:
        name: The name used in the ``domain`` column.
        lower: Smallest value (excluded when ``lower_open``).
        upper: Largest value (included).
        lower_open: True when ``lower`` itself is not allowed.
        meaning: What the domain is, for messages, e.g. ``"a fraction, in [0, 1]"``.
        fix: How to choose an allowed value, for messages.
    """

    name: str
    lower: float
    upper: float
    lower_open: bool
    meaning: str
    fix: str

    def contains(self, value: float) -> bool:
        """Return True if ``value`` lies in the domain (a constant contains no new value)."""
        if self.name == CONSTANT:
            return False
        if self.name == SWITCH:
            return value in (0.0, 1.0)
        above = value > self.lower if self.lower_open else value >= self.lower
        return above and value <= self.upper

    def problem(self, value: float) -> str:
        """Return what is wrong with ``value`` in words (``"is negative"``, ``"is above 1"``, ...)."""
        if self.name == SWITCH:
            return "is neither 0 nor 1"
        if self.name == REAL:
            return "is not a finite number"
        if value < 0:
            return "is negative"
        if value == 0 and self.lower_open:
            return "is zero"
        return f"is above {self.upper:g}"


#: Every domain, by name.
DOMAINS: Mapping[str, Domain] = {
    d.name: d
    for d in (
        Domain(NONNEG, 0.0, math.inf, False, "a non-negative quantity (>= 0)", "use a value >= 0"),
        Domain(
            POSITIVE,
            0.0,
            math.inf,
            True,
            "a positive quantity (> 0; zero is meaningless for it: a volume, a half-maximal constant, "
            "a Hill coefficient or a normalising reference)",
            "use a value > 0",
        ),
        Domain(FRACTION, 0.0, 1.0, False, "a fraction, in [0, 1]", "use a value between 0 and 1"),
        Domain(
            POSITIVE_FRACTION,
            0.0,
            1.0,
            True,
            "a positive fraction (an occupancy or a saturation), in (0, 1]",
            "use a value above 0 and at most 1",
        ),
        Domain(SWITCH, 0.0, 1.0, False, "a switch, 0 or 1", "use 0 or 1"),
        Domain(
            REAL,
            -math.inf,
            math.inf,
            True,
            "a finite real number (a position on a log or quantile scale)",
            "use a finite number",
        ),
        Domain(CONSTANT, math.nan, math.nan, False, "a fixed constant", "remove it; it cannot be changed"),
    )
}


def check_table_row(info: TableRow) -> None:
    """Check a parameter-table row's ``domain`` and that its value and plausible range lie inside it.

    Called by :class:`ra_model.model.source.ParameterInfo` for every row read.

    Raises:
        InvalidValueError: Unknown domain name, or a value or bound outside the domain.
    """
    if info.domain not in DOMAINS:
        raise InvalidValueError(
            f"parameter {info.id!r}: domain {info.domain!r} is not one of {', '.join(DOMAINS)}; "
            "write the physical domain of the parameter in the domain column"
        )
    domain = DOMAINS[info.domain]
    if domain.name == CONSTANT:
        if not info.lower == info.value == info.upper:
            raise InvalidValueError(
                f"parameter {info.id!r} is a constant but its range is {info.lower:g}-{info.upper:g}; "
                f"set lower and upper to its value {info.value:g}, or give it a physical domain"
            )
        return
    for which in ("value", "lower", "upper"):
        number = float(getattr(info, which))
        if not domain.contains(number):
            raise InvalidValueError(
                f"parameter {info.id!r}: {which} {number:g} {domain.problem(number)}, outside its domain "
                f"{domain.name!r} ({domain.meaning}); correct the row"
            )


# ---------------------------------------------------------------------------------------------- run size
def format_bytes(size: float) -> str:
    """Return a byte count in words: ``"512 kB"``, ``"3.1 GB"``."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size:.0f} bytes"


def output_bytes(rows: float, columns: int) -> float:
    """Return the memory a run's output takes at its peak, bytes (all the copies a run holds at once)."""
    return rows * columns * BYTES_PER_VALUE * OUTPUT_COPIES


def check_run_size(t_end_d: float, output_step_d: float, *, columns: int, extra_rows: int = 0, where: str = "") -> int:
    """Check a run's horizon and number of output rows against the limits, before anything runs.

    Args:
        t_end_d: Simulated time, days (already checked > 0).
        output_step_d: Output spacing, days (already checked > 0).
        columns: Columns of the output table.
        extra_rows: Rows added beyond the regular grid (e.g. the times of scheduled changes).
        where: Context for messages (e.g. a spec file).

    Returns:
        The number of output rows the run will have (at most).

    Raises:
        InvalidValueError: The horizon is above :data:`MAX_T_END_D` or the rows above
            :data:`MAX_OUTPUT_ROWS`; the message says what the run would cost and how to proceed.
    """
    place = f"{where}: " if where else ""
    if t_end_d > MAX_T_END_D:
        raise InvalidValueError(
            f"{place}t_end_d = {t_end_d:g} days ({t_end_d / 365.25:,.4g} years) is longer than the limit of "
            f"{MAX_T_END_D:,.0f} days (20 years); spermatogenesis takes about 74 days and a course of treatment "
            "months, so simulate fewer days (e.g. 365)"
        )
    ratio = t_end_d / output_step_d
    if math.isfinite(ratio) and ratio < 1e15:
        steps = math.floor(ratio + 1e-9)  # output at 0, step, 2 step, ... and at t_end_d itself
        rows: float = steps + 1 + (steps * output_step_d < t_end_d - 1e-9) + extra_rows
    else:
        rows = ratio
    if rows > MAX_OUTPUT_ROWS:
        smallest = t_end_d / max(1, MAX_OUTPUT_ROWS - 2 - extra_rows)
        if rows < 1e15:
            memory = format_bytes(output_bytes(rows, columns))
            cost = f"{rows:,.0f} output rows x {columns} columns (about {memory} of memory)"
        else:
            cost = f"{rows:.3g} output rows, far more than any computer can hold"
        raise InvalidValueError(
            f"{place}t_end_d = {t_end_d:g} d with output_step_d = {output_step_d:g} d would make {cost}; the limit "
            f"is {MAX_OUTPUT_ROWS:,} rows: use a coarser output step (output_step_d >= {smallest:.3g} d for "
            f"{t_end_d:g} days) or fewer days"
        )
    return int(rows)
