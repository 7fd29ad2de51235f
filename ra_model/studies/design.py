"""Sampling designs for sweeps: parameter ranges checked against their physical domain, and sample tables.

Physical domains come from :mod:`ra_model.model.domain` (the ``domain`` column of the parameter table);
this module adds what a sweep may vary (not constants, references or regimen inputs) and the size limit.

Designs are grid, random, Latin hypercube, Sobol (Saltelli) and Morris; the last three come from
SALib's samplers. Default ranges are the ``lower``/``upper`` columns of ``models/parameters.csv``.
Every design takes an explicit seed and returns a ``samples`` table for :func:`ra_model.studies.sweep.run_sweep`
with ``attrs`` ``{"seed", "design", "problem"}``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.model import columns as C
from ra_model.model.bounds import check_run_size, format_bytes
from ra_model.model.domain import check_value, check_values
from ra_model.model.source import ParameterInfo, read_parameter_table

#: Design names accepted by :func:`make_design`.
DESIGNS = ("grid", "random", "latin", "sobol", "morris")
#: Parameter categories that cannot be swept (fixed constants, normalisations, regimen inputs).
FIXED_CATEGORIES = ("constant", "reference", "regimen")
#: Morris levels.
MORRIS_LEVELS = 4
#: Most samples in one design: 10 million. Every sample is one simulation (about half a second each on
#: one core for a year of the full model), so this is already months of computing; 1e10 is a mistake.
MAX_DESIGN_SAMPLES = 10_000_000
#: Columns of a ``simulate()`` table (time, doses, the observables, the motile flag, the semen category), for
#: size messages.
_RUN_COLUMNS = 4 + len(C.OBSERVABLES)


@dataclass(frozen=True, kw_only=True)
class ParameterRange:
    """A parameter to vary and the interval to vary it over.

    Attributes:
        name: Parameter id (a row of ``models/parameters.csv``).
        lower: Lower bound, in the parameter's unit.
        upper: Upper bound (> lower).
        log: Sample uniformly in log space (for ranges spanning orders of magnitude; needs lower > 0).
    """

    name: str
    lower: float
    upper: float
    log: bool = False

    def __post_init__(self) -> None:
        """Check the bounds are finite, ordered and (for log) positive."""
        for which in ("lower", "upper"):
            value = getattr(self, which)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidValueError(f"range of {self.name!r}: {which} = {value!r} is not a finite number")
        if not self.lower < self.upper:
            raise InvalidValueError(
                f"range of {self.name!r}: lower {self.lower:g} must be below upper {self.upper:g}; swap or widen them"
            )
        if self.log and self.lower <= 0:
            raise InvalidValueError(f"range of {self.name!r}: log sampling needs lower > 0 (got {self.lower:g})")


def check_range(rng: ParameterRange, *, table: Mapping[str, ParameterInfo] | None = None, where: str = "") -> None:
    """Check that a range names a sweepable parameter and lies inside its physical domain.

    Args:
        rng: The range.
        table: The parameter table; defaults to the shipped one.
        where: Context for messages, e.g. ``"spec.toml, [parameters.cyp26_expr]"``.

    Raises:
        UnknownNameError: Unknown parameter (with close matches).
        InvalidValueError: A fixed parameter, or a range outside the domain.
    """
    table = table if table is not None else read_parameter_table()
    place = f" ({where})" if where else ""
    if rng.name not in table:
        raise UnknownNameError("parameter", rng.name, table, where=where)
    info = table[rng.name]
    if info.category in FIXED_CATEGORIES:
        raise InvalidValueError(
            f"parameter {rng.name!r}{place} is a {info.category} value and cannot be swept; "
            "vary the regimen through the 'regimen' setting, or choose a model parameter"
        )
    check_range_domain(rng, where=where)


def check_range_domain(rng: ParameterRange, *, where: str = "") -> None:
    """Check both ends of a range against the parameter's physical domain (names not in the table pass).

    Raises:
        InvalidValueError: An end outside the domain, naming the parameter, the bound, the domain and the fix.
    """
    place = f"{where}, " if where else ""
    check_value(rng.name, rng.lower, where=f"{place}range of {rng.name!r}, lower bound")
    check_value(rng.name, rng.upper, where=f"{place}range of {rng.name!r}, upper bound")


def default_ranges(names: Sequence[str], *, table: Mapping[str, ParameterInfo] | None = None) -> list[ParameterRange]:
    """Return the table's ``lower``/``upper`` range for each parameter, checked.

    Ranges spanning more than a factor 10 (with lower > 0) are sampled in log space.

    Raises:
        UnknownNameError: Unknown parameter.
        InvalidValueError: A fixed parameter (its table range is a single value).
    """
    table = table if table is not None else read_parameter_table()
    ranges = []
    for name in names:
        if name not in table:
            raise UnknownNameError("parameter", name, table)
        info = table[name]
        if info.lower >= info.upper:
            raise InvalidValueError(
                f"parameter {name!r} has no range in the parameter table ({info.lower:g}); give lower and upper"
            )
        rng = ParameterRange(
            name=name, lower=info.lower, upper=info.upper, log=info.lower > 0 and info.upper / info.lower > 10
        )
        check_range(rng, table=table)
        ranges.append(rng)
    return ranges


def salib_problem(ranges: Sequence[ParameterRange]) -> dict[str, Any]:
    """Return the SALib problem dict (bounds in sampling space: log10 for log ranges)."""
    return {
        "num_vars": len(ranges),
        "names": [r.name for r in ranges],
        "bounds": [[math.log10(r.lower), math.log10(r.upper)] if r.log else [r.lower, r.upper] for r in ranges],
    }


def make_design(
    ranges: Sequence[ParameterRange],
    *,
    design: str,
    n: int,
    seed: int,
    fixed: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Draw a sample table.

    Args:
        ranges: Parameters to vary (names unique).
        design: ``"grid"`` (``n`` levels per parameter, ``n ** d`` samples), ``"random"`` (``n``
            uniform draws), ``"latin"`` (``n``), ``"sobol"`` (Saltelli, ``n * (d + 2)`` samples; ``n``
            a power of 2) or ``"morris"`` (``n`` trajectories, ``n * (d + 1)`` samples).
        n: Size parameter of the design (see above).
        seed: Random seed (recorded in ``attrs``).
        fixed: Parameter values shared by every sample (added as columns).

    Returns:
        Columns ``sample_id`` and one per parameter; ``attrs`` has ``seed``, ``design``, ``problem``
        (SALib's, bounds in sampling space) and ``log`` (per parameter: sampled in log10 space).

    Raises:
        InvalidValueError: Unknown design, empty design, bad ``n`` or repeated parameters.
    """
    if design not in DESIGNS:
        raise InvalidValueError(f"unknown design {design!r}; use one of {', '.join(DESIGNS)}")
    if not ranges:
        raise InvalidValueError("empty design: no parameters to vary; name at least one parameter")
    names = [r.name for r in ranges]
    if len(set(names)) != len(names):
        raise InvalidValueError(f"a parameter appears twice in the design: {names}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidValueError(f"n = {n!r}; use a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidValueError(f"seed = {seed!r}; give an integer seed so the design can be reproduced")
    check_design_size(design, n, len(ranges))
    for r in ranges:
        check_range_domain(r)
    checked_fixed = check_values(dict(fixed or {}), where="fixed")
    problem = salib_problem(ranges)
    unit: np.ndarray
    if design == "grid":
        if n < 2:
            raise InvalidValueError("a grid needs n >= 2 levels per parameter")
        axes = [np.linspace(lo, hi, n) for lo, hi in problem["bounds"]]
        unit = np.array(list(itertools.product(*axes)), dtype=float)
    elif design == "random":
        rng = np.random.default_rng(seed)
        bounds = np.asarray(problem["bounds"], dtype=float)
        unit = bounds[:, 0] + rng.random((n, len(ranges))) * (bounds[:, 1] - bounds[:, 0])
    elif design == "latin":
        from SALib.sample import latin

        unit = latin.sample(problem, n, seed=seed)
    elif design == "sobol":
        if n & (n - 1):
            raise InvalidValueError(f"a Sobol design needs n a power of 2 (got {n}); try {1 << max(1, n.bit_length())}")
        from SALib.sample import sobol

        unit = sobol.sample(problem, n, calc_second_order=False, seed=seed)
    else:
        from SALib.sample import morris

        unit = morris.sample(problem, n, num_levels=MORRIS_LEVELS, seed=seed)
    values = np.array(unit, dtype=float, copy=True)
    for j, r in enumerate(ranges):
        if r.log:
            values[:, j] = 10.0 ** values[:, j]
        values[:, j] = np.clip(values[:, j], r.lower, r.upper)  # only round-off from the log transform
    width = len(str(len(values) - 1))
    table = pd.DataFrame(values, columns=names)
    table.insert(0, "sample_id", [f"{design}-{i:0{width}d}" for i in range(len(values))])
    for name, value in checked_fixed.items():
        if name in table.columns:
            raise InvalidValueError(f"parameter {name!r} is both varied and fixed; keep one")
        table[name] = float(value)
    table.attrs.update(seed=seed, design=design, problem=problem, log=[r.log for r in ranges])
    return table


def design_size(design: str, n: int, n_parameters: int) -> int:
    """Return the number of samples a design draws (exact integer arithmetic, so 1e10 is seen before it is built).

    Args:
        design: Design name (one of :data:`DESIGNS`).
        n: Size parameter of the design.
        n_parameters: Number of parameters varied.
    """
    if design == "grid":
        count: int = int(n) ** n_parameters
        return count
    if design == "sobol":
        return int(n) * (n_parameters + 2)
    if design == "morris":
        return int(n) * (n_parameters + 1)
    return int(n)


def check_design_size(design: str, n: int, n_parameters: int, *, where: str = "") -> int:
    """Check a design's number of samples against :data:`MAX_DESIGN_SAMPLES` before any sample is drawn.

    Returns:
        The number of samples.

    Raises:
        InvalidValueError: Too many samples; the message gives the count, the memory of the sample table,
            the number of simulations it means and how to make it smaller.
    """
    count = design_size(design, n, n_parameters)
    if count <= MAX_DESIGN_SAMPLES:
        return count
    place = f"{where}: " if where else ""
    shown = f"{count:,}" if count < 10**15 else f"{float(count):.3g}"
    memory = format_bytes(float(count) * (n_parameters + 1) * 8)
    if design == "grid":
        levels = max(2, int(MAX_DESIGN_SAMPLES ** (1 / n_parameters)))
        while levels**n_parameters > MAX_DESIGN_SAMPLES and levels > 2:
            levels -= 1
        fix = (
            f"use fewer levels (n = {levels} gives {levels**n_parameters:,} samples) or fewer parameters, "
            "or a latin or random design of the size you can afford"
        )
    elif design in ("sobol", "morris"):
        fix = f"use a smaller n (at most {MAX_DESIGN_SAMPLES // (count // n):,}) or fewer parameters"
    else:
        fix = f"use n <= {MAX_DESIGN_SAMPLES:,}"
    raise InvalidValueError(
        f"{place}a {design} design with n = {n} over {n_parameters} parameter(s) has {shown} samples: a sample "
        f"table of about {memory} and {shown} simulations; the limit is {MAX_DESIGN_SAMPLES:,} samples: {fix}"
    )


# --------------------------------------------------------------------------- spec files
#: Keys of a sweep or sensitivity spec file (``[parameters]`` is a table of ranges).
SPEC_KEYS = frozenset(
    {
        "kind",
        "description",
        "parameters",
        "design",
        "method",
        "n",
        "n_reduced",
        "seed",
        "phenotype",
        "regimen",
        "t_end_d",
        "output_step_d",
        "metrics",
        "fixed",
        "fast",
        "fill_nan",
        "rank_by",
    }
)


@dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """A sweep or sensitivity run described in a TOML file.

    Attributes:
        path: The file (for messages).
        kind: ``"sweep"`` or ``"sensitivity"``.
        description: What the run asks.
        ranges: Parameters and ranges (table defaults where the file gives none).
        design: Design name (sweeps) or method (``"sobol"``/``"morris"``, sensitivity).
        n: Design size.
        seed: Seed.
        phenotype: Phenotype preset.
        regimen: Regimen text or None.
        t_end_d: Simulated time, days.
        output_step_d: Output spacing, days.
        metrics: Metric names (built-in or ``module:function``).
        fixed: Parameter values shared by all samples.
        fast: Use the fast path.
        fill_nan: Fill values per metric column for NaN (e.g. censored times); the string
            ``"t_end_d"`` means the run's end.
        rank_by: Metric column whose indices rank the parameters (sensitivity).
    """

    path: str
    kind: str
    description: str
    ranges: tuple[ParameterRange, ...]
    design: str
    n: int
    seed: int
    phenotype: str
    regimen: str | None
    t_end_d: float
    output_step_d: float
    metrics: tuple[str, ...]
    fixed: Mapping[str, float]
    fast: bool
    fill_nan: Mapping[str, float]
    rank_by: str | None


def parse_sweep_spec(data: Mapping[str, Any], *, where: str, reduced: bool = False) -> SweepSpec:
    """Validate a spec mapping (from TOML) and return a :class:`SweepSpec`.

    Args:
        data: The parsed TOML.
        where: The file name, quoted in every error.
        reduced: Use ``n_reduced`` (a quick run, e.g. for CI) when the spec gives one.

    Raises:
        InvalidValueError / UnknownNameError: Naming the file, the key and the fix.
    """
    from ra_model.model.phenotypes import load_phenotypes
    from ra_model.model.regimen import parse_optional
    from ra_model.studies.metrics import check_metric_name

    unknown = set(data) - SPEC_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise UnknownNameError("key", key, SPEC_KEYS, where=where)
    kind = str(data.get("kind", "sweep"))
    if kind not in ("sweep", "sensitivity"):
        raise InvalidValueError(f"{where}, key kind: {kind!r}; use 'sweep' or 'sensitivity'")
    table = read_parameter_table()
    raw_params = data.get("parameters")
    if not isinstance(raw_params, Mapping) or not raw_params:
        raise InvalidValueError(
            f"{where}, key parameters: empty design; add a [parameters] table, e.g. cyp26_expr = [1.0, 10.0] "
            "or cyp26_expr = 'default' for the parameter table's range"
        )
    ranges = []
    for name, value in raw_params.items():
        key = f"parameters.{name}"
        if name not in table:
            raise UnknownNameError("parameter", name, table, where=f"{where}, key {key}")
        if value == "default" or value == []:
            rng = default_ranges([name], table=table)[0]
        elif isinstance(value, list) and len(value) == 2:
            rng = ParameterRange(
                name=name,
                lower=_number(value[0], where=f"{where}, key {key}"),
                upper=_number(value[1], where=f"{where}, key {key}"),
            )
        elif (
            isinstance(value, Mapping) and {"lower", "upper"} <= set(value) and set(value) <= {"lower", "upper", "log"}
        ):
            log_scale = value.get("log", False)
            if not isinstance(log_scale, bool):
                raise InvalidValueError(f"{where}, key {key}.log: {log_scale!r}; write true or false")
            rng = ParameterRange(
                name=name,
                lower=_number(value["lower"], where=f"{where}, key {key}.lower"),
                upper=_number(value["upper"], where=f"{where}, key {key}.upper"),
                log=log_scale,
            )
        else:
            raise InvalidValueError(
                f"{where}, key {key}: {value!r}; write 'default', [lower, upper] "
                "or {lower = .., upper = .., log = true}"
            )
        check_range(rng, table=table, where=f"{where}, key {key}")
        ranges.append(rng)
    if kind == "sensitivity":
        design = str(data.get("method", "morris"))
        if design not in ("sobol", "morris"):
            raise InvalidValueError(f"{where}, key method: {design!r}; use 'sobol' or 'morris'")
    else:
        design = str(data.get("design", "latin"))
        if design not in DESIGNS:
            raise InvalidValueError(f"{where}, key design: {design!r}; use one of {', '.join(DESIGNS)}")
    n = data.get("n_reduced", data.get("n")) if reduced else data.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidValueError(f"{where}, key n: {n!r}; give a positive integer design size")
    check_design_size(design, n, len(ranges), where=f"{where}, key n")
    seed = data.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidValueError(f"{where}, key seed: {seed!r}; give an integer seed (designs must be reproducible)")
    phenotype = str(data.get("phenotype", "healthy"))
    presets = load_phenotypes()
    if phenotype not in presets:
        raise UnknownNameError("phenotype", phenotype, presets, where=f"{where}, key phenotype")
    regimen = data.get("regimen")
    if regimen is not None:
        if not isinstance(regimen, str):
            raise InvalidValueError(f"{where}, key regimen: {regimen!r}; write e.g. '20 mg bid for 180 d'")
        parsed = parse_optional(regimen)
        regimen = str(parsed) if parsed else None
    t_end_d = data.get("t_end_d", 365.0)
    step = data.get("output_step_d", 1.0)
    for key, value in (("t_end_d", t_end_d), ("output_step_d", step)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or not math.isfinite(value):
            raise InvalidValueError(f"{where}, key {key}: {value!r}; give a finite number of days > 0")
    check_run_size(float(t_end_d), float(step), columns=_RUN_COLUMNS, where=f"{where}, keys t_end_d/output_step_d")
    metrics = data.get("metrics")
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise InvalidValueError(
            f"{where}, key metrics: {metrics!r}; give a list of names, "
            "e.g. ['responder', 'peak_ejaculate_concentration']"
        )
    for name in metrics:
        check_metric_name(name, where=f"{where}, key metrics")  # syntax only: reading a file runs no code
    fixed = data.get("fixed", {})
    if not isinstance(fixed, Mapping):
        raise InvalidValueError(f"{where}, key fixed: give a table of parameter = value")
    for name, value in fixed.items():
        if name not in table:
            raise UnknownNameError("parameter", name, table, where=f"{where}, key fixed.{name}")
        check_value(name, value, where=f"{where}, key fixed.{name}")
    fill_raw = data.get("fill_nan", {})
    if not isinstance(fill_raw, Mapping):
        raise InvalidValueError(f"{where}, key fill_nan: give a table of metric = value or 't_end_d'")
    fill = {}
    for name, value in fill_raw.items():
        if name not in metrics:
            raise InvalidValueError(f"{where}, key fill_nan.{name}: not one of the metrics {metrics}")
        fill[name] = float(t_end_d) if value == "t_end_d" else _number(value, where=f"{where}, key fill_nan.{name}")
    rank_by = data.get("rank_by")
    if rank_by is not None and rank_by not in metrics:
        raise InvalidValueError(f"{where}, key rank_by: {rank_by!r} is not one of the metrics {metrics}")
    return SweepSpec(
        path=where,
        kind=kind,
        description=str(data.get("description", "")),
        ranges=tuple(ranges),
        design=design,
        n=n,
        seed=seed,
        phenotype=phenotype,
        regimen=regimen,
        t_end_d=float(t_end_d),
        output_step_d=float(step),
        metrics=tuple(metrics),
        fixed={k: float(v) for k, v in fixed.items()},
        fast=bool(data.get("fast", False)),
        fill_nan=fill,
        rank_by=rank_by,
    )


def _number(value: object, *, where: str) -> float:
    """Return a spec value as a float, or say which key holds a non-number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValueError(f"{where}: {value!r} is not a number; write a number such as 2.5")
    return float(value)


def read_spec(path: Path) -> dict[str, Any]:
    """Read a sweep or sensitivity spec file (TOML) into its key/value table, without checking the keys.

    Raises:
        InvalidValueError: A missing or unreadable file, text that is not UTF-8, or a TOML syntax error.
    """
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidValueError(f"{path}: cannot read the spec ({exc}); give a UTF-8 TOML file") from exc


def load_sweep_spec(path: Path, *, reduced: bool = False) -> SweepSpec:
    """Read and validate a sweep or sensitivity spec file (TOML).

    Raises:
        InvalidValueError: Unreadable or invalid TOML, or a bad key (the message names file and key).
    """
    return parse_sweep_spec(read_spec(path), where=str(path), reduced=reduced)
