"""Phenotype presets: named parameter sets read from models/phenotypes.toml.

A preset names the ids of the one-class model (``SSC``, ``stem_niche``). In a testis built from focus
classes (:mod:`ra_model.model.classes`) an id that exists only per class (``SSC`` becomes ``F1__SSC`` ...
``FN__SSC``) applies to every class: :meth:`Phenotype.for_classes` writes it once per class. Which ids
those are is read from the class template of ``models/ra_testis.ant`` (:func:`per_class_ids`), never listed
here. Shared ids (``stem_niche``, ``EP1``) stay as they are.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.model.classes import (
    CLASS_PARAMETERS,
    MAX_CLASSES,
    NICHE_SHARE,
    ClassTemplate,
    check_n_classes,
    class_id,
    class_prefix,
    class_template,
)
from ra_model.model.domain import check_value, domain_of
from ra_model.model.source import ANTIMONY_FILE, PHENOTYPE_FILE, model_dir, read_parameter_table

_KEYS = {"description", "rationale", "parameters", "scale", "initial_amounts"}


@dataclass(frozen=True)
class Phenotype:
    """A phenotype preset: what it changes relative to the healthy model, and why.

    Attributes:
        name: Preset id, e.g. ``"maturation_arrest"``.
        description: One line saying what the preset is.
        rationale: Why these parameters, with sources or the word assumed.
        parameters: Parameter values set outright.
        scale: Multipliers applied to the model's default parameter values.
        initial_amounts: Initial species amounts (germ cells in Mcell) before pre-equilibration.
    """

    name: str
    description: str
    rationale: str
    parameters: Mapping[str, float] = field(default_factory=dict)
    scale: Mapping[str, float] = field(default_factory=dict)
    initial_amounts: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check every value is a finite, non-negative number and every parameter lies in its physical domain.

        A preset sets parameters for the whole run, like an override: constants and regimen inputs are
        refused, and ``parameters`` values and the scaled table values must lie in the parameter's domain
        (:mod:`ra_model.model.domain`). Presets may leave the plausible range on purpose (severe vitamin A
        deficiency), so that is not warned about.
        """
        for group in ("parameters", "scale", "initial_amounts"):
            values = getattr(self, group)
            for key, value in values.items():
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise InvalidValueError(
                        f"phenotype {self.name!r}: {group}.{key} = {value!r} is not a finite number"
                    )
                if value < 0:
                    raise InvalidValueError(f"phenotype {self.name!r}: {group}.{key} = {value!r} must not be negative")
            object.__setattr__(self, group, MappingProxyType({k: float(v) for k, v in values.items()}))
        for key, value in self.parameters.items():
            check_value(key, value, where=f"phenotype {self.name!r}, parameters.{key}", warn=False)
        if any(domain_of(key) is not None for key in self.scale):
            table = read_parameter_table()
            for key, factor in self.scale.items():
                if key in table:
                    check_value(
                        key,
                        table[key].value * factor,
                        where=f"phenotype {self.name!r}, scale.{key} = {factor:g} (x {table[key].value:g})",
                        warn=False,
                    )

    def resolve(self, defaults: Mapping[str, float]) -> dict[str, float]:
        """Return the absolute parameter values this preset sets, given the model defaults.

        Args:
            defaults: The model's default parameter values.

        Returns:
            Parameter id to value, scales applied to the defaults.
        """
        values = {key: defaults[key] * factor for key, factor in self.scale.items()}
        values.update(self.parameters)
        return values

    def for_classes(self, n_classes: int) -> Phenotype:
        """Return this preset for a testis built from ``n_classes`` focus classes.

        Every id the preset names that exists only per class (:func:`per_class_ids`: germ-line species such
        as ``SSC``, class parameters such as ``ra_local``) is set in every class (``F1__SSC`` ...
        ``FN__SSC``) to the same value, or scaled by the same factor; shared ids are kept. A germ-cell
        count is split among the classes by their default (equal) niche shares, as the class template
        splits the written amounts, so the classes add up to the preset's testis (a zero stays zero).
        Ids already written per class (``F3__ra_local``) are kept as they are, and win over the same
        parameter named for every class (``ra_local``).

        Args:
            n_classes: Number of focus classes (1 to ``MAX_CLASSES``).

        Returns:
            The preset itself with one class; otherwise a copy with the same name, description and rationale.

        Raises:
            InvalidValueError: If ``n_classes`` is not a whole number from 1 to ``MAX_CLASSES``.
        """
        n = check_n_classes(n_classes)
        if n == 1:
            return self
        per_class = per_class_ids()
        cells = set(shipped_class_template().cell_species)
        share = next(p for p in CLASS_PARAMETERS if p.name == NICHE_SHARE).default(n)

        def spread(values: Mapping[str, float], *, split_cells: bool = False) -> dict[str, float]:
            out: dict[str, float] = {}
            for key, value in values.items():
                if key in per_class:
                    each = value * share if split_cells and key in cells else value
                    out.update({class_id(key, k, n): each for k in range(1, n + 1)})
            out.update({key: value for key, value in values.items() if key not in per_class})  # F3__x wins over x
            return out

        return replace(
            self,
            parameters=spread(self.parameters),
            scale=spread(self.scale),
            initial_amounts=spread(self.initial_amounts, split_cells=True),
        )


def load_phenotypes(path: Path | None = None) -> dict[str, Phenotype]:
    """Read the phenotype presets.

    Args:
        path: A TOML file; defaults to the shipped ``models/phenotypes.toml``.

    Returns:
        Presets keyed by name, in file order.

    Raises:
        InvalidValueError: If the file has an unknown key or a bad value (not a number, negative, or outside
            the parameter's physical domain); the message names the file, the preset and the key.
    """
    path = path or model_dir() / PHENOTYPE_FILE
    return dict(_load(str(path), path.stat().st_mtime_ns))


@lru_cache(maxsize=8)
def _load(path_text: str, mtime_ns: int) -> dict[str, Phenotype]:
    """Parse a preset file once per modification time (sweeps look presets up for every sample)."""
    path = Path(path_text)
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    presets: dict[str, Phenotype] = {}
    for name, body in data.items():
        unknown = set(body) - _KEYS
        if unknown:
            raise InvalidValueError(
                f"{path}: phenotype {name!r} has unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}"
            )
        try:
            presets[name] = Phenotype(
                name=name,
                description=str(body.get("description", "")).strip(),
                rationale=" ".join(str(body.get("rationale", "")).split()),
                parameters=dict(body.get("parameters", {})),
                scale=dict(body.get("scale", {})),
                initial_amounts=dict(body.get("initial_amounts", {})),
            )
        except InvalidValueError as exc:
            raise InvalidValueError(f"{path}: {exc}") from exc
    return presets


@lru_cache(maxsize=2)
def _template(path_text: str, mtime_ns: int) -> ClassTemplate:
    return class_template(Path(path_text).read_text(encoding="utf-8"))


def shipped_class_template() -> ClassTemplate:
    """Return the class template of the shipped ``models/ra_testis.ant`` (read once per modification time)."""
    path = model_dir() / ANTIMONY_FILE
    return _template(str(path), path.stat().st_mtime_ns)


def per_class_ids() -> frozenset[str]:
    """Return the ids of the shipped model that exist only per focus class once there are two or more.

    They are the class template's ids without a shared counterpart (``SSC``, ``STRA8``, ``ra_local``;
    not ``RAR_occupancy`` or ``STRA8_rel``, which also have a testis value), read from the template.
    """
    return frozenset(shipped_class_template().class_only)


def classes_of(parameter_ids: Collection[str]) -> int:
    """Return how many focus classes a model has, from its parameter ids (1 without class parameters).

    Args:
        parameter_ids: The model's parameter ids (e.g. ``engine.defaults``).

    Returns:
        ``N`` if the model has ``F1__niche_share`` ... ``FN__niche_share``, else 1.
    """
    n = 0
    while n < MAX_CLASSES and class_prefix(n + 1) + NICHE_SHARE in parameter_ids:
        n += 1
    return max(n, 1)


def get_phenotype(name: str) -> Phenotype:
    """Return the preset called ``name``.

    Raises:
        UnknownNameError: If there is no such preset; the message lists close matches.
    """
    presets = load_phenotypes()
    if name not in presets:
        raise UnknownNameError("phenotype", name, presets)
    return presets[name]
