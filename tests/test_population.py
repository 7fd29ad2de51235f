"""Virtual patients: reproducible, order-independent draws with the documented spreads."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.model.phenotypes import get_phenotype
from ra_model.model.source import read_parameter_table
from ra_model.studies.population import allocate, check_mix, draw_patients, load_population


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
