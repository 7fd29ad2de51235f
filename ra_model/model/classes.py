"""The focus-class template: expand the germ line marked in the Antimony source into N tubule-focus classes.

The template syntax (marker lines, ``//+`` lines, ``sum_classes``/``mean_classes``) is described in the
header of ``models/ra_testis.ant``. This module works on text only: it neither compiles nor reads the
parameter table (:func:`ra_model.model.source.class_parameter_table` turns :data:`CLASS_PARAMETERS`
into table rows).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from statistics import NormalDist

from ra_model.errors import InvalidValueError, ModelBuildError

log = logging.getLogger(__name__)

#: Marker lines (whole lines, stripped) of the class template in the Antimony source.
CLASS_BEGIN = "// >>> focus class"
#: Opens a template region that is also written once as it is, shared (the RA signal).
CLASS_BEGIN_ALSO_SHARED = "// >>> focus class, also shared"
CLASS_END = "// <<< focus class"
#: Start of a line that exists only with two or more classes (a comment, so invisible with one).
CLASS_ONLY = "//+"
#: Functions of the class-only lines outside the template: the sum over the classes, and their mean
#: weighted by niche share.
SUM_CLASSES = "sum_classes"
MEAN_CLASSES = "mean_classes"
#: Most classes a testis may be built from. The issue asks for 8 to 16; a 365-day run of the whole
#: model in libroadrunner takes about 3 s with 8 and 10 s with 16.
MAX_CLASSES = 32
#: Unit of germ-cell counts: a class's cell species start at their written amount times its niche share
#: (levels such as STRA8 start as written).
CELL_UNIT = "Mcell"
#: The class parameter that splits the stem niche, and weighs the classes in ``mean_classes``.
NICHE_SHARE = "niche_share"
#: The class parameter placing the class in the man's distribution of local RA synthesis.
RA_QUANTILE = "ra_z"
#: Category of the generated class parameters in :func:`class_parameter_table`.
CLASS_CATEGORY = "focus_class"

_NAME = r"[A-Za-z_]\w*"
_TOKEN = re.compile(rf"(?<![\w.])({_NAME})")
_DEFINES = re.compile(rf"^\s*({_NAME})\s*(:=|:|=)(?!=)")
_SPECIES = re.compile(rf"^(\s*(?:substanceOnly\s+)?species\s+)({_NAME})(\s+in\s+{_NAME}\s*=\s*)(\S+)(\s*)$")
_SPECIES_NAME = re.compile(rf"\bspecies\s+({_NAME})")
_HAS = re.compile(rf"^\s*({_NAME})\s+has\s+({_NAME})\s*$")
_AGGREGATE = re.compile(rf"\b({SUM_CLASSES}|{MEAN_CLASSES})\(\s*({_NAME})\s*\)")


@dataclass(frozen=True)
class ClassParameter:
    """A parameter every focus class has (written ``F<k>__<name>`` when the testis has two or more classes).

    One row per parameter, not per class: :func:`class_parameter_table` generates the rows of the classes.
    The fields are those of a parameter-table row (:class:`ParameterInfo`).

    Attributes:
        name: Id inside the class template (``niche_share``).
        unit: Unit id, as in ``models/parameters.csv``.
        description: What it means.
        source: Citation or ``assumed``.
        lower: Plausible lower bound.
        upper: Plausible upper bound.
        domain: Physical domain (:mod:`ra_model.model.domain`).
        value: Default value of every class; None means an equal share, 1 / n_classes.
        label: Short human-readable name (the SBML ``name``; each class's copy adds its class, see
            :func:`class_copy_name`).
    """

    name: str
    unit: str
    description: str
    source: str
    lower: float
    upper: float
    domain: str
    value: float | None
    label: str

    def default(self, n_classes: int, k: int = 1) -> float:
        """Return the default value of class ``k`` (1-based) in a testis of ``n_classes`` classes."""
        if self.name == RA_QUANTILE:
            return class_quantile(k, n_classes)
        return 1.0 / n_classes if self.value is None else self.value


#: The parameters each focus class gets (declared by :func:`expand_classes`, used by the template).
CLASS_PARAMETERS: tuple[ClassParameter, ...] = (
    ClassParameter(
        NICHE_SHARE,
        "dimensionless",
        "Share of the stem-cell niche (stem_niche) in the class's tubules; the classes' shares sum to 1.",
        "assumed; equal shares by default (brief 5: foci of spermatogenesis among Sertoli-cell-only tubules)",
        0.0,
        1.0,
        "fraction",
        None,
        label="stem-niche share",
    ),
    ClassParameter(
        "ra_local",
        "dimensionless",
        "Local RA synthesis of the class: multiplier on the synthesised share of the testis atRA its germ "
        "cells see (the supplied share, from 13-cis-RA and plasma atRA, is the same in every class); 1 is the "
        "testis as a whole.",
        "assumed; 1 by default (no measured spread of RA between foci; the spread is local_ra_sd)",
        0.1,
        10.0,
        "nonneg",
        1.0,
        label="local RA synthesis factor",
    ),
    ClassParameter(
        RA_QUANTILE,
        "dimensionless",
        "Position of the class in the man's distribution of local RA synthesis, as a standard-normal "
        "quantile: the class's synthesis is ra_local * exp(local_ra_sd * ra_z).",
        "derived: the midpoint quantile of class k of n, Phi^-1((k - 1/2) / n) (quantile classes)",
        -4.0,
        4.0,
        "real",
        None,
        label="local RA synthesis quantile",
    ),
)


def class_quantile(k: int, n_classes: int) -> float:
    """Return the standard-normal midpoint quantile of class ``k`` of ``n_classes``: Phi^-1((k - 1/2) / n)."""
    return NormalDist().inv_cdf((k - 0.5) / n_classes)


def class_prefix(k: int) -> str:
    """Return the id prefix of focus class ``k`` (1-based): ``F1__``."""
    return f"F{k}__"


def class_copy_name(name: str, k: int, n_classes: int) -> str:
    """Return the human name of class ``k``'s copy of an element named ``name``.

    ``class_copy_name("STRA8 protein", 3, 8)`` is ``"STRA8 protein (focus class F3 of 8)"``.
    """
    return f"{name} (focus class F{k} of {n_classes})"


def class_id(name: str, k: int, n_classes: int) -> str:
    """Return the id of template id ``name`` in class ``k`` of ``n_classes``: unprefixed when there is one."""
    return name if n_classes == 1 else class_prefix(k) + name


@dataclass(frozen=True)
class ClassTemplate:
    """What the class template of an Antimony source writes per class.

    Attributes:
        ids: Every id written once per class, in order of first appearance: ids declared in the template,
            ids a class-only line defines (shadows of shared ids), then the class parameters.
        species: The template's species.
        cell_species: Of them, the germ-cell counts (unit ``CELL_UNIT``), split among classes by niche share.
        class_only: Ids with no shared id of the same name once there are two or more classes (``SSC``);
            the others (``RAR_occupancy``, ``RA_signal``, ``STRA8_rel``) have a shared one as well.
    """

    ids: tuple[str, ...]
    species: tuple[str, ...]
    cell_species: tuple[str, ...]
    class_only: tuple[str, ...]


@dataclass(frozen=True)
class _Region:
    begin: int  # index of the opening marker line
    end: int  # index of the closing marker line
    also_shared: bool


def check_n_classes(n_classes: object) -> int:
    """Return ``n_classes`` if it is a whole number from 1 to :data:`MAX_CLASSES`, else say what to give."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or not 1 <= n_classes <= MAX_CLASSES:
        raise InvalidValueError(
            f"n_classes = {n_classes!r}; give a whole number of focus classes from 1 to {MAX_CLASSES}"
        )
    return n_classes


def _regions(lines: list[str]) -> list[_Region]:
    regions: list[_Region] = []
    start: int | None = None
    also_shared = False
    for i, line in enumerate(lines):
        marker = line.strip()
        if marker in (CLASS_BEGIN, CLASS_BEGIN_ALSO_SHARED):
            if start is not None:
                raise ModelBuildError(f"line {i + 1}: {marker!r} inside the class region opened on line {start + 1}")
            start, also_shared = i, marker == CLASS_BEGIN_ALSO_SHARED
        elif marker == CLASS_END:
            if start is None:
                raise ModelBuildError(f"line {i + 1}: {CLASS_END!r} closes no class region")
            regions.append(_Region(start, i, also_shared))
            start = None
    if start is not None:
        raise ModelBuildError(f"line {start + 1}: class region not closed; end it with a line {CLASS_END!r}")
    return regions


def _split(line: str) -> tuple[bool, str, str, str]:
    """Split a line into (class-only?, indentation, code, comment)."""
    indent = line[: len(line) - len(line.lstrip())]
    body = line.strip()
    plus = body.startswith(CLASS_ONLY) and not body.startswith(CLASS_ONLY + "/")
    if plus:
        body = body[len(CLASS_ONLY) :].lstrip()
    cut = body.find("//")
    code, comment = (body, "") if cut < 0 else (body[:cut], body[cut:])
    return plus, indent, code.rstrip() if comment else code, comment


def _statements(code: str) -> Iterator[str]:
    return (s for s in code.split(";") if s.strip())


def _declared(statement: str) -> str | None:
    """Return the id a statement declares (species, reaction, rule or value), or None."""
    species = _SPECIES_NAME.search(statement)
    if species:
        return species[1]
    match = _DEFINES.match(statement)
    return match[1] if match else None


def _scan(lines: list[str], regions: list[_Region]) -> ClassTemplate:
    """Return what the template regions of a source write per class."""
    inside: dict[int, _Region] = {i: r for r in regions for i in range(r.begin + 1, r.end)}
    ids: dict[str, None] = {}
    regular: set[str] = set()
    species: dict[str, None] = {}
    units: dict[str, str] = {}
    shared: set[str] = set()
    markers = {i for r in regions for i in (r.begin, r.end)}
    for i, line in enumerate(lines):
        if i in markers:
            continue
        plus, _, code, _ = _split(line)
        region = inside.get(i)
        for statement in _statements(code):
            name = _declared(statement)
            if region is None:
                if name is not None:
                    shared.add(name)  # declared outside the template (by a class-only line: a testis readout)
                continue
            has = _HAS.match(statement)
            if has:
                units[has[1]] = has[2]
            if name is None:
                continue
            ids[name] = None
            if _SPECIES_NAME.search(statement):
                species[name] = None
            if plus or not region.also_shared:
                regular.add(name)
            if region.also_shared and not plus:
                shared.add(name)
    if regions:
        for spec in CLASS_PARAMETERS:
            ids[spec.name] = None
            regular.add(spec.name)
    return ClassTemplate(
        ids=tuple(ids),
        species=tuple(species),
        cell_species=tuple(s for s in species if units.get(s) == CELL_UNIT),
        class_only=tuple(n for n in ids if n in regular and n not in shared),
    )


def class_template(text: str) -> ClassTemplate:
    """Return what the class template of an Antimony source writes per class.

    Args:
        text: Antimony source with class-template markers (see ``models/ra_testis.ant``).

    Returns:
        The per-class ids, species and germ-cell species; all empty if the source has no template.

    Raises:
        ModelBuildError: If a marker is unbalanced.
    """
    lines = text.split("\n")
    return _scan(lines, _regions(lines))


def _rename(code: str, names: set[str], prefix: str, keep: str = "") -> str:
    return _TOKEN.sub(lambda m: prefix + m[1] if m[1] in names and m[1] != keep else m[1], code)


def _class_code(code: str, plus: bool, names: set[str], prefix: str, scale: Callable[[str, str], str]) -> str:
    out = []
    for part in code.split(";"):
        match = _DEFINES.match(part) if plus else None
        if match:  # a class-only definition: on its own right-hand side the id still means the shared one
            left, right = part[: match.end()], part[match.end() :]
            out.append(_rename(left, names, prefix) + _rename(right, names, prefix, keep=match[1]))
            continue
        species = _SPECIES.match(part)
        if species:
            part = species[1] + prefix + species[2] + species[3] + scale(species[2], species[4]) + species[5]
            out.append(part)
            continue
        out.append(_rename(part, names, prefix))
    return ";".join(out)


def _line(indent: str, code: str, comment: str) -> str:
    return indent + code + ("  " + comment if code.strip() and comment else comment)


def expand_classes(text: str, n_classes: int) -> str:
    """Write an Antimony source's class template once per focus class.

    The template is the text between the marker lines ``// >>> focus class`` (or ``// >>> focus class,
    also shared``) and ``// <<< focus class``; ``models/ra_testis.ant`` explains the rules. With one class
    the text is returned unchanged (the markers are comments), so the model is exactly as written. With
    ``n`` classes each template region is written ``n`` times, every id declared in the template prefixed
    ``F<k>__`` and every other id shared; class-only lines (``//+``) are written, per class inside the
    template and once outside it, where ``sum_classes(x)`` becomes the sum of the classes' ``x`` and
    ``mean_classes(x)`` their mean weighted by niche share; the class parameters (:data:`CLASS_PARAMETERS`)
    are declared before the first region with their default values, and germ-cell species start at their
    written amount times the class's niche share, so identical classes add up to the one-class testis.

    Args:
        text: Antimony source.
        n_classes: Number of focus classes, 1 to ``MAX_CLASSES``.

    Returns:
        Plain Antimony without markers or class-only lines (unchanged with one class).

    Raises:
        InvalidValueError: If ``n_classes`` is not a whole number from 1 to ``MAX_CLASSES``.
        ModelBuildError: If a marker is unbalanced, or a per-class id is used outside the template other than
            through ``sum_classes``/``mean_classes`` (the message names the line).
    """
    n = check_n_classes(n_classes)
    lines = text.split("\n")
    regions = _regions(lines)
    if n == 1:
        return text
    if not regions:
        raise ModelBuildError(
            f"n_classes = {n} needs a class template, but the source has no {CLASS_BEGIN!r} ... {CLASS_END!r} region"
        )
    template = _scan(lines, regions)
    names = set(template.ids)
    class_only = set(template.class_only)
    cells = set(template.cell_species)
    defaults = {spec.name: spec.default(n) for spec in CLASS_PARAMETERS if spec.name != RA_QUANTILE}

    def aggregate(match: re.Match[str]) -> str:
        kind, name = match[1], match[2]
        if name not in names:
            raise ModelBuildError(f"line {i + 1}: {kind}({name}) names no id of the class template")
        if kind == SUM_CLASSES:
            return "(" + " + ".join(class_prefix(k) + name for k in range(1, n + 1)) + ")"
        weights = [class_prefix(k) + NICHE_SHARE for k in range(1, n + 1)]
        terms = " + ".join(f"{w} * {class_prefix(k)}{name}" for k, w in enumerate(weights, start=1))
        return f"(({terms}) / ({' + '.join(weights)}))"

    def scale(name: str, value: str) -> str:
        if name not in cells:
            return value
        try:
            return repr(float(value) * defaults[NICHE_SHARE])
        except ValueError:
            raise ModelBuildError(f"germ-cell species {name!r}: initial amount {value!r} is not a number") from None

    out: list[str] = []
    by_start = {r.begin: r for r in regions}
    i = 0
    first = True
    while i < len(lines):
        region = by_start.get(i)
        if region is None:
            plus, indent, code, comment = _split(lines[i])
            shared_code = _AGGREGATE.sub(aggregate, code) if plus else code
            misused = [t for t in _TOKEN.findall(shared_code) if t in class_only]
            if misused or (not plus and _AGGREGATE.search(code)):
                what = f"{misused[0]} is per focus class" if misused else f"{SUM_CLASSES}/{MEAN_CLASSES} work"
                raise ModelBuildError(
                    f"line {i + 1}: {what}; outside the class template write the testis value in a "
                    f"{CLASS_ONLY!r} line, with {SUM_CLASSES}(x) or {MEAN_CLASSES}(x)"
                )
            out.append(_line(indent, shared_code, comment) if plus else lines[i])
            i += 1
            continue
        body = lines[region.begin + 1 : region.end]
        indent = lines[region.begin][: len(lines[region.begin]) - len(lines[region.begin].lstrip())]
        if region.also_shared:
            out.append(f"{indent}// focus classes: shared copy")
            out.extend(line for line in body if not _split(line)[0])
        if first:
            out.append(f"{indent}// focus-class parameters ({n} classes)")
            for k in range(1, n + 1):
                for spec in CLASS_PARAMETERS:
                    pid = class_prefix(k) + spec.name
                    out.append(
                        f"{indent}{pid} = {spec.default(n, k)!r}; {pid} has {spec.unit}  "
                        f"// {spec.description.rstrip('.')}; {spec.source}"
                    )
            first = False
        for k in range(1, n + 1):
            prefix = class_prefix(k)
            out.append(f"{indent}// focus class F{k} of {n}")
            for number, line in enumerate(body, start=region.begin + 2):
                plus, line_indent, code, comment = _split(line)
                if not code.strip():
                    out.append(line if not plus else "")
                    continue
                if _AGGREGATE.search(code):
                    raise ModelBuildError(f"line {number}: {SUM_CLASSES}/{MEAN_CLASSES} belong outside the template")
                out.append(_line(line_indent, _class_code(code, plus, names, prefix, scale), comment))
        i = region.end + 1
    log.debug("built %d focus classes of %d ids each", n, len(template.ids))
    return "\n".join(out)
