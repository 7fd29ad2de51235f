"""Column names of the results table, each defined once with its unit and meaning."""

from __future__ import annotations

from dataclasses import dataclass

#: Simulation time in days since the start of the run.
TIME_D = "time_d"
#: Number of isotretinoin doses given up to this time (counted by the dose event).
DOSES_GIVEN = "doses_given"
#: Plasma isotretinoin (13-cis-RA, drug plus endogenous), ng/mL.
PLASMA_ISOTRETINOIN = "plasma_isotretinoin_ng_per_mL"
#: Plasma 4-oxo-isotretinoin, ng/mL.
PLASMA_4OXO = "plasma_4oxo_isotretinoin_ng_per_mL"
#: Plasma all-trans retinoic acid, nM.
PLASMA_ATRA = "plasma_atRA_nM"
#: Testis all-trans retinoic acid (total, bound and free), nM.
TESTIS_ATRA = "testis_atRA_nM"
#: Testis 13-cis retinoic acid, nM.
TESTIS_13CIS = "testis_13cisRA_nM"
#: CYP26 activity (enzyme level times expression) relative to the healthy steady state.
CYP26_ACTIVITY = "CYP26_activity_rel"
#: ALDH1A activity (capacity times substrate saturation) relative to the healthy steady state.
ALDH1A_ACTIVITY = "ALDH1A_activity_rel"
#: STRA8 protein relative to the healthy steady state.
STRA8 = "STRA8_rel"
#: Fraction of RAR occupied by retinoic acid (0-1).
RAR_OCCUPANCY = "RAR_occupancy"
#: Blood-testis barrier integrity: sealed fraction of claudin-11 tight junctions (0-1).
BTB_INTEGRITY = "BTB_integrity"
#: Spermiation efficiency: share of mature spermatids released rather than phagocytosed (0-1).
SPERMIATION_EFFICIENCY = "spermiation_efficiency"
#: Daily sperm production (elongated spermatids formed), both testes, million per day.
DAILY_SPERM_PRODUCTION = "daily_sperm_production_M_per_d"
#: Sperm concentration in an ejaculate, million per mL.
EJACULATE_CONCENTRATION = "ejaculate_concentration_M_per_mL"
#: Motile sperm concentration in an ejaculate, million per mL.
MOTILE_CONCENTRATION = "motile_concentration_M_per_mL"
#: True where motile sperm are at or above the detection limit (motile_detection_limit, derived in the model from
#: the volume a semen analysis examines).
MOTILE_SPERM_PRESENT = "motile_sperm_present"
#: Semen category of the ejaculate concentration (text): azoospermia, cryptozoospermia, oligozoospermia or normal,
#: cut at pellet_detection_limit and fresh_detection_limit (derived in the model from the examined volumes) and
#: oligozoospermia_limit
#: (``ra_model.model.semen``).
SEMEN_CATEGORY = "semen_category"
#: Share of tubule regions holding mature sperm (germ-cell tubules times the chance a sample of one shows any).
TUBULES_WITH_SPERM = "tubules_with_sperm"
#: Probability that a conventional TESE (``tese_samples`` random biopsies) finds sperm.
RETRIEVAL_CONVENTIONAL_TESE = "retrieval_conventional_TESE"
#: Probability that a micro-TESE (``micro_tese_samples`` regions picked by their look) finds sperm.
RETRIEVAL_MICRO_TESE = "retrieval_micro_TESE"


class DoseTimes(tuple[float, ...]):
    """Dose times in days, for ``attrs["dose_times_d"]``: an immutable tuple that deep-copies to itself.

    pandas deep-copies a table's ``attrs`` on every column read; a year of twice-daily doses is 360
    numbers, whose copy was most of the cost of reading a column.
    """

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, object]) -> DoseTimes:
        """Return the tuple itself: it is immutable and holds only floats."""
        return self


@dataclass(frozen=True)
class Observable:
    """A named model readout: its SBML id, results column, unit (pint-parseable text) and meaning."""

    model_id: str
    column: str
    unit: str
    description: str


#: The named observables, in the order they appear in results tables.
OBSERVABLES: tuple[Observable, ...] = (
    Observable("plasma_isotretinoin", PLASMA_ISOTRETINOIN, "ng / mL", "plasma isotretinoin (13-cis-RA)"),
    Observable("plasma_4oxo_isotretinoin", PLASMA_4OXO, "ng / mL", "plasma 4-oxo-isotretinoin"),
    Observable("plasma_atRA", PLASMA_ATRA, "nM", "plasma all-trans RA"),
    Observable("testis_atRA", TESTIS_ATRA, "nM", "testis all-trans RA"),
    Observable("testis_13cisRA", TESTIS_13CIS, "nM", "testis 13-cis-RA"),
    Observable("CYP26_activity", CYP26_ACTIVITY, "dimensionless", "CYP26 activity"),
    Observable("ALDH1A_activity", ALDH1A_ACTIVITY, "dimensionless", "ALDH1A activity"),
    Observable("STRA8_rel", STRA8, "dimensionless", "STRA8"),
    Observable("RAR_occupancy", RAR_OCCUPANCY, "dimensionless", "RAR occupancy"),
    Observable("BTB_integrity", BTB_INTEGRITY, "dimensionless", "blood-testis barrier integrity"),
    Observable("spermiation_efficiency", SPERMIATION_EFFICIENCY, "dimensionless", "spermiation efficiency"),
    Observable("daily_sperm_production", DAILY_SPERM_PRODUCTION, "1e6 / day", "daily sperm production"),
    Observable("ejaculate_concentration", EJACULATE_CONCENTRATION, "1e6 / mL", "ejaculate sperm concentration"),
    Observable("motile_concentration", MOTILE_CONCENTRATION, "1e6 / mL", "motile sperm concentration"),
    Observable("tubules_with_sperm", TUBULES_WITH_SPERM, "dimensionless", "tubule regions holding mature sperm"),
    Observable(
        "retrieval_conventional_TESE",
        RETRIEVAL_CONVENTIONAL_TESE,
        "dimensionless",
        "chance a conventional TESE finds sperm",
    ),
    Observable("retrieval_micro_TESE", RETRIEVAL_MICRO_TESE, "dimensionless", "chance a micro-TESE finds sperm"),
)

#: Unit of every column, for ``DataFrame.attrs["units"]``: text that pint parses (``parse_expression``), in
#: CF/UDUNITS style; ``1e6 / mL`` is million per mL, ``dimensionless`` marks fractions, ratios to healthy,
#: yes/no values and category labels (:mod:`ra_model.model.units`).
UNITS: dict[str, str] = {
    TIME_D: "day",
    DOSES_GIVEN: "count",
    MOTILE_SPERM_PRESENT: "dimensionless",
    SEMEN_CATEGORY: "dimensionless",
    **{o.column: o.unit for o in OBSERVABLES},
}


#: The panels of the standard time-course figure, in order: (column, title, log scale). Drawn by
#: ``ra_model.plots.timecourse`` (matplotlib) and by the explorer (Bokeh).
STANDARD_PANELS: tuple[tuple[str, str, bool], ...] = (
    (PLASMA_ISOTRETINOIN, "Plasma isotretinoin (ng/mL)", False),
    (TESTIS_ATRA, "Testis all-trans RA (nM)", False),
    (STRA8, "STRA8 (relative to healthy)", False),
    (BTB_INTEGRITY, "Blood-testis barrier integrity", False),
    (SPERMIATION_EFFICIENCY, "Spermiation efficiency", False),
    (EJACULATE_CONCENTRATION, "Ejaculate sperm (million/mL)", True),
)
