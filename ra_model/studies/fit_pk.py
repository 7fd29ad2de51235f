"""Fit the isotretinoin PK and the healthy steady state as a PEtab problem with pyPESTO, and profile every fit.

One job: given the model's PEtab problem (:mod:`ra_model.interop.petab_export` builds it), fit one stage's
parameters by multi-start optimisation and compute a profile likelihood for each, so that the report says
which parameters the data determine (a finite 95% profile interval inside the plausible range) and which
they do not. The stages and their parameters are those of ``ra-model calibrate``
(:data:`ra_model.studies.calibration.STAGE_PARAMETERS`):

- ``pk``: absorption (fasted, fed), clearance, inter-compartmental clearance, central and peripheral volume
  and the food factor, against the concentration-time points of the fit rows of ``models/pk_data.csv``.
  Those points are reconstructed from the label's summary numbers, not digitised curves; the file says how
  for each row. Its ``check`` rows are never fitted: they are compared with the fitted model afterwards.
- ``healthy``: endogenous retinoid production, testis penetration and the retinol -> RA enzyme capacities,
  against the healthy targets of ``models/calibration_targets.csv``, measured at a long time
  (:data:`STEADY_STATE_TIME_H`) from the model's healthy initial state (pyPESTO's roadrunner backend cannot
  simulate to t = inf, and its pre-equilibration cannot converge on a model with a cumulative ledger).

The simulator is pyPESTO's PEtab importer with its roadrunner backend, on the problem's SBML without the
germ line (:func:`ra_model.engines.fastpath.core_sbml`, derived from the SBML, nothing written twice): no
observable of the problem reads a germ cell, and the germ line feeds nothing back. Gradients are central
finite differences. pyPESTO 0.7's roadrunner backend applies species from the condition table but not
compartments, so the condition table's compartment sizes (the fitted volumes) are added to its parameter
mapping here, as it does for species (:func:`roadrunner_objective`); a test compares its simulations with
the engine's at volumes away from the defaults.

PK checks are computed with the engine (:func:`ra_model.engines.simulate.simulate`) on the whole model at the
fitted values, baseline-corrected as ``ra-model calibrate`` does.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libsbml
import numpy as np
import pandas as pd
import petab.v1 as petab  # type: ignore[import-untyped]
import pypesto  # type: ignore[import-untyped]
import pypesto.engine  # type: ignore[import-untyped]
import pypesto.objective  # type: ignore[import-untyped]
import pypesto.optimize  # type: ignore[import-untyped]
import pypesto.petab  # type: ignore[import-untyped]
import pypesto.profile  # type: ignore[import-untyped]
from petab.v1.models.sbml_model import SbmlModel  # type: ignore[import-untyped]
from pypesto.objective.roadrunner.utils import SolverOptions as RoadRunnerOptions  # type: ignore[import-untyped]
from scipy import stats

from ra_model.engines.engine import Engine
from ra_model.engines.fastpath import core_sbml
from ra_model.engines.simulate import default_engine, simulate
from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.model import columns as C
from ra_model.model.regimen import Regimen
from ra_model.model.source import model_dir, read_parameter_table
from ra_model.studies.calibration import STAGE_PARAMETERS, Target, read_targets, single_dose_metrics

log = logging.getLogger(__name__)

#: Stages fitted here (a subset of ``ra-model calibrate``'s).
FIT_STAGES = ("pk", "healthy")
#: The concentration-time data of the PK stage, in the model directory.
PK_DATA_FILE = "pk_data.csv"
#: Columns of the PK data file.
PK_DATA_COLUMNS = (
    "id",
    "role",
    "arm",
    "dose_mg",
    "fed",
    "n_doses",
    "interval_h",
    "quantity",
    "time_h",
    "value",
    "lower",
    "upper",
    "unit",
    "source",
)
#: Roles of a PK data row: ``fit``, a concentration at a time, fitted; ``summary``, a published summary number
#: the fit rows were reconstructed from (reported beside the fit, never quoted as a check); ``check``, a
#: published range that no fit row was made from, compared with the fitted model.
FIT, SUMMARY, CHECK = "fit", "summary", "check"
#: Quantity of a fitted PK row.
CONCENTRATION = "plasma_isotretinoin"
#: Quantities summary rows may name (single-dose metrics).
SUMMARY_QUANTITIES = ("cmax", "tmax", "auc", "terminal_half_life")
#: Quantities summary and check rows may name, with what the model computes for each.
CHECK_QUANTITIES = {
    "terminal_half_life": "terminal half-life after a single dose, h (log-linear slope 72-144 h after it)",
    "auc": "baseline-corrected AUC after a single dose (to 14 days), ng.h/mL",
    "decline_half_life": "half-life of the decline 24-72 h after the last dose of a course, h",
    "cmax": "baseline-corrected peak concentration after a single dose, ng/mL",
    "tmax": "time of the peak after a single dose, h",
    "food_effect": "AUC of the arm over the AUC of the same dose taken fasted",
    "linearity": "AUC over the last dosing interval of a course over the single-dose AUC to infinity",
}
#: PEtab ids of the fitted compartment sizes: PEtab estimates parameters, and the condition table sets
#: each compartment to its parameter.
COMPARTMENT_PARAMETERS = {"plasma_c": "V_plasma_c", "periph": "V_periph"}
#: Condition id of the healthy steady state.
HEALTHY_CONDITION = "healthy_untreated"
#: Time at which the healthy steady state is measured, hours (about 12 weeks; the slowest retinoid
#: relaxation, CYP26 feedback and the 4-oxo metabolite, has a time constant below 2 days).
STEADY_STATE_TIME_H = 2000.0
#: Likelihood ratio at the edge of a 95% profile interval, exp(-chi2_0.95(1) / 2).
PROFILE_RATIO_95 = float(math.exp(-stats.chi2.ppf(0.95, 1) / 2))
#: Relative and absolute tolerance of pyPESTO's roadrunner simulations (tight: gradients are differences).
RTOL, ATOL = 1e-9, 1e-12
#: Finite-difference step for gradients, on the log10 scale of the parameters.
FD_STEP = 1e-5


@dataclass(frozen=True)
class NoiseModel:
    """The log-normal noise of one observable: log-SD and where the number comes from."""

    sd_log: float
    source: str

    def __post_init__(self) -> None:
        """Check the SD is a positive number below 2 (a factor of about 7)."""
        if not (isinstance(self.sd_log, int | float) and 0 < self.sd_log < 2):
            raise InvalidValueError(f"NoiseModel.sd_log = {self.sd_log!r}; use a log-SD in (0, 2), e.g. 0.2")


@dataclass(frozen=True)
class Observable:
    """One PEtab observable: id, formula in model ids, unit, noise."""

    id: str
    formula: str
    unit: str
    noise: NoiseModel

    @property
    def noise_parameter(self) -> str:
        """PEtab id of the observable's fixed noise parameter."""
        return f"sd_{self.id}"


#: The PK observable: plasma isotretinoin, drug-derived (the arms have no endogenous input).
PK_OBSERVABLE = Observable(
    "obs_plasma_isotretinoin",
    "plasma_isotretinoin",
    "ng/mL",
    NoiseModel(0.2, "assumed: points reconstructed from mean summary numbers, about +-20%"),
)
_ASSUMED_TARGET = NoiseModel(0.5, "assumed: the target itself is an assumption (calibration_targets.csv)")
#: Healthy observables by the ``quantity`` of their calibration targets.
HEALTHY_OBSERVABLES = {
    "plasma_atRA": Observable(
        "obs_plasma_atRA", "plasma_atRA", "nM", NoiseModel(0.16, "between-man CV 16% (Berggren Soderlund 2002)")
    ),
    "plasma_13cisRA": Observable(
        "obs_plasma_13cisRA",
        "plasma_isotretinoin / ngmL_per_nM_iso",
        "nM",
        NoiseModel(0.21, "between-man CV 21% (Berggren Soderlund 2002)"),
    ),
    "testis_13cisRA": Observable(
        "obs_testis_13cisRA", "testis_13cisRA", "nM", NoiseModel(0.3, "assumed: no spread reported (Nya-Ngatchou 2013)")
    ),
    "testis_atRA": Observable(
        "obs_testis_atRA", "testis_atRA", "nM", NoiseModel(0.3, "assumed: mouse 7-10 pmol/g (Kane 2005)")
    ),
    "CYP26": Observable("obs_CYP26", "CYP26", "nmol", _ASSUMED_TARGET),
    "testis_retinol": Observable("obs_testis_retinol", "ROL_t / testis", "nM", _ASSUMED_TARGET),
    "testis_retinal": Observable("obs_testis_retinal", "RAL_t / testis", "nM", _ASSUMED_TARGET),
}


def petab_id(model_id: str) -> str:
    """Return the PEtab parameter id of a fitted model parameter or compartment."""
    return COMPARTMENT_PARAMETERS.get(model_id, model_id)


def model_id(parameter_id: str) -> str:
    """Return the model id (parameter or compartment) of a PEtab parameter id."""
    inverse = {v: k for k, v in COMPARTMENT_PARAMETERS.items()}
    return inverse.get(parameter_id, parameter_id)


# ---------------------------------------------------------------------------------------------------- data
def read_pk_data(path: Path | None = None) -> pd.DataFrame:
    """Read and check the PK data: fit rows (a concentration at a time), summary rows and check rows (a range).

    Args:
        path: The CSV file; defaults to ``models/pk_data.csv``.

    Returns:
        One row per datum, columns :data:`PK_DATA_COLUMNS` (numbers as floats, ``fed`` as bool).

    Raises:
        InvalidValueError: A missing file, missing columns, a value that is not a number, an unknown role,
            a duplicate id, a fit row without a positive time and value, a summary row without a positive
            value, a check row without lower < upper, or an arm whose rows disagree on its regimen.
        UnknownNameError: A summary or check row whose quantity the model does not compute.
    """
    path = path or model_dir() / PK_DATA_FILE
    if not path.is_file():
        raise InvalidValueError(f"PK data file {path} not found; give the path of a CSV like models/{PK_DATA_FILE}")
    with path.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), [])
    missing = [c for c in PK_DATA_COLUMNS if c not in header]
    if missing:
        raise InvalidValueError(f"{path}: missing columns {missing}; the columns are {', '.join(PK_DATA_COLUMNS)}")
    data = pd.read_csv(path, encoding="utf-8", dtype={"id": str, "role": str, "arm": str, "quantity": str})
    data = data[list(PK_DATA_COLUMNS)]
    for column in ("dose_mg", "fed", "n_doses", "interval_h", "time_h", "value", "lower", "upper"):
        numbers = pd.to_numeric(data[column], errors="coerce")
        bad = data.loc[numbers.isna() & data[column].notna(), "id"]
        if len(bad):
            raise InvalidValueError(f"{path}: column {column!r} of row {bad.iloc[0]!r} is not a number")
        data[column] = numbers.astype(float)
    for row in data.to_dict("records"):
        where = f"{path}, row {row['id']!r}"
        if row["role"] not in (FIT, SUMMARY, CHECK):
            raise InvalidValueError(f"{where}: role {row['role']!r}; use {FIT!r}, {SUMMARY!r} or {CHECK!r}")
        if row["role"] == FIT:
            if row["quantity"] != CONCENTRATION:
                raise InvalidValueError(f"{where}: a fit row is a {CONCENTRATION!r} at a time, not {row['quantity']!r}")
            if not (float(row["time_h"]) > 0 and float(row["value"]) > 0):
                raise InvalidValueError(f"{where}: a fit row needs time_h > 0 and value > 0 (ng/mL)")
        elif row["role"] == SUMMARY:
            if row["quantity"] not in SUMMARY_QUANTITIES:
                raise UnknownNameError("summary quantity", str(row["quantity"]), SUMMARY_QUANTITIES, where=str(path))
            if not (float(row["value"]) > 0 and row["n_doses"] == 1):
                raise InvalidValueError(f"{where}: a summary row is a single-dose number > 0")
        else:
            if row["quantity"] not in CHECK_QUANTITIES:
                raise UnknownNameError("check quantity", str(row["quantity"]), CHECK_QUANTITIES, where=str(path))
            if not float(row["lower"]) < float(row["upper"]):
                raise InvalidValueError(f"{where}: a check row needs lower < upper")
        if not (float(row["dose_mg"]) > 0 and int(row["n_doses"]) >= 1 and float(row["interval_h"]) > 0):
            raise InvalidValueError(f"{where}: dose_mg, n_doses and interval_h must be positive")
        if not str(row["source"]).strip():
            raise InvalidValueError(f"{where}: no source; say where the number comes from and how it was made")
    if data["id"].duplicated().any():
        raise InvalidValueError(f"{path}: duplicate ids {sorted(data.loc[data['id'].duplicated(), 'id'])}")
    regimen_columns = ["dose_mg", "fed", "n_doses", "interval_h"]
    for arm, rows in data.groupby("arm"):
        if len(rows[regimen_columns].drop_duplicates()) > 1:
            raise InvalidValueError(f"{path}: the rows of arm {arm!r} give different regimens")
    data["fed"] = data["fed"].astype(int).astype(bool)
    data["n_doses"] = data["n_doses"].astype(int)
    return data.reset_index(drop=True)


def healthy_targets(targets: Sequence[Target] | None = None) -> list[Target]:
    """Return the ``healthy`` targets of ``models/calibration_targets.csv`` (or of ``targets``).

    Raises:
        UnknownNameError: A healthy target whose quantity has no observable here.
    """
    chosen = [t for t in (targets if targets is not None else read_targets()) if t.stage == "healthy"]
    for t in chosen:
        if t.quantity not in HEALTHY_OBSERVABLES:
            raise UnknownNameError("healthy quantity", t.quantity, HEALTHY_OBSERVABLES, where=f"target {t.id!r}")
    return chosen


# ---------------------------------------------------------------------------------------------------- problems
def stage_parameters(stage: str) -> tuple[str, ...]:
    """Return the model ids of the parameters a stage fits.

    Raises:
        UnknownNameError: An unknown stage.
    """
    if stage not in FIT_STAGES:
        raise UnknownNameError("fit stage", stage, FIT_STAGES)
    return STAGE_PARAMETERS[stage]


def stage_conditions(problem: petab.Problem, stage: str) -> list[str]:
    """Return the condition ids of a stage's measurements: the healthy condition, or every other one."""
    stage_parameters(stage)
    used = list(dict.fromkeys(problem.measurement_df[petab.SIMULATION_CONDITION_ID]))
    return [c for c in used if (c == HEALTHY_CONDITION) == (stage == "healthy")]


def stage_problem(
    problem: petab.Problem,
    *,
    stage: str,
    estimate: Sequence[str] | None = None,
    fixed: Mapping[str, float] | None = None,
) -> petab.Problem:
    """Return the part of the problem one stage fits, on the SBML without the germ line.

    Only the estimated parameters stay in the parameter table: every other parameter is written in as its
    value (model parameters into the SBML, the fixed volumes into the condition table, the noise parameters
    into the observable table), so the finite-difference gradient varies only what is fitted.

    Args:
        problem: The whole PEtab problem.
        stage: ``"pk"`` or ``"healthy"``.
        estimate: Model ids to estimate (default: all of the stage's); the stage's others are fixed.
        fixed: Values (model ids, linear scale) to fix parameters at instead of their nominal values, e.g. the
            fitted PK values when fitting the healthy stage, or true values in a closed-loop test.

    Raises:
        UnknownNameError: A stage, or a parameter to estimate or fix, that the problem does not have.
        InvalidValueError: No measurements for the stage, or a parameter both estimated and fixed.
    """
    names = stage_parameters(stage)
    chosen = tuple(names if estimate is None else estimate)
    for name in chosen:
        if name not in names:
            raise UnknownNameError("parameter", name, names, where=f"the {stage} stage's fitted parameters")
    conditions = stage_conditions(problem, stage)
    if not conditions:
        raise InvalidValueError(f"the PEtab problem has no measurements for the {stage} stage")
    values = {str(k): float(v) for k, v in problem.parameter_df[petab.NOMINAL_VALUE].items()}
    for name, value in (fixed or {}).items():
        pid = petab_id(name)
        if pid not in values:
            raise UnknownNameError("parameter", name, [model_id(p) for p in values], where="the PEtab problem")
        if name in chosen:
            raise InvalidValueError(f"{name} is both estimated and fixed; leave it out of one of them")
        values[pid] = float(value)
    estimated = [petab_id(n) for n in chosen]
    held = {p: v for p, v in values.items() if p not in estimated}

    def written_in(column: pd.Series) -> list[object]:
        return [held[v] if isinstance(v, str) and v in held else v for v in column]

    measurements = problem.measurement_df[problem.measurement_df[petab.SIMULATION_CONDITION_ID].isin(conditions)]
    observables = problem.observable_df.loc[list(dict.fromkeys(measurements[petab.OBSERVABLE_ID]))].copy()
    observables[petab.NOISE_FORMULA] = written_in(observables[petab.NOISE_FORMULA])
    condition_df = problem.condition_df.loc[conditions].copy()
    for column in condition_df.columns:
        if column != petab.CONDITION_NAME:
            condition_df[column] = written_in(condition_df[column])
    doc = libsbml.readSBMLFromString(libsbml.writeSBMLToString(problem.model.sbml_document))
    model = doc.getModel()
    for pid, value in held.items():
        parameter = model.getParameter(pid)
        if parameter is not None:
            model.removeInitialAssignment(pid)
            parameter.setValue(value)
    parameters = problem.parameter_df.loc[estimated].copy()
    parameters[petab.ESTIMATE] = 1
    return petab.Problem(
        model=SbmlModel.from_string(core_sbml(libsbml.writeSBMLToString(doc))),
        condition_df=condition_df,
        measurement_df=measurements.reset_index(drop=True),
        observable_df=observables,
        parameter_df=parameters,
    )


def roadrunner_objective(problem: petab.Problem) -> Any:
    """Return pyPESTO's roadrunner objective for a PEtab problem, with the condition table's compartments applied.

    pyPESTO 0.7 puts the condition table's species into its parameter mapping but not its compartments (PEtab
    allows both); they are added here the same way, so a condition that sets ``plasma_c`` to the parameter
    ``V_plasma_c`` simulates with that volume.
    """
    importer = pypesto.petab.PetabImporter(problem, simulator_type="roadrunner", validate_petab=False)
    objective = importer.create_objective_creator(simulator_type="roadrunner").create_objective()
    compartments = [c for c in problem.condition_df.columns if problem.model.sbml_model.getCompartment(c)]
    conditions = problem.get_simulation_conditions_from_measurement_df()
    for mapping, condition in zip(objective.parameter_mapping, conditions[petab.SIMULATION_CONDITION_ID], strict=True):
        for name in compartments:
            value = problem.condition_df.loc[condition, name]
            if isinstance(value, str):
                mapping[1][name] = value
                mapping[3][name] = problem.parameter_df.loc[value, petab.PARAMETER_SCALE]
            elif not math.isnan(float(value)):
                mapping[1][name] = float(value)
                mapping[3][name] = petab.LIN
    objective.solver_options = RoadRunnerOptions(
        relative_tolerance=RTOL, absolute_tolerance=ATOL, maximum_num_steps=200_000
    )
    return objective


def pypesto_problem(problem: petab.Problem) -> tuple[Any, Any]:
    """Return the pyPESTO problem of a PEtab problem (finite-difference gradients) and its raw objective."""
    objective = roadrunner_objective(problem)
    gradient = pypesto.objective.FD(objective, grad=True, hess=False, delta_fun=FD_STEP)
    importer = pypesto.petab.PetabImporter(problem, simulator_type="roadrunner", validate_petab=False)
    return importer.create_problem(objective=gradient), objective


# ---------------------------------------------------------------------------------------------------- fitting
@dataclass(frozen=True, kw_only=True)
class StageFit:
    """The result of fitting one stage.

    Attributes:
        stage: ``"pk"`` or ``"healthy"``.
        parameters: One row per fitted parameter: ``parameter`` (model id), ``petab_id``, ``unit``,
            ``table_value``, ``fitted``, ``bound_lower``, ``bound_upper``, ``profile_lower``,
            ``profile_upper`` (95%; NaN where the profile reached a bound first), ``identifiable``
            (yes/no), ``fitted_to`` (the ids of the data rows), ``table_source``.
        targets: The fitted data rows with the model's value at the optimum, and (PK) the check rows with
            the model's value and whether it lies in the published range.
        profiles: The profile paths: ``parameter``, ``value`` (linear scale), ``ratio`` (likelihood ratio).
        starts: One row per start: ``start``, ``fval`` (negative log-likelihood), ``n_fval``, ``message``.
        fixed: The values of the parameters held fixed that the fit was given (model ids).
        settings: Starts, seed, optimizer and tolerances, for the report.
    """

    stage: str
    parameters: pd.DataFrame
    targets: pd.DataFrame
    profiles: pd.DataFrame
    starts: pd.DataFrame
    fixed: dict[str, float]
    settings: dict[str, object]

    @property
    def fitted(self) -> dict[str, float]:
        """Fitted values by model id (linear scale)."""
        return dict(zip(self.parameters["parameter"], self.parameters["fitted"].astype(float), strict=True))


def fit_stage(
    problem: petab.Problem,
    *,
    stage: str,
    estimate: Sequence[str] | None = None,
    fixed: Mapping[str, float] | None = None,
    n_starts: int = 20,
    seed: int = 1,
    profiles: bool = True,
    checks: bool = True,
    pk_data: pd.DataFrame | None = None,
    engine: Engine | None = None,
) -> StageFit:
    """Fit one stage of the PEtab problem by multi-start optimisation, then profile every fitted parameter.

    Start points are drawn uniformly on the log10 scale inside the bounds with ``numpy`` seeded by ``seed``;
    the optimizer is scipy's L-BFGS-B with finite-difference gradients. A parameter is identifiable when its
    profile drops below the 95% likelihood-ratio threshold on both sides before reaching a bound.

    Args:
        problem: The whole PEtab problem (``PetabExport.problem()``, or ``petab.Problem.from_yaml``).
        stage: ``"pk"`` or ``"healthy"``.
        estimate: Model ids to estimate (default: all of the stage's parameters).
        fixed: Values (model ids) for parameters held fixed, instead of their nominal values.
        n_starts: Number of starts (>= 1).
        seed: Seed of the start points.
        profiles: Compute profile likelihoods (without them the intervals are NaN and nothing is identifiable).
        checks: Compare the PK fit with the summary and check rows of the PK data (PK stage only).
        pk_data: The PK data the problem was built from (default: ``models/pk_data.csv``): the sources of
            its rows, and its summary and check rows.
        engine: Engine on the whole model for the PK checks; defaults to the shipped model's.

    Returns:
        The fit, its profiles and its report tables.

    Raises:
        UnknownNameError: An unknown stage or parameter.
        InvalidValueError: ``n_starts`` below 1, or no measurements for the stage.
        SimulationFailedError: The engine fails on a PK check at the fitted values.
    """
    if isinstance(n_starts, bool) or not isinstance(n_starts, int) or n_starts < 1:
        raise InvalidValueError(f"n_starts = {n_starts!r}; use a whole number of starts >= 1, e.g. 20")
    sub = stage_problem(problem, stage=stage, estimate=estimate, fixed=fixed)
    pp, objective = pypesto_problem(sub)
    rng = np.random.default_rng(seed)
    lb, ub = np.asarray(pp.lb, dtype=float), np.asarray(pp.ub, dtype=float)
    guesses = np.empty((n_starts, pp.dim_full))
    guesses[:, pp.x_free_indices] = lb + rng.random((n_starts, lb.size)) * (ub - lb)
    guesses[:, pp.x_fixed_indices] = pp.x_fixed_vals
    pp.set_x_guesses(guesses)
    optimizer = pypesto.optimize.ScipyOptimizer(method="L-BFGS-B", options={"maxiter": 500})
    log.info("fitting stage %s: %d parameters, %d starts", stage, lb.size, n_starts)
    result = pypesto.optimize.minimize(
        pp, optimizer=optimizer, n_starts=n_starts, engine=pypesto.engine.SingleCoreEngine(), progress_bar=False
    )
    best = result.optimize_result.list[0]
    log.info("stage %s: best negative log-likelihood %.6g", stage, best.fval)
    if profiles:
        options = pypesto.profile.ProfileOptions(ratio_min=0.1, step_size_precheck_mode="off")
        result = pypesto.profile.parameter_profile(
            pp,
            result,
            optimizer=pypesto.optimize.ScipyOptimizer(method="L-BFGS-B", options={"maxiter": 200}),
            engine=pypesto.engine.SingleCoreEngine(),
            profile_options=options,
            progress_bar=False,
        )
    x_full = np.asarray(best.x, dtype=float)
    values = _unscaled(sub, x_full)
    profile_table = _profile_table(pp, result) if profiles else pd.DataFrame(columns=["parameter", "value", "ratio"])
    fit_rows = _fit_rows(sub, objective, x_full, stage=stage)
    data = read_pk_data() if pk_data is None else pk_data
    sources = dict(zip(data["id"], data["source"], strict=True)) | {t.id: t.source for t in read_targets()}
    fit_rows["source"] = [sources.get(i, "") for i in fit_rows["id"]]
    parameter_table = _parameter_table(sub, values, profile_table, fit_rows)
    targets = fit_rows
    if stage == "pk" and checks:
        engine = engine or default_engine()
        nominal = {model_id(str(p)): float(v) for p, v in problem.parameter_df[petab.NOMINAL_VALUE].items()}
        at = {n: nominal[n] for n in STAGE_PARAMETERS["pk"] if n in nominal}
        at |= {k: float(v) for k, v in (fixed or {}).items() if k in engine.defaults}
        at |= {model_id(p): v for p, v in values.items()}
        targets = pd.concat([fit_rows, pk_comparisons(at, data=data, engine=engine)], ignore_index=True)
    starts = pd.DataFrame(
        [
            {"start": r.id, "fval": float(r.fval), "n_fval": int(r.n_fval), "message": str(r.message)}
            for r in result.optimize_result.list
        ]
    )
    settings: dict[str, object] = {
        "n_starts": n_starts,
        "seed": seed,
        "optimizer": "scipy L-BFGS-B, central finite-difference gradients (step 1e-5 on log10 scale)",
        "simulator": f"pyPESTO {pypesto.__version__} PEtab importer, roadrunner backend, rtol {RTOL:g}, atol {ATOL:g}",
        "profile_threshold": PROFILE_RATIO_95,
        "best_fval": float(best.fval),
        "n_data": len(fit_rows),
    }
    return StageFit(
        stage=stage,
        parameters=parameter_table,
        targets=targets,
        profiles=profile_table,
        starts=starts,
        fixed={k: float(v) for k, v in (fixed or {}).items()},
        settings=settings,
    )


def _unscaled(problem: petab.Problem, x_full: np.ndarray) -> dict[str, float]:
    """Return every parameter of the problem on the linear scale, by PEtab id."""
    scales = problem.parameter_df[petab.PARAMETER_SCALE]
    out = {}
    for pid, value in zip(problem.x_ids, x_full, strict=True):
        out[pid] = float(petab.unscale(value, scales[pid]))
    return out


def _profile_table(pp: Any, result: Any) -> pd.DataFrame:
    rows = []
    for index, profile in enumerate(result.profile_result.list[0]):
        if profile is None:
            continue
        name = model_id(pp.x_names[index])
        scale = pp.x_scales[index]
        for x, ratio in zip(profile.x_path[index], profile.ratio_path, strict=True):
            rows.append({"parameter": name, "value": float(petab.unscale(x, scale)), "ratio": float(ratio)})
    return pd.DataFrame(rows).sort_values(["parameter", "value"], kind="stable").reset_index(drop=True)


def profile_interval(path: pd.DataFrame, *, best: float, threshold: float = PROFILE_RATIO_95) -> tuple[float, float]:
    """Return the 95% profile interval of one parameter from its profile path.

    Each side's end is where the likelihood ratio crosses ``threshold`` (interpolated on the log scale of
    both); a side that never crosses it (the profile reached a bound first) is NaN.

    Args:
        path: Rows ``value`` and ``ratio`` of one parameter's profile.
        best: The fitted value.
        threshold: Likelihood ratio at the interval's edge.
    """
    path = path.sort_values("value")
    ends = []
    for side in ("lower", "upper"):
        part = path[path["value"] <= best] if side == "lower" else path[path["value"] >= best]
        part = part.iloc[::-1] if side == "lower" else part
        values, ratios = part["value"].to_numpy(), part["ratio"].to_numpy()
        below = np.nonzero(ratios < threshold)[0]
        if len(below) == 0 or below[0] == 0:
            ends.append(math.nan)
            continue
        i = below[0]
        ra, rb = math.log(max(ratios[i - 1], 1e-300)), math.log(max(ratios[i], 1e-300))
        xa, xb = math.log(values[i - 1]), math.log(values[i])
        w = (math.log(threshold) - ra) / (rb - ra) if rb != ra else 0.0
        ends.append(math.exp(xa + w * (xb - xa)))
    return ends[0], ends[1]


def _fit_rows(problem: petab.Problem, objective: Any, x_full: np.ndarray, *, stage: str) -> pd.DataFrame:
    """Return the measured rows with the model's value at ``x_full`` beside each."""
    simulations = objective(x_full, return_dict=True)["simulation_results"]
    rows = []
    for m in problem.measurement_df.to_dict("records"):
        condition, observable = m[petab.SIMULATION_CONDITION_ID], m[petab.OBSERVABLE_ID]
        sim = simulations[condition]
        times = np.asarray(sim[:, 0], dtype=float)
        k = int(np.argmin(np.abs(times - float(m[petab.TIME]))))
        model = float(sim[k, list(sim.colnames).index(observable)])
        measured = float(m[petab.MEASUREMENT])
        rows.append(
            {
                "id": m.get(petab.DATASET_ID, ""),
                "role": FIT,
                "stage": stage,
                "condition": condition,
                "observable": observable,
                "time_h": float(m[petab.TIME]),
                "value": measured,
                "lower": math.nan,
                "upper": math.nan,
                "model": model,
                "model_over_value": model / measured,
                "in_range": "",
            }
        )
    return pd.DataFrame(rows)


def _parameter_table(
    problem: petab.Problem, values: Mapping[str, float], profiles: pd.DataFrame, fit_rows: pd.DataFrame
) -> pd.DataFrame:
    table = read_parameter_table()
    data_ids = ";".join(fit_rows["id"])
    rows = []
    for pid in problem.parameter_df.index:
        if not problem.parameter_df.loc[pid, petab.ESTIMATE]:
            continue
        name = model_id(pid)
        fitted = values[pid]
        path = profiles[profiles["parameter"] == name]
        low, high = profile_interval(path, best=fitted) if len(path) else (math.nan, math.nan)
        info = table.get(name)
        rows.append(
            {
                "parameter": name,
                "petab_id": pid,
                "unit": info.unit if info else "",
                "table_value": info.value if info else math.nan,
                "fitted": fitted,
                "bound_lower": float(problem.parameter_df.loc[pid, petab.LOWER_BOUND]),
                "bound_upper": float(problem.parameter_df.loc[pid, petab.UPPER_BOUND]),
                "profile_lower": low,
                "profile_upper": high,
                "identifiable": "yes" if math.isfinite(low) and math.isfinite(high) else "no",
                "fitted_to": data_ids,
                "table_source": info.source if info else "",
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------- checks
def pk_comparisons(
    params: Mapping[str, float], *, data: pd.DataFrame | None = None, engine: Engine | None = None
) -> pd.DataFrame:
    """Compare the model at ``params`` with the summary and check rows of the PK data (neither is fitted).

    Summary rows are the published numbers the fit rows were reconstructed from: their model values show how
    well the fit reproduces them, and they are never quoted as checks. Check rows are published ranges that
    no fit row was made from.

    Single-dose quantities come from :func:`ra_model.studies.calibration.single_dose_metrics` (the healthy
    man, baseline-corrected); courses are simulated with :func:`ra_model.engines.simulate.simulate`.

    Args:
        params: Parameter values by model id (compartment sizes included), on top of the table's.
        data: The PK data (default: ``models/pk_data.csv``).
        engine: Engine on the whole model; defaults to the shipped model's.

    Returns:
        One row per summary or check row: ``id``, ``role``, ``condition`` (the arm), ``observable`` (the
        quantity), ``value``, ``lower``, ``upper``, ``model``, ``model_over_value`` (summaries), ``in_range``
        (checks: yes/no), ``source``.
    """
    data = read_pk_data() if data is None else data
    engine = engine or default_engine()
    params = dict(params)
    single: dict[tuple[float, bool], dict[str, float]] = {}

    def metrics(dose_mg: float, fed: bool) -> dict[str, float]:
        key = (dose_mg, fed)
        if key not in single:
            single[key] = single_dose_metrics(engine, params, dose_mg=dose_mg, fed=fed)
        return single[key]

    rows = []
    for row in data[data["role"].isin([SUMMARY, CHECK])].to_dict("records"):
        dose, fed = float(row["dose_mg"]), bool(row["fed"])
        if row["quantity"] in SUMMARY_QUANTITIES:
            value = metrics(dose, fed)[str(row["quantity"])]
        elif row["quantity"] == "food_effect":
            value = metrics(dose, fed)["auc"] / metrics(dose, False)["auc"]
        else:
            course = _course_metrics(
                engine, params, dose_mg=dose, fed=fed, n_doses=int(row["n_doses"]), interval_h=float(row["interval_h"])
            )
            value = (
                course["decline_half_life"]
                if row["quantity"] == "decline_half_life"
                else course["auc_last_interval"] / metrics(dose, fed)["auc"]
            )
        check = row["role"] == CHECK
        rows.append(
            {
                "id": row["id"],
                "role": row["role"],
                "stage": "pk",
                "condition": row["arm"],
                "observable": row["quantity"],
                "time_h": math.nan,
                "value": float(row["value"]),
                "lower": float(row["lower"]),
                "upper": float(row["upper"]),
                "model": float(value),
                "model_over_value": math.nan if check else float(value) / float(row["value"]),
                "in_range": ("yes" if float(row["lower"]) <= value <= float(row["upper"]) else "no") if check else "",
                "source": row["source"],
            }
        )
    return pd.DataFrame(rows)


def _course_metrics(
    engine: Engine, params: Mapping[str, float], *, dose_mg: float, fed: bool, n_doses: int, interval_h: float
) -> dict[str, float]:
    """Return the AUC over the last dosing interval (ng.h/mL) and the decline half-life after it (h)."""
    regimen = Regimen(dose_mg=dose_mg, n_doses=n_doses, interval_h=interval_h, fed=fed)
    last_h = (n_doses - 1) * interval_h
    t_end_d = (last_h + interval_h + 96.0) / 24.0
    table = simulate("healthy", regimen, t_end_d=t_end_d, output_step_d=0.005, overrides=params, engine=engine)
    t_h = table[C.TIME_D].to_numpy() * 24.0
    excess = table[C.PLASMA_ISOTRETINOIN].to_numpy() - float(table[C.PLASMA_ISOTRETINOIN].iloc[0])
    window = (t_h >= last_h) & (t_h <= last_h + interval_h)
    late = (t_h >= last_h + 24.0) & (t_h <= last_h + 72.0)
    slope = np.polyfit(t_h[late], np.log(np.maximum(excess[late], 1e-300)), 1)[0]
    return {
        "auc_last_interval": float(np.trapezoid(excess[window], t_h[window])),
        "decline_half_life": math.log(2) / -slope,
    }


# ---------------------------------------------------------------------------------------------------- report
def read_fitted_values(path: Path) -> dict[str, float]:
    """Read the fitted values (model ids) from a fit's parameter CSV (``pk_fit.csv``).

    Raises:
        InvalidValueError: A missing file or one without ``parameter`` and ``fitted`` columns.
    """
    if not path.is_file():
        raise InvalidValueError(f"fit file {path} not found; run `ra-model fit pk` first or give its pk_fit.csv")
    table = pd.read_csv(path, encoding="utf-8")
    if not {"parameter", "fitted"} <= set(table.columns):
        raise InvalidValueError(f"{path}: not a fit table (needs the columns parameter and fitted)")
    return dict(zip(table["parameter"].astype(str), table["fitted"].astype(float), strict=True))


def report_markdown(fit: StageFit, *, plot_file: str = "", data_note: str = "") -> str:
    """Return the fit report as Markdown: settings, parameters with intervals, fitted rows, checks, starts.

    Args:
        fit: A stage's fit.
        plot_file: File name of the profile plot, linked from the report.
        data_note: Where the data come from (a sentence).
    """
    s = fit.settings
    p = fit.parameters
    lines = [
        f"# {fit.stage} stage: fit and profile likelihoods",
        "",
        "Written by `ra-model fit " + fit.stage + "` (re-run it to reproduce). " + data_note,
        "",
        f"- Simulator: {s['simulator']}; the problem's SBML without the germ line.",
        f"- Optimizer: {s['optimizer']}; {s['n_starts']} starts drawn uniformly on the log10 scale inside the "
        f"bounds, seed {s['seed']}.",
        f"- Best negative log-likelihood {s['best_fval']:.6g} on {s['n_data']} data rows.",
        "- Identifiable: the profile likelihood falls below the 95% threshold (likelihood ratio "
        f"{s['profile_threshold']:.4f}) on both sides before reaching a bound of the plausible range "
        "(models/parameters.csv). The intervals assume the noise model of the observables (PEtab "
        "observable table); they say what these data determine, given that noise.",
    ]
    if fit.fixed:
        lines.append("- Held fixed at: " + ", ".join(f"{k} = {v:.6g}" for k, v in fit.fixed.items()) + ".")
    lines.append("- Every other parameter at its value in models/parameters.csv; fitted values are not written back.")
    lines += ["", "## Fitted parameters", ""]
    lines.append("| parameter | unit | table value | fitted | 95% profile interval | bounds | identifiable |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in p.to_dict("records"):
        interval = f"[{_fmt(r['profile_lower'])}, {_fmt(r['profile_upper'])}]"
        lines.append(
            f"| {r['parameter']} | {r['unit']} | {_fmt(r['table_value'])} | {_fmt(r['fitted'])} | {interval} | "
            f"[{_fmt(r['bound_lower'])}, {_fmt(r['bound_upper'])}] | {r['identifiable']} |"
        )
    yes = list(p.loc[p["identifiable"] == "yes", "parameter"])
    no = list(p.loc[p["identifiable"] == "no", "parameter"])
    lines += [
        "",
        f"Identifiable from these data: {', '.join(yes) or 'none'}. "
        f"Not identifiable (a profile reaches a bound inside the 95% threshold): {', '.join(no) or 'none'}. "
        "An open end is written `open`.",
        "",
        "Every fitted parameter was fitted to all the data rows below (ids in the `fitted_to` column of the CSV).",
    ]
    if plot_file:
        lines += ["", f"![profile likelihoods]({plot_file})"]
    fitted = fit.targets[fit.targets["role"] == FIT]
    lines += ["", "## Data rows used for fitting", ""]
    lines.append("| id | condition | observable | time (h) | value | model | model / value | source |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in fitted.to_dict("records"):
        lines.append(
            f"| {r['id']} | {r['condition']} | {r['observable']} | {r['time_h']:g} | {_fmt(r['value'])} | "
            f"{_fmt(r['model'])} | {r['model_over_value']:.3f} | {r.get('source', '')} |"
        )
    summaries = fit.targets[fit.targets["role"] == SUMMARY]
    if len(summaries):
        lines += [
            "",
            "## Published summaries the fit rows were built from (reproduced, not checks)",
            "",
            "These numbers went into the fit rows, so the model's agreement with them is not a validation.",
            "",
            "| id | arm | quantity | published | model | model / published |",
            "|---|---|---|---|---|---|",
        ]
        for r in summaries.to_dict("records"):
            lines.append(
                f"| {r['id']} | {r['condition']} | {r['observable']} | {_fmt(r['value'])} | {_fmt(r['model'])} | "
                f"{r['model_over_value']:.3f} |"
            )
    checks = fit.targets[fit.targets["role"] == CHECK]
    lines += ["", "## Checks (never fitted)", ""]
    if len(checks):
        lines.append("| id | arm | quantity | published range | model | in range | source |")
        lines.append("|---|---|---|---|---|---|---|")
        for r in checks.to_dict("records"):
            lines.append(
                f"| {r['id']} | {r['condition']} | {r['observable']} | {_fmt(r['lower'])}-{_fmt(r['upper'])} | "
                f"{_fmt(r['model'])} | {r['in_range']} | {r['source']} |"
            )
    else:
        lines.append("None: the brief gives no number for this stage beyond the targets it is fitted to.")
    lines += ["", "## Starts", ""]
    lines.append("| start | negative log-likelihood | evaluations | message |")
    lines.append("|---|---|---|---|")
    for r in fit.starts.to_dict("records"):
        lines.append(f"| {r['start']} | {r['fval']:.6g} | {r['n_fval']} | {r['message']} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    return "open" if not math.isfinite(float(value)) else f"{float(value):.4g}"
