"""Population ABC: fit between-man spreads to clinical summaries with pyABC and keep the weighted posterior.

One job: approximate Bayesian computation (ABC-SMC, :mod:`pyabc`) of the population stage. The problem is
data (``models/population_abc.toml``): which spreads of ``models/population.toml`` are fitted (each named
or a histology's median, named as :func:`ra_model.studies.population.value_id` names them, each with its prior),
the targets fitted (``role = "fit"``: response rate by histology on the trial regimen, sperm retrieval by
micro-TESE, prevalence of azoospermia) and the published numbers kept out of the fit as checks
(``role = "check"``, e.g. the Jessup 2025 trial's 11/30 and 6/11).

A candidate's summary statistics come from simulated men (:class:`CohortSimulator`): the same men at every
candidate (common random numbers: each man's z draws depend only on the seed, his histology and index, so
only the spreads change), run on the sweep engine's fast path (:func:`ra_model.studies.sweep.run_sweep`,
warm worker processes), read as the cohort reads its men: simulated semen analyses (laboratory measurements,
seeded per man and day) and the trial's screening and responder rule (:func:`ra_model.studies.clinical.measure`,
:func:`~ra_model.studies.clinical.classify_measured`), and the retrieval readouts (:mod:`ra_model.studies.retrieval`).

The acceptance is pyABC's stochastic acceptor with an independent normal kernel: a simulated statistic is
taken as its target plus normal noise of variance ``sd**2`` (the target's documented uncertainty) plus the
sampling variance of the simulated cohort (:func:`kernel_variances`), and the temperature falls to 1 at the
last generation, so the last population samples the posterior of that noise model (Wilkinson 2013; pyABC's
``Temperature``). A candidate is accepted with its density over the highest density found so far (pyABC's
``pdf_norm_max_found``), not over the density of a perfect fit, which no candidate may reach when the targets
pull apart: the acceptance rate stays workable and the importance weights keep the posterior the same.
The weighted particles are written to ``models/population_posterior.csv`` with a header saying what they
were fitted to; :func:`read_posterior` reads them back for the cohort runs' uncertainty bands.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import logging
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from ra_model.errors import InvalidValueError, SimulationFailedError, UnknownNameError
from ra_model.model import semen
from ra_model.model.source import model_dir
from ra_model.studies import clinical, retrieval
from ra_model.studies.experiments import Experiment, experiments_dir, load_experiment, regimen_for_weight
from ra_model.studies.population import (
    BODY_WEIGHT_KG,
    HISTOLOGY,
    SPREAD,
    Population,
    check_mix,
    draw_patients,
    load_population,
    parse_value_id,
)

log = logging.getLogger(__name__)

#: File of the ABC problem (parameters, targets, checks) in the model directory.
PROBLEM_FILE = "population_abc.toml"
#: File of the weighted posterior particles in the model directory.
POSTERIOR_FILE = "population_posterior.csv"
#: File in the ABC's output folder where each candidate that failed to simulate is recorded (one line each).
ERRORS_FILE = "abc_failures.txt"
#: Posterior column holding each particle's normalised weight (the other columns are spread names).
WEIGHT = "weight"
#: Lines of the posterior file's header start with this (``pandas.read_csv(comment="#")`` skips them).
COMMENT = "#"

#: Target role: enters the ABC distance.
FIT = "fit"
#: Target role: simulated beside the posterior and reported, never fitted.
CHECK = "check"
ROLES = (FIT, CHECK)

#: Statistic: eligible men of a histology (or ``overall``: the setting's mix) who respond, 0-1.
RESPONSE_RATE = "response_rate"
#: Statistic: mean micro-TESE chance at baseline among men with no sperm in a fresh count at baseline (on both
#: baseline analyses: azoospermic, or sperm only in the centrifuged pellet), 0-1.
MICRO_TESE = "micro_tese"
#: Statistic: mean conventional-TESE chance at baseline among the same men, 0-1.
CONVENTIONAL_TESE = "conventional_tese"
#: Statistic: micro-TESE over conventional-TESE chance (the two statistics above, as a ratio).
MICRO_OVER_CONVENTIONAL = "micro_over_conventional"
#: Statistic: share of men with no sperm seen in either baseline analysis (pellet included), 0-1.
AZOOSPERMIC_SHARE = "azoospermic_share"
STATISTICS = (RESPONSE_RATE, MICRO_TESE, CONVENTIONAL_TESE, MICRO_OVER_CONVENTIONAL, AZOOSPERMIC_SHARE)
#: Statistics in [0, 1] over a cohort's men (their sampling variance is added to the kernel's).
_BOUNDED = frozenset({RESPONSE_RATE, AZOOSPERMIC_SHARE, MICRO_TESE, CONVENTIONAL_TESE})
#: Group of a response rate over the setting's whole histology mix.
OVERALL = "overall"
#: A statistic that cannot be computed (no eligible man) takes this value, far from every target.
NO_VALUE = -1.0
#: Days an untreated man is simulated (his baseline analyses, screening day and day 0, read day 0).
UNTREATED_D = 1.0
#: Baseline category of a man with no sperm seen in either baseline analysis, pellet included (NOA).
_AZOOSPERMIC = semen.CATEGORIES[semen.AZOOSPERMIA]
#: Baseline categories of men with no sperm in a fresh count (azoospermic, or sperm only in the pellet): the men
#: for whom surgical retrieval is the question, as the trial's 26 NOA and 4 cryptozoospermic men.
_NO_FRESH_SPERM = (_AZOOSPERMIC, semen.CATEGORIES[semen.CRYPTOZOOSPERMIA])

# Columns of the check table (:func:`check_table`) and of the report's tables.
#: Target id.
TARGET = "target"
#: ``fit`` or ``check``.
ROLE = "role"
#: Statistic name.
STATISTIC = "statistic"
#: Histology or mix.
GROUP = "group"
#: The published (or assumed) value.
VALUE = "value"
#: Median of the statistic simulated over posterior draws.
SIM_MEDIAN = "simulated_median"
#: 2.5th percentile of the statistic over posterior draws.
SIM_LOW = "simulated_2.5%"
#: 97.5th percentile of the statistic over posterior draws.
SIM_HIGH = "simulated_97.5%"
#: Columns of the posterior summary (:func:`posterior_summary`).
PARAMETER, PRIOR_LOW, PRIOR_HIGH, POST_MEDIAN, POST_LOW, POST_HIGH = (
    "parameter",
    "prior_low",
    "prior_high",
    "posterior_median",
    "posterior_2.5%",
    "posterior_97.5%",
)

_TOP_KEYS = frozenset({"setting", "parameters", "mixes", "targets"})
_TARGET_KEYS = frozenset({"id", "role", "statistic", "group", "value", "sd", "n", "source"})
_MIX_KEYS = frozenset({"shares", "source"})


@dataclass(frozen=True, kw_only=True)
class Target:
    """One clinical summary: fitted (``role = "fit"``) or quoted as a check (``role = "check"``).

    Attributes:
        id: Row id (unique in the problem).
        role: ``fit`` or ``check``.
        statistic: One of :data:`STATISTICS`.
        group: A histology (phenotype preset), a mix name of the problem or, for a response rate, ``overall``.
        value: The published or assumed value.
        sd: Its uncertainty (standard deviation; required for fitted rows).
        n: Men behind a published count (checks; None if not a count).
        source: Citation, or what was assumed.
    """

    id: str
    role: str
    statistic: str
    group: str
    value: float
    source: str
    sd: float | None = None
    n: int | None = None

    def __post_init__(self) -> None:
        """Check role, statistic, value and (for a fitted row) its sd."""
        if self.role not in ROLES:
            raise InvalidValueError(f"target {self.id!r}: role = {self.role!r}; use 'fit' or 'check'")
        if self.statistic not in STATISTICS:
            raise InvalidValueError(
                f"target {self.id!r}: statistic = {self.statistic!r}; use one of {', '.join(STATISTICS)}"
            )
        if not isinstance(self.value, int | float) or not math.isfinite(self.value) or self.value < 0:
            raise InvalidValueError(f"target {self.id!r}: value = {self.value!r}; use a finite number >= 0")
        if self.role == FIT and (self.sd is None or not math.isfinite(self.sd) or self.sd <= 0):
            raise InvalidValueError(f"target {self.id!r} is fitted but has sd = {self.sd!r}; give its sd (> 0)")
        if not self.source.strip():
            raise InvalidValueError(f"target {self.id!r} has no source; cite one or write what was assumed")


#: Prior scale: uniform on the value.
UNIFORM = "uniform"
#: Prior scale: uniform on the log of the value (for a median spanning orders of magnitude).
LOGUNIFORM = "loguniform"
_PARAMETER_KEYS = frozenset({"id", "lower", "upper", "scale", "source"})


@dataclass(frozen=True, kw_only=True)
class Prior:
    """The prior of one fitted population value.

    Attributes:
        lower: Lowest value.
        upper: Highest value.
        scale: :data:`UNIFORM` or :data:`LOGUNIFORM`.
        source: Where the range comes from (a spread's fit range in ``models/population.toml``, or why).
    """

    lower: float
    upper: float
    scale: str = UNIFORM
    source: str = ""

    def __post_init__(self) -> None:
        """Check the range is ordered (and positive on the log scale) and the scale known."""
        if self.scale not in (UNIFORM, LOGUNIFORM):
            raise InvalidValueError(f"prior scale {self.scale!r}; use {UNIFORM!r} or {LOGUNIFORM!r}")
        low = 0 if self.scale == UNIFORM else 1e-300
        if not (math.isfinite(self.lower) and math.isfinite(self.upper) and low <= self.lower < self.upper):
            raise InvalidValueError(
                f"prior [{self.lower}, {self.upper}] ({self.scale}); use 0 <= lower < upper "
                "(lower > 0 on the log scale)"
            )

    def rv(self) -> Any:
        """Return the prior as a pyABC random variable."""
        import pyabc  # type: ignore[import-untyped]

        if self.scale == LOGUNIFORM:
            return pyabc.RV("loguniform", self.lower, self.upper)
        return pyabc.RV("uniform", self.lower, self.upper - self.lower)


@dataclass(frozen=True, kw_only=True)
class AbcProblem:
    """What the population ABC fits, to what, in which setting.

    Attributes:
        parameters: Population values fitted (:func:`ra_model.studies.population.value_id`).
        priors: Prior per value.
        targets: Fitted rows and checks.
        mixes: Histology mixes by name (shares summing to 1).
        setting: The cohort experiment whose regimen, visits, responder rule, overrides and histology mix
            (for ``overall``) define the response rates.
        population: The population the spreads are changed in (the other spreads stay as they are).
        path: The problem file (None if built in code).
    """

    parameters: tuple[str, ...]
    priors: Mapping[str, Prior]
    targets: tuple[Target, ...]
    mixes: Mapping[str, Mapping[str, float]]
    setting: Experiment
    population: Population
    path: Path | None = None

    def __post_init__(self) -> None:
        """Check the parameters, priors, target ids and groups fit together."""
        if not self.parameters or len(set(self.parameters)) != len(self.parameters):
            raise InvalidValueError(f"ABC parameters {list(self.parameters)!r}; list one or more distinct spreads")
        for name in self.parameters:
            parse_value_id(name, self.population)
            if name not in self.priors:
                raise InvalidValueError(f"ABC parameter {name!r} has no prior range")
        ids = [t.id for t in self.targets]
        if len(set(ids)) != len(ids):
            raise InvalidValueError(f"ABC target ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
        if not any(t.role == FIT for t in self.targets):
            raise InvalidValueError("the ABC problem has no target with role = 'fit'; nothing to fit")
        for t in self.targets:
            self.histologies_of(t)
        object.__setattr__(self, "priors", MappingProxyType(dict(self.priors)))
        object.__setattr__(
            self, "mixes", MappingProxyType({k: MappingProxyType(dict(v)) for k, v in self.mixes.items()})
        )

    @property
    def fitted(self) -> tuple[Target, ...]:
        """The rows that enter the distance."""
        return tuple(t for t in self.targets if t.role == FIT)

    @property
    def checks(self) -> tuple[Target, ...]:
        """The rows quoted as checks."""
        return tuple(t for t in self.targets if t.role == CHECK)

    def weights_of(self, target: Target) -> dict[str, float]:
        """Return the histologies a target is read over, with their weights (one histology: weight 1)."""
        if target.group == OVERALL:
            if target.statistic != RESPONSE_RATE:
                raise InvalidValueError(f"target {target.id!r}: group 'overall' is for response rates only")
            return dict(self.setting.histology_mix)
        if target.group in self.mixes:
            return dict(self.mixes[target.group])
        return {target.group: 1.0}

    def histologies_of(self, target: Target) -> list[str]:
        """Return the histologies a target needs simulated (checked against the phenotype presets)."""
        from ra_model.model.phenotypes import load_phenotypes

        presets = load_phenotypes()
        names = list(self.weights_of(target))
        for name in names:
            if name not in presets:
                raise UnknownNameError(
                    "histology or mix", name, [*presets, *self.mixes, OVERALL], where=f"ABC target {target.id!r}"
                )
        return names

    def prior_box(self) -> dict[str, tuple[float, float]]:
        """Return the prior range of every fitted spread, in the order of :attr:`parameters`."""
        return {name: (self.priors[name].lower, self.priors[name].upper) for name in self.parameters}


def load_problem(
    path: Path | None = None, *, population: Population | None = None, setting: Experiment | None = None
) -> AbcProblem:
    """Read the ABC problem file.

    Args:
        path: A TOML file; defaults to the shipped ``models/population_abc.toml``.
        population: The population the spreads are changed in; defaults to ``models/population.toml``.
        setting: The cohort experiment of the response rates; defaults to the file's ``setting``
            (an experiment id in ``experiments/``).

    Returns:
        The problem; each prior is its entry's ``fit_lower``..``fit_upper``.

    Raises:
        InvalidValueError: Unknown key, a bad target, a mix that does not sum to 1, a spread that is not
            marked uncertain, or a setting that is not a cohort (each naming the file).
        UnknownNameError: A spread, histology or setting that does not exist.
    """
    path = path or model_dir() / PROBLEM_FILE
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidValueError(f"{path}: not valid TOML ({exc}); fix the file") from exc
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise InvalidValueError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    population = population or load_population()
    if setting is None:
        name = str(data.get("setting", ""))
        file = experiments_dir() / f"{name}.toml"
        if not name or not file.exists():
            raise InvalidValueError(f"{path}: setting = {name!r} names no experiment in {experiments_dir()}")
        setting = load_experiment(file)
    if setting.kind != "cohort":
        raise InvalidValueError(f"{path}: the setting {setting.id!r} is a {setting.kind!r} experiment; name a cohort")
    entries = data.get("parameters", [])
    if not isinstance(entries, list):
        raise InvalidValueError(f"{path}: parameters must be a list of [[parameters]] tables with an id")
    parameters: list[str] = []
    priors: dict[str, Prior] = {}
    for i, body in enumerate(entries):
        body = {"id": body} if isinstance(body, str) else body
        if not isinstance(body, dict) or "id" not in body or set(body) - _PARAMETER_KEYS:
            raise InvalidValueError(
                f"{path}: parameters[{i}] = {body!r}; give id and optionally lower, upper, scale, source "
                f"(allowed keys: {sorted(_PARAMETER_KEYS)})"
            )
        name = str(body["id"])
        try:
            kind = parse_value_id(name, population)[1]
            if kind == SPREAD and "lower" not in body and "upper" not in body:
                low, high = population.fit_range(name)
                source = str(body.get("source", "the entry's fit range in models/population.toml"))
            elif "lower" in body and "upper" in body:
                low, high = float(body["lower"]), float(body["upper"])
                source = str(body.get("source", ""))
                if not source.strip():
                    raise InvalidValueError(f"parameter {name!r}: its prior range has no source; cite one or say why")
            else:
                raise InvalidValueError(f"parameter {name!r}: give both lower and upper (a median needs them)")
            priors[name] = Prior(lower=low, upper=high, scale=str(body.get("scale", UNIFORM)), source=source)
        except InvalidValueError as exc:
            raise InvalidValueError(f"{path}: parameters[{i}]: {exc}") from exc
        parameters.append(name)
    mixes: dict[str, dict[str, float]] = {}
    for name, body in data.get("mixes", {}).items():
        bad = set(body) - _MIX_KEYS
        if bad or "shares" not in body or not str(body.get("source", "")).strip():
            raise InvalidValueError(f"{path}: [mixes.{name}] needs 'shares' and 'source' (and nothing else)")
        mixes[name] = check_mix(body["shares"], where=f"{path}: [mixes.{name}]")
    targets = []
    for i, body in enumerate(data.get("targets", [])):
        bad = set(body) - _TARGET_KEYS
        if bad:
            raise InvalidValueError(
                f"{path}: targets[{i}] has unknown key(s) {sorted(bad)}; allowed: {sorted(_TARGET_KEYS)}"
            )
        try:
            targets.append(
                Target(
                    id=str(body["id"]),
                    role=str(body["role"]),
                    statistic=str(body["statistic"]),
                    group=str(body["group"]),
                    value=float(body["value"]),
                    sd=float(body["sd"]) if "sd" in body else None,
                    n=int(body["n"]) if "n" in body else None,
                    source=str(body.get("source", "")),
                )
            )
        except KeyError as exc:
            raise InvalidValueError(f"{path}: targets[{i}] lacks {exc.args[0]!r}") from None
        except (InvalidValueError, TypeError, ValueError) as exc:
            raise InvalidValueError(f"{path}: targets[{i}]: {exc}") from exc
    try:
        return AbcProblem(
            parameters=tuple(parameters),
            priors=priors,
            targets=tuple(targets),
            mixes=mixes,
            setting=setting,
            population=population,
            path=path,
        )
    except InvalidValueError as exc:
        raise InvalidValueError(f"{path}: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class SimulationSize:
    """How the candidates' men are simulated.

    Attributes:
        men: Men per histology (the same men at every candidate).
        n_classes: Focus classes of the testis.
        seed: Population seed of the men (another seed than the setting's, so the checks' men are others).
        workers: Worker processes of the sweep (None: all cores; 1: in this process).
    """

    men: int = 100
    n_classes: int = 4
    seed: int = 16
    workers: int | None = None

    def __post_init__(self) -> None:
        """Check the sizes are whole numbers in range."""
        for name, value, low in (("men", self.men, 1), ("n_classes", self.n_classes, 1), ("seed", self.seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidValueError(f"{name} = {value!r}; use a whole number >= {low}")


class CohortSimulator:
    """The summary statistics of a candidate: its spreads applied, the same men simulated, the targets read.

    Men of every histology a target needs are drawn once per call with the candidate's population; men of
    histologies with a response-rate target are treated with the setting's regimen (the others run
    untreated: their baseline is all that is read). Calling the simulator with the same values gives the
    same statistics (common random numbers, a deterministic model).
    """

    def __init__(self, problem: AbcProblem, targets: Sequence[Target], size: SimulationSize) -> None:
        """Prepare the simulation of ``targets`` (fitted rows, checks or both) of ``problem``."""
        self.problem = problem
        self.targets = tuple(targets)
        self.size = size
        self.treated: list[str] = []
        self.untreated: list[str] = []
        for t in self.targets:
            for h in problem.histologies_of(t):
                if t.statistic == RESPONSE_RATE and h not in self.treated:
                    self.treated.append(h)
        for t in self.targets:
            for h in problem.histologies_of(t):
                if h not in self.treated and h not in self.untreated:
                    self.untreated.append(h)
        self.evaluations = 0

    def men(self, values: Mapping[str, float]) -> pd.DataFrame:
        """Return the samples table of one candidate: every needed histology's men, with their regimens."""
        setting = self.problem.setting
        population = self.problem.population.with_values(values)
        frames = []
        for h in [*self.treated, *self.untreated]:
            men = draw_patients(population, h, range(self.size.men), seed=self.size.seed, overrides=setting.overrides)
            treated = h in self.treated
            men["regimen"] = [regimen_for_weight(setting.regimen if treated else None, w) for w in men[BODY_WEIGHT_KG]]
            frames.append(men)
        samples = pd.concat(frames, ignore_index=True)
        for name, value in setting.overrides.items():
            if name not in samples.columns:
                samples[name] = value
        return samples

    def simulate(self, values: Mapping[str, float]) -> pd.DataFrame:
        """Simulate one candidate's men and return one row per man read as the cohort reads its men.

        Treated men run over the setting's time with semen analyses at its visits; untreated men (read at
        baseline only) run one day. Both on the fast path, ``size.n_classes`` focus classes. Every man's
        analyses are then simulated as laboratory measurements (:func:`ra_model.studies.clinical.measure`,
        seeded by the population seed, the man and the day, so the same man gets the same analyses at every
        candidate) and read by the setting's rule (:func:`ra_model.studies.clinical.classify_measured`): the
        baseline confirmed on two analyses, response on consecutive positive analyses.

        Raises:
            SimulationFailedError: More than a tenth of the men failed (the first failure is named).
        """
        setting = self.problem.setting
        samples = self.men(values)
        treated = samples["regimen"] != ""
        parts = []
        for chosen, t_end_d, visits in (
            (treated, setting.t_end_d, setting.visit_days),
            (~treated, UNTREATED_D, (0.0, UNTREATED_D)),
        ):
            if not chosen.any():
                continue
            metrics = {
                clinical.METRIC: functools.partial(clinical.semen_analyses, visit_days=visits),
                retrieval.METRIC: retrieval.retrieval_readouts,
            }
            table = self._sweep(samples[chosen], metrics, t_end_d)
            measured, analyses = clinical.measure(table, seed=self.size.seed, window_d=(0.0, t_end_d))
            parts.append(clinical.classify_measured(measured, analyses, setting.response))
        self.evaluations += 1
        return pd.concat(parts, ignore_index=True)

    def _sweep(self, samples: pd.DataFrame, metrics: Mapping[str, Any], t_end_d: float) -> pd.DataFrame:
        """Run men on the sweep engine's fast path; drop (and log) failed men, stop if more than a tenth fail."""
        from ra_model.studies.sweep import run_sweep

        table = run_sweep(
            samples.reset_index(drop=True),
            metrics=metrics,
            t_end_d=t_end_d,
            output_step_d=self.problem.setting.output_step_d,
            fast=True,
            n_classes=self.size.n_classes,
            workers=self.size.workers,
            progress=False,
        )
        ok = table["status"] == "ok"
        if (~ok).sum() > 0.1 * len(table):
            first = table[~ok].iloc[0]
            raise SimulationFailedError(
                f"{int((~ok).sum())} of {len(table)} men failed in the population ABC; first "
                f"{first['sample_id']}: {first['message']}"
            )
        if (~ok).any():
            log.warning("%d of %d men failed; left out of the statistics", int((~ok).sum()), len(table))
        return table[ok].reset_index(drop=True)

    def __call__(self, values: Mapping[str, float]) -> dict[str, float]:
        """Return every target's simulated statistic at the candidate ``values`` (spread name to value)."""
        table = self.simulate(values)
        return {t.id: self.statistic(table, t) for t in self.targets}

    def statistic(self, table: pd.DataFrame, target: Target) -> float:
        """Read one target's statistic from a simulated candidate's table (:data:`NO_VALUE` if it has no men)."""
        weights = self.problem.weights_of(target)
        per: dict[str, float] = {}
        for h, w in weights.items():
            if w == 0:
                continue
            men = table[table[HISTOLOGY] == h]
            per[h] = _one_histology(men, target.statistic, h in self.treated)
        if any(math.isnan(v) for v in per.values()):
            return NO_VALUE
        if target.statistic == MICRO_OVER_CONVENTIONAL:
            micro = sum(weights[h] * _one_histology(table[table[HISTOLOGY] == h], MICRO_TESE, False) for h in per)
            conv = sum(weights[h] * _one_histology(table[table[HISTOLOGY] == h], CONVENTIONAL_TESE, False) for h in per)
            return micro / conv if conv > 0 else NO_VALUE
        return float(sum(weights[h] * v for h, v in per.items()))


def _one_histology(men: pd.DataFrame, statistic: str, treated: bool) -> float:
    """Return a statistic over one histology's simulated men (NaN when no man qualifies)."""
    category = men[clinical.BASELINE_CATEGORY]
    azoospermic = (category == _AZOOSPERMIC).to_numpy()
    candidates = category.isin(_NO_FRESH_SPERM).to_numpy()  # retrieval is the question for these men
    if statistic == RESPONSE_RATE:
        if not treated:
            return math.nan
        eligible = men[men[clinical.ELIGIBLE].astype(bool)]
        return float(eligible[clinical.RESPONDER].astype(bool).mean()) if len(eligible) else math.nan
    if statistic == AZOOSPERMIC_SHARE:
        return float(azoospermic.mean()) if len(men) else math.nan
    if statistic == MICRO_OVER_CONVENTIONAL:
        return 1.0 if candidates.any() else math.nan
    key = retrieval.MICRO_TESE_BASELINE if statistic == MICRO_TESE else retrieval.CONVENTIONAL_TESE_BASELINE
    chances = men[retrieval.column(key)].to_numpy(dtype=float)[candidates]
    return float(chances.mean()) if len(chances) else math.nan


@dataclass(frozen=True, kw_only=True)
class AbcSettings:
    """Sizes and seeds of an ABC-SMC run.

    Attributes:
        population_size: Particles per generation.
        generations: Generations (the temperature reaches 1 at the last).
        size: How each candidate's men are simulated.
        seed: Seed of pyABC's sampling (numpy's global generator, which pyABC draws from).
        workers: Candidates simulated at once, each in its own process (pyABC's multicore sampler, each
            candidate's sweep then in that process); 1 simulates one candidate at a time on
            ``size.workers`` sweep workers, and only then is the run reproducible to the last particle
            (with more, which candidates finish first depends on timing).
        max_minutes: Stop after the first generation that ends past this wall time (None: no limit). The
            posterior is then the last finished generation's, at a temperature above 1 (wider than the
            posterior; the report says so); ``run_abc(..., resume=True)`` carries on from it.
    """

    population_size: int = 50
    generations: int = 4
    size: SimulationSize = field(default_factory=SimulationSize)
    seed: int = 1
    workers: int = 1
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        """Check the sizes are whole numbers in range."""
        for name, value, low in (
            ("population_size", self.population_size, 2),
            ("generations", self.generations, 1),
            ("workers", self.workers, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidValueError(f"{name} = {value!r}; use a whole number >= {low}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise InvalidValueError(f"seed = {self.seed!r}; use a whole number in [0, 2**32)")
        if self.max_minutes is not None and (
            isinstance(self.max_minutes, bool)
            or not isinstance(self.max_minutes, int | float)
            or not 0 < self.max_minutes < math.inf
        ):
            raise InvalidValueError(f"max_minutes = {self.max_minutes!r}; use a number of minutes > 0, or None")


@dataclass(frozen=True, kw_only=True)
class AbcResult:
    """What an ABC-SMC run produced.

    Attributes:
        problem: The problem fitted.
        settings: Sizes and seeds.
        posterior: One row per particle of the last generation: a column per fitted spread and
            :data:`WEIGHT` (normalised).
        generations: One row per generation: ``t``, ``epsilon`` (the temperature), ``samples`` (candidates
            simulated), ``particles``, ``ess`` (effective sample size).
        observed: The fitted targets' values, by id.
        database: The pyABC database (sqlite URL).
        evaluations: Candidates simulated.
        elapsed_s: Wall time of the run, seconds.
    """

    problem: AbcProblem
    settings: AbcSettings
    posterior: pd.DataFrame
    generations: pd.DataFrame
    observed: Mapping[str, float]
    database: str
    evaluations: int
    elapsed_s: float

    @property
    def final_temperature(self) -> float:
        """The last generation's temperature: 1 when the particles sample the posterior, above 1 if stopped early."""
        return float(self.generations["epsilon"].iloc[-1]) if len(self.generations) else math.inf

    @property
    def converged(self) -> bool:
        """Whether the run reached temperature 1 (its last generation samples the posterior)."""
        return self.final_temperature <= 1.0 + 1e-9


def kernel_variances(problem: AbcProblem, simulator: CohortSimulator) -> dict[str, float]:
    """Return each fitted target's kernel variance: ``sd**2`` plus the sampling variance of the simulated statistic.

    A share of men, or a mean of per-man chances in [0, 1], over ``men`` men of each histology has a sampling
    variance of at most ``p (1 - p) / men`` (p the target's value; exact for a share), and a mix's weighted mean
    ``sum(w**2) p (1 - p) / men``; a ratio adds none.
    """
    out = {}
    for t in problem.fitted:
        assert t.sd is not None
        var = t.sd**2
        if t.statistic in _BOUNDED:
            p = min(max(t.value, 0.01), 0.99)
            weights = problem.weights_of(t)
            var += sum(w**2 for w in weights.values()) * p * (1 - p) / simulator.size.men
        out[t.id] = var
    return out


def run_abc(
    problem: AbcProblem, *, out_dir: Path, settings: AbcSettings | None = None, resume: bool = False
) -> AbcResult:
    """Fit the problem's spreads by ABC-SMC (pyABC) and return the weighted posterior.

    The run stops when the temperature reaches 1 (at generation ``settings.generations``, counted from the
    first) or after ``settings.max_minutes``, whichever comes first; a stopped or killed run keeps its finished
    generations in ``out_dir/abc.db``, and ``resume=True`` carries on from the last of them.

    Args:
        problem: Parameters, priors, targets and setting.
        out_dir: Folder for pyABC's sqlite database (``abc.db``; created; a new run is added to an
            existing database).
        settings: Sizes and seeds.
        resume: Carry on the last run in ``out_dir/abc.db`` (same problem and sizes) instead of starting anew.

    Raises:
        InvalidValueError: ``resume`` without a database holding a run of the same fitted values and targets.
        SimulationFailedError: A candidate failed to simulate (its error and the kept database are named).

    Returns:
        The posterior particles, the generations' history and the run's numbers.
    """
    import time

    import pyabc

    from ra_model.studies.sweep import worker_engine

    settings = settings or AbcSettings()
    out_dir.mkdir(parents=True, exist_ok=True)
    if settings.workers > 1:
        sampler = pyabc.sampler.MulticoreEvalParallelSampler(n_procs=settings.workers)
        size = dataclasses.replace(settings.size, workers=1)
    else:
        sampler = pyabc.sampler.SingleCoreSampler()
        size = settings.size
    worker_engine(fast=True, n_classes=size.n_classes)  # compiled once here; forked processes start warm
    simulator = CohortSimulator(problem, problem.fitted, size)
    keys = [t.id for t in problem.fitted]
    names = list(problem.parameters)
    variances = kernel_variances(problem, simulator)

    errors = out_dir / ERRORS_FILE
    errors.unlink(missing_ok=True)

    def model(parameter: Mapping[str, float]) -> dict[str, float]:
        values = {name: float(parameter[name]) for name in names}
        try:
            stats = simulator(values)
        except Exception as exc:  # recorded for the main process: a dead pyABC worker says nothing of why
            with errors.open("a", encoding="utf-8") as handle:
                handle.write(f"candidate {_short(values)}: {type(exc).__name__}: {exc}\n")
            raise
        log.info("ABC candidate %s -> %s", _short(values), _short(stats))
        return stats

    prior = pyabc.Distribution(**{name: problem.priors[name].rv() for name in problem.parameters})
    kernel = pyabc.IndependentNormalKernel(var=[variances[k] for k in keys], keys=keys)
    abc = pyabc.ABCSMC(
        model,
        prior,
        kernel,
        population_size=settings.population_size,
        eps=pyabc.Temperature(),
        acceptor=pyabc.StochasticAcceptor(pdf_norm_method=pyabc.acceptor.pdf_norm_max_found),
        sampler=sampler,
    )
    observed = {t.id: float(t.value) for t in problem.fitted}
    database = f"sqlite:///{(out_dir / 'abc.db').resolve()}"
    np.random.seed(settings.seed)
    start = time.perf_counter()
    if resume:
        _load_for_resume(abc, out_dir / "abc.db", names=names, observed=observed)
    else:
        abc.new(database, observed)
    walltime = _dt.timedelta(minutes=settings.max_minutes) if settings.max_minutes is not None else None
    # the temperature schedule counts generations from the run's first, so a resumed run still reaches 1 at
    # `generations`, and minimum_epsilon = 1 (pyABC's own stop for a temperature) ends it there
    try:
        history = abc.run(max_nr_populations=settings.generations, minimum_epsilon=1.0, max_walltime=walltime)
    except Exception as exc:
        first = (
            errors.read_text(encoding="utf-8").splitlines()[0] if errors.is_file() else f"{type(exc).__name__}: {exc}"
        )
        raise SimulationFailedError(
            f"the population ABC stopped: {first} (all failures in {errors}); the generations it finished are kept "
            f"in {out_dir / 'abc.db'} (pyabc.History). Fix the cause and run again"
        ) from exc
    elapsed = time.perf_counter() - start
    frame, weights = history.get_distribution(m=0, t=history.max_t)
    posterior = frame[names].reset_index(drop=True).astype(float)
    posterior[WEIGHT] = np.asarray(weights, dtype=float) / float(np.sum(weights))
    populations = history.get_all_populations()
    generations = pd.DataFrame(
        {
            "t": populations["t"].to_numpy(),
            "epsilon": populations["epsilon"].to_numpy(dtype=float),
            "samples": populations["samples"].to_numpy(),
            "particles": populations["particles"].to_numpy(),
        }
    )
    generations = generations[generations["t"] >= 0].reset_index(drop=True)
    generations["ess"] = [_ess(history.get_distribution(m=0, t=int(t))[1]) for t in generations["t"]]
    return AbcResult(
        problem=problem,
        settings=settings,
        posterior=posterior,
        generations=generations,
        observed=observed,
        database=database,
        evaluations=int(history.total_nr_simulations),
        elapsed_s=elapsed,
    )


def _load_for_resume(abc: Any, path: Path, *, names: Sequence[str], observed: Mapping[str, float]) -> None:
    """Load the last run of ``path`` into ``abc`` after checking it fitted the same values to the same targets."""
    import pyabc

    if not path.is_file():
        raise InvalidValueError(
            f"--resume: {path} does not exist; run without --resume to start the ABC in that folder"
        )
    history = pyabc.History(f"sqlite:///{path.resolve()}")
    if history.max_t < 0:
        raise InvalidValueError(f"--resume: {path} holds no finished generation; run without --resume to start anew")
    frame, _ = history.get_distribution(m=0, t=history.max_t)
    stored = history.observed_sum_stat()
    same_targets = set(stored) == set(observed) and all(
        math.isclose(float(np.asarray(stored[k]).ravel()[0]), v) for k, v in observed.items()
    )
    if sorted(frame.columns) != sorted(names) or not same_targets:
        raise InvalidValueError(
            f"--resume: {path} fitted {sorted(frame.columns)} to {dict(stored)}, not {sorted(names)} to "
            f"{dict(observed)}; resume with the problem that run used, or give another --out"
        )
    abc.load(f"sqlite:///{path.resolve()}", abc_id=history.id, observed_sum_stat=dict(observed))
    # pyABC keeps the temperatures in the epsilon object only: without them a resumed run would start its
    # schedule afresh (from a temperature above the last one) instead of carrying it on
    populations = history.get_all_populations()
    abc.eps.temperatures.update(
        {int(t): float(e) for t, e in zip(populations["t"], populations["epsilon"], strict=True) if t >= 0}
    )


def _ess(weights: np.ndarray) -> float:
    """Return the effective sample size of importance weights."""
    w = np.asarray(weights, dtype=float)
    return float(w.sum() ** 2 / (w**2).sum())


def _short(values: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:.3g}" for k, v in values.items()) + "}"


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """Return the ``q`` quantile (0-1) of weighted samples: the smallest value whose cumulative weight reaches q.

    With integer weights this is the quantile of the sample with each value repeated by its weight
    (numpy's ``inverted_cdf`` method).
    """
    order = np.argsort(values)
    v = np.asarray(values, dtype=float)[order]
    cdf = np.cumsum(np.asarray(weights, dtype=float)[order])
    cdf /= cdf[-1]
    return float(v[min(int(np.searchsorted(cdf, q - 1e-12, side="left")), len(v) - 1)])


def posterior_summary(posterior: pd.DataFrame, priors: Mapping[str, tuple[float, float]]) -> pd.DataFrame:
    """Return per fitted spread its prior range and posterior median and 95% interval (weighted)."""
    rows = []
    w = posterior[WEIGHT].to_numpy(dtype=float)
    for name, (low, high) in priors.items():
        v = posterior[name].to_numpy(dtype=float)
        rows.append(
            {
                PARAMETER: name,
                PRIOR_LOW: low,
                PRIOR_HIGH: high,
                POST_MEDIAN: weighted_quantile(v, w, 0.5),
                POST_LOW: weighted_quantile(v, w, 0.025),
                POST_HIGH: weighted_quantile(v, w, 0.975),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the posterior file
@dataclass(frozen=True, kw_only=True)
class Posterior:
    """Weighted posterior particles of population spreads, as the cohort runs draw from them.

    Attributes:
        particles: One row per particle: a column per spread name and :data:`WEIGHT` (normalised).
        header: The file's header lines (what was fitted, to what, when, by which command).
        path: The file read (None if built in code).
    """

    particles: pd.DataFrame
    header: tuple[str, ...] = ()
    path: Path | None = None

    @property
    def parameters(self) -> list[str]:
        """The spread names of the particles."""
        return [c for c in self.particles.columns if c != WEIGHT]

    def draw(self, n: int, *, seed: int) -> list[dict[str, float]]:
        """Return ``n`` particles resampled with replacement in proportion to their weights (seeded).

        Raises:
            InvalidValueError: ``n`` is not a whole number >= 1, or the seed is not a non-negative integer.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidValueError(f"posterior draws n = {n!r}; use a whole number >= 1")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InvalidValueError(f"seed = {seed!r}; use a non-negative integer")
        rng = np.random.default_rng(seed)
        w = self.particles[WEIGHT].to_numpy(dtype=float)
        picks = rng.choice(len(self.particles), size=n, replace=True, p=w / w.sum())
        names = self.parameters
        return [{name: float(self.particles[name].iloc[i]) for name in names} for i in picks]


def posterior_header(result: AbcResult, *, command: str) -> list[str]:
    """Return the header lines of a posterior file: fitted spreads, targets, checks left out, sizes, date, command."""
    problem, settings = result.problem, result.settings
    size = settings.size
    lines = [
        "Posterior of between-man spreads from the population ABC (ra_model/studies/abc_population.py):",
        "one row per particle of the last ABC-SMC generation, a column per fitted value",
        "(<parameter>.log_sd[.<phenotype>] or <parameter>.median.<phenotype>, ra_model.studies.population.value_id)",
        "and the particle's normalised weight. Draw with replacement in proportion to the weights",
        "(ra-model run FILE --uncertainty N does).",
        "fitted (prior): "
        + "; ".join(f"{name} ({p.scale} {p.lower:g}-{p.upper:g})" for name, p in problem.priors.items()),
        "fitted to (targets): "
        + "; ".join(f"{t.id} = {t.value:g} (sd {t.sd:g}, {t.statistic} of {t.group})" for t in problem.fitted),
        "checks (never fitted): " + "; ".join(f"{t.id} = {t.value:g}" for t in problem.checks),
        f"setting: experiments/{problem.setting.id}.toml (regimen, visits, responder rule); men per histology "
        f"{size.men}, {size.n_classes} focus classes, seed {size.seed}; fast path",
        f"ABC-SMC (pyabc, stochastic acceptor, temperature to 1): population {settings.population_size}, "
        f"generations {len(result.generations)}, {result.evaluations} candidates simulated, pyABC seed "
        f"{settings.seed}, {result.elapsed_s / 60:.1f} min",
        f"final temperature {result.final_temperature:.3g}: "
        + (
            "the particles sample the posterior"
            if result.converged
            else "PROVISIONAL, the run stopped before temperature 1 and the particles are wider than the posterior "
            "(carry on with ra-model calibrate-abc --resume)"
        ),
        f"date: {_dt.date.today().isoformat()}; command: {command}",
    ]
    return lines


def write_posterior(posterior: pd.DataFrame, path: Path, *, header: Sequence[str]) -> None:
    """Write weighted particles with a commented header (``# ...`` lines) above the CSV table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{COMMENT} {line}\n" for line in header)
    text += posterior.to_csv(index=False, float_format="%.6g")
    path.write_text(text, encoding="utf-8")


def read_posterior(path: Path | None = None, *, population: Population | None = None) -> Posterior:
    """Read a posterior file and check it can be applied to ``population``.

    Args:
        path: The file; defaults to the shipped ``models/population_posterior.csv``.
        population: The population its spreads are applied to; defaults to ``models/population.toml``.

    Returns:
        The particles (weights normalised) and the header lines.

    Raises:
        InvalidValueError: A missing or unreadable file, no :data:`WEIGHT` column, no particle, a weight
            that is negative or not a number, a spread value that is not a finite number >= 0, or a column
            that names no spread of the population (each naming the file and the fix).
    """
    path = path or model_dir() / POSTERIOR_FILE
    fix = "give the file written by `ra-model calibrate-abc` (models/population_posterior.csv)"
    if not path.is_file():
        raise InvalidValueError(f"posterior file {path} does not exist; {fix}")
    try:
        text = path.read_text(encoding="utf-8")
        header = tuple(line[len(COMMENT) :].strip() for line in text.splitlines() if line.startswith(COMMENT))
        table = pd.read_csv(path, comment=COMMENT)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InvalidValueError(f"posterior file {path} cannot be read ({exc}); {fix}") from exc
    if WEIGHT not in table.columns:
        raise InvalidValueError(f"posterior file {path} has no {WEIGHT!r} column; {fix}")
    if not len(table) or len(table.columns) < 2:
        raise InvalidValueError(f"posterior file {path} holds no particle (or no spread column); {fix}")
    population = population or load_population()
    for name in table.columns:
        if name != WEIGHT:
            try:
                parse_value_id(name, population)
            except (InvalidValueError, UnknownNameError) as exc:
                raise InvalidValueError(f"posterior file {path}: column {name!r}: {exc}; {fix}") from exc
    values = table.apply(pd.to_numeric, errors="coerce")
    bad = values.isna() | ~np.isfinite(values) | (values < 0)
    if bad.to_numpy().any():
        row, column = next((r, c) for r in range(len(table)) for c in table.columns if bad.iloc[r][c])
        raise InvalidValueError(
            f"posterior file {path}: row {row + 1}, column {column!r} = {table.iloc[row][column]!r}; every value "
            f"must be a finite number >= 0; {fix}"
        )
    if values[WEIGHT].sum() <= 0:
        raise InvalidValueError(f"posterior file {path}: the weights sum to 0; {fix}")
    values[WEIGHT] = values[WEIGHT] / values[WEIGHT].sum()
    return Posterior(particles=values.astype(float), header=header, path=path)


# --------------------------------------------------------------------------- checks and report
def check_table(
    problem: AbcProblem, posterior: Posterior, *, size: SimulationSize, draws: int, seed: int
) -> pd.DataFrame:
    """Simulate every target (fitted rows and checks) at ``draws`` posterior draws and summarise each.

    Returns:
        One row per target: :data:`TARGET`, :data:`ROLE`, :data:`STATISTIC`, :data:`GROUP`, :data:`VALUE`,
        ``sd``, ``n`` and the simulated median and 2.5/97.5 percentiles over the draws
        (:data:`SIM_MEDIAN`, :data:`SIM_LOW`, :data:`SIM_HIGH`).
    """
    simulator = CohortSimulator(problem, problem.targets, size)
    runs = [simulator(values) for values in posterior.draw(draws, seed=seed)]
    rows = []
    for t in problem.targets:
        sims = np.array([r[t.id] for r in runs], dtype=float)
        sims = sims[sims != NO_VALUE]
        rows.append(
            {
                TARGET: t.id,
                ROLE: t.role,
                STATISTIC: t.statistic,
                GROUP: t.group,
                VALUE: t.value,
                "sd": t.sd,
                "n": t.n,
                SIM_MEDIAN: float(np.median(sims)) if len(sims) else math.nan,
                SIM_LOW: float(np.percentile(sims, 2.5)) if len(sims) else math.nan,
                SIM_HIGH: float(np.percentile(sims, 97.5)) if len(sims) else math.nan,
            }
        )
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame) -> str:
    """Return a table as GitHub markdown (numbers to 3 significant digits)."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.3g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def report(result: AbcResult, checks: pd.DataFrame, *, command: str, check_draws: int) -> str:
    """Return the markdown report of a fit: targets, posterior, fitted rows simulated, checks apart."""
    problem = result.problem
    summary = posterior_summary(result.posterior, problem.prior_box())
    targets = pd.DataFrame(
        [
            {TARGET: t.id, STATISTIC: t.statistic, GROUP: t.group, VALUE: t.value, "sd": t.sd, "source": t.source}
            for t in problem.fitted
        ]
    )
    kept_out = pd.DataFrame(
        [
            {TARGET: t.id, STATISTIC: t.statistic, GROUP: t.group, VALUE: t.value, "n": t.n, "source": t.source}
            for t in problem.checks
        ]
    )
    columns = [TARGET, STATISTIC, GROUP, VALUE, SIM_MEDIAN, SIM_LOW, SIM_HIGH]
    fitted_rows = checks[checks[ROLE] == FIT][columns]
    check_rows = checks[checks[ROLE] == CHECK][columns]
    gens = result.generations.rename(columns={"epsilon": "temperature"})
    size = result.settings.size
    mixes = "\n".join(f"- `{name}`: {dict(shares)}" for name, shares in problem.mixes.items()) or "- (none)"
    return (
        "\n\n".join(
            [
                "# Population ABC: between-man spreads fitted to clinical summaries",
                f"Written by `{command}` on {_dt.date.today().isoformat()}. Posterior: "
                "`models/population_posterior.csv` (weighted particles); problem: `models/population_abc.toml`.",
                "## Method\n\nABC-SMC (pyABC "
                f"{_version('pyabc')}) with a stochastic acceptor: each fitted statistic is taken as its target plus "
                "normal noise of variance sd² (the target's uncertainty) plus the sampling variance of the simulated "
                "cohort (at most p(1 - p)/men), and the temperature falls to 1 at the last generation, so the last "
                "generation's weighted particles sample that posterior. Priors are in the posterior table (a spread's "
                "is uniform on its fit range in `models/population.toml`). Every candidate simulates the same men "
                "(common random numbers: seed "
                f"{size.seed}, {size.men} men per histology, {size.n_classes} focus classes, the fast path), treated "
                f"as in `experiments/{problem.setting.id}.toml` (regimen {problem.setting.regimen!r}, its visits and "
                f"responder rule) for response rates, untreated for retrieval, and read as the cohort reads its men "
                "(simulated semen analyses, the baseline confirmed on two). Population size "
                f"{result.settings.population_size}, {len(result.generations)} generations, {result.evaluations} "
                f"candidates simulated in {result.elapsed_s / 60:.1f} min (pyABC seed {result.settings.seed}).",
                (
                    f"The last generation is at temperature {result.final_temperature:.3g}: its particles sample the "
                    "posterior."
                    if result.converged
                    else f"**Provisional**: the run stopped at temperature {result.final_temperature:.3g}, before 1 "
                    "(its time limit), so the particles are wider than the posterior; carry on with the same command "
                    "and `--resume`."
                ),
                "## Targets fitted\n\n" + _markdown(targets),
                "Histology mixes:\n\n" + mixes,
                "## Checks kept out of the fit\n\nThese rows never enter the distance; they are simulated beside the "
                "posterior below.\n\n" + _markdown(kept_out),
                "## Posterior (weighted median and 95% interval; prior range and scale in problem file)\n\n"
                + _markdown(summary),
                "## Generations\n\n" + _markdown(gens),
                f"## Fitted rows: simulated over {check_draws} posterior draws (median, 2.5-97.5%)\n\n"
                + _markdown(fitted_rows),
                f"## Checks: simulated over the same {check_draws} posterior draws (median, 2.5-97.5%)\n\n"
                "A check's published value inside or outside this band is evidence about the model; it was not "
                "used to choose any value.\n\n" + _markdown(check_rows),
            ]
        )
        + "\n"
    )


def _version(package: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
