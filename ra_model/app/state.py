"""The what-if explorer's state and runs: the scenario the controls describe, its runs and their summary.

Nothing here imports Panel, param or Bokeh, so the explorer's logic runs and is tested without a
browser: :class:`ExplorerState` holds the control values (phenotype, regimen fields, the key
parameters), turns them into a what-if :class:`Scenario` and its baseline, runs both through
:func:`default_simulate` on a testis of :attr:`ExplorerState.n_classes` tubule-focus classes
(:data:`DEFAULT_N_CLASSES` = 8 unless chosen otherwise: the exact split path,
:func:`ra_model.engines.splitpath.simulate_split`; with 1 class the whole model,
:func:`ra_model.engines.simulate.simulate`), and gives the summary, the error text and the downloads.
:func:`summarise` turns any results table into the summary sentence and :func:`foci_table` into the
foci panel's data; both are pure functions.

Runs are shared by every session of the process through :data:`SHARED_RUNS`, a :class:`RunCache`
(bounded, least recently used dropped first, thread-safe): a scenario that one session has run is
instant for the next, and sessions that ask for the same scenario at the same time wait for one
computation instead of each running it. Runs are kept by scenario, focus-class count included. Only
runs on the process-wide default engines (one per class count and path) take turns
(:func:`default_simulate` holds their lock); a cache hit, or a wait for another session's run, holds
no lock, and a caller-supplied ``simulate_fn`` is not serialised at all.

A treated run is simulated on an hourly grid (:data:`WITHIN_DAY_STEP_D`) and kept as its daily rows
plus the plasma drug's daily mean and within-day range (:func:`run_scenario`, :class:`Run`): a daily row
of a twice-daily regimen is the trough at dosing time, so the page draws plasma drug from the hours.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import pandas as pd
import tomli_w

from ra_model.app.guide import Experiment, phenotype_name, regimen_words
from ra_model.engines.simulate import default_engine, simulate
from ra_model.engines.splitpath import simulate_split
from ra_model.errors import InvalidValueError, RAModelError, SimulationFailedError, UnknownNameError
from ra_model.model import columns as C
from ra_model.model.classes import check_n_classes
from ra_model.model.phenotypes import Phenotype, load_phenotypes
from ra_model.model.regimen import Regimen
from ra_model.model.semen import CATEGORIES, LIMIT_ATTRS
from ra_model.model.source import read_parameter_table

log = logging.getLogger(__name__)

#: Default simulated time, days: one year covers a 6-month course and the months after it, and one
#: treated run with 360 doses takes about 0.9 s with the default 8 focus classes on hourly rows (see
#: :data:`CLASS_COUNT_COST_S`), so a change redraws within about a second.
DEFAULT_T_END_D = 365.0
#: Horizons offered in the page, days (longer ones take proportionally longer per change).
HORIZONS_D: tuple[float, ...] = (180.0, 365.0, 730.0)
#: Spacing of output rows, days.
OUTPUT_STEP_D = 1.0
#: Spacing of the rows a treated run is simulated on, days (one hour): the plasma panel draws the drug's daily
#: mean and within-day range from them. On 20 mg bid the hourly mean is within 0.6% and the highest hour within
#: 0.7% of a 15-minute grid's (193.9 and 257.8 ng/mL), where 2-hourly rows are 2.4% low; the daily rows alone
#: show the trough at dosing time (121 ng/mL) as if it were the level. Cost (benchmark in the README): one treated
#: year at 8 classes took 0.91 s against 0.61 s on daily rows (medians of 5; 16 classes 1.90 against 1.46 s;
#: 1 class 0.70 against 0.65 s), on 2 cores shared with other work (load 5); the time is the solver's (the core
#: stops at every output hour, the compiled germ line integrates on the finer grid), the by-day table 0.03 s.
WITHIN_DAY_STEP_D = 1.0 / 24.0
#: Columns of a run's plasma-drug-by-day table (:func:`plasma_by_day`): the day's samples' mean time, and the
#: mean, lowest and highest plasma isotretinoin over the day (ng/mL).
PLASMA_DAY_MEAN = "plasma_isotretinoin_day_mean_ng_per_mL"
PLASMA_DAY_MIN = "plasma_isotretinoin_day_min_ng_per_mL"
PLASMA_DAY_MAX = "plasma_isotretinoin_day_max_ng_per_mL"
PLASMA_DAY_COLUMNS: tuple[str, ...] = (C.TIME_D, PLASMA_DAY_MEAN, PLASMA_DAY_MIN, PLASMA_DAY_MAX)
#: Tubule-focus class counts offered in the page (``simulate(..., n_classes=N)``). With 1 the testis is
#: homogeneous (its median focus); the mosaic presets' spread between foci shows only with 2 or more.
CLASS_COUNTS: tuple[int, ...] = (1, 8, 16)
#: Focus classes selected first: 8, so that the mosaic histologies show their foci. With two or more
#: classes the explorer runs the exact split path (every dose through the solver, the germ line compiled;
#: within 1e-5 of the whole model, tests/test_focus_classes_compiled.py): one treated year (maturation
#: arrest, 20 mg bid for 180 d) took 0.8 s with 8 classes and 1.1 s with 16 on this machine, against 5.8 s
#: and 40 s on the whole model (building the engines once per process: 2.5 s and 14 s).
DEFAULT_N_CLASSES = 8
#: Approximate time of one treated year by class count on hourly rows, seconds (shown beside the choice;
#: measured on 2 busy cores, see :data:`WITHIN_DAY_STEP_D`).
CLASS_COUNT_COST_S: Mapping[int, float] = MappingProxyType({1: 0.7, 8: 0.9, 16: 1.9})
#: The foci panel's columns: share of tubule regions holding mature sperm, and the chance a conventional
#: TESE or a micro-TESE finds sperm (all 0-1).
FOCI_COLUMNS: tuple[str, ...] = (C.TUBULES_WITH_SPERM, C.RETRIEVAL_CONVENTIONAL_TESE, C.RETRIEVAL_MICRO_TESE)
#: The parameters with a slider, in page order (ids in models/parameters.csv).
KEY_PARAMETERS: tuple[str, ...] = ("stra6_expr", "aldh1a_expr", "cyp26_expr", "testis_penetration", "stem_niche")
#: Slider labels of the key parameters.
PARAMETER_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "stra6_expr": "STRA6 expression (× healthy)",
        "aldh1a_expr": "ALDH1A expression (× healthy)",
        "cyp26_expr": "CYP26 expression (× healthy)",
        "testis_penetration": "Testis penetration of isotretinoin (×)",
        "stem_niche": "Stem-cell pool size (million cells)",
    }
)
#: Labels of the numeric regimen controls, by :class:`ExplorerState` attribute.
CONTROL_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "dose_mg": "Dose (mg per dose)",
        "dose_mg_per_kg_day": "Dose (mg/kg/day)",
        "body_weight_kg": "Body weight (kg)",
        "start_d": "Start (day)",
        "duration_d": "Duration (days)",
    }
)
#: Bounds of the regimen controls: (lower, upper, step). Chosen to cover clinical use of
#: isotretinoin (10-80 mg/day, 0.1-2 mg/kg/day, courses of weeks to a year) with margin.
DOSE_MG_RANGE = (1.0, 100.0, 1.0)
DOSE_MG_PER_KG_DAY_RANGE = (0.05, 2.0, 0.05)
BODY_WEIGHT_KG_RANGE = (30.0, 200.0, 1.0)
START_D_RANGE = (0.0, 365.0, 1.0)
DURATION_D_RANGE = (1.0, 365.0, 1.0)
#: Dose bases offered: a fixed amount per administration, or a daily amount per kg body weight.
DOSE_PER_ADMINISTRATION = "mg per dose"
DOSE_PER_KG_DAY = "mg/kg/day"
DOSE_BASES: tuple[str, ...] = (DOSE_PER_ADMINISTRATION, DOSE_PER_KG_DAY)
#: Dosing frequencies offered: label -> interval in hours.
FREQUENCIES_H: Mapping[str, float] = MappingProxyType({"once daily (od)": 24.0, "twice daily (bid)": 12.0})
#: Baseline choices: label -> whether the baseline keeps the what-if regimen.
BASELINE_UNTREATED = "untreated (same phenotype, no drug)"
BASELINE_SAME_REGIMEN = "phenotype defaults, same regimen"
BASELINES: tuple[str, ...] = (BASELINE_UNTREATED, BASELINE_SAME_REGIMEN)
#: How many runs the process keeps for all sessions together (least recently used dropped first). A
#: year's run is about 80 kB, so a full cache holds about 20 MB.
CACHE_SIZE = 256

# The process-wide default engines (one libroadrunner instance per class count and path: the whole model
# for 1 class, the split path for more) are not thread-safe, so runs on them take turns. A pool of
# engines, one per thread, would not run faster: libroadrunner keeps Python's GIL for the whole of a
# run, so two engines in two threads take as long as one after the other (measured by
# benchmarks/bench_explore.py). Only runs on those engines hold this lock.
_ENGINE_LOCK = threading.Lock()
#: What a :class:`RunCache` holds.
T = TypeVar("T")


class SimulateFn(Protocol):
    """The signature of :func:`ra_model.simulate.simulate` that the explorer uses.

    The explorer always passes ``n_classes`` (the testis's tubule-focus classes, 1 for a homogeneous one).
    """

    def __call__(
        self,
        phenotype: str,
        regimen: str | None,
        *,
        t_end_d: float,
        overrides: Mapping[str, float] | None,
        output_step_d: float,
        n_classes: int = 1,
    ) -> pd.DataFrame:
        """Run one scenario into a results table."""
        ...


def default_simulate(
    phenotype: str,
    regimen: str | None,
    *,
    t_end_d: float,
    overrides: Mapping[str, float] | None,
    output_step_d: float,
    n_classes: int = 1,
) -> pd.DataFrame:
    """Run one scenario (the default :class:`SimulateFn`): the whole model with one class, the split path with more.

    :func:`ra_model.engines.simulate.simulate` for one class; :func:`ra_model.engines.splitpath.simulate_split`
    (exact: every dose through the solver, the germ line compiled) for a testis of focus classes. Safe to
    call from several threads: runs on the process-wide default engines (one per class count and path)
    take turns.
    """
    with _ENGINE_LOCK:
        run = simulate if n_classes == 1 else simulate_split
        return run(
            phenotype,
            regimen,
            t_end_d=t_end_d,
            overrides=overrides,
            output_step_d=output_step_d,
            n_classes=n_classes,
        )


@dataclass(frozen=True)
class CacheStats:
    """Counts of a :class:`RunCache`'s lookups since it was made or cleared.

    Attributes:
        computed: Lookups that ran the computation (misses, failed ones included).
        hits: Lookups answered from the cache.
        waited: Lookups that waited for the same key's computation in another thread.
    """

    computed: int
    hits: int
    waited: int


class RunCache(Generic[T]):
    """Results (runs or tables) by key, shared by threads: bounded, least recently used dropped first.

    :meth:`get` computes a key's result once: while one thread computes it, other threads that ask for
    the same key wait for that result (or that error) instead of computing it again; different keys
    are computed at the same time. A failed computation is not kept, so the next request tries again.
    The tables handed out are shared; treat them as read-only.

    Args:
        size: How many tables to keep (at least 1).

    Raises:
        InvalidValueError: If ``size`` is not a positive integer.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        """Start empty."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidValueError(f"RunCache size = {size!r}; use a positive whole number of runs")
        self.size = size
        self._lock = threading.Lock()
        self._tables: OrderedDict[Hashable, T] = OrderedDict()
        self._pending: dict[Hashable, Future[T]] = {}
        self._computed = self._hits = self._waited = 0

    def __len__(self) -> int:
        """Return how many tables are kept."""
        with self._lock:
            return len(self._tables)

    @property
    def stats(self) -> CacheStats:
        """How many lookups computed, hit the cache, or waited for another thread's computation."""
        with self._lock:
            return CacheStats(computed=self._computed, hits=self._hits, waited=self._waited)

    def clear(self) -> None:
        """Drop every kept table and reset the counts (computations under way finish undisturbed)."""
        with self._lock:
            self._tables.clear()
            self._computed = self._hits = self._waited = 0

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """Return the table of ``key``: kept, being computed by another thread (wait), or computed now.

        Args:
            key: What identifies the result (hashable).
            compute: Computes the table; called without any lock held.

        Returns:
            The result (the same object for every caller of the same key while it is kept).

        Raises:
            Exception: Whatever ``compute`` raised, in this thread or in the thread that computed it.
        """
        with self._lock:
            if key in self._tables:
                self._tables.move_to_end(key)
                self._hits += 1
                return self._tables[key]
            pending = self._pending.get(key)
            if pending is None:
                future: Future[T] = Future()
                self._pending[key] = future
                self._computed += 1
            else:
                self._waited += 1
        if pending is not None:
            return pending.result()
        try:
            table = compute()
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            future.set_exception(exc)
            raise
        with self._lock:
            del self._pending[key]
            self._tables[key] = table
            while len(self._tables) > self.size:
                self._tables.popitem(last=False)
        future.set_result(table)
        return table


#: The runs shared by every explorer session of this process.
SHARED_RUNS: RunCache[Run] = RunCache()


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One run of the explorer: exactly what ``ra-model run`` needs to reproduce it.

    Attributes:
        phenotype: Preset name.
        regimen: Canonical regimen text (``str(Regimen)``), or None for no drug.
        overrides: Parameter values by id that differ from the phenotype's own.
        t_end_d: Simulated time, days.
        output_step_d: Spacing of output rows, days.
        n_classes: Tubule-focus classes the testis is built from (1: homogeneous).
        description: One line for the scenario file.
    """

    phenotype: str
    regimen: str | None
    overrides: Mapping[str, float] = field(default_factory=dict)
    t_end_d: float = DEFAULT_T_END_D
    output_step_d: float = OUTPUT_STEP_D
    n_classes: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        """Freeze the overrides, check numbers and the class count, and put the regimen text in canonical form."""
        for name, value in self.overrides.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidValueError(f"override {name} = {value!r} is not a finite number")
        object.__setattr__(
            self, "overrides", MappingProxyType({k: float(v) for k, v in sorted(self.overrides.items())})
        )
        if self.regimen is not None:
            object.__setattr__(self, "regimen", str(Regimen.parse(self.regimen)))
        for name in ("t_end_d", "output_step_d"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value > 0)
            ):
                raise InvalidValueError(f"Scenario.{name} = {value!r}; use a finite number of days > 0")
        check_n_classes(self.n_classes)

    def key(self) -> tuple[object, ...]:
        """Return a hashable key of everything that changes the results (not the description)."""
        return (
            self.phenotype,
            self.regimen,
            tuple(self.overrides.items()),
            self.t_end_d,
            self.output_step_d,
            self.n_classes,
        )

    def to_toml(self) -> str:
        """Return the scenario in the simplest scenario-file form (see the README, ``ra-model run``).

        Returns:
            TOML text with ``description``, ``phenotype``, ``regimens`` (one entry; ``"none"`` for no
            drug), ``t_end_d``, ``output_step_d``, ``classes`` when the testis has more than one focus
            class, and, if any, an ``[overrides]`` table.
        """
        data: dict[str, Any] = {
            "description": self.description,
            "phenotype": self.phenotype,
            "regimens": [self.regimen if self.regimen is not None else "none"],
            "t_end_d": float(self.t_end_d),
            "output_step_d": float(self.output_step_d),
        }
        if self.n_classes != 1:
            data["classes"] = int(self.n_classes)
        if self.overrides:
            data["overrides"] = dict(self.overrides)
        return tomli_w.dumps(data)

    def label(self) -> str:
        """Return a short human-readable label: phenotype, regimen, overrides and focus classes (if more than 1)."""
        parts = [self.phenotype.replace("_", " "), self.regimen or "no drug"]
        parts += [f"{k} = {v:g}" for k, v in self.overrides.items()]
        if self.n_classes != 1:
            parts.append(f"{self.n_classes} focus classes")
        return ", ".join(parts)


@dataclass(frozen=True)
class Run:
    """One run as the explorer keeps it: the daily results table and the plasma drug by day.

    Attributes:
        table: The results table at the scenario's output step (what the CSV download holds).
        plasma_day: The plasma drug by day (:data:`PLASMA_DAY_COLUMNS`, :func:`plasma_by_day`), from the
            hourly rows of a treated run; empty when the table has no plasma column.
    """

    table: pd.DataFrame
    plasma_day: pd.DataFrame


def plasma_by_day(table: pd.DataFrame) -> pd.DataFrame:
    """Return plasma isotretinoin by day: the day's mean, lowest and highest value over its rows.

    Each day [d, d + 1) is one row, placed at the mean time of its samples (about d + 0.48 for hourly rows,
    d itself for daily ones); the last output time, if it starts a day of its own, is a row of one sample.

    Args:
        table: A results table; with rows every hour the mean is the day's average level and the range its
            swing, with one row a day all three are that row's value.

    Returns:
        A table of :data:`PLASMA_DAY_COLUMNS`; empty when ``table`` has no plasma isotretinoin column.
    """
    if C.PLASMA_ISOTRETINOIN not in table.columns or C.TIME_D not in table.columns or table.empty:
        return pd.DataFrame({column: np.array([], dtype=float) for column in PLASMA_DAY_COLUMNS})
    times = table[C.TIME_D].to_numpy(dtype=float)
    frame = pd.DataFrame({C.TIME_D: times, "level": table[C.PLASMA_ISOTRETINOIN].to_numpy(dtype=float)})
    by_day = frame.groupby(np.floor(times + 1e-9), sort=True).agg(
        t=(C.TIME_D, "mean"), mean=("level", "mean"), low=("level", "min"), high=("level", "max")
    )
    return pd.DataFrame(
        {
            C.TIME_D: by_day["t"].to_numpy(),
            PLASMA_DAY_MEAN: by_day["mean"].to_numpy(),
            PLASMA_DAY_MIN: by_day["low"].to_numpy(),
            PLASMA_DAY_MAX: by_day["high"].to_numpy(),
        }
    )


def rows_every(table: pd.DataFrame, step_d: float) -> pd.DataFrame:
    """Return the rows of a finer table that fall on a grid of ``step_d`` days from 0, and the last row.

    Args:
        table: A results table whose output times include every multiple of ``step_d`` up to its end.
        step_d: The coarser step, days (> 0).

    Returns:
        Those rows, renumbered from 0, with the table's ``attrs``.
    """
    times = table[C.TIME_D].to_numpy(dtype=float)
    on_grid = np.abs(times / step_d - np.round(times / step_d)) < 1e-9 / step_d
    on_grid[-1:] = True
    kept = table.loc[on_grid].reset_index(drop=True)
    kept.attrs = table.attrs
    return kept


def run_scenario(scenario: Scenario, simulate_fn: SimulateFn = default_simulate) -> Run:
    """Run a scenario as the explorer does: a treated one on hourly rows, kept as daily rows and plasma by day.

    A treated scenario is simulated every :data:`WITHIN_DAY_STEP_D` (when that is finer than its output step),
    so its plasma drug by day holds the day's mean and swing; its table keeps the rows at the scenario's
    output step (these agree with a run at that step to the solver's tolerance, about 1e-5 relative on the
    split path). An untreated one is simulated at its output step (its plasma level does not swing).

    Args:
        scenario: What to run.
        simulate_fn: Runs one scenario (default :func:`default_simulate`).

    Returns:
        The run.

    Raises:
        RAModelError: Whatever ``simulate_fn`` raises for bad input or a solver failure.
    """
    fine = scenario.regimen is not None and scenario.output_step_d > WITHIN_DAY_STEP_D
    step = WITHIN_DAY_STEP_D if fine else scenario.output_step_d
    table = simulate_fn(
        scenario.phenotype,
        scenario.regimen,
        t_end_d=scenario.t_end_d,
        overrides=dict(scenario.overrides) or None,
        output_step_d=step,
        n_classes=scenario.n_classes,
    )
    daily = rows_every(table, scenario.output_step_d) if fine else table
    return Run(table=daily, plasma_day=plasma_by_day(table))


@dataclass(frozen=True, kw_only=True)
class Summary:
    """The facts behind the plain-language summary of one run.

    Attributes:
        t_end_d: Last output time, days.
        first_motile_d: First output time with motile sperm at or above the detection limit, or None.
        peak_M_per_mL: Highest ejaculate sperm concentration, million/mL.
        peak_d: Time of that peak, days.
        peak_category: Semen category at the peak (``semen_category`` column), or None without the column.
        detection_limit_M_per_mL: The lowest concentration a semen analysis can find (the table's pellet
            detection limit, else its motile one), million/mL; 0 when the table does not say.
        last_dose_d: Time of the last dose, days, or None without drug.
        azoospermic_again_d: First output time after which motile sperm stay below the detection
            limit to the end of the run (only when they were present at some time), or None.
    """

    t_end_d: float
    first_motile_d: float | None
    peak_M_per_mL: float
    peak_d: float
    peak_category: str | None = None
    detection_limit_M_per_mL: float = 0.0
    last_dose_d: float | None
    azoospermic_again_d: float | None

    @property
    def none_detectable(self) -> bool:
        """Whether the semen holds no detectable sperm at any time (peak below the detection limit, or zero)."""
        return not self.peak_M_per_mL > 0.0 or self.peak_M_per_mL < self.detection_limit_M_per_mL


def detection_limit(table: pd.DataFrame) -> float:
    """Return the lowest sperm concentration a semen analysis finds, from a table's attrs, million/mL.

    The model derives it from the measurement (one sperm expected in the searched pellet): the table's
    ``pellet_detection_limit_M_per_mL``, else its ``motile_detection_limit_M_per_mL``; 0 when neither is there.
    """
    for key in (LIMIT_ATTRS["pellet_detection_limit"], "motile_detection_limit_M_per_mL"):
        value = table.attrs.get(key)
        if value is not None and math.isfinite(float(value)) and float(value) > 0:
            return float(value)
    return 0.0


def summary_facts(table: pd.DataFrame) -> Summary:
    """Extract the summary facts from a results table.

    Args:
        table: A ``simulate()`` table (columns ``time_d``, ``motile_sperm_present``,
            ``ejaculate_concentration_M_per_mL``, optionally ``semen_category``; ``attrs["dose_times_d"]`` for
            the doses and the detection limits).

    Returns:
        The facts; see :class:`Summary`.

    Raises:
        InvalidValueError: If the table has no rows or lacks one of the columns.
    """
    missing = [c for c in (C.TIME_D, C.MOTILE_SPERM_PRESENT, C.EJACULATE_CONCENTRATION) if c not in table.columns]
    if missing or table.empty:
        raise InvalidValueError(
            f"cannot summarise a results table with {len(table)} rows and missing columns {missing}; "
            "pass the table returned by ra_model.simulate.simulate"
        )
    times = table[C.TIME_D].to_numpy(dtype=float)
    present = table[C.MOTILE_SPERM_PRESENT].to_numpy(dtype=bool)
    concentration = table[C.EJACULATE_CONCENTRATION].to_numpy(dtype=float)
    doses = list(table.attrs.get("dose_times_d") or [])
    peak_index = int(np.argmax(concentration))
    first = float(times[present.argmax()]) if present.any() else None
    again = None
    if present.any():
        last_present = int(np.flatnonzero(present)[-1])
        if last_present + 1 < len(times):
            again = float(times[last_present + 1])
    category = str(table[C.SEMEN_CATEGORY].iloc[peak_index]) if C.SEMEN_CATEGORY in table.columns else None
    return Summary(
        t_end_d=float(times[-1]),
        first_motile_d=first,
        peak_M_per_mL=float(concentration[peak_index]),
        peak_d=float(times[peak_index]),
        peak_category=category,
        detection_limit_M_per_mL=detection_limit(table),
        last_dose_d=float(max(doses)) if doses else None,
        azoospermic_again_d=again,
    )


def concentration_words(millions_per_ml: float) -> str:
    """Write a sperm concentration (million/mL) for a reader: million/mL from 0.1 million up, else sperm per mL.

    Examples: ``7.53 million sperm/mL``, ``12,300 sperm/mL``, ``149 sperm/mL``, ``0.33 sperm/mL``.
    """
    if millions_per_ml >= 0.1:
        return f"{millions_per_ml:.3g} million sperm/mL"
    sperm = float(f"{millions_per_ml * 1e6:.3g}")
    if sperm >= 100:
        return f"{sperm:,.0f} sperm/mL"
    return f"{sperm:.3g} sperm/mL" if sperm >= 1 else f"{sperm:.2g} sperm/mL"


def category_words(category: str | None, table: pd.DataFrame) -> str:
    """Say what a semen category means, with the table's WHO limit; ``""`` for none or an unknown category."""
    oligo = table.attrs.get(LIMIT_ATTRS["oligozoospermia_limit"])
    words = {
        CATEGORIES[1]: "cryptozoospermia: found only by centrifuging the sample",
        CATEGORIES[2]: "oligozoospermia: below the WHO lower limit"
        + (f" of {float(oligo):g} million/mL" if oligo is not None else ""),
        CATEGORIES[3]: "in the normal range",
    }
    return words.get(category or "", "")


def summarise(table: pd.DataFrame) -> str:
    """Say in plain words what a run shows about sperm in the semen.

    Below the detection limit (the table's pellet detection limit: one sperm expected in the searched part of
    the centrifuged pellet, a model quantity derived from the measurement) the semen holds "none detectable", whatever
    tiny number the model computes. "Motile sperm" means motile sperm at or above the motile detection
    limit (the ``motile_sperm_present`` column). Times are output times, so they are exact to the table's
    output step.

    Args:
        table: A ``simulate()`` table (see :func:`summary_facts`).

    Returns:
        E.g. ``"Motile sperm first appear on day 38; peak 7.53 million sperm/mL on day 108 (oligozoospermia:
        below the WHO lower limit of 15 million/mL); no motile sperm again 141.5 days after stopping (day 321;
        last dose day 179.5)."``

    Raises:
        InvalidValueError: If the table lacks the columns needed.
    """
    s = summary_facts(table)
    if s.none_detectable:
        limit = ""
        if s.detection_limit_M_per_mL > 0:
            limit = (
                f" (below {concentration_words(s.detection_limit_M_per_mL)}, the lowest a search of the "
                "centrifuged pellet finds)"
            )
        return f"Sperm in the semen: none detectable at any time in the {s.t_end_d:g} days simulated{limit}."
    meaning = category_words(s.peak_category, table)
    peak = f"peak {concentration_words(s.peak_M_per_mL)} on day {s.peak_d:g}" + (f" ({meaning})" if meaning else "")
    if s.first_motile_d is None:
        return f"No motile sperm at any time in the {s.t_end_d:g} days simulated; sperm in the semen {peak}."
    if s.first_motile_d == float(table[C.TIME_D].iloc[0]):
        opening = f"Motile sperm are present from the start (day {s.first_motile_d:g})"
    else:
        opening = f"Motile sperm first appear on day {s.first_motile_d:g}"
    if s.last_dose_d is None:
        ending = ""
        if s.azoospermic_again_d is not None:
            ending = f"; no motile sperm again from day {s.azoospermic_again_d:g}"
        return f"{opening}; {peak}{ending}."
    stop = s.last_dose_d
    if stop >= s.t_end_d:
        return f"{opening}; {peak}; the treatment lasts to the end of the run (day {s.t_end_d:g})."
    if s.azoospermic_again_d is None:
        ending = (
            f"still present at the end of the run, {s.t_end_d - stop:g} days after stopping (last dose day {stop:g})"
        )
    elif s.azoospermic_again_d > stop:
        ending = (
            f"no motile sperm again {s.azoospermic_again_d - stop:g} days after stopping "
            f"(day {s.azoospermic_again_d:g}; last dose day {stop:g})"
        )
    else:
        ending = f"no motile sperm again from day {s.azoospermic_again_d:g}, before the last dose (day {stop:g})"
    return f"{opening}; {peak}; {ending}."


def foci_table(table: pd.DataFrame) -> pd.DataFrame:
    """Return the foci panel's data of a run: time, tubules holding sperm and the two retrieval chances.

    Args:
        table: A ``simulate()`` table.

    Returns:
        A new table with ``time_d`` and the :data:`FOCI_COLUMNS` (floats, 0-1), one row per output time.
        A column the table lacks (a model without the foci readouts) is NaN, so it draws nothing.

    Raises:
        InvalidValueError: If the table has no ``time_d`` column.
    """
    if C.TIME_D not in table.columns:
        raise InvalidValueError(
            f"cannot read the foci of a results table without {C.TIME_D!r}; pass the table returned by simulate"
        )
    data = {C.TIME_D: table[C.TIME_D].to_numpy(dtype=float)}
    for column in FOCI_COLUMNS:
        data[column] = table[column].to_numpy(dtype=float) if column in table.columns else np.full(len(table), np.nan)
    return pd.DataFrame(data)


@dataclass(frozen=True)
class ParameterRange:
    """A key parameter's row of the parameter table, as its slider shows it.

    Attributes:
        id: Parameter id (models/parameters.csv).
        lower: Lower end of the plausible range.
        upper: Upper end of the plausible range.
        unit: Unit of the value.
        description: What the parameter is.
        source: Where its value comes from.
    """

    id: str
    lower: float
    upper: float
    unit: str
    description: str
    source: str

    def __post_init__(self) -> None:
        """Check that the range is finite and not reversed."""
        if not (math.isfinite(self.lower) and math.isfinite(self.upper) and self.lower <= self.upper):
            raise InvalidValueError(
                f"parameter {self.id}: range {self.lower!r} to {self.upper!r} is not a finite range with lower <= upper"
            )


def parameter_ranges() -> dict[str, ParameterRange]:
    """Return the key parameters' plausible ranges from models/parameters.csv, in page order."""
    table = read_parameter_table()
    out = {}
    for pid in KEY_PARAMETERS:
        row = table[pid]
        out[pid] = ParameterRange(
            id=pid,
            lower=float(row.lower),
            upper=float(row.upper),
            unit=str(row.unit),
            description=str(row.description),
            source=str(row.source),
        )
    return out


def _number(value: float | None, label: str) -> float:
    """Return a control's value as a float; None (a cleared slider) is an error."""
    if value is None:
        raise InvalidValueError(f"{label!r} has no value; move the slider to set one")
    return float(value)


class ExplorerState:
    """The state of one explorer session: the control values, the runs they ask for, and their results.

    The control values are plain attributes that the page (or a caller) sets; :meth:`scenario` and
    :meth:`baseline_scenario` read them, and :meth:`refresh` runs both scenarios. Results are
    cached per scenario in a cache shared by all sessions (:data:`SHARED_RUNS` unless ``cache`` is
    given), so going back to earlier settings, or to a scenario another session ran, is instant.

    Attributes:
        phenotype: Selected preset; change it with :meth:`select_phenotype`.
        drug: Whether isotretinoin is given.
        dose_basis: One of :data:`DOSE_BASES`.
        dose_mg: Amount per administration, mg (with :data:`DOSE_PER_ADMINISTRATION`).
        dose_mg_per_kg_day: Daily dose per kg, mg/kg/day (with :data:`DOSE_PER_KG_DAY`).
        body_weight_kg: Body weight, kg (with :data:`DOSE_PER_KG_DAY`).
        frequency: One of the labels of :data:`FREQUENCIES_H`.
        start_d: Day of the first dose.
        duration_d: Length of the course, days.
        fed: Whether doses are taken with food.
        t_end_d: Simulated time, days; one of :data:`HORIZONS_D`.
        n_classes: Tubule-focus classes the testis of both runs is built from; one of :data:`CLASS_COUNTS`.
        baseline_choice: One of :data:`BASELINES`.
        parameters: Values of the key parameters by id (the sliders).
        phenotypes: The presets by name.
        phenotype_names: The presets' plain names by id (:func:`ra_model.app.guide.phenotype_name`).
        ranges: The key parameters' plausible ranges by id.
        whatif: The last successful what-if run's table, or None (none yet, or the last refresh failed).
        baseline: The last successful baseline run's table, or None.
        whatif_plasma: The what-if run's plasma drug by day (:func:`plasma_by_day`), or None.
        baseline_plasma: The baseline run's plasma drug by day, or None.
        scenarios: The (what-if, baseline) scenarios of the last successful refresh, or None.
        error: Why the last refresh failed, or ``""``.

    Args:
        simulate_fn: Runs one scenario; defaults to :func:`default_simulate` (tests inject a failing
            one to check the error text). It may be called from several threads at once.
        cache: Where runs are kept; defaults to :data:`SHARED_RUNS`, shared by all sessions. Runs are
            kept by scenario (focus-class count included) and ``simulate_fn``, so sessions with
            different functions never share.
        phenotype: Preset selected first.
        regimen: Regimen the controls describe first (od or bid dosing).
        t_end_d: Horizon selected first; one of :data:`HORIZONS_D`.
        n_classes: Focus classes selected first; one of :data:`CLASS_COUNTS`.

    Raises:
        UnknownNameError: If ``phenotype`` is not a preset.
        InvalidValueError: If ``t_end_d`` or ``n_classes`` is not offered or ``regimen`` is neither od nor bid.
        RegimenParseError: If ``regimen`` cannot be read.
    """

    def __init__(
        self,
        *,
        simulate_fn: SimulateFn = default_simulate,
        cache: RunCache[Run] | None = None,
        phenotype: str = "maturation_arrest",
        regimen: str = "20 mg bid for 180 d",
        t_end_d: float = DEFAULT_T_END_D,
        n_classes: int = DEFAULT_N_CLASSES,
    ) -> None:
        """Set the controls from the starting phenotype, regimen, horizon and class count (runs nothing yet)."""
        self._simulate = simulate_fn
        self._cache = SHARED_RUNS if cache is None else cache
        self.phenotypes: dict[str, Phenotype] = load_phenotypes()
        self.phenotype_names = {name: phenotype_name(name, preset) for name, preset in self.phenotypes.items()}
        self.ranges: dict[str, ParameterRange] = parameter_ranges()
        self._defaults = default_engine().defaults
        if phenotype not in self.phenotypes:
            raise UnknownNameError("phenotype", phenotype, self.phenotypes)
        if t_end_d not in HORIZONS_D:
            raise InvalidValueError(f"t_end_d = {t_end_d!r}; the explorer offers {list(HORIZONS_D)} days")
        if isinstance(n_classes, bool) or n_classes not in CLASS_COUNTS:
            raise InvalidValueError(
                f"n_classes = {n_classes!r}; the explorer offers {list(CLASS_COUNTS)} focus classes"
            )
        self.phenotype = phenotype
        self.dose_mg = 20.0
        self.dose_mg_per_kg_day = 0.5
        self.body_weight_kg = 70.0
        self.set_regimen(regimen)
        self.t_end_d = float(t_end_d)
        self.n_classes = int(n_classes)
        self.baseline_choice = BASELINE_UNTREATED
        self.parameters: dict[str, float] = self.phenotype_values()
        self.whatif: pd.DataFrame | None = None
        self.baseline: pd.DataFrame | None = None
        self.whatif_plasma: pd.DataFrame | None = None
        self.baseline_plasma: pd.DataFrame | None = None
        self.scenarios: tuple[Scenario, Scenario] | None = None
        self.error = ""

    def set_regimen(self, regimen: str | None) -> None:
        """Set the regimen controls from a regimen text (None: no drug; the dose controls keep their values).

        Args:
            regimen: Regimen text with od or bid dosing, or None.

        Raises:
            InvalidValueError: If the regimen is neither od nor bid.
            RegimenParseError: If ``regimen`` cannot be read.
        """
        if regimen is None:
            self.drug = False
            return
        start = Regimen.parse(regimen)
        frequency = next((k for k, v in FREQUENCIES_H.items() if v == start.interval_h), None)
        if frequency is None:
            raise InvalidValueError(
                f"regimen {regimen!r}: the explorer offers od or bid dosing, not every {start.interval_h:g} h"
            )
        self.drug = True
        if start.dose_mg is not None:
            self.dose_basis = DOSE_PER_ADMINISTRATION
            self.dose_mg = start.dose_mg
        else:
            self.dose_basis = DOSE_PER_KG_DAY
            self.dose_mg_per_kg_day = float(start.dose_mg_per_kg_day or self.dose_mg_per_kg_day)
            self.body_weight_kg = float(start.body_weight_kg or self.body_weight_kg)
        self.frequency = frequency
        self.start_d = start.start_d
        if start.duration_d is not None:
            self.duration_d = start.duration_d
        else:  # n doses, one every interval: the course lasts n intervals
            self.duration_d = float(start.n_doses or 1) * start.interval_h / 24.0
        self.fed = start.fed

    def apply_experiment(self, experiment: Experiment) -> None:
        """Set the controls to a suggested experiment; runs nothing (call :meth:`refresh`).

        The phenotype goes to the experiment's preset (sliders at the preset's values), the regimen controls
        to its regimen, the baseline to the same man untreated.

        Raises:
            UnknownNameError: If the experiment's preset does not exist.
            InvalidValueError: If its regimen is neither od nor bid.
        """
        self.select_phenotype(experiment.phenotype)
        self.set_regimen(experiment.regimen)
        self.baseline_choice = BASELINE_UNTREATED

    # ----------------------------------------------------------------- phenotype
    def phenotype_values(self) -> dict[str, float]:
        """Return the selected phenotype's values of the key parameters."""
        resolved = self.phenotypes[self.phenotype].resolve(self._defaults)
        return {pid: float(resolved.get(pid, self._defaults[pid])) for pid in KEY_PARAMETERS}

    def select_phenotype(self, name: str) -> dict[str, float]:
        """Select a preset and set the key parameters to its values.

        Args:
            name: Preset name.

        Returns:
            The preset's values of the key parameters (now also :attr:`parameters`).

        Raises:
            UnknownNameError: If ``name`` is not a preset.
        """
        if name not in self.phenotypes:
            raise UnknownNameError("phenotype", name, self.phenotypes)
        self.phenotype = name
        self.parameters = self.phenotype_values()
        return dict(self.parameters)

    def phenotype_note(self) -> str:
        """Return the selected preset's description, and say which sliders reach outside the table's range."""
        notes = [self.phenotypes[self.phenotype].description]
        values = self.phenotype_values()
        for pid, rng in self.ranges.items():
            if not rng.lower <= values[pid] <= rng.upper:
                notes.append(
                    f"The slider '{PARAMETER_LABELS[pid]}' also reaches this preset's own value {values[pid]:.4g}, "
                    f"outside the plausible range {rng.lower:g} to {rng.upper:g}."
                )
        return " ".join(notes)

    def foci_note(self) -> str:
        """Return Markdown that explains the foci panel for the selected preset and class count.

        It names the surgeries' sample counts (``tese_samples``, ``micro_tese_samples`` in
        models/parameters.csv) and, when the preset's foci differ in local RA (``local_ra_sd`` > 0) but
        the testis has one class, says that the spread shows only with more classes.
        """
        resolved = self.phenotypes[self.phenotype].resolve(self._defaults)
        tese = float(resolved.get("tese_samples", self._defaults.get("tese_samples", math.nan)))
        micro = float(resolved.get("micro_tese_samples", self._defaults.get("micro_tese_samples", math.nan)))
        spread = float(resolved.get("local_ra_sd", self._defaults.get("local_ra_sd", 0.0)))
        text = (
            "**Foci** (panel below): the share of tubule regions holding mature sperm, and the chance that "
            f"surgery finds sperm: a conventional TESE ({tese:g} random biopsies) or a micro-TESE ({micro:g} "
            "regions picked under the microscope). Solid: what-if; dashed: baseline."
        )
        if self.n_classes == 1:
            text += " With 1 focus class every tubule focus is the same (the testis's median focus)."
            if spread > 0:
                text += (
                    " This preset's foci differ in how much RA they make: choose 8 or 16 focus classes to see "
                    "some foci respond before others."
                )
        elif spread > 0:
            text += (
                f" The testis is built from {self.n_classes} focus classes that differ in how much RA they "
                "make, so some foci hold sperm before others."
            )
        else:
            text += (
                f" The testis is built from {self.n_classes} focus classes; this preset's foci make the same "
                "amount of RA, so they stay alike."
            )
        return text

    # ----------------------------------------------------------------- scenarios
    def regimen(self) -> Regimen | None:
        """Return the regimen the regimen controls describe, or None when no drug is given.

        Raises:
            InvalidValueError: If the controls describe an invalid regimen.
        """
        if not self.drug:
            return None
        if self.frequency not in FREQUENCIES_H:
            raise InvalidValueError(f"frequency {self.frequency!r}: use one of {list(FREQUENCIES_H)}")
        if self.dose_basis not in DOSE_BASES:
            raise InvalidValueError(f"dose basis {self.dose_basis!r}: use one of {list(DOSE_BASES)}")
        common: dict[str, Any] = {
            "interval_h": FREQUENCIES_H[self.frequency],
            "start_d": _number(self.start_d, CONTROL_LABELS["start_d"]),
            "duration_d": _number(self.duration_d, CONTROL_LABELS["duration_d"]),
            "fed": bool(self.fed),
        }
        if self.dose_basis == DOSE_PER_KG_DAY:
            return Regimen(
                dose_mg_per_kg_day=_number(self.dose_mg_per_kg_day, CONTROL_LABELS["dose_mg_per_kg_day"]),
                body_weight_kg=_number(self.body_weight_kg, CONTROL_LABELS["body_weight_kg"]),
                **common,
            )
        return Regimen(dose_mg=_number(self.dose_mg, CONTROL_LABELS["dose_mg"]), **common)

    def overrides(self) -> dict[str, float]:
        """Return the key parameter values that differ from the selected phenotype's own values.

        Raises:
            InvalidValueError: If a key parameter has no value.
        """
        preset = self.phenotype_values()
        values = {pid: _number(v, PARAMETER_LABELS[pid]) for pid, v in self.parameters.items()}
        return {pid: v for pid, v in values.items() if v != preset[pid]}

    def scenario(self) -> Scenario:
        """Return the what-if scenario the controls describe.

        Raises:
            InvalidValueError: If the regimen controls describe an invalid regimen.
        """
        regimen = self.regimen()
        overrides = self.overrides()
        text = str(regimen) if regimen else None
        what = ", ".join(f"{k} = {v:g}" for k, v in overrides.items()) or "no parameter changes"
        classes = f"; testis of {self.n_classes} focus classes" if self.n_classes != 1 else ""
        description = (
            f"What-if explorer: {self.phenotype} with {text or 'no drug'}; {what} "
            f"(relative to the preset's own values){classes}."
        )
        return Scenario(
            phenotype=self.phenotype,
            regimen=text,
            overrides=overrides,
            t_end_d=float(self.t_end_d),
            output_step_d=OUTPUT_STEP_D,
            n_classes=self.n_classes,
            description=description,
        )

    def baseline_scenario(self, whatif: Scenario) -> Scenario:
        """Return the baseline of a what-if scenario: phenotype defaults, same classes, untreated or same regimen."""
        regimen = whatif.regimen if self.baseline_choice == BASELINE_SAME_REGIMEN else None
        return Scenario(
            phenotype=whatif.phenotype,
            regimen=regimen,
            t_end_d=whatif.t_end_d,
            output_step_d=whatif.output_step_d,
            n_classes=whatif.n_classes,
            description=f"Baseline: {whatif.phenotype} defaults, {regimen or 'no drug'}.",
        )

    # ----------------------------------------------------------------- running
    def run(self, scenario: Scenario) -> Run:
        """Return the run of a scenario (:func:`run_scenario`): from the cache when any session ran it before.

        When another session is running the same scenario, this waits for its result instead of
        running it again. The run is shared with other sessions; treat it as read-only.

        Raises:
            RAModelError: Whatever ``simulate_fn`` raises for bad input or a solver failure.
        """
        return self._cache.get((self._simulate, *scenario.key()), lambda: run_scenario(scenario, self._simulate))

    def refresh(self) -> bool:
        """Run the what-if and baseline scenarios the controls describe; on failure keep the reason.

        Any error is caught, so a caller driven by a page stays usable: a model error (bad settings,
        a solver failure) and an unexpected one (logged in full) both end up in :attr:`error`.

        Returns:
            True when both runs succeeded (:attr:`whatif`, :attr:`baseline` and :attr:`scenarios`
            hold them); False when one failed (:attr:`error` says why and :attr:`whatif` is None).
        """
        try:
            whatif = self.scenario()
            base = self.baseline_scenario(whatif)
            table = self.run(whatif)
            baseline = self.run(base)
        except RAModelError as exc:
            kind = "The simulation failed" if isinstance(exc, SimulationFailedError) else "These settings do not work"
            self._fail(f"{kind}: {exc}")
            return False
        except Exception as exc:  # a bug must not take the page down; it is logged in full
            log.exception("explorer update failed")
            self._fail(f"Unexpected error ({type(exc).__name__}): {exc}")
            return False
        self.whatif, self.baseline = table.table, baseline.table
        self.whatif_plasma, self.baseline_plasma = table.plasma_day, baseline.plasma_day
        self.scenarios = (whatif, base)
        self.error = ""
        return True

    def _fail(self, message: str) -> None:
        self.error = message
        self.whatif = self.whatif_plasma = None
        log.warning("explorer: %s", message)

    def summary_text(self) -> str:
        """Return the summary of the last successful refresh as Markdown (what-if, then baseline), or ``""``."""
        if self.whatif is None or self.baseline is None or self.scenarios is None:
            return ""
        whatif, base = self.scenarios
        return (
            f"**What-if** ({self.label(whatif)}): {summarise(self.whatif)}\n\n"
            f"**Baseline** ({self.label(base)}): {summarise(self.baseline)}"
        )

    def label(self, scenario: Scenario) -> str:
        """Return a scenario in plain words: the preset's name, the regimen, changed sliders, focus classes.

        E.g. ``"Maturation arrest, too little RA; 20 mg twice daily for 180 days; CYP26 expression (x healthy)
        10; 8 focus classes"`` (the ids stay in the downloaded scenario file).
        """
        parts = [self.phenotype_names.get(scenario.phenotype, scenario.phenotype), regimen_words(scenario.regimen)]
        parts += [f"{PARAMETER_LABELS.get(k, k)} {v:g}" for k, v in scenario.overrides.items()]
        if scenario.n_classes != 1:
            parts.append(f"{scenario.n_classes} focus classes")
        return "; ".join(parts)

    # ----------------------------------------------------------------- downloads
    def csv_text(self) -> str:
        """Return the what-if run as CSV text (empty when the last run failed)."""
        return "" if self.whatif is None else self.whatif.to_csv(index=False)

    def scenario_toml(self) -> str:
        """Return the current what-if scenario as a scenario file for ``ra-model run``."""
        return self.scenario().to_toml()
