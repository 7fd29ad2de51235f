"""Virtual patients: reproducible, order-independent draws with the documented spreads."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ra_model import simulate
from ra_model.engines.simulate import ParameterChange
from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.model.phenotypes import get_phenotype
from ra_model.model.source import read_parameter_table
from ra_model.studies.population import Population, allocate, check_mix, draw_patients, load_population


@pytest.fixture(scope="module")
def population():
    return load_population()


def test_same_patient_same_parameters_whatever_the_cohort(population) -> None:
    small = draw_patients(population, "maturation_arrest", range(3), seed=11)
    large = draw_patients(population, "maturation_arrest", range(40), seed=11)
    alone = draw_patients(population, "maturation_arrest", [7], seed=11)
    assert small.equals(large.iloc[:3])
    assert alone.iloc[0].equals(large.iloc[7])
    # dropping a varying parameter from the file leaves every other parameter of every man unchanged
    fewer = population.with_log_sd({})
    fewer_vars = dict(fewer.variability)
    del fewer_vars["stra6_expr"]
    from ra_model.studies.population import Population

    reduced = Population(variability=fewer_vars, truncate_sd=population.truncate_sd)
    other = draw_patients(reduced, "maturation_arrest", range(5), seed=11)
    assert np.allclose(other["cyp26_expr"], large["cyp26_expr"].iloc[:5])
    # a different seed gives different men
    assert not np.allclose(
        draw_patients(population, "maturation_arrest", range(3), seed=12)["cyp26_expr"], small["cyp26_expr"]
    )


def test_median_is_phenotype_value_and_spread_matches_cv(population) -> None:
    men = draw_patients(population, "maturation_arrest", range(800), seed=3)
    table = {k: v.value for k, v in read_parameter_table().items()}
    centre = table | get_phenotype("maturation_arrest").resolve(table)
    logs = np.log(men["retinol_plasma_uM"] / centre["retinol_plasma_uM"])
    expected_sd = math.sqrt(math.log(1 + 0.21**2))  # brief 3: CV 21%
    # truncation at 3 SD shrinks the SD by about 1.3%; 800 draws give ~2.5% sampling error
    assert logs.std() == pytest.approx(expected_sd, rel=0.08)
    assert abs(np.median(logs)) < 0.03
    cyp = np.log(men["cyp26_expr"] / centre["cyp26_expr"])
    assert cyp.abs().max() <= 3.0 * population.variability["cyp26_expr"].log_sd + 1e-9


def test_every_variability_entry_has_a_source(population) -> None:
    for entry in population.variability.values():
        assert entry.source.strip()


def test_bad_population_file_names_file_and_parameter(tmp_path: Path) -> None:
    bad = tmp_path / "population.toml"
    bad.write_text('[variability.cyp26_exp]\nlog_sd = 1.0\nsource = "assumed"\n', encoding="utf-8")
    with pytest.raises(UnknownNameError, match="cyp26_expr") as info:
        load_population(bad)
    assert str(bad) in str(info.value)
    bad.write_text('[variability.cyp26_expr]\nlog_sd = 1.0\ncv = 0.2\nsource = "assumed"\n', encoding="utf-8")
    with pytest.raises(InvalidValueError, match="exactly one"):
        load_population(bad)


def test_mix_checks_and_allocation() -> None:
    with pytest.raises(InvalidValueError, match="sums to 0.9"):
        check_mix({"maturation_arrest": 0.5, "sertoli_cell_only": 0.4})
    with pytest.raises(UnknownNameError, match="maturation_arrest"):
        check_mix({"maturation_arest": 1.0})
    counts = allocate({"maturation_arrest": 11 / 30, "hypospermatogenesis": 13 / 30, "sertoli_cell_only": 6 / 30}, 30)
    assert counts == {"maturation_arrest": 11, "hypospermatogenesis": 13, "sertoli_cell_only": 6}
    assert sum(allocate({"a" if False else "healthy": 0.33, "sertoli_cell_only": 0.67}, 7).values()) == 7


# ---------------------------------------------------------------- timing that varies (issue 15)
#: Spermatogenic stage rates that one clock (the cycle of the seminiferous epithelium) scales together.
_CLOCK = ("k_sg", "k_sc", "k_sc_loss", "k_rs")
#: Epididymal stage rates.
_EPIDIDYMIS = ("k_ep", "k_cauda")
#: The brief's spreads as read in models/population.toml: SD 6 d of the spermatogenic transit
#: (Amann 2008 "+/-6 days"), SD of log epididymal transit ln(20/12)/4 (12-20 d as +/-2 SD).
_SPERMATOGENIC_SD_D = 6.0
_EPIDIDYMAL_LOG_SD = math.log(20 / 12) / 4


def _stage_counts() -> dict[str, int]:
    """Count the 2-day compartments of each germ-line stage in the Antimony source."""
    text = (Path(__file__).resolve().parents[1] / "models" / "ra_testis.ant").read_text(encoding="utf-8")
    return {s: len(set(re.findall(rf"species {s}(\d+) in testis", text))) for s in ("SG", "SC", "RS", "EP")}


def _transits_d(men: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Mean spermatogenic (stem-cell exit to spermiation) and epididymal transit of each man, days.

    The closed form of the feed-forward chain: the sum of mean residences, each 1 / (all exits of
    its compartment). The RA-gated preleptotene and spermiation steps are taken at the healthy
    steady state (BTB integrity 0.844, gates 1/(1 + 0.5^6)); the factors do not touch them.
    """
    p = {k: v.value for k, v in read_parameter_table().items()}
    n = _stage_counts()
    gate = 1 / (1 + 0.5**6)
    fixed_h = 1 / (p["k_cross"] * (1 - 0.844471) * gate + p["k_pl_death"]) + 1 / (
        p["k_spermiation"] * gate + p["k_phago"]
    )
    sperm_h = n["SG"] / men["k_sg"] + n["SC"] / (men["k_sc"] + men["k_sc_loss"]) + n["RS"] / men["k_rs"] + fixed_h
    epi_h = n["EP"] / men["k_ep"] + 1 / men["k_cauda"]
    return np.asarray(sperm_h / 24), np.asarray(epi_h / 24)


def test_transit_times_spread_between_men_as_the_brief_says(population) -> None:
    n = 1000
    men = draw_patients(population, "healthy", range(n), seed=15)
    sperm, epi = _transits_d(men)
    # each man's spermatogenic rates move together (one shared clock), and so do his epididymal ones
    table = {k: v.value for k, v in read_parameter_table().items()}
    clock = np.column_stack([men[k] / table[k] for k in _CLOCK])
    assert np.allclose(clock, clock[:, :1], rtol=1e-12)
    epi_scale = np.column_stack([men[k] / table[k] for k in _EPIDIDYMIS])
    assert np.allclose(epi_scale, epi_scale[:, :1], rtol=1e-12)
    # SD within three standard errors (SE of an SD about sd / sqrt(2 n))
    se = 1 / math.sqrt(2 * n)
    assert abs(sperm.std(ddof=1) - _SPERMATOGENIC_SD_D) < 3 * se * _SPERMATOGENIC_SD_D
    assert abs(np.log(epi).std(ddof=1) - _EPIDIDYMAL_LOG_SD) < 3 * se * _EPIDIDYMAL_LOG_SD
    # the healthy man's durations sit where they were: 67.7 d and 14.0 d in the median man
    assert np.median(sperm) == pytest.approx(67.66, abs=0.5)
    assert np.median(epi) == pytest.approx(13.99, abs=0.25)


def test_median_man_keeps_his_timing_and_every_man_his_sperm_output(population) -> None:
    men = draw_patients(population, "maturation_arrest", range(600), seed=4)
    table = {k: v.value for k, v in read_parameter_table().items()}
    for factor in population.factors.values():
        logs = np.log(men[factor.parameters[0]] / table[factor.parameters[0]])
        # median of the factor is 1: |median log| within 3 SE (1.2533 sigma / sqrt(n))
        assert abs(np.median(logs)) < 3 * 1.2533 * factor.log_sd / math.sqrt(len(men))
        assert logs.abs().max() <= population.truncate_sd * factor.log_sd + 1e-9
    # spermatocyte losses scale with their exit rate: the share surviving meiosis is every man's own
    survive = men["k_sc"] / (men["k_sc"] + men["k_sc_loss"])
    assert np.allclose(survive, table["k_sc"] / (table["k_sc"] + table["k_sc_loss"]), rtol=1e-12)
    # with no spread the factors give the phenotype's values exactly
    still = Population(
        variability={},
        factors={k: dataclasses.replace(v, log_sd=0.0) for k, v in population.factors.items()},
    )
    flat = draw_patients(still, "healthy", range(3), seed=4)
    for name in _CLOCK + _EPIDIDYMIS:
        assert (flat[name] == table[name]).all()


def test_factor_entries_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "population.toml"
    bad.write_text('[factor.clock]\nparameters = ["k_sg", "k_sx"]\nlog_sd = 0.1\nsource = "assumed"\n')
    with pytest.raises(UnknownNameError, match="k_sx"):
        load_population(bad)
    bad.write_text('[factor.clock]\nparameters = ["k_sg"]\nlog_sd = 0.1\nsource = " "\n')
    with pytest.raises(InvalidValueError, match="no source"):
        load_population(bad)
    bad.write_text(
        '[variability.k_sg]\nlog_sd = 0.1\nsource = "assumed"\n'
        '[factor.clock]\nparameters = ["k_sg", "k_sc"]\nlog_sd = 0.1\nsource = "assumed"\n'
    )
    with pytest.raises(InvalidValueError, match="k_sg.*both") as info:
        load_population(bad)
    assert str(bad) in str(info.value)
    bad.write_text('[factor.clock]\nparameters = ["k_sg"]\nlog_sd = "wide"\nsource = "assumed"\n')
    with pytest.raises(InvalidValueError, match="not a number"):
        load_population(bad)
    bad.write_text('[factor.clock]\nparameters = "k_sg"\nlog_sd = 0.1\nsource = "assumed"\n')
    with pytest.raises(InvalidValueError, match="list of parameter ids"):
        load_population(bad)


def test_men_one_sd_apart_see_first_sperm_days_apart(population) -> None:
    """Vitamin A repletion (as experiments/vad_rescue.toml): a slow clock brings first sperm later."""
    table = {k: v.value for k, v in read_parameter_table().items()}
    repletion_d = 30.0
    change = [ParameterChange(t_d=repletion_d, parameter="retinol_plasma_uM", value=2.5)]

    def first_sperm_d(z: float) -> float:
        overrides = {
            name: table[name] * math.exp(factor.log_sd * z)
            for factor in population.factors.values()
            for name in factor.parameters
        }
        run = simulate(
            "vitamin_a_deficient", None, t_end_d=160, output_step_d=0.25, overrides=overrides, changes=change
        )
        return float(run.loc[run["motile_sperm_present"].astype(bool), "time_d"].min())

    fast, median, slow = first_sperm_d(1.0), first_sperm_d(0.0), first_sperm_d(-1.0)
    assert fast < median < slow
    # if every delay from repletion scaled with the clock, the gap would be (t - t_rep)(e^s - e^-s);
    # the RA-gated steps and the epididymis's leading edge do not, so expect a little less
    sigma = population.factors["spermatogenic_clock"].log_sd
    upper = (median - repletion_d) * (math.exp(sigma) - math.exp(-sigma))
    assert 0.7 * upper <= slow - fast <= 1.05 * upper
