"""Export the model's calibration as a PEtab v1 problem: SBML, conditions, observables, measurements, parameters.

The SBML is :func:`ra_model.interop.sbml_export.export_sbml` of the shipped model, byte for byte what
``ra-model export sbml`` writes. PEtab v1 has no dosing events, so each study arm is a condition that sets
the model's own dose event the way the engine arms it: the dose at t = 0 is the initial amount of
``Gut_iso``, and ``dose_mg``, ``dose_interval_h``, ``n_doses``, ``doses_given`` and ``t_next_dose`` give
the later doses of a course (a single dose disarms the event with ``t_next_dose = t_never``).

- Conditions: one per PK study arm of ``models/pk_data.csv`` (fitted and check arms) and the healthy steady
  state. A PK arm has no endogenous input (``retinol_plasma_uM = 0``, plasma retinoids start at 0), so its
  plasma isotretinoin is the drug-derived excess over the endogenous baseline, as the labels report it; the
  plasma part of the model is linear, so this is the baseline-corrected curve of a healthy man. Every
  condition sets the compartments ``plasma_c`` and ``periph`` to the fitted volumes ``V_plasma_c`` and
  ``V_periph`` (PEtab estimates parameters, not compartments).
- Observables: plasma isotretinoin (ng/mL) and the healthy steady-state quantities, each log-normal with a
  fixed log-SD (a noise parameter ``sd_<observable>``; its value and source in
  :mod:`ra_model.studies.fit_pk`).
- Measurements: the fit rows of ``models/pk_data.csv`` and the ``healthy`` targets of
  ``models/calibration_targets.csv`` (at :data:`~ra_model.studies.fit_pk.STEADY_STATE_TIME_H`); each row's
  ``datasetId`` is its id in those files. Check rows are not measurements.
- Parameters: the parameters ``ra-model calibrate`` fits, estimated on the log10 scale inside their plausible
  ranges from ``models/parameters.csv``, with a uniform prior on that scale (the brief gives no central value
  for any of them); every other model parameter of the table fixed at its table value.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import petab.v1 as petab  # type: ignore[import-untyped]
from petab.v1.models.sbml_model import SbmlModel  # type: ignore[import-untyped]
from petab.v1.yaml import create_problem_yaml  # type: ignore[import-untyped]

from ra_model.errors import InvalidValueError
from ra_model.interop.sbml_export import export_sbml
from ra_model.model.regimen import DOSE_EVENT_PARAMETERS
from ra_model.model.source import ParameterInfo, read_parameter_table
from ra_model.studies.calibration import STAGE_PARAMETERS, Target
from ra_model.studies.fit_pk import (
    CONCENTRATION,
    FIT,
    FIT_STAGES,
    HEALTHY_CONDITION,
    HEALTHY_OBSERVABLES,
    PK_OBSERVABLE,
    STEADY_STATE_TIME_H,
    Observable,
    healthy_targets,
    petab_id,
    read_pk_data,
)

log = logging.getLogger(__name__)

#: File names inside an exported problem's folder.
YAML_FILE = "problem.yaml"
MODEL_FILE = "model.xml"
CONDITION_FILE = "conditions.tsv"
OBSERVABLE_FILE = "observables.tsv"
MEASUREMENT_FILE = "measurements.tsv"
PARAMETER_FILE = "parameters.tsv"
#: Every file an export writes.
FILES = (YAML_FILE, MODEL_FILE, CONDITION_FILE, OBSERVABLE_FILE, MEASUREMENT_FILE, PARAMETER_FILE)
#: Model parameters that the condition table sets (so they are not in the parameter table).
CONDITION_PARAMETERS = (*DOSE_EVENT_PARAMETERS, "retinol_plasma_uM")


@dataclass(frozen=True)
class PetabExport:
    """A PEtab v1 problem: the SBML text and the four tables.

    Attributes:
        sbml: SBML L3V2 text (as ``ra-model export sbml`` writes it).
        conditions: Condition table, indexed by ``conditionId``.
        observables: Observable table, indexed by ``observableId``.
        measurements: Measurement table.
        parameters: Parameter table, indexed by ``parameterId``.
    """

    sbml: str
    conditions: pd.DataFrame
    observables: pd.DataFrame
    measurements: pd.DataFrame
    parameters: pd.DataFrame

    def problem(self) -> petab.Problem:
        """Return the problem as a ``petab.v1.Problem`` (for pyPESTO or the linter)."""
        return petab.Problem(
            model=SbmlModel.from_string(self.sbml),
            condition_df=self.conditions,
            measurement_df=self.measurements,
            observable_df=self.observables,
            parameter_df=self.parameters,
        )


def build_petab_problem(*, pk_data: pd.DataFrame | None = None, targets: list[Target] | None = None) -> PetabExport:
    """Build the PEtab problem of the PK and healthy steady-state calibration.

    Args:
        pk_data: PK data (default: ``models/pk_data.csv``, :func:`ra_model.studies.fit_pk.read_pk_data`).
        targets: Calibration targets (default: ``models/calibration_targets.csv``; the ``healthy`` ones are used).

    Returns:
        The problem's SBML and tables.

    Raises:
        InvalidValueError: Bad PK data, or a fitted parameter without a row in the parameter table.
        ModelBuildError: The SBML export fails validation.
    """
    data = read_pk_data() if pk_data is None else pk_data
    healthy = healthy_targets(targets)
    table = read_parameter_table()
    sbml = export_sbml()
    conditions = _conditions(data, table)
    observables = _observables([PK_OBSERVABLE, *(HEALTHY_OBSERVABLES[t.quantity] for t in healthy)])
    rows = [
        {
            petab.OBSERVABLE_ID: PK_OBSERVABLE.id,
            petab.SIMULATION_CONDITION_ID: r["arm"],
            petab.TIME: float(r["time_h"]),
            petab.MEASUREMENT: float(r["value"]),
            petab.DATASET_ID: r["id"],
        }
        for r in data[data["role"] == FIT].to_dict("records")
        if r["quantity"] == CONCENTRATION
    ]
    rows += [
        {
            petab.OBSERVABLE_ID: HEALTHY_OBSERVABLES[t.quantity].id,
            petab.SIMULATION_CONDITION_ID: HEALTHY_CONDITION,
            petab.TIME: STEADY_STATE_TIME_H,
            petab.MEASUREMENT: t.value,
            petab.DATASET_ID: t.id,
        }
        for t in healthy
    ]
    measurements = pd.DataFrame(rows)
    parameters = _parameters(table, observables, sbml_parameters=_sbml_parameters(sbml))
    return PetabExport(sbml, conditions, observables, measurements, parameters)


def _conditions(data: pd.DataFrame, table: dict[str, ParameterInfo]) -> pd.DataFrame:
    nmol_per_mg = table["nmol_per_mg_iso"].value
    t_never = table["t_never"].value
    volumes = {c: petab_id(c) for stage in FIT_STAGES for c in STAGE_PARAMETERS[stage] if petab_id(c) != c}
    rows = []
    for arm, group in data.groupby("arm", sort=False):
        first = group.to_dict("records")[0]
        dose, n = float(first["dose_mg"]), int(first["n_doses"])
        label = f"{dose:g} mg {'fed' if first['fed'] else 'fasted'}, " + (
            "single dose" if n == 1 else f"{n} doses every {float(first['interval_h']):g} h"
        )
        rows.append(
            {
                petab.CONDITION_ID: arm,
                petab.CONDITION_NAME: label + "; no endogenous input (baseline-corrected)",
                "dose_mg": dose,
                "dose_interval_h": float(first["interval_h"]),
                "n_doses": n,
                "fed": int(bool(first["fed"])),
                "doses_given": 1,
                "t_next_dose": float(first["interval_h"]) if n > 1 else t_never,
                "retinol_plasma_uM": 0.0,
                "Gut_iso": dose * nmol_per_mg,
                "Iso_c": 0.0,
                "Iso_p": 0.0,
                "atRA_p": 0.0,
                **volumes,
            }
        )
    rows.append(
        {
            petab.CONDITION_ID: HEALTHY_CONDITION,
            petab.CONDITION_NAME: "healthy man, untreated, at steady state",
            "dose_mg": 0.0,
            "dose_interval_h": table["dose_interval_h"].value,
            "n_doses": 0,
            "fed": 0,
            "doses_given": 0,
            "t_next_dose": t_never,
            "retinol_plasma_uM": table["retinol_plasma_uM"].value,
            "Gut_iso": 0.0,
            "Iso_c": math.nan,
            "Iso_p": math.nan,
            "atRA_p": math.nan,
            **volumes,
        }
    )
    return pd.DataFrame(rows).set_index(petab.CONDITION_ID)


def _observables(observables: list[Observable]) -> pd.DataFrame:
    unique = list({o.id: o for o in observables}.values())
    return pd.DataFrame(
        [
            {
                petab.OBSERVABLE_ID: o.id,
                petab.OBSERVABLE_NAME: f"{o.formula} ({o.unit})",
                petab.OBSERVABLE_FORMULA: o.formula,
                petab.OBSERVABLE_TRANSFORMATION: petab.LOG,
                petab.NOISE_FORMULA: o.noise_parameter,
                petab.NOISE_DISTRIBUTION: petab.NORMAL,
            }
            for o in unique
        ]
    ).set_index(petab.OBSERVABLE_ID)


def _sbml_parameters(sbml: str) -> set[str]:
    """Return the ids of the SBML's global parameters that no rule defines."""
    model = SbmlModel.from_string(sbml)
    return set(model.get_valid_parameters_for_parameter_table())


def _parameters(
    table: dict[str, ParameterInfo], observables: pd.DataFrame, *, sbml_parameters: set[str]
) -> pd.DataFrame:
    fitted = [n for stage in FIT_STAGES for n in STAGE_PARAMETERS[stage]]
    rows = []
    for name in fitted:
        if name not in table:
            raise InvalidValueError(f"fitted parameter {name!r} has no row in models/parameters.csv; add one")
        info = table[name]
        rows.append(
            {
                petab.PARAMETER_ID: petab_id(name),
                petab.PARAMETER_NAME: f"{name} ({info.unit})",
                petab.PARAMETER_SCALE: petab.LOG10,
                petab.LOWER_BOUND: info.lower,
                petab.UPPER_BOUND: info.upper,
                petab.NOMINAL_VALUE: info.value,
                petab.ESTIMATE: 1,
                # uniform on the log10 scale between the bounds (empty prior parameters: the bounds)
                petab.INITIALIZATION_PRIOR_TYPE: petab.PARAMETER_SCALE_UNIFORM,
                petab.OBJECTIVE_PRIOR_TYPE: petab.PARAMETER_SCALE_UNIFORM,
            }
        )
    noise = {o.noise_parameter: o for o in [PK_OBSERVABLE, *HEALTHY_OBSERVABLES.values()]}
    for noise_id in observables[petab.NOISE_FORMULA]:
        model = noise[noise_id].noise
        rows.append(
            {
                petab.PARAMETER_ID: noise_id,
                petab.PARAMETER_NAME: f"log-SD of {noise_id[3:]}; {model.source}",
                petab.PARAMETER_SCALE: petab.LIN,
                petab.LOWER_BOUND: 0.01,
                petab.UPPER_BOUND: 2.0,
                petab.NOMINAL_VALUE: model.sd_log,
                petab.ESTIMATE: 0,
            }
        )
    skip = set(fitted) | set(CONDITION_PARAMETERS)
    for info in table.values():
        if info.id in skip or info.id not in sbml_parameters:
            continue
        rows.append(
            {
                petab.PARAMETER_ID: info.id,
                petab.PARAMETER_NAME: f"{info.id} ({info.unit})",
                petab.PARAMETER_SCALE: petab.LIN,
                petab.LOWER_BOUND: info.lower,
                petab.UPPER_BOUND: info.upper,
                petab.NOMINAL_VALUE: info.value,
                petab.ESTIMATE: 0,
            }
        )
    return pd.DataFrame(rows).set_index(petab.PARAMETER_ID)


def write_petab_problem(export: PetabExport, directory: Path, *, force: bool = False) -> Path:
    """Write a PEtab problem into a folder: ``problem.yaml``, ``model.xml`` and four TSV tables.

    Args:
        export: The problem (:func:`build_petab_problem`).
        directory: Folder to write into (created if needed).
        force: Write into a folder that already holds files (the problem's files are replaced).

    Returns:
        The path of ``problem.yaml``.

    Raises:
        InvalidValueError: The folder exists and is not empty, and ``force`` is not given; or it is a file.
    """
    if directory.exists() and not directory.is_dir():
        raise InvalidValueError(f"{directory} is a file; give a folder for the PEtab problem")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise InvalidValueError(
            f"{directory} is not empty; give an empty or new folder, or --force to replace the problem's files in it"
        )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_text(export.sbml, encoding="utf-8")
    petab.write_condition_df(export.conditions, directory / CONDITION_FILE)
    petab.write_observable_df(export.observables, directory / OBSERVABLE_FILE)
    petab.write_measurement_df(export.measurements, directory / MEASUREMENT_FILE)
    petab.write_parameter_df(export.parameters, directory / PARAMETER_FILE)
    yaml_path = directory / YAML_FILE
    create_problem_yaml(
        sbml_files=directory / MODEL_FILE,
        condition_files=directory / CONDITION_FILE,
        measurement_files=directory / MEASUREMENT_FILE,
        parameter_file=directory / PARAMETER_FILE,
        observable_files=directory / OBSERVABLE_FILE,
        yaml_file=yaml_path,
    )
    log.info("wrote the PEtab problem to %s", directory)
    return yaml_path
