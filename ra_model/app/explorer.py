"""The what-if explorer: a local Panel web app that reruns the model whenever a student moves a control.

The page has controls (phenotype, regimen, the five parameters that matter most), the standard
time-course panel with a baseline run drawn beside the what-if run, a plain-language summary, and
download buttons for the run (CSV) and the exact scenario (TOML, the simplest scenario form that
``ra-model run`` reads). Everything the page shows is computed by :func:`ra_model.simulate.simulate`;
:func:`summarise` turns a results table into the summary sentence and is a pure function.

Use :func:`serve` to start the server (the ``ra-model explore`` command calls it), or build an
:class:`Explorer` directly to drive the app from Python.
"""

# Panel's widget and pane constructors carry no type hints, so calling them is an untyped call.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import io
import logging
import math
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd
import panel as pn
import param
import tomli_w
from bokeh.layouts import gridplot
from bokeh.models import ColumnDataSource
from bokeh.models.annotations import BoxAnnotation, Span
from bokeh.plotting import figure

from ra_model.engines.simulate import default_engine, simulate
from ra_model.errors import InvalidValueError, RAModelError, SimulationFailedError, UnknownNameError
from ra_model.model import columns as C
from ra_model.model.phenotypes import Phenotype, load_phenotypes
from ra_model.model.regimen import Regimen
from ra_model.model.source import read_parameter_table

log = logging.getLogger(__name__)

#: Default simulated time, days: one year covers a 6-month course and the months after it, and one
#: run with 360 doses takes about 0.3-0.4 s, so a change redraws within about a second.
DEFAULT_T_END_D = 365.0
#: Horizons offered in the page, days (longer ones take proportionally longer per change).
HORIZONS_D: tuple[float, ...] = (180.0, 365.0, 730.0)
#: Spacing of output rows, days.
OUTPUT_STEP_D = 1.0
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
#: Bounds of the regimen controls: (lower, upper, step). Chosen to cover clinical use of
#: isotretinoin (10-80 mg/day, 0.1-2 mg/kg/day, courses of weeks to a year) with margin.
DOSE_MG_RANGE = (1.0, 100.0, 1.0)
DOSE_MG_PER_KG_DAY_RANGE = (0.05, 2.0, 0.05)
BODY_WEIGHT_KG_RANGE = (30.0, 200.0, 1.0)
START_D_RANGE = (0.0, 365.0, 1.0)
DURATION_D_RANGE = (1.0, 365.0, 1.0)
#: Dosing frequencies offered: label -> interval in hours.
FREQUENCIES_H: Mapping[str, float] = MappingProxyType({"once daily (od)": 24.0, "twice daily (bid)": 12.0})
#: Baseline choices: label -> whether the baseline keeps the what-if regimen.
BASELINE_UNTREATED = "untreated (same phenotype, no drug)"
BASELINE_SAME_REGIMEN = "phenotype defaults, same regimen"
BASELINES: tuple[str, ...] = (BASELINE_UNTREATED, BASELINE_SAME_REGIMEN)
#: Floor for drawing concentrations on the log axis (display only; the table keeps zeros).
LOG_AXIS_FLOOR = 1e-6
#: The standard panels drawn in the page: (column, title, log scale); the same set as ra_model.plots.timecourse.
PANELS = C.STANDARD_PANELS

# The shared default engine is not thread-safe; sessions and callers in other threads take turns.
_SIMULATE_LOCK = threading.Lock()


class SimulateFn(Protocol):
    """The signature of :func:`ra_model.simulate.simulate` that the explorer uses."""

    def __call__(
        self,
        phenotype: str,
        regimen: str | None,
        *,
        t_end_d: float,
        overrides: Mapping[str, float] | None,
        output_step_d: float,
    ) -> pd.DataFrame:
        """Run one scenario into a results table."""
        ...


def _simulate(
    phenotype: str,
    regimen: str | None,
    *,
    t_end_d: float,
    overrides: Mapping[str, float] | None,
    output_step_d: float,
) -> pd.DataFrame:
    return simulate(phenotype, regimen, t_end_d=t_end_d, overrides=overrides, output_step_d=output_step_d)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One run of the explorer: exactly what ``ra-model run`` needs to reproduce it.

    Attributes:
        phenotype: Preset name.
        regimen: Canonical regimen text (``str(Regimen)``), or None for no drug.
        overrides: Parameter values by id that differ from the phenotype's own.
        t_end_d: Simulated time, days.
        output_step_d: Spacing of output rows, days.
        description: One line for the scenario file.
    """

    phenotype: str
    regimen: str | None
    overrides: Mapping[str, float] = field(default_factory=dict)
    t_end_d: float = DEFAULT_T_END_D
    output_step_d: float = OUTPUT_STEP_D
    description: str = ""

    def __post_init__(self) -> None:
        """Freeze the overrides, check numbers, and put the regimen text in canonical form."""
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

    def key(self) -> tuple[object, ...]:
        """Return a hashable key of everything that changes the results (not the description)."""
        return (self.phenotype, self.regimen, tuple(self.overrides.items()), self.t_end_d, self.output_step_d)

    def to_toml(self) -> str:
        """Return the scenario in the simplest scenario-file form (see the README, ``ra-model run``).

        Returns:
            TOML text with ``description``, ``phenotype``, ``regimens`` (one entry; ``"none"`` for no
            drug), ``t_end_d``, ``output_step_d`` and, if any, an ``[overrides]`` table.
        """
        data: dict[str, Any] = {
            "description": self.description,
            "phenotype": self.phenotype,
            "regimens": [self.regimen if self.regimen is not None else "none"],
            "t_end_d": float(self.t_end_d),
            "output_step_d": float(self.output_step_d),
        }
        if self.overrides:
            data["overrides"] = dict(self.overrides)
        return tomli_w.dumps(data)

    def label(self) -> str:
        """Return a short human-readable label: phenotype, regimen and overrides."""
        parts = [self.phenotype.replace("_", " "), self.regimen or "no drug"]
        parts += [f"{k} = {v:g}" for k, v in self.overrides.items()]
        return ", ".join(parts)


@dataclass(frozen=True, kw_only=True)
class Summary:
    """The facts behind the plain-language summary of one run.

    Attributes:
        t_end_d: Last output time, days.
        first_motile_d: First output time with motile sperm at or above the detection limit, or None.
        peak_M_per_mL: Highest ejaculate sperm concentration, million/mL.
        peak_d: Time of that peak, days.
        last_dose_d: Time of the last dose, days, or None without drug.
        azoospermic_again_d: First output time after which motile sperm stay below the detection
            limit to the end of the run (only when they were present at some time), or None.
    """

    t_end_d: float
    first_motile_d: float | None
    peak_M_per_mL: float
    peak_d: float
    last_dose_d: float | None
    azoospermic_again_d: float | None


def summary_facts(table: pd.DataFrame) -> Summary:
    """Extract the summary facts from a results table.

    Args:
        table: A ``simulate()`` table (columns ``time_d``, ``motile_sperm_present``,
            ``ejaculate_concentration_M_per_mL``; ``attrs["dose_times_d"]`` for the doses).

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
    return Summary(
        t_end_d=float(times[-1]),
        first_motile_d=first,
        peak_M_per_mL=float(concentration[peak_index]),
        peak_d=float(times[peak_index]),
        last_dose_d=float(max(doses)) if doses else None,
        azoospermic_again_d=again,
    )


def summarise(table: pd.DataFrame) -> str:
    """Say in one plain sentence what a run shows about sperm in the ejaculate.

    "Motile sperm" means motile sperm at or above the model's detection limit (the
    ``motile_sperm_present`` column); "azoospermia" means below it. Times are output times, so
    they are exact to the table's output step.

    Args:
        table: A ``simulate()`` table (see :func:`summary_facts`).

    Returns:
        E.g. ``"Motile sperm first appear on day 38; peak 62 million sperm/mL in the ejaculate on
        day 108; back to azoospermia 141.5 days after stopping (day 321; last dose day 179.5)."``

    Raises:
        InvalidValueError: If the table lacks the columns needed.
    """
    s = summary_facts(table)
    peak = f"peak {s.peak_M_per_mL:.3g} million sperm/mL in the ejaculate on day {s.peak_d:g}"
    if s.first_motile_d is None:
        return f"No motile sperm at any time in the {s.t_end_d:g} days simulated; {peak}."
    if s.first_motile_d == float(table[C.TIME_D].iloc[0]):
        opening = f"Motile sperm are present from the start (day {s.first_motile_d:g})"
    else:
        opening = f"Motile sperm first appear on day {s.first_motile_d:g}"
    if s.last_dose_d is None:
        ending = ""
        if s.azoospermic_again_d is not None:
            ending = f"; back to azoospermia on day {s.azoospermic_again_d:g}"
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
            f"back to azoospermia {s.azoospermic_again_d - stop:g} days after stopping "
            f"(day {s.azoospermic_again_d:g}; last dose day {stop:g})"
        )
    else:
        ending = f"back to azoospermia on day {s.azoospermic_again_d:g}, before the last dose (day {stop:g})"
    return f"{opening}; {peak}; {ending}."


@dataclass(frozen=True)
class _ParameterRange:
    """A key parameter's row of the parameter table, as the slider shows it."""

    id: str
    lower: float
    upper: float
    unit: str
    description: str
    source: str


def _parameter_ranges() -> dict[str, _ParameterRange]:
    table = read_parameter_table()
    out = {}
    for pid in KEY_PARAMETERS:
        row = table[pid]
        out[pid] = _ParameterRange(
            id=pid,
            lower=float(row.lower),
            upper=float(row.upper),
            unit=str(row.unit),
            description=str(row.description),
            source=str(row.source),
        )
    return out


class _Slider(pn.widgets.FloatSlider):
    """A slider that cannot leave [start, end], in the page or from Python, with a hover text.

    The page's slider cannot be dragged past its ends, and setting ``value`` outside them from Python
    raises ``ValueError`` (param's bounds check) instead of being clipped.
    """

    tip = param.String(default="", doc="Text shown when hovering over the (i) icon beside the slider.")

    _rename: ClassVar[Mapping[str, str | None]] = {**pn.widgets.FloatSlider._rename, "tip": None}

    @param.depends("start", "end", watch=True, on_init=True)
    def _update_bounds(self) -> None:
        self.param.value.bounds = (self.start, self.end)
        self.param.value_throttled.bounds = (self.start, self.end)


def _slider(label: str, lower: float, upper: float, step: float, value: float, *, tip: str, css: str) -> _Slider:
    """Return a slider that cannot leave [lower, upper]."""
    return _Slider(
        label=label,
        start=lower,
        end=upper,
        step=step,
        value=value,
        tip=tip,
        format="0[.]000",
        css_classes=[css],
        sizing_mode="stretch_width",
    )


def _number(widget: _Slider) -> float:
    """Return a slider's value as a float (a slider always holds one)."""
    value = widget.value
    if value is None:
        raise InvalidValueError(f"{widget.label!r} has no value; move the slider to set one")
    return float(value)


def _with_tip(widget: _Slider) -> pn.Row:
    """Lay a slider out with an (i) icon that shows its hover text; the row follows its visibility."""
    row = pn.Row(
        widget,
        pn.widgets.TooltipIcon(
            value=widget.tip, margin=(15, 0, 0, 0), css_classes=[f"{c}-tip" for c in widget.css_classes]
        ),
        sizing_mode="stretch_width",
        visible=widget.visible,
    )
    widget.param.watch(lambda event: setattr(row, "visible", event.new), "visible")
    return row


class Explorer:
    """The app object of one browser session: widgets, the runs they ask for, and the views.

    Changing any widget (from the page or from Python) reruns the what-if scenario and, when it
    changed, the baseline; results are cached per scenario, so going back is instant.

    Args:
        simulate_fn: Runs one scenario; defaults to :func:`ra_model.simulate.simulate` (tests inject
            a failing one to check the error display).
        phenotype: Preset shown first.
        regimen: Regimen shown first.
        t_end_d: Horizon shown first; one of :data:`HORIZONS_D`.
    """

    def __init__(
        self,
        *,
        simulate_fn: SimulateFn = _simulate,
        phenotype: str = "maturation_arrest",
        regimen: str = "20 mg bid for 180 d",
        t_end_d: float = DEFAULT_T_END_D,
    ) -> None:
        """Build the widgets and views and run the first scenario."""
        self._simulate = simulate_fn
        self._cache: OrderedDict[tuple[object, ...], pd.DataFrame] = OrderedDict()
        self._phenotypes: dict[str, Phenotype] = load_phenotypes()
        self._ranges = _parameter_ranges()
        self._defaults = default_engine().defaults
        if phenotype not in self._phenotypes:
            raise UnknownNameError("phenotype", phenotype, self._phenotypes)
        if t_end_d not in HORIZONS_D:
            raise InvalidValueError(f"t_end_d = {t_end_d!r}; the explorer offers {list(HORIZONS_D)} days")
        start = Regimen.parse(regimen)
        self._suspended = False
        self.whatif: pd.DataFrame | None = None
        self.baseline: pd.DataFrame | None = None
        self.error: str = ""
        self.last_update_s: float = math.nan

        self.phenotype = pn.widgets.Select(
            label="Phenotype",
            options=list(self._phenotypes),
            value=phenotype,
            description="Preset parameter set (models/phenotypes.toml); the sliders below show its values.",
            css_classes=["ra-phenotype"],
            sizing_mode="stretch_width",
        )
        self.phenotype_note = pn.pane.Markdown("", css_classes=["ra-phenotype-note"], sizing_mode="stretch_width")
        self.drug = pn.widgets.Checkbox(label="Give isotretinoin", value=True, css_classes=["ra-drug"])
        self.dose_basis = pn.widgets.RadioButtonGroup(
            label="Dose basis", options=["mg per dose", "mg/kg/day"], value="mg per dose", css_classes=["ra-basis"]
        )
        lo, hi, step = DOSE_MG_RANGE
        self.dose_mg = _slider(
            "Dose (mg per dose)",
            lo,
            hi,
            step,
            start.dose_mg if start.dose_mg is not None else 20.0,
            tip="Amount taken at each administration.",
            css="ra-dose-mg",
        )
        lo, hi, step = DOSE_MG_PER_KG_DAY_RANGE
        self.dose_mg_per_kg_day = _slider(
            "Dose (mg/kg/day)",
            lo,
            hi,
            step,
            start.dose_mg_per_kg_day if start.dose_mg_per_kg_day is not None else 0.5,
            tip="Daily dose per kg body weight, split over the administrations of a day.",
            css="ra-dose-mgkg",
        )
        lo, hi, step = BODY_WEIGHT_KG_RANGE
        self.body_weight_kg = _slider(
            "Body weight (kg)",
            lo,
            hi,
            step,
            start.body_weight_kg if start.body_weight_kg is not None else 70.0,
            tip="Used only with a mg/kg/day dose.",
            css="ra-weight",
        )
        frequency = next((k for k, v in FREQUENCIES_H.items() if v == start.interval_h), None)
        if frequency is None:
            raise InvalidValueError(
                f"regimen {regimen!r}: the explorer offers od or bid dosing, not every {start.interval_h:g} h"
            )
        self.frequency = pn.widgets.RadioButtonGroup(
            label="Frequency", options=list(FREQUENCIES_H), value=frequency, css_classes=["ra-frequency"]
        )
        lo, hi, step = START_D_RANGE
        self.start_d = _slider("Start (day)", lo, hi, step, start.start_d, tip="Day of the first dose.", css="ra-start")
        lo, hi, step = DURATION_D_RANGE
        duration = start.duration_d if start.duration_d is not None else 180.0
        self.duration_d = _slider(
            "Duration (days)",
            lo,
            hi,
            step,
            duration,
            tip="Length of the course; doses are given strictly before start + duration.",
            css="ra-duration",
        )
        self.fed = pn.widgets.Checkbox(label="Taken with food (fed)", value=start.fed, css_classes=["ra-fed"])
        self.horizon = pn.widgets.Select(
            label="Simulated time",
            options={f"{h:g} days": h for h in HORIZONS_D},
            value=t_end_d,
            description="Longer horizons take proportionally longer to redraw.",
            css_classes=["ra-horizon"],
            sizing_mode="stretch_width",
        )
        self.baseline_choice = pn.widgets.RadioButtonGroup(
            label="Baseline", options=list(BASELINES), value=BASELINE_UNTREATED, css_classes=["ra-baseline"]
        )
        self.parameters: dict[str, _Slider] = {}
        preset_values = self.phenotype_values()
        for pid, rng in self._ranges.items():
            value = preset_values[pid]
            self.parameters[pid] = _slider(
                PARAMETER_LABELS[pid],
                min(rng.lower, value),
                max(rng.upper, value),
                _step(rng.lower, rng.upper),
                value,
                tip=(
                    f"{pid} ({rng.unit}): {rng.description} Range {rng.lower:g} to {rng.upper:g} "
                    f"(models/parameters.csv). Source: {rng.source}"
                ),
                css=f"ra-param-{pid}",
            )

        self.summary = pn.pane.Markdown("", css_classes=["ra-summary"], sizing_mode="stretch_width")
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["ra-error"])
        self.status = pn.pane.Markdown("", css_classes=["ra-status"], sizing_mode="stretch_width")
        self.download_csv = pn.widgets.FileDownload(
            callback=self._csv_file, filename="whatif.csv", label="Download run (CSV)", css_classes=["ra-csv"]
        )
        self.download_toml = pn.widgets.FileDownload(
            callback=self._toml_file,
            filename="whatif.toml",
            label="Download scenario (TOML)",
            css_classes=["ra-toml"],
        )
        self._build_plots()

        for widget in (
            self.drug,
            self.dose_basis,
            self.dose_mg,
            self.dose_mg_per_kg_day,
            self.body_weight_kg,
            self.frequency,
            self.start_d,
            self.duration_d,
            self.fed,
            self.horizon,
            self.baseline_choice,
            *self.parameters.values(),
        ):
            widget.param.watch(self._on_change, "value")
        self.phenotype.param.watch(self._on_phenotype, "value")
        self._update_phenotype_note()
        self._sync_visibility()
        self.refresh()

    # ----------------------------------------------------------------- scenario from widgets
    def phenotype_values(self) -> dict[str, float]:
        """Return the selected phenotype's values of the key parameters."""
        resolved = self._phenotypes[self.phenotype.value].resolve(self._defaults)
        return {pid: float(resolved.get(pid, self._defaults[pid])) for pid in KEY_PARAMETERS}

    def regimen(self) -> Regimen | None:
        """Return the regimen the regimen controls describe, or None when no drug is given.

        Raises:
            InvalidValueError: If the controls describe an invalid regimen.
        """
        if not self.drug.value:
            return None
        interval_h = FREQUENCIES_H[self.frequency.value]
        common: dict[str, Any] = {
            "interval_h": interval_h,
            "start_d": _number(self.start_d),
            "duration_d": _number(self.duration_d),
            "fed": bool(self.fed.value),
        }
        if self.dose_basis.value == "mg/kg/day":
            return Regimen(
                dose_mg_per_kg_day=_number(self.dose_mg_per_kg_day),
                body_weight_kg=_number(self.body_weight_kg),
                **common,
            )
        return Regimen(dose_mg=_number(self.dose_mg), **common)

    def overrides(self) -> dict[str, float]:
        """Return the slider values that differ from the selected phenotype's own values."""
        preset = self.phenotype_values()
        return {pid: _number(w) for pid, w in self.parameters.items() if _number(w) != preset[pid]}

    def scenario(self) -> Scenario:
        """Return the what-if scenario the widgets describe.

        Raises:
            InvalidValueError: If the regimen controls describe an invalid regimen.
        """
        regimen = self.regimen()
        overrides = self.overrides()
        text = str(regimen) if regimen else None
        what = ", ".join(f"{k} = {v:g}" for k, v in overrides.items()) or "no parameter changes"
        description = (
            f"What-if explorer: {self.phenotype.value} with {text or 'no drug'}; {what} "
            f"(relative to the preset's own values)."
        )
        return Scenario(
            phenotype=self.phenotype.value,
            regimen=text,
            overrides=overrides,
            t_end_d=float(self.horizon.value),
            output_step_d=OUTPUT_STEP_D,
            description=description,
        )

    def baseline_scenario(self, whatif: Scenario) -> Scenario:
        """Return the baseline for a what-if scenario: same phenotype defaults, untreated or same regimen."""
        regimen = whatif.regimen if self.baseline_choice.value == BASELINE_SAME_REGIMEN else None
        return Scenario(
            phenotype=whatif.phenotype,
            regimen=regimen,
            t_end_d=whatif.t_end_d,
            output_step_d=whatif.output_step_d,
            description=f"Baseline: {whatif.phenotype} defaults, {regimen or 'no drug'}.",
        )

    # ----------------------------------------------------------------- running
    def run(self, scenario: Scenario) -> pd.DataFrame:
        """Return the results table of a scenario, from the cache when it was run before.

        Raises:
            RAModelError: Whatever ``simulate_fn`` raises for bad input or a solver failure.
        """
        key = scenario.key()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        with _SIMULATE_LOCK:
            table = self._simulate(
                scenario.phenotype,
                scenario.regimen,
                t_end_d=scenario.t_end_d,
                overrides=dict(scenario.overrides) or None,
                output_step_d=scenario.output_step_d,
            )
        self._cache[key] = table
        if len(self._cache) > 32:
            self._cache.popitem(last=False)
        return table

    def refresh(self) -> None:
        """Rerun the what-if and baseline scenarios and redraw; show a message instead on failure."""
        t0 = time.perf_counter()
        try:
            whatif = self.scenario()
            base = self.baseline_scenario(whatif)
            table = self.run(whatif)
            baseline = self.run(base)
        except RAModelError as exc:
            kind = "The simulation failed" if isinstance(exc, SimulationFailedError) else "These settings do not work"
            self._show_error(f"{kind}: {exc}")
            return
        except Exception as exc:  # a bug must not take the page down; it is logged in full
            log.exception("explorer update failed")
            self._show_error(f"Unexpected error ({type(exc).__name__}): {exc}")
            return
        self.whatif, self.baseline = table, baseline
        self.error = ""
        self.alert.param.update(object="", visible=False)
        self._draw(table, baseline, whatif, base)
        self.summary.object = (
            f"**What-if** ({whatif.label()}): {summarise(table)}\n\n"
            f"**Baseline** ({base.label()}): {summarise(baseline)}"
        )
        self.last_update_s = time.perf_counter() - t0
        self.status.object = f"Updated in {self.last_update_s:.2f} s."

    def _show_error(self, message: str) -> None:
        self.error = message
        self.whatif = None
        log.warning("explorer: %s", message)
        self.alert.param.update(
            object=f"{message}\n\nThe plot and downloads are cleared until a run succeeds; "
            "change a control to try again.",
            visible=True,
        )
        self.summary.object = "**No result for these settings** (see the message above)."
        self.whatif_source.data = _empty_data()

    # ----------------------------------------------------------------- callbacks
    def _on_change(self, event: param.parameterized.Event) -> None:
        if event.obj in (self.drug, self.dose_basis):
            self._sync_visibility()
        if not self._suspended:
            self.refresh()

    def _on_phenotype(self, event: param.parameterized.Event) -> None:
        values = self.phenotype_values()
        self._suspended = True
        try:
            for pid, widget in self.parameters.items():
                rng = self._ranges[pid]
                value = values[pid]
                final = (min(rng.lower, value), max(rng.upper, value))
                # widen to cover both the old and new value, set it, then narrow to the final bounds
                wide = (min(final[0], _number(widget)), max(final[1], _number(widget)))
                widget.param.update(start=wide[0], end=wide[1])
                widget.value = value
                widget.param.update(start=final[0], end=final[1])
        finally:
            self._suspended = False
        self._update_phenotype_note()
        self.refresh()

    def _update_phenotype_note(self) -> None:
        preset = self._phenotypes[self.phenotype.value]
        notes = [preset.description]
        values = self.phenotype_values()
        for pid, rng in self._ranges.items():
            if not rng.lower <= values[pid] <= rng.upper:
                notes.append(
                    f"The slider of {pid} also reaches this preset's own value {values[pid]:.4g}, outside the "
                    f"parameter table's range {rng.lower:g} to {rng.upper:g}."
                )
        self.phenotype_note.object = " ".join(notes)

    def _sync_visibility(self) -> None:
        drug = bool(self.drug.value)
        per_kg = self.dose_basis.value == "mg/kg/day"
        self.dose_basis.visible = drug
        self.dose_mg.visible = drug and not per_kg
        self.dose_mg_per_kg_day.visible = drug and per_kg
        self.body_weight_kg.visible = drug and per_kg
        for widget in (self.frequency, self.start_d, self.duration_d, self.fed):
            widget.visible = drug

    # ----------------------------------------------------------------- downloads
    def csv_text(self) -> str:
        """Return the what-if run as CSV text (empty when the last run failed)."""
        return "" if self.whatif is None else self.whatif.to_csv(index=False)

    def scenario_toml(self) -> str:
        """Return the current what-if scenario as a scenario file for ``ra-model run``."""
        return self.scenario().to_toml()

    def _csv_file(self) -> io.StringIO:
        self.download_csv.filename = f"whatif_{self.phenotype.value}.csv"
        return io.StringIO(self.csv_text())

    def _toml_file(self) -> io.StringIO:
        self.download_toml.filename = f"whatif_{self.phenotype.value}.toml"
        return io.StringIO(self.scenario_toml())

    # ----------------------------------------------------------------- plots
    def _build_plots(self) -> None:
        self.whatif_source = ColumnDataSource(_empty_data(), name="whatif_source")
        self.baseline_source = ColumnDataSource(_empty_data(), name="baseline_source")
        self._windows: list[BoxAnnotation] = []
        self._limit = Span(location=1e-3, dimension="width", line_color="grey", line_dash="dotted")
        figures: list[Any] = []
        for column, title, log_scale in PANELS:
            fig = figure(  # type: ignore[call-arg]  # bokeh's stubs omit the figure options it accepts
                title=title,
                height=230,
                sizing_mode="stretch_width",
                y_axis_type="log" if log_scale else "linear",
                x_axis_label="time (days)",
                tools="pan,box_zoom,reset,save,hover",
                tooltips=[("day", "@time_d{0}"), ("value", f"@{{{column}}}{{0.000}}")],
            )
            if figures:
                fig.x_range = figures[0].x_range  # zoom and pan all panels together
            window = BoxAnnotation(left=0, right=0, fill_color="orange", fill_alpha=0.1, visible=False)
            fig.add_layout(window)
            self._windows.append(window)
            fig.line(
                C.TIME_D,
                column,
                source=self.baseline_source,
                color="#777777",
                line_dash="dashed",
                line_width=2,
                legend_label="baseline",
            )
            fig.line(C.TIME_D, column, source=self.whatif_source, color="#1f5fbf", line_width=2, legend_label="what-if")
            if log_scale:
                fig.add_layout(self._limit)
            fig.legend.location = "top_right"
            fig.legend.label_text_font_size = "8pt"
            figures.append(fig)
        grid = gridplot(figures, ncols=3, sizing_mode="stretch_width", toolbar_location="right")
        self.caption = pn.pane.Markdown("", css_classes=["ra-caption"], sizing_mode="stretch_width")
        self.plot = pn.pane.Bokeh(grid, sizing_mode="stretch_width", css_classes=["ra-plot"])

    def _draw(self, table: pd.DataFrame, baseline: pd.DataFrame, whatif: Scenario, base: Scenario) -> None:
        self.whatif_source.data = _plot_data(table)
        self.baseline_source.data = _plot_data(baseline)
        limit = table.attrs.get("motile_detection_limit_M_per_mL")
        if limit:
            self._limit.location = float(limit)
        doses = table.attrs.get("dose_times_d") or []
        for window in self._windows:
            if doses:
                window.update(left=float(min(doses)), right=float(max(doses)), visible=True)
            else:
                window.visible = False
        self.caption.object = (
            f"Solid blue: **what-if** ({whatif.label()}). Dashed grey: **baseline** ({base.label()}). "
            "Orange band: treatment. Dotted line: detection limit for motile sperm."
        )

    # ----------------------------------------------------------------- layout
    def view(self) -> pn.viewable.Viewable:
        """Return the page: controls on the left, plots, summary and downloads on the right."""
        controls = pn.Column(
            "## Patient",
            self.phenotype,
            self.phenotype_note,
            "## Isotretinoin",
            self.drug,
            self.dose_basis,
            _with_tip(self.dose_mg),
            _with_tip(self.dose_mg_per_kg_day),
            _with_tip(self.body_weight_kg),
            self.frequency,
            _with_tip(self.start_d),
            _with_tip(self.duration_d),
            self.fed,
            "## Testis (what-if changes)",
            *(_with_tip(w) for w in self.parameters.values()),
            "## Run",
            self.horizon,
            "Compare with:",
            self.baseline_choice,
            width=360,
        )
        main = pn.Column(
            "# What if? Retinoic acid, isotretinoin and sperm production",
            self.alert,
            self.summary,
            self.caption,
            self.plot,
            pn.Row(self.download_csv, self.download_toml),
            self.status,
            sizing_mode="stretch_width",
        )
        return pn.Row(controls, main, sizing_mode="stretch_width")


def _step(lower: float, upper: float) -> float:
    """Return a slider step of about 1/200 of the range, rounded to 1, 2 or 5 times a power of ten."""
    raw = (upper - lower) / 200.0
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if raw <= factor * power:
            return factor * power
    return 10.0 * power  # pragma: no cover - the loop always returns


def _plot_columns() -> list[str]:
    return [C.TIME_D, *(column for column, _, _ in PANELS)]


def _empty_data() -> dict[str, Any]:
    return {column: [] for column in _plot_columns()}


def _plot_data(table: pd.DataFrame) -> dict[str, Any]:
    data = {column: table[column].to_numpy(dtype=float) for column in _plot_columns()}
    for column, _, log_scale in PANELS:
        if log_scale:
            data[column] = np.maximum(data[column], LOG_AXIS_FLOOR)  # display only: log axes cannot show 0
    return data


# --------------------------------------------------------------------- server
def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    """A running explorer server (in a background thread).

    Attributes:
        url: The page's address.
        host: Address the server listens on.
        port: Its port.
    """

    url: str
    host: str
    port: int
    _thread: Any

    def stop(self) -> None:
        """Stop the server and wait for its thread to end."""
        self._thread.stop()
        self._thread.join(timeout=10)


def serve(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    show: bool = False,
    allow_origins: Sequence[str] = (),
    app_factory: Callable[[], pn.viewable.Viewable] | None = None,
    timeout_s: float = 30.0,
) -> RunningServer:
    """Start the explorer in a background thread and return once it answers.

    Sliders report their value when released (``pn.config.throttled``), so dragging does not queue a
    run for every pixel.

    Args:
        host: Address to listen on; the default listens on this computer only.
        port: TCP port; None picks a free one.
        show: Open the page in the default browser.
        allow_origins: Extra ``host[:port]`` names the browser may use to reach the server (needed
            only when listening beyond 127.0.0.1 and reaching it by another name).
        app_factory: Builds the page of one browser session; defaults to ``Explorer().view()``.
        timeout_s: How long to wait for the server to answer.

    Returns:
        The running server; call ``.stop()`` to end it.

    Raises:
        RAModelError: If the server does not answer within ``timeout_s``.
    """
    port = port if port else free_port(host)
    pn.config.throttled = True
    factory = app_factory or (lambda: Explorer().view())
    name = "localhost" if host in ("127.0.0.1", "localhost") else host
    origins = [f"localhost:{port}", f"127.0.0.1:{port}", f"{host}:{port}", *allow_origins]
    thread = pn.serve(
        {"/": factory},
        address=host,
        port=port,
        show=show,
        threaded=True,
        websocket_origin=list(dict.fromkeys(origins)),
        title="ra_model what-if explorer",
        verbose=False,
    )
    url = f"http://{'127.0.0.1' if name == 'localhost' else host}:{port}/"
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((connect_host, port), timeout=1.0):
                break
        except OSError:
            if time.monotonic() > deadline or not thread.is_alive():
                thread.stop()
                raise RAModelError(f"the explorer did not start on {host}:{port} within {timeout_s:g} s") from None
            time.sleep(0.05)
    log.info("explorer listening on %s", url)
    return RunningServer(url=url, host=host, port=port, _thread=thread)
