"""Sweep metrics: functions that reduce one simulation table to a number, a yes/no or a few named numbers.

A metric is any picklable callable ``metric(table) -> float | bool | Mapping[str, float]`` taking the
table that :func:`ra_model.simulate.simulate` returns (``attrs`` included). The built-ins here are
named in sweep specs by their key in :data:`BUILTIN_METRICS`; user metrics are named by a dotted
path ``"package.module:function"``.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable, Collection, Mapping

import numpy as np
import pandas as pd

from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.model import columns as C

#: What a metric returns: a number, a yes/no, or named numbers (expanded to ``<metric>.<key>`` columns).
MetricValue = float | bool | Mapping[str, float]
#: A metric: a picklable function of one simulation table.
Metric = Callable[[pd.DataFrame], MetricValue]


def peak_ejaculate_concentration(table: pd.DataFrame) -> float:
    """Return the highest ejaculate sperm concentration over the run, million/mL."""
    return float(table[C.EJACULATE_CONCENTRATION].max())


def time_to_first_motile_sperm_d(table: pd.DataFrame) -> float:
    """Return the first time motile sperm reach the detection limit, days (NaN if never).

    The crossing is interpolated linearly between the two output rows that bracket it, so the
    answer does not jump with the output grid; 0 if motile sperm are present from the start.
    """
    present = table[C.MOTILE_SPERM_PRESENT].to_numpy(dtype=bool)
    if not present.any():
        return math.nan
    i = int(np.argmax(present))
    times = table[C.TIME_D].to_numpy(dtype=float)
    if i == 0:
        return float(times[0])
    limit = float(table.attrs.get("motile_detection_limit_M_per_mL", math.nan))
    conc = table[C.MOTILE_CONCENTRATION].to_numpy(dtype=float)
    c0, c1 = conc[i - 1], conc[i]
    if not math.isfinite(limit) or c1 <= c0:
        return float(times[i])
    frac = min(max((limit - c0) / (c1 - c0), 0.0), 1.0)
    return float(times[i - 1] + frac * (times[i] - times[i - 1]))


def testis_atRA_auc(table: pd.DataFrame) -> float:
    """Return the area under the testis all-trans RA curve over the run (trapezoids), nM·d."""
    return float(np.trapezoid(table[C.TESTIS_ATRA].to_numpy(dtype=float), table[C.TIME_D].to_numpy(dtype=float)))


def motile_sperm_seen(table: pd.DataFrame) -> bool:
    """Return True if motile sperm are at or above the detection limit at some output time, baseline included."""
    return bool(table[C.MOTILE_SPERM_PRESENT].any())


def responder(table: pd.DataFrame) -> bool:
    """Return True for a man who had no motile sperm at baseline and has them at some later output time.

    The sweep's view of the trial's endpoint: a man with motile sperm at the first output time (before the
    drug acts) is not a responder, as the cohort excludes him. The cohort endpoint itself is stricter (simulated
    semen analyses, two consecutive visits, a better category than baseline); use a cohort experiment for it.
    """
    present = table[C.MOTILE_SPERM_PRESENT].to_numpy(dtype=bool)
    return bool(present.size > 1 and not present[0] and present[1:].any())


#: The built-in metrics by the name used in sweep specs and result columns.
BUILTIN_METRICS: dict[str, Metric] = {
    "peak_ejaculate_concentration": peak_ejaculate_concentration,
    "time_to_first_motile_sperm_d": time_to_first_motile_sperm_d,
    "testis_atRA_auc": testis_atRA_auc,
    "motile_sperm_seen": motile_sperm_seen,
    "responder": responder,
}

#: Units of the built-in metrics' columns (pint-parseable, as :data:`ra_model.model.columns.UNITS`). A user
#: metric declares its own with a ``units`` attribute on the function (``my_metric.units = "nM"``).
METRIC_UNITS: dict[str, str] = {
    "peak_ejaculate_concentration": "1e6 / mL",
    "time_to_first_motile_sperm_d": "day",
    "testis_atRA_auc": "nM * day",
    "motile_sperm_seen": "dimensionless",
    "responder": "dimensionless",
}


def metric_units(name: str, metric: Metric) -> str | None:
    """Return the units text of a metric's column: the built-in's, the function's ``units`` attribute, or None."""
    if name in METRIC_UNITS and BUILTIN_METRICS.get(name) is metric:
        return METRIC_UNITS[name]
    declared = getattr(metric, "units", None)
    if declared is None and isinstance(metric, functools.partial):  # a metric with its options bound
        declared = getattr(metric.func, "units", None)
    if isinstance(declared, str):
        return declared
    return METRIC_UNITS.get(getattr(metric, "__name__", ""))


#: Module prefix of the package's own metrics, which a spec may name without ``plugins``.
OWN_PACKAGE = "ra_model."


def check_metric_name(name: str, *, where: str = "") -> None:
    """Check a metric name's form without importing anything (reading a spec file runs no code).

    Args:
        name: A built-in name (see :data:`BUILTIN_METRICS`) or ``"package.module:function"``.
        where: Context for error messages, e.g. ``"spec.toml, key metrics"``.

    Raises:
        UnknownNameError: An unknown built-in name (with close matches).
        InvalidValueError: A ``module:function`` whose parts are not dotted Python names.
    """
    if name in BUILTIN_METRICS:
        return
    if ":" not in name:
        raise UnknownNameError("metric", name, BUILTIN_METRICS, where=where or "") from None
    module_name, _, attr = name.partition(":")
    if not all(part.isidentifier() for part in module_name.split(".")) or not attr.isidentifier():
        place = f" in {where}" if where else ""
        raise InvalidValueError(
            f"metric {name!r}{place}: write a built-in name ({', '.join(BUILTIN_METRICS)}) or "
            "'package.module:function' with Python names on both sides of the colon"
        )


def resolve_metric(name: str, *, where: str = "", plugins: Collection[str] = ()) -> Metric:
    """Turn a metric name into a function.

    A ``"module:function"`` metric runs code: it is imported only from this package (``ra_model.*``)
    or from a module named in ``plugins`` (``--plugin MODULE`` on the command line), never as a side
    effect of reading a spec file.

    Args:
        name: A built-in name (see :data:`BUILTIN_METRICS`) or ``"package.module:function"``.
        where: Context for error messages, e.g. ``"spec.toml, key metrics"``.
        plugins: Modules (or packages) the user trusts to run as metrics.

    Returns:
        The metric function.

    Raises:
        UnknownNameError: For an unknown built-in (with close matches).
        InvalidValueError: For a module not named in ``plugins``, or a dotted path that cannot be
            imported or is not callable.
    """
    check_metric_name(name, where=where)
    if name in BUILTIN_METRICS:
        return BUILTIN_METRICS[name]
    place = f" in {where}" if where else ""
    module_name, _, attr = name.partition(":")
    trusted = module_name.startswith(OWN_PACKAGE) or any(
        module_name == p or module_name.startswith(p + ".") for p in plugins
    )
    if not trusted:
        raise InvalidValueError(
            f"metric {name!r}{place} would import and run module {module_name!r}; ra_model runs your code "
            f"only when you name its module: add --plugin {module_name.split('.')[0]} to the command "
            f"(plugins=[{module_name.split('.')[0]!r}] in Python)"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidValueError(
            f"metric {name!r}{place}: cannot import module {module_name!r} ({exc}); "
            "write 'package.module:function' for a module on the Python path"
        ) from exc
    func = getattr(module, attr, None)
    if not callable(func):
        raise InvalidValueError(
            f"metric {name!r}{place}: module {module_name!r} has no function {attr!r}; write 'package.module:function'"
        )
    return func  # type: ignore[no-any-return]
