"""Phenotype presets: named parameter sets read from models/phenotypes.toml."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from ra_model.errors import InvalidValueError, UnknownNameError
from ra_model.model.domain import check_value, domain_of
from ra_model.model.source import PHENOTYPE_FILE, model_dir, read_parameter_table

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


def get_phenotype(name: str) -> Phenotype:
    """Return the preset called ``name``.

    Raises:
        UnknownNameError: If there is no such preset; the message lists close matches.
    """
    presets = load_phenotypes()
    if name not in presets:
        raise UnknownNameError("phenotype", name, presets)
    return presets[name]
