"""Impossible inputs and sizes are refused up front, with the cause (issue 14).

Every expected outcome follows from the physics, not from running the code: a fraction above 1, a
negative expression level, a zero volume or Hill coefficient, a changed unit conversion, a 2,738-year
run or 36.5 million output rows are refused; a value that is possible but implausible is warned about.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import libsbml
import pytest

from ra_model import InvalidValueError, ParameterChange, Phenotype, SimulationFailedError, simulate
from ra_model.cli import main
from ra_model.engines import simulate as simulate_module
from ra_model.engines.engine import Engine
from ra_model.engines.simulate import resolve_scenario
from ra_model.errors import ModelBuildError
from ra_model.model import domain
from ra_model.model.bounds import DOMAINS, MAX_OUTPUT_ROWS, MAX_T_END_D, check_run_size
from ra_model.model.domain import check_columns, check_values
from ra_model.model.phenotypes import load_phenotypes
from ra_model.model.source import PARAMETER_COLUMNS, default_sbml, parameter_table_path, read_parameter_table
from ra_model.model.validate import MAX_SBML_BYTES, read_sbml
from ra_model.studies.design import (
    MAX_DESIGN_SAMPLES,
    ParameterRange,
    check_design_size,
    check_range,
    load_sweep_spec,
    make_design,
)


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the plausible-range warnings afresh (they are logged once per parameter and process)."""
    monkeypatch.setattr(domain, "_WARNED", set())


# value, and a word of the reason, for values that are physically impossible as a starting value
IMPOSSIBLE = [
    ("F_fasted", 5.0, "fraction"),  # 500% bioavailability creates drug
    ("cyp26_expr", -2.0, "negative"),  # an expression level below zero
    ("cyp26_expr", -1.0, "negative"),
    ("n_stra8", 0.0, "positive"),  # a Hill coefficient of 0 is no gate
    ("plasma_c", 0.0, "positive"),  # a zero volume: concentrations divide by it
    ("Km_cyp26", -5.0, "positive"),
    ("meiotic_competence", 1.5, "fraction"),
    ("K_stra8_occ", 1.2, "occupancy"),  # a receptor occupancy above 1
    ("nmol_per_mg_iso", 1.0, "constant"),  # a unit conversion (1e6 / 300.44 g/mol)
    ("h_per_d", 25.0, "constant"),
    ("doses_given", 3.0, "bookkeeping"),  # the dose event's counter
    ("t_next_dose", 5.0, "bookkeeping"),
    ("dose_mg", 20.0, "regimen"),  # set by the regimen: an override would be ignored
    ("fed", 1.0, "regimen"),
]


@pytest.mark.parametrize(("name", "value", "word"), IMPOSSIBLE)
def test_an_impossible_override_is_refused_before_anything_runs(name: str, value: float, word: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        simulate("healthy", overrides={name: value}, t_end_d=1)
    message = str(info.value)
    assert f"{name} = {value:g}" in message and word in message, message


# as scheduled changes: regimen inputs may change mid-run (a missed dose), but still only inside their domain
IMPOSSIBLE_CHANGES = [
    ("F_fasted", 5.0, "fraction"),
    ("cyp26_expr", -2.0, "negative"),
    ("n_stra8", 0.0, "positive"),
    ("nmol_per_mg_iso", 1.0, "constant"),
    ("doses_given", 3.0, "bookkeeping"),
    ("dose_mg", -1.0, "negative"),
    ("fed", 0.5, "0 or 1"),
    ("dose_interval_h", 0.0, "positive"),
]


@pytest.mark.parametrize(("name", "value", "word"), IMPOSSIBLE_CHANGES)
def test_an_impossible_parameter_change_is_refused_on_construction(name: str, value: float, word: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        ParameterChange(t_d=5.0, parameter=name, value=value)
    message = str(info.value)
    assert f"{name} = {value:g}" in message and word in message and "day 5" in message, message


def test_regimen_inputs_may_change_during_a_run() -> None:
    assert ParameterChange(t_d=5.0, parameter="dose_mg", value=0.0).value == 0.0  # a missed dose
    assert ParameterChange(t_d=5.0, parameter="fed", value=1.0).value == 1.0


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--set", "F_fasted=5"], ["F_fasted = 5", "fraction"]),
        (["--set", "cyp26_expr=-1"], ["cyp26_expr = -1", "negative"]),
        (["--set", "nmol_per_mg_iso=1"], ["nmol_per_mg_iso = 1", "constant"]),
        (["--set", "n_stra8=0"], ["n_stra8 = 0", "positive"]),
        (["--set", "cyp26_expr=nan"], ["cyp26_expr = nan", "finite"]),
        (["--days", "1e6"], ["t_end_d = 1e+06", "20 years"]),
    ],
)
def test_cli_refuses_impossible_input_with_exit_2_and_no_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragments: list[str]
) -> None:
    out = tmp_path / "run.csv"
    assert main(["simulate", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    assert not out.exists()  # never a stale or half result


def test_values_that_together_create_drug_are_refused(engine: Engine) -> None:
    # shares of one clearance: 0.7 + 0.35 > 1 leaves a negative eliminated rest
    with pytest.raises(InvalidValueError, match=r"f_oxo = 0\.7 and f_isom = 0\.35 add up to 1\.05"):
        resolve_scenario(
            engine,
            "healthy",
            None,
            t_end_d=1,
            output_step_d=1,
            overrides={"f_oxo": 0.7, "f_isom": 0.35},
        )
    # fed bioavailability 0.8 x 1.5 = 1.2 > 1; the same values are harmless when fasted
    overrides = {"F_fasted": 0.8, "food_factor": 1.5}
    with pytest.raises(InvalidValueError, match="fed bioavailability of 1.2"):
        resolve_scenario(engine, "healthy", "20 mg od for 5 d, fed", t_end_d=10, output_step_d=1, overrides=overrides)
    resolve_scenario(engine, "healthy", "20 mg od for 5 d", t_end_d=10, output_step_d=1, overrides=overrides)
    with pytest.raises(InvalidValueError, match="after the change at day 2"):
        simulate(
            "healthy",
            "20 mg od for 5 d",
            t_end_d=10,
            overrides=overrides,
            changes=[ParameterChange(t_d=2, parameter="fed", value=1.0)],
        )


def test_a_possible_but_implausible_value_is_warned_about_with_the_table_range(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ra_model"):
        resolve_scenario(engine, "healthy", None, t_end_d=1, output_step_d=1, overrides={"cyp26_expr": 5.0})
        assert not caplog.records  # inside the plausible range 0.1-10
        resolve_scenario(engine, "healthy", None, t_end_d=1, output_step_d=1, overrides={"cyp26_expr": 20.0})
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 1
    assert "cyp26_expr = 20" in messages[0] and "0.1 to 10" in messages[0]


def test_phenotype_presets_are_checked_when_loaded(tmp_path: Path) -> None:
    load_phenotypes()  # the shipped presets are all possible
    with pytest.raises(InvalidValueError, match=r"F_fasted = 2 is above 1"):
        Phenotype(name="odd", description="", rationale="", parameters={"F_fasted": 2.0})
    with pytest.raises(InvalidValueError, match=r"scale\.f_free_ra.*f_free_ra = 1\.5 is above 1"):
        Phenotype(name="odd", description="", rationale="", scale={"f_free_ra": 30.0})  # 0.05 x 30
    with pytest.raises(InvalidValueError, match="regimen"):
        Phenotype(name="odd", description="", rationale="", parameters={"dose_mg": 10.0})
    presets = tmp_path / "phenotypes.toml"
    presets.write_text('[odd]\ndescription = "x"\nrationale = "y"\n[odd.parameters]\nn_diff = 0.0\n', encoding="utf-8")
    with pytest.raises(InvalidValueError, match="n_diff = 0 is zero") as info:
        load_phenotypes(presets)
    assert str(presets) in str(info.value)


SPEC = """
design = "latin"
n = 4
seed = 1
t_end_d = 30.0
metrics = ["responder"]
[parameters]
cyp26_expr = [1.0, 8.0]
"""


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("cyp26_expr = [1.0, 8.0]", "F_fasted = [0.2, 5.0]", "F_fasted = 5 is above 1"),
        ("cyp26_expr = [1.0, 8.0]", "n_stra8 = [0.0, 4.0]", "n_stra8 = 0 is zero"),
        ("[parameters]", "[fixed]\nF_fasted = 5.0\n[parameters]", "fixed.F_fasted: F_fasted = 5"),
        ("t_end_d = 30.0", "t_end_d = 1e6", "20 years"),
        ("t_end_d = 30.0", "output_step_d = 1e-6", "output rows"),
        ('design = "latin"', 'design = "grid"', "100,000,000,000 samples"),  # n = 10**11 below
    ],
)
def test_sweep_specs_refuse_impossible_ranges_and_sizes(tmp_path: Path, old: str, new: str, fragment: str) -> None:
    spec = tmp_path / "spec.toml"
    text = SPEC.replace(old, new)
    if "grid" in new:
        text = text.replace("n = 4", "n = 100000000000")
    spec.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidValueError) as info:
        load_sweep_spec(spec)
    assert fragment in str(info.value) and str(spec) in str(info.value), str(info.value)


def test_designs_check_ranges_fixed_values_and_size_before_sampling() -> None:
    with pytest.raises(InvalidValueError, match="F_fasted = 1.5 is above 1"):
        check_range(ParameterRange(name="F_fasted", lower=0.2, upper=1.5))
    with pytest.raises(InvalidValueError, match="f_oxo = 2 is above 1"):
        make_design([ParameterRange(name="f_oxo", lower=0.1, upper=2.0)], design="random", n=4, seed=1)
    with pytest.raises(InvalidValueError, match="cyp26_expr = -1 is negative"):
        make_design(
            [ParameterRange(name="k_iso_t", lower=0.01, upper=0.5)],
            design="random",
            n=4,
            seed=1,
            fixed={"cyp26_expr": -1.0},
        )
    ranges = [ParameterRange(name=f"x{i}", lower=0.0, upper=1.0) for i in range(10)]
    start = time.perf_counter()
    with pytest.raises(InvalidValueError) as info:
        make_design(ranges, design="grid", n=10, seed=1)  # 10**10 samples
    assert time.perf_counter() - start < 1.0  # refused before anything is built
    message = str(info.value)
    assert "10,000,000,000 samples" in message and "GB" in message and "n = 5" in message, message
    assert check_design_size("grid", 5, 10) == 5**10 <= MAX_DESIGN_SAMPLES  # 9.8 million: allowed
    with pytest.raises(InvalidValueError, match="at most 1,000,000"):
        check_design_size("morris", 10**7, 9)  # 10**8 samples; 10**6 trajectories of 10 fit


def test_run_size_limits_say_the_cost_and_the_way_out() -> None:
    with pytest.raises(InvalidValueError, match=r"t_end_d = 1e\+06 days \(2,738 years\).*20 years"):
        simulate("healthy", t_end_d=1e6)
    with pytest.raises(InvalidValueError) as info:
        simulate("healthy", t_end_d=365, output_step_d=1e-5)
    message = str(info.value)
    assert "36,500,001 output rows" in message and "GB" in message and "output_step_d >=" in message, message
    # at the limits themselves: allowed (20 years at 1 d; 2 million rows)
    assert check_run_size(MAX_T_END_D, 1.0, columns=17) == 7306
    step = 2.0**-10  # exact in binary, so the grid has exactly MAX_OUTPUT_ROWS rows
    assert check_run_size((MAX_OUTPUT_ROWS - 1) * step, step, columns=17) == MAX_OUTPUT_ROWS == 2_000_000
    with pytest.raises(InvalidValueError, match="2,000,001 output rows"):
        check_run_size((MAX_OUTPUT_ROWS - 1) * step, step, columns=17, extra_rows=1)


def test_an_sbml_file_too_large_is_refused_without_reading_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "huge.xml"
    with big.open("wb") as handle:
        handle.truncate(200_000_000)  # sparse: no disk used
    start = time.perf_counter()
    with pytest.raises(ModelBuildError) as info:
        read_sbml(big)
    assert time.perf_counter() - start < 1.0
    assert "200 MB" in str(info.value) and "20 MB" in str(info.value) and MAX_SBML_BYTES == 20_000_000
    assert main(["simulate", "--model", str(big), "--out", str(tmp_path / "run.csv")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_solver_failure_names_the_overrides_and_changes() -> None:
    # a turnover number of 1e300 per hour is possible (> 0) but makes testis RA infinitely stiff: CVODE fails
    with pytest.raises(SimulationFailedError) as info:
        simulate(
            "healthy",
            None,
            t_end_d=10,
            overrides={"kcat_cyp26": 1e300},
            changes=[ParameterChange(t_d=2, parameter="retinol_plasma_uM", value=2.0)],
            preequilibrate=False,
        )
    message = str(info.value)
    assert "overrides kcat_cyp26=1e+300" in message, message
    assert "changes retinol_plasma_uM=2 at day 2" in message, message


def test_running_out_of_memory_is_reported_as_memory_with_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    # the class of the engine's own simulator: tellurium, once imported, swaps in a subclass of RoadRunner
    monkeypatch.setattr(type(simulate_module.default_engine()._rr), "simulate", no_memory)
    with pytest.raises(SimulationFailedError) as info:
        simulate("healthy", None, t_end_d=10, preequilibrate=False)
    message = str(info.value)
    assert "out of memory" in message and "11 output times" in message, message
    assert "solver failed" not in message and "tolerances" not in message
    monkeypatch.undo()

    def table_no_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(simulate_module, "_table", table_no_memory)
    with pytest.raises(SimulationFailedError) as info:
        simulate("healthy", None, t_end_d=10, preequilibrate=False)
    message = str(info.value)
    assert "out of memory holding 11 output rows" in message and "solver" in message and "not a" in message, message


def test_check_values_and_check_columns_for_sample_tables() -> None:
    assert check_values({"cyp26_expr": 2, "unknown_name": 3}, where="samples") == {
        "cyp26_expr": 2.0,
        "unknown_name": 3.0,
    }
    with pytest.raises(InvalidValueError, match="row 'b'.*F_fasted = 5"):
        check_values({"F_fasted": 5}, where="row 'b'")
    check_columns({"F_fasted": [0.2, 0.9, 1.0]}, where="samples")
    with pytest.raises(InvalidValueError) as info:
        check_columns({"F_fasted": [0.2, 5.0, 7.0]}, where="samples", labels=["s0", "s1", "s2"])
    message = str(info.value)
    assert "2 of 3 samples" in message and "s1" in message and "F_fasted = 5" in message, message
    with pytest.raises(InvalidValueError, match="constant"):
        check_columns({"h_per_d": [24.0]}, where="samples")


# ---------------------------------------------------------------- the table
def _denominator_factors() -> set[str]:
    """Names that are a factor of some denominator in the shipped model: at zero they divide by zero."""

    # node kinds by isOperator/getCharacter, not getType() (opaque once libsedml is imported beside libsbml;
    # tests/test_sbml_math_clash.py)
    def operator(node: libsbml.ASTNode) -> str:
        return str(node.getCharacter()) if node.isOperator() else ""

    def walk(node: libsbml.ASTNode) -> list[libsbml.ASTNode]:
        return [node, *(n for i in range(node.getNumChildren()) for n in walk(node.getChild(i)))]

    def factors(node: libsbml.ASTNode) -> set[str]:
        if node.isName():
            return {node.getName()}
        if operator(node) == "*":
            return {name for i in range(node.getNumChildren()) for name in factors(node.getChild(i))}
        return set()

    document = libsbml.readSBMLFromString(default_sbml())
    model = document.getModel()
    holders = [*model.getListOfRules(), *model.getListOfInitialAssignments()]
    holders += [r.getKineticLaw() for r in model.getListOfReactions() if r.isSetKineticLaw()]
    out: set[str] = set()
    for holder in holders:
        if holder.isSetMath():
            for node in walk(holder.getMath()):
                if operator(node) == "/":
                    out |= factors(node.getRightChild())
    return out


def test_every_parameter_has_a_domain_that_fits_its_physics(engine: Engine) -> None:
    table = read_parameter_table()
    divisors = _denominator_factors()
    assert set(table) == set(engine.defaults)  # every model parameter, compartments too, has a row
    for pid, info in table.items():
        assert info.domain in DOMAINS, pid
        if info.unit == "litre":  # a volume: positive, or a nominal constant
            assert info.domain in ("positive", "constant"), pid
        if info.unit.startswith("per_") or info.unit.endswith("_per_h"):  # rates and clearances
            assert info.domain == "nonneg", pid
        if info.description.startswith("Hill coefficient") or pid.startswith(("Km_", "Kd_")):
            assert info.domain == "positive", pid
        if info.description.startswith(("Fraction", "Share", "Absolute oral bioavailability")):
            # a share the model divides by (a factor of a denominator: zero would divide by zero) excludes 0
            assert info.domain == ("positive_fraction" if pid in divisors else "fraction"), pid
    for pid in ("nmol_per_mg_iso", "ngmL_per_nM_iso", "h_per_d", "cell_cf", "doses_given", "t_next_dose", "t_never"):
        assert table[pid].domain == "constant", pid
    assert table["fed"].domain == "switch"
    assert PARAMETER_COLUMNS[-1] == "domain"


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda rows: [r.rsplit(",", 1)[0] for r in rows], "columns must be"),  # no domain column
        (lambda rows: [r.replace(",0.2,0.9,fraction", ",0.2,0.9,probably") for r in rows], "'probably'"),
        (lambda rows: [r.replace(",0.2,0.9,fraction", ",0.2,1.5,fraction") for r in rows], "upper 1.5 is above 1"),
        (lambda rows: [r.replace("3328.45,3328.45,constant", "3000,3500,constant") for r in rows], "constant"),
    ],
)
def test_the_domain_column_is_required_and_validated(tmp_path: Path, edit, fragment: str) -> None:  # type: ignore[no-untyped-def]
    rows = parameter_table_path().read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "parameters.csv"
    bad.write_text("\n".join(edit(rows)) + "\n", encoding="utf-8")
    with pytest.raises(InvalidValueError, match=fragment):
        read_parameter_table(bad)
