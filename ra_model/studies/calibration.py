"""Calibration: fit the parameters marked fitted to the targets in models/calibration_targets.csv.

Three stages, each a small least-squares problem solved with scipy:

1. ``pk``: absorption, clearance and distribution of isotretinoin against the label's single-dose
   Cmax, Tmax and AUC (20 mg fasted, 40 mg fed) and the terminal half-life.
2. ``healthy``: endogenous retinoid production, testis penetration and the retinol -> RA enzyme
   capacities against the endogenous concentrations of a healthy man.
3. ``germ``: the stem-cell niche against daily sperm production.

After stage 2 the healthy steady-state reference values (``occupancy_ref``, ``STRA8_ref``,
``cyp26_ref``, ``aldh1a_ref``) are derived, so that relative observables are 1 in health.
Fitted values are written back to both the Antimony source and the parameter table.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize

from ra_model.engines.engine import Engine
from ra_model.engines.simulate import simulate, steady_state_amounts
from ra_model.errors import InvalidValueError
from ra_model.model import columns as C
from ra_model.model.regimen import Regimen
from ra_model.model.source import (
    ANTIMONY_FILE,
    PARAMETER_COLUMNS,
    PARAMETER_FILE,
    antimony_to_sbml,
    model_dir,
    read_parameter_table,
)

log = logging.getLogger(__name__)

TARGET_FILE = "calibration_targets.csv"

#: Parameters fitted in each stage (log-transformed in the fit).
STAGE_PARAMETERS: dict[str, tuple[str, ...]] = {
    "pk": ("ka_fasted", "ka_fed", "CL_iso", "Q_iso", "plasma_c", "periph", "food_factor"),
    "healthy": ("R_endo_at", "R_endo_cis", "PS_cis_in", "Vmax_aldh1a", "k_cyp26_syn", "Vmax_stra6", "Vmax_rdh10"),
    "germ": ("stem_niche",),
}
#: Stages of the same target file fitted by other modules (skipped here).
OTHER_STAGES = {
    "population": "ra_model.studies.abc_population",
    "prevalence": "ra_model.studies.calibrate_prevalence",
}


@dataclass(frozen=True)
class Target:
    """One calibration target."""

    id: str
    stage: str
    quantity: str
    scenario: str
    value: float
    unit: str
    weight: float
    source: str


def read_targets(path: Path | None = None) -> list[Target]:
    """Read the calibration targets table."""
    path = path or model_dir() / TARGET_FILE
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    targets = [
        Target(
            id=r["id"],
            stage=r["stage"],
            quantity=r["quantity"],
            scenario=r["scenario"],
            value=float(r["value"]),
            unit=r["unit"],
            weight=float(r["weight"]),
            source=r["source"],
        )
        for r in rows
    ]
    for t in targets:
        if t.stage not in STAGE_PARAMETERS and t.stage not in OTHER_STAGES:
            raise InvalidValueError(f"{path}: target {t.id!r} has unknown stage {t.stage!r}")
    return [t for t in targets if t.stage in STAGE_PARAMETERS]


def single_dose_metrics(engine: Engine, params: Mapping[str, float], *, dose_mg: float, fed: bool) -> dict[str, float]:
    """Simulate one oral dose and return baseline-corrected Cmax (ng/mL), Tmax (h), AUC and t1/2 (h)."""
    regimen = Regimen(dose_mg=dose_mg, n_doses=1, fed=fed)
    table = simulate("healthy", regimen, t_end_d=14, output_step_d=0.005, overrides=params, engine=engine)
    t_h = table[C.TIME_D].to_numpy() * 24
    conc = table[C.PLASMA_ISOTRETINOIN].to_numpy()
    excess = conc - conc[0]
    i = int(np.argmax(excess))
    tmax = t_h[i]
    if 0 < i < len(t_h) - 1:  # parabolic refinement of the peak
        y0, y1, y2 = excess[i - 1 : i + 2]
        denom = y0 - 2 * y1 + y2
        if denom != 0:
            tmax += 0.5 * (y0 - y2) / denom * (t_h[1] - t_h[0])
    auc = float(np.trapezoid(excess, t_h))
    late = (t_h >= 72) & (t_h <= 144)
    slope = np.polyfit(t_h[late], np.log(np.maximum(excess[late], 1e-300)), 1)[0]
    return {"cmax": float(excess[i]), "tmax": float(tmax), "auc": auc, "terminal_half_life": math.log(2) / -slope}


def healthy_quantities(engine: Engine, params: Mapping[str, float]) -> dict[str, float]:
    """Return the healthy steady-state quantities that the ``healthy`` and ``germ`` targets name."""
    state = steady_state_amounts(engine, params, {})
    table = simulate("healthy", None, t_end_d=1, overrides=params, engine=engine)
    row = table.iloc[0]
    v_testis = params.get("testis", engine.defaults["testis"])
    v_c = params.get("plasma_c", engine.defaults["plasma_c"])
    return {
        "plasma_atRA": float(row[C.PLASMA_ATRA]),
        "plasma_13cisRA": state["Iso_c"] / v_c,
        "testis_13cisRA": float(row[C.TESTIS_13CIS]),
        "testis_atRA": float(row[C.TESTIS_ATRA]),
        "CYP26": state["CYP26"],
        "testis_retinol": state["ROL_t"] / v_testis,
        "testis_retinal": state["RAL_t"] / v_testis,
        "daily_sperm_production": float(row[C.DAILY_SPERM_PRODUCTION]),
        "STRA8": state["STRA8"],
        "RAR_occupancy": float(row[C.RAR_OCCUPANCY]),
        "aldh1a_saturation": (state["RAL_t"] / v_testis)
        / (params.get("Km_aldh1a", engine.defaults["Km_aldh1a"]) + state["RAL_t"] / v_testis),
    }


def _pk_quantities(engine: Engine, params: Mapping[str, float]) -> dict[str, dict[str, float]]:
    return {
        "20 mg fasted single dose": single_dose_metrics(engine, params, dose_mg=20, fed=False),
        "40 mg fed single dose": single_dose_metrics(engine, params, dose_mg=40, fed=True),
    }


def _fit(
    stage: str,
    targets: list[Target],
    params: dict[str, float],
    evaluate: Callable[[dict[str, float]], Callable[[Target], float]],
) -> None:
    names = STAGE_PARAMETERS[stage]
    chosen = [t for t in targets if t.stage == stage]

    def residuals(x: np.ndarray) -> np.ndarray:
        trial = params | dict(zip(names, np.exp(x), strict=True))
        value_of = evaluate(trial)
        return np.array([t.weight * math.log(value_of(t) / t.value) for t in chosen])

    table = read_parameter_table()
    lower = np.log([table[n].lower for n in names])
    upper = np.log([table[n].upper for n in names])
    x0 = np.clip(np.log([params[n] for n in names]), lower + 1e-9, upper - 1e-9)
    solution = optimize.least_squares(residuals, x0, bounds=(lower, upper), x_scale=1.0, diff_step=1e-4)
    params.update(zip(names, (float(v) for v in np.exp(solution.x)), strict=True))
    log.info("stage %s: cost %.3g after %d evaluations", stage, solution.cost, solution.nfev)


def calibrate(
    *, engine: Engine | None = None, targets: list[Target] | None = None
) -> tuple[dict[str, float], pd.DataFrame]:
    """Run all stages.

    Each fitted parameter stays inside its plausible range from the parameter table.

    Args:
        engine: A compiled model; defaults to a fresh compile of the shipped source.
        targets: Targets; defaults to ``models/calibration_targets.csv``.

    Returns:
        The fitted and derived parameter values, and a report table with one row per target
        (target, simulated, relative residual, source).
    """
    engine = engine or Engine(antimony_to_sbml(model_dir() / ANTIMONY_FILE))
    targets = targets or read_targets()
    params: dict[str, float] = {}
    for names in STAGE_PARAMETERS.values():
        params.update({n: engine.defaults[n] for n in names})

    def pk_eval(trial: dict[str, float]) -> Callable[[Target], float]:
        q = _pk_quantities(engine, trial)
        return lambda t: q[t.scenario][t.quantity]

    def healthy_eval(trial: dict[str, float]) -> Callable[[Target], float]:
        q = healthy_quantities(engine, trial)
        return lambda t: q[t.quantity]

    _fit("pk", targets, params, pk_eval)
    _fit("healthy", targets, params, healthy_eval)
    q = healthy_quantities(engine, params)
    params.update(
        occupancy_ref=q["RAR_occupancy"],
        STRA8_ref=q["STRA8"],
        cyp26_ref=q["CYP26"],
        aldh1a_ref=q["aldh1a_saturation"],
    )
    _fit("germ", targets, params, healthy_eval)

    pk = _pk_quantities(engine, params)
    healthy = healthy_quantities(engine, params)
    rows = []
    for t in targets:
        simulated = pk[t.scenario][t.quantity] if t.stage == "pk" else healthy[t.quantity]
        rows.append(
            {
                "target": t.id,
                "quantity": t.quantity,
                "scenario": t.scenario,
                "published_or_assumed": t.value,
                "simulated": simulated,
                "relative_residual": simulated / t.value - 1,
                "unit": t.unit,
                "source": t.source,
            }
        )
    return params, pd.DataFrame(rows)


def healthy_initial_amounts(params: Mapping[str, float], *, engine: Engine | None = None) -> dict[str, float]:
    """Return the healthy steady-state species amounts for a parameter set (ledgers at zero)."""
    engine = engine or Engine(antimony_to_sbml(model_dir() / ANTIMONY_FILE))
    return steady_state_amounts(engine, params, {})


def write_back(
    params: Mapping[str, float],
    *,
    initial_amounts: Mapping[str, float] | None = None,
    directory: Path | None = None,
) -> None:
    """Write fitted values into the Antimony source and the parameter table.

    Args:
        params: Parameter values to write (rounded to 6 significant digits).
        initial_amounts: Species amounts to write as the source's initial amounts (the healthy
            steady state), so that the SBML export starts at rest.
        directory: The model directory; defaults to the shipped ``models/``.

    Raises:
        InvalidValueError: If a parameter is not declared in the source or the table, or a fitted
            value leaves the table's plausible range.
    """
    directory = directory or model_dir()
    ant_path = directory / ANTIMONY_FILE
    text = ant_path.read_text(encoding="utf-8")
    rounded = {k: float(f"{v:.6g}") for k, v in params.items()}
    amounts = {k: float(f"{v:.6g}") for k, v in (initial_amounts or {}).items()}
    for name, value in (rounded | amounts).items():
        pattern = re.compile(
            rf"^(\s*(?:compartment\s+|substanceOnly species\s+)?{re.escape(name)}(?:\s+in\s+\w+)?\s*=\s*)([-+0-9.eE]+)",
            re.MULTILINE,
        )
        text, count = pattern.subn(rf"\g<1>{value:.6g}", text)
        if count != 1:
            raise InvalidValueError(f"{ant_path}: expected one declaration of {name!r}, found {count}")
    table_path = directory / PARAMETER_FILE
    with table_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    seen = set()
    for row in rows:
        if row["id"] in rounded:
            value = rounded[row["id"]]
            if row["category"] == "reference":  # derived constants are pinned, not sampled
                row["lower"] = row["upper"] = f"{value:.6g}"
            if not float(row["lower"]) <= value <= float(row["upper"]):
                raise InvalidValueError(
                    f"fitted {row['id']} = {value:g} is outside its plausible range [{row['lower']}, {row['upper']}]"
                    " in the parameter table; revisit the targets or the range before writing"
                )
            row["value"] = f"{value:.6g}"
            seen.add(row["id"])
    missing = set(rounded) - seen
    if missing:
        raise InvalidValueError(f"{table_path}: no row for {sorted(missing)}")
    ant_path.write_text(text, encoding="utf-8")
    with table_path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(PARAMETER_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
