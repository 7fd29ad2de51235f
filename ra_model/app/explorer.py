"""The what-if explorer's page: Panel widgets wired to an :class:`~ra_model.app.state.ExplorerState`.

The page opens with a short orientation (what NOA is, what the model does) and buttons for suggested
experiments that set the controls (:data:`ra_model.app.guide.EXPERIMENTS`). It has controls (phenotype,
regimen, the five parameters that matter most, the number of tubule-focus classes the testis is built
from), the standard time-course panels and the foci panel (tubules holding sperm, the chance surgery
finds sperm), each with a (?) that explains it, with a baseline run drawn beside the what-if run, a
plain-language summary, and download buttons for the run (CSV) and the exact scenario (TOML, the
simplest scenario form that ``ra-model run`` reads). Menus and text use plain names; the model's ids
are in the tooltips. A control writes its value into the session's
state, the state runs the scenarios (:mod:`ra_model.app.state`), and the figures draw them
(:mod:`ra_model.app.figures`).

Use :func:`ra_model.app.server.serve` to start the server (the ``ra-model explore`` command calls
it), or build an :class:`Explorer` directly to drive the app from Python.
"""

# Panel's widget and pane constructors carry no type hints, so calling them is an untyped call.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import contextlib
import functools
import io
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import panel as pn
import param
from bokeh.models.ui import Tooltip

from ra_model.app.figures import Figures, caption
from ra_model.app.guide import EXPERIMENTS, ORIENTATION, PANEL_HELP, PANEL_TITLES, Experiment
from ra_model.app.state import (
    BASELINES,
    BODY_WEIGHT_KG_RANGE,
    CLASS_COUNT_COST_S,
    CLASS_COUNTS,
    CONTROL_LABELS,
    DEFAULT_N_CLASSES,
    DEFAULT_T_END_D,
    DOSE_BASES,
    DOSE_MG_PER_KG_DAY_RANGE,
    DOSE_MG_RANGE,
    DOSE_PER_KG_DAY,
    DURATION_D_RANGE,
    FREQUENCIES_H,
    HORIZONS_D,
    PARAMETER_LABELS,
    START_D_RANGE,
    ExplorerState,
    Run,
    RunCache,
    SimulateFn,
    default_simulate,
)


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


def _step(lower: float, upper: float) -> float:
    """Return a slider step of about 1/200 of the range, rounded to 1, 2 or 5 times a power of ten."""
    raw = (upper - lower) / 200.0
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if raw <= factor * power:
            return factor * power
    return 10.0 * power  # pragma: no cover - the loop always returns


#: Style of the panels' help: wrapped lines, as Panel gives its own hover texts.
_TIP_CSS = ":host { white-space: initial; max-width: 320px; }"


def _phenotype_tip(name: str) -> str:
    """Return the phenotype menu's hover text: what a preset is, and its id in models/phenotypes.toml."""
    return (
        "A preset man: his testis and RA handling, set as parameter values; the sliders below show them. "
        f"Preset id {name} in models/phenotypes.toml."
    )


def _class_count_label(n_classes: int) -> str:
    """Return the focus-class choice's label: the count and roughly how long a treated run takes."""
    what = "uniform testis" if n_classes == 1 else "focus classes"
    cost = CLASS_COUNT_COST_S.get(n_classes)
    return f"{n_classes} ({what}, about {cost:g} s a run)" if cost is not None else f"{n_classes} ({what})"


class Explorer:
    """The page of one browser session: widgets that set an :class:`ExplorerState`, and its figures.

    Changing any widget (from the page or from Python) writes its value into :attr:`state` and
    reruns the what-if scenario and, when it changed, the baseline; results are cached per
    scenario and shared by all sessions, so going back (or a scenario another session ran) is instant.

    Attributes:
        state: The session's control values, runs and results (no widgets).
        figures: The Bokeh figures that show the runs.

    Args:
        simulate_fn: Runs one scenario; defaults to :func:`~ra_model.app.state.default_simulate`
            (tests inject a failing one to check the error display).
        cache: Where runs are kept; defaults to :data:`~ra_model.app.state.SHARED_RUNS`, shared by
            every session of the process.
        phenotype: Preset shown first.
        regimen: Regimen shown first.
        t_end_d: Horizon shown first; one of :data:`~ra_model.app.state.HORIZONS_D`.
        n_classes: Focus classes shown first; one of :data:`~ra_model.app.state.CLASS_COUNTS`.
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
        """Build the widgets and views and run the first scenario."""
        self.state = ExplorerState(
            simulate_fn=simulate_fn,
            cache=cache,
            phenotype=phenotype,
            regimen=regimen,
            t_end_d=t_end_d,
            n_classes=n_classes,
        )
        state = self.state
        self._suspended = False
        self.last_update_s: float = math.nan

        self.phenotype = pn.widgets.Select(
            label="Phenotype",
            options={state.phenotype_names[name]: name for name in state.phenotypes},
            value=state.phenotype,
            description=_phenotype_tip(state.phenotype),
            css_classes=["ra-phenotype"],
            sizing_mode="stretch_width",
        )
        self.phenotype_note = pn.pane.Markdown("", css_classes=["ra-phenotype-note"], sizing_mode="stretch_width")
        self.drug = pn.widgets.Checkbox(label="Give isotretinoin", value=state.drug, css_classes=["ra-drug"])
        self.dose_basis = pn.widgets.RadioButtonGroup(
            label="Dose basis", options=list(DOSE_BASES), value=state.dose_basis, css_classes=["ra-basis"]
        )
        self.dose_mg = _slider(
            CONTROL_LABELS["dose_mg"],
            *DOSE_MG_RANGE,
            state.dose_mg,
            tip="Amount taken at each administration.",
            css="ra-dose-mg",
        )
        self.dose_mg_per_kg_day = _slider(
            CONTROL_LABELS["dose_mg_per_kg_day"],
            *DOSE_MG_PER_KG_DAY_RANGE,
            state.dose_mg_per_kg_day,
            tip="Daily dose per kg body weight, split over the administrations of a day.",
            css="ra-dose-mgkg",
        )
        self.body_weight_kg = _slider(
            CONTROL_LABELS["body_weight_kg"],
            *BODY_WEIGHT_KG_RANGE,
            state.body_weight_kg,
            tip="Used only with a mg/kg/day dose.",
            css="ra-weight",
        )
        self.frequency = pn.widgets.RadioButtonGroup(
            label="Frequency", options=list(FREQUENCIES_H), value=state.frequency, css_classes=["ra-frequency"]
        )
        self.start_d = _slider(
            CONTROL_LABELS["start_d"], *START_D_RANGE, state.start_d, tip="Day of the first dose.", css="ra-start"
        )
        self.duration_d = _slider(
            CONTROL_LABELS["duration_d"],
            *DURATION_D_RANGE,
            state.duration_d,
            tip="Length of the course; doses are given strictly before start + duration.",
            css="ra-duration",
        )
        self.fed = pn.widgets.Checkbox(label="Taken with food (fed)", value=state.fed, css_classes=["ra-fed"])
        self.horizon = pn.widgets.Select(
            label="Simulated time",
            options={f"{h:g} days": h for h in HORIZONS_D},
            value=state.t_end_d,
            description="Longer horizons take proportionally longer to redraw.",
            css_classes=["ra-horizon"],
            sizing_mode="stretch_width",
        )
        self.focus_classes = pn.widgets.Select(
            label="Tubule-focus classes",
            options={_class_count_label(n): n for n in CLASS_COUNTS},
            value=state.n_classes,
            description=(
                "The testis is built from this many classes of tubule foci that differ in local RA. With 1 it "
                "is uniform; the mosaic presets' spread between foci shows with 8 or 16. More classes take "
                "longer (the time is one treated year; the first run at a new count also builds the model)."
            ),
            css_classes=["ra-classes"],
            sizing_mode="stretch_width",
        )
        self.baseline_choice = pn.widgets.RadioButtonGroup(
            label="Baseline", options=list(BASELINES), value=state.baseline_choice, css_classes=["ra-baseline"]
        )
        self.parameters: dict[str, _Slider] = {}
        for pid, rng in state.ranges.items():
            value = state.parameters[pid]
            self.parameters[pid] = _slider(
                PARAMETER_LABELS[pid],
                min(rng.lower, value),
                max(rng.upper, value),
                _step(rng.lower, rng.upper),
                value,
                tip=(
                    f"{rng.description} Plausible range {rng.lower:g} to {rng.upper:g} ({rng.unit}). "
                    f"Source: {rng.source}. Parameter id {pid} in models/parameters.csv."
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
        self.figures = Figures()
        self.caption = pn.pane.Markdown("", css_classes=["ra-caption"], sizing_mode="stretch_width")
        self.orientation = pn.pane.Markdown(ORIENTATION, css_classes=["ra-orientation"], sizing_mode="stretch_width")
        self.experiments: dict[str, pn.widgets.Button] = {}
        for experiment in EXPERIMENTS:
            button = pn.widgets.Button(
                label=experiment.button,
                color="primary",
                variant="outline",
                css_classes=[f"ra-try-{experiment.key}"],
            )
            button.on_click(functools.partial(self._on_experiment, experiment))
            self.experiments[experiment.key] = button
        self.look_for = pn.pane.Markdown("", css_classes=["ra-look-for"], sizing_mode="stretch_width")
        # the panels' help opens below its (?), so the right-hand panels' help stays inside the window
        self.panel_help: dict[str, pn.widgets.TooltipIcon] = {
            key: pn.widgets.TooltipIcon(
                value=Tooltip(content=text, position="bottom", stylesheets=[_TIP_CSS]), css_classes=[f"ra-help-{key}"]
            )
            for key, text in PANEL_HELP.items()
        }
        self.plot = pn.GridBox(
            *(
                self._titled(PANEL_TITLES[column], column, self.figures.panels[column])
                for column in self.figures.panels
            ),
            ncols=3,
            sizing_mode="stretch_width",
            css_classes=["ra-plot"],
        )
        self.foci_note = pn.pane.Markdown("", css_classes=["ra-foci-note"], sizing_mode="stretch_width")
        self.foci_plot = self._titled(PANEL_TITLES["foci"], "foci", self.figures.foci, css="ra-foci")

        # each control writes the ExplorerState attribute of the same name (the horizon writes t_end_d,
        # the focus-class choice n_classes)
        controls: dict[str, Any] = {
            **self._regimen_widgets(),
            "t_end_d": self.horizon,
            "n_classes": self.focus_classes,
            "baseline_choice": self.baseline_choice,
        }
        for name, widget in controls.items():
            widget.param.watch(functools.partial(self._on_control, name), "value")
        for pid, widget in self.parameters.items():
            widget.param.watch(functools.partial(self._on_parameter, pid), "value")
        self.phenotype.param.watch(self._on_phenotype, "value")
        self.phenotype_note.object = state.phenotype_note()
        self.foci_note.object = state.foci_note()
        self._sync_visibility()
        self.refresh()

    # ----------------------------------------------------------------- running
    def refresh(self) -> None:
        """Rerun the what-if and baseline scenarios and redraw; show a message instead on failure."""
        t0 = time.perf_counter()
        state = self.state
        ok = state.refresh()
        table, baseline, scenarios = state.whatif, state.baseline, state.scenarios
        plasma, baseline_plasma = state.whatif_plasma, state.baseline_plasma
        if (
            not ok
            or table is None
            or baseline is None
            or scenarios is None
            or plasma is None
            or baseline_plasma is None
        ):
            self._show_error(state.error)
            return
        self.alert.param.update(object="", visible=False)
        self.figures.draw(table, baseline, plasma=(plasma, baseline_plasma))
        self.caption.object = caption(*(state.label(s) for s in scenarios))
        self.summary.object = state.summary_text()
        self.last_update_s = time.perf_counter() - t0
        self.status.object = f"Updated in {self.last_update_s:.2f} s."

    def _show_error(self, message: str) -> None:
        self.alert.param.update(
            object=f"{message}\n\nThe plot and downloads are cleared until a run succeeds; "
            "change a control to try again.",
            visible=True,
        )
        self.summary.object = "**No result for these settings** (see the message above)."
        self.figures.clear_whatif()

    # ----------------------------------------------------------------- callbacks
    def _on_control(self, name: str, event: param.parameterized.Event) -> None:
        setattr(self.state, name, event.new)
        if name in ("drug", "dose_basis"):
            self._sync_visibility()
        if name == "n_classes":
            self.foci_note.object = self.state.foci_note()
        if not self._suspended:
            self.refresh()

    def _on_parameter(self, pid: str, event: param.parameterized.Event) -> None:
        self.state.parameters[pid] = event.new
        if not self._suspended:
            self.refresh()

    def _on_phenotype(self, event: param.parameterized.Event) -> None:
        self._show_parameters(self.state.select_phenotype(event.new))
        self.phenotype.description = _phenotype_tip(event.new)
        self.phenotype_note.object = self.state.phenotype_note()
        self.foci_note.object = self.state.foci_note()
        if not self._suspended:
            self.refresh()

    def _show_parameters(self, values: Mapping[str, float]) -> None:
        """Move the parameter sliders to these values without rerunning (each widens its ends if needed)."""
        with self._quiet():
            for pid, widget in self.parameters.items():
                rng = self.state.ranges[pid]
                value = values[pid]
                final = (min(rng.lower, value), max(rng.upper, value))
                # widen to cover both the old and new value, set it, then narrow to the final bounds
                old = final[0] if widget.value is None else float(widget.value)
                widget.param.update(start=min(final[0], old), end=max(final[1], old))
                widget.value = value
                widget.param.update(start=final[0], end=final[1])

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """Let widgets change without rerunning each time (nested uses keep the outer one's setting)."""
        before = self._suspended
        self._suspended = True
        try:
            yield
        finally:
            self._suspended = before

    def _on_experiment(self, experiment: Experiment, event: object = None) -> None:
        self.try_experiment(experiment)

    def try_experiment(self, experiment: Experiment) -> None:
        """Set every control to a suggested experiment, say what to look for, and run it once.

        The phenotype goes to the experiment's preset with the sliders at the preset's values, the
        regimen controls to its regimen and the baseline to the same man untreated.
        """
        state = self.state
        with self._quiet():
            state.apply_experiment(experiment)
            self.phenotype.value = state.phenotype
            self._show_parameters(state.parameters)
            for name, widget in self._regimen_widgets().items():
                widget.value = getattr(state, name)
            self.baseline_choice.value = state.baseline_choice
        self.phenotype.description = _phenotype_tip(state.phenotype)
        self.phenotype_note.object = state.phenotype_note()
        self.foci_note.object = state.foci_note()
        self._sync_visibility()
        self.look_for.object = f"**{experiment.button}**: {experiment.look_for}"
        self.refresh()

    def _regimen_widgets(self) -> dict[str, Any]:
        """The regimen controls by the :class:`ExplorerState` attribute each sets."""
        return {
            "drug": self.drug,
            "dose_basis": self.dose_basis,
            "dose_mg": self.dose_mg,
            "dose_mg_per_kg_day": self.dose_mg_per_kg_day,
            "body_weight_kg": self.body_weight_kg,
            "frequency": self.frequency,
            "start_d": self.start_d,
            "duration_d": self.duration_d,
            "fed": self.fed,
        }

    def _sync_visibility(self) -> None:
        drug = bool(self.drug.value)
        per_kg = self.dose_basis.value == DOSE_PER_KG_DAY
        self.dose_basis.visible = drug
        self.dose_mg.visible = drug and not per_kg
        self.dose_mg_per_kg_day.visible = drug and per_kg
        self.body_weight_kg.visible = drug and per_kg
        for widget in (self.frequency, self.start_d, self.duration_d, self.fed):
            widget.visible = drug

    # ----------------------------------------------------------------- layout helpers
    def _titled(self, title: str, key: str, fig: Any, *, css: str = "") -> pn.Column:
        """Lay a figure out under its title and the (?) that explains it."""
        header = pn.Row(
            pn.pane.Markdown(f"**{title}**", margin=(0, 0, 0, 10)),
            self.panel_help[key],
            height=28,
        )
        return pn.Column(
            header,
            pn.pane.Bokeh(fig, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
            css_classes=[css] if css else [],
        )

    # ----------------------------------------------------------------- downloads
    def _csv_file(self) -> io.StringIO:
        self.download_csv.filename = f"whatif_{self.state.phenotype}.csv"
        return io.StringIO(self.state.csv_text())

    def _toml_file(self) -> io.StringIO:
        self.download_toml.filename = f"whatif_{self.state.phenotype}.toml"
        return io.StringIO(self.state.scenario_toml())

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
            self.focus_classes,
            "Compare with:",
            self.baseline_choice,
            width=360,
        )
        main = pn.Column(
            "# What if? Retinoic acid, isotretinoin and sperm production",
            self.orientation,
            pn.Row(*self.experiments.values(), sizing_mode="stretch_width"),
            self.look_for,
            self.alert,
            self.summary,
            self.caption,
            self.plot,
            self.foci_note,
            self.foci_plot,
            pn.Row(self.download_csv, self.download_toml),
            self.status,
            sizing_mode="stretch_width",
        )
        return pn.Row(controls, main, sizing_mode="stretch_width")
