"""The explorer's words for a student: plain names, the orientation, suggested experiments and panel help.

Everything a student reads on the page that is not a number lives here, as data: the plain name of each
phenotype preset (the first clause of its description in models/phenotypes.toml, or a short name from
:data:`PHENOTYPE_NAMES`), the regimen in words (:func:`regimen_words`), the orientation at the top of the
page (:data:`ORIENTATION`), the suggested experiments whose buttons set the controls (:data:`EXPERIMENTS`)
and the help behind the (?) of each panel (:data:`PANEL_HELP`, correct biology from the science brief).
The model's ids (``maturation_arrest``, ``stem_niche``) stay in tooltips only. Nothing here imports Panel,
param or Bokeh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ra_model.errors import InvalidValueError
from ra_model.model import columns as C
from ra_model.model.phenotypes import Phenotype
from ra_model.model.regimen import Regimen

#: Short plain names of the presets whose description does not open with one (the others use the first
#: clause of their description in models/phenotypes.toml, see :func:`phenotype_name`).
PHENOTYPE_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "healthy": "Healthy man",
        "maturation_arrest": "Maturation arrest, too little RA",
        "maturation_arrest_meiotic": "Maturation arrest, meiosis blocked",
        "sertoli_cell_only": "Sertoli-cell-only with rare foci",
        "sertoli_cell_only_complete": "Sertoli-cell-only, no germ cells at all",
    }
)
#: Dosing intervals in words, hours -> words.
INTERVAL_WORDS: Mapping[float, str] = MappingProxyType({24.0: "once daily", 12.0: "twice daily"})

#: What the page is about, in words a student who has never seen the model understands (Markdown).
ORIENTATION = (
    "**Non-obstructive azoospermia (NOA)**: no sperm in the semen because the testis makes too few; about 1 man "
    "in 100. Making sperm needs **retinoic acid (RA)**, which the testis makes from vitamin A: RA switches on "
    "**STRA8** so that germ cells start to mature and enter meiosis, opens the **blood-testis barrier** for "
    "them, and lets finished sperm be released (**spermiation**). In some men the testis makes too little RA. "
    "**Isotretinoin** (13-cis-retinoic acid, an acne drug) tops RA up; in a 2025 trial 11 of 30 men with NOA "
    "or near-NOA gained sperm in the semen. This model follows one man day by day: drug in the blood, RA in "
    "the testis, the three RA-controlled steps, sperm in the semen. Making a sperm takes about 74 days and "
    "its passage through the epididymis 12-20 more, so expect months, not days.\n\n"
    "**Try first** (each button sets the controls; then change one thing at a time):"
)


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """A suggested experiment: the controls it sets and what to look for.

    The parameter sliders go to the preset's own values and the baseline is the same man untreated.

    Attributes:
        key: Short id (the button's CSS class is ``ra-try-<key>``).
        button: The button's text.
        phenotype: Preset id (models/phenotypes.toml).
        regimen: Regimen text (``Regimen.parse``), or None for no drug.
        look_for: What the student should look at once it has run (Markdown).

    Raises:
        InvalidValueError: If a text is empty, or the key is not lower-case letters and hyphens.
        RegimenParseError: If ``regimen`` cannot be read.
    """

    key: str
    button: str
    phenotype: str
    regimen: str | None
    look_for: str

    def __post_init__(self) -> None:
        """Check the texts and read the regimen once, so a typo fails at import time."""
        for name in ("key", "button", "phenotype", "look_for"):
            if not getattr(self, name).strip():
                raise InvalidValueError(f"Experiment.{name} is empty; give it a text")
        if not all(c.islower() or c == "-" for c in self.key):
            raise InvalidValueError(f"Experiment.key = {self.key!r}; use lower-case letters and hyphens")
        if self.regimen is not None:
            Regimen.parse(self.regimen)


#: The suggested experiments, in page order.
EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        key="treat-arrest",
        button="1. Treat a man whose testis makes too little RA",
        phenotype="maturation_arrest",
        regimen="20 mg bid for 180 d",
        look_for=(
            "Testis RA and STRA8 rise within days of the first dose, but sperm in the semen rise only about "
            "two months later, and fall again a few months after the last dose."
        ),
    ),
    Experiment(
        key="no-germ-cells",
        button="2. Same drug, but no germ cells (Sertoli-cell-only)",
        phenotype="sertoli_cell_only_complete",
        regimen="20 mg bid for 180 d",
        look_for=(
            "RA and STRA8 rise just as in experiment 1, yet no sperm appear: there are no germ cells for RA "
            "to restart, so the semen stays empty."
        ),
    ),
    Experiment(
        key="meiotic-block",
        button="3. Same drug, a block RA cannot fix",
        phenotype="maturation_arrest_meiotic",
        regimen="20 mg bid for 180 d",
        look_for=(
            "RA is normal here and rises on the drug, but the germ cells cannot finish meiosis for another "
            "reason (for example a genetic defect), so more RA does not help."
        ),
    ),
)

#: The panels' titles on the page, by column (``"foci"`` for the foci panel).
PANEL_TITLES: Mapping[str, str] = MappingProxyType(
    {
        C.PLASMA_ISOTRETINOIN: "Isotretinoin in the blood (ng/mL): day's mean and range",
        C.TESTIS_ATRA: "Retinoic acid in the testis (all-trans RA, nM)",
        C.STRA8: "STRA8, the RA switch in germ cells (1 = healthy)",
        C.BTB_INTEGRITY: "Blood-testis barrier: how tightly sealed (0-1)",
        C.SPERMIATION_EFFICIENCY: "Spermiation: share of sperm released (0-1)",
        C.EJACULATE_CONCENTRATION: "Sperm in the semen (million/mL, log scale)",
        "foci": "Foci: tubules holding sperm, and the chance surgery finds sperm",
    }
)
#: The help behind the (?) of each panel, by the panel's column (``"foci"`` for the foci panel).
PANEL_HELP: Mapping[str, str] = MappingProxyType(
    {
        C.PLASMA_ISOTRETINOIN: (
            "Isotretinoin (13-cis-retinoic acid) in the blood, ng/mL. Taken by mouth, it peaks a few hours after "
            "each dose and falls with a half-life of about 10-20 hours, so it swings within every day; food "
            "raises absorption 1.5-2-fold. Line: the day's mean; band: lowest to highest within the day."
        ),
        C.TESTIS_ATRA: (
            "All-trans retinoic acid (RA) in the testis, nM: the signal itself. Sertoli and germ cells take up "
            "vitamin A (retinol) through STRA6 and turn it into RA (RDH10, then ALDH1A); CYP26 enzymes break RA "
            "down. Isotretinoin reaches the testis and partly turns into all-trans RA."
        ),
        C.STRA8: (
            "STRA8 ('stimulated by retinoic acid 8') is a gene that RA switches on in germ cells. It is the switch "
            "for spermatogonia to start differentiating and for spermatocytes to enter meiosis; without it germ "
            "cells stay arrested or die. 1 = a healthy testis."
        ),
        C.BTB_INTEGRITY: (
            "The blood-testis barrier (BTB): tight junctions between Sertoli cells that seal off the inner part "
            "of the tubule where meiosis happens. Young spermatocytes must cross it; RA opens it briefly for them. "
            "With too little RA it stays rigid (values near 1) and the trapped cells die."
        ),
        C.SPERMIATION_EFFICIENCY: (
            "Spermiation: the release of finished sperm from the Sertoli cells into the tubule. It needs RA made "
            "by the Sertoli cells; with too little RA the sperm are kept and digested, so the semen stays empty "
            "although sperm were made. Share released, 0 to 1."
        ),
        C.EJACULATE_CONCENTRATION: (
            "Sperm per mL of semen, on a log scale. Making a sperm takes about 74 days and the passage through the "
            "epididymis 12-20 more, so changes show here months after they happen in the testis. Dotted lines: "
            "the lowest level a search of the centrifuged pellet can find (below it: none detectable, "
            "azoospermia), the lowest a fresh count can find, and the WHO lower limit of normal."
        ),
        "foci": (
            "NOA testes are mosaics: sperm production survives in small foci among empty tubules. Green: the share "
            "of tubule regions holding mature sperm. The other lines: the chance that surgery finds sperm, with a "
            "few random biopsies (conventional TESE) or with micro-TESE, which picks the fuller tubules under a "
            "microscope."
        ),
    }
)


def phenotype_name(name: str, phenotype: Phenotype) -> str:
    """Return a preset's plain name: from :data:`PHENOTYPE_NAMES`, else the first clause of its description.

    Args:
        name: Preset id (models/phenotypes.toml).
        phenotype: The preset.

    Returns:
        E.g. ``"Hypospermatogenesis"`` (from "Hypospermatogenesis: sparse, complete foci ...").
    """
    if name in PHENOTYPE_NAMES:
        return PHENOTYPE_NAMES[name]
    first = phenotype.description.split(":")[0].split(". ")[0].strip().rstrip(".")
    return first or name.replace("_", " ").capitalize()


def regimen_words(text: str | None) -> str:
    """Return a regimen in words, e.g. ``"20 mg twice daily for 180 days"``; ``"no drug"`` for None.

    Args:
        text: Regimen text (``Regimen.parse``), or None.

    Raises:
        RegimenParseError: If ``text`` cannot be read.
    """
    if text is None:
        return "no drug"
    regimen = Regimen.parse(text)
    if regimen.dose_mg is not None:
        dose = f"{regimen.dose_mg:g} mg"
    else:
        dose = f"{regimen.dose_mg_per_kg_day:g} mg/kg a day ({regimen.body_weight_kg:g} kg)"
    how = INTERVAL_WORDS.get(regimen.interval_h, f"every {regimen.interval_h:g} hours")
    words = f"{dose} {how}"
    if regimen.duration_d is not None:
        words += f" for {regimen.duration_d:g} days"
    elif regimen.n_doses is not None:
        words += f", {regimen.n_doses} doses"
    if regimen.start_d:
        words += f" from day {regimen.start_d:g}"
    if regimen.fed:
        words += ", with food"
    return words
