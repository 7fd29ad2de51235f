"""Semen categories: the cut-offs that turn a sperm concentration into azoospermia ... normal, in one place.

The two detection cut-offs are not free parameters: they are derived from how a semen analysis is done (brief 6:
the examined volume and the pellet search set the detection limit), as assignment rules of the model
(``models/ra_testis.ant``) that :func:`detection_limits` evaluates from the same inputs. Each is the
concentration at which one sperm is expected in what the laboratory examines:

- ``fresh_detection_limit`` = one sperm in ``examined_volume_fresh_uL`` (the fresh count), and
- ``pellet_detection_limit`` = one sperm in ``pellet_fraction_examined`` x ``ejaculate_volume_mL`` (the
  centrifuged pellet of the whole ejaculate), which is also ``motile_detection_limit``.

So the deterministic categories of a time course and the simulated semen analyses
(:mod:`ra_model.studies.semen_analysis`, which counts Poisson sperm in the same volumes) cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from ra_model.errors import InvalidValueError

#: The categories, worst first; a category's index is its code (:func:`semen_category_codes`).
CATEGORIES: tuple[str, ...] = ("azoospermia", "cryptozoospermia", "oligozoospermia", "normal")
AZOOSPERMIA, CRYPTOZOOSPERMIA, OLIGOZOOSPERMIA, NORMAL = range(len(CATEGORIES))

#: Model quantities holding the cut-offs (million/mL), lowest first: pellet, fresh count, WHO limit. The first two
#: are assignment rules (:data:`DERIVED_LIMITS`), the WHO limit is a parameter.
LIMIT_PARAMETERS: tuple[str, str, str] = ("pellet_detection_limit", "fresh_detection_limit", "oligozoospermia_limit")
#: ``DataFrame.attrs`` key of each cut-off (the parameter id with its unit), by parameter id.
LIMIT_ATTRS: dict[str, str] = {p: f"{p}_M_per_mL" for p in LIMIT_PARAMETERS}
#: Keyword of each cut-off in :func:`semen_category`, in the order of :data:`LIMIT_PARAMETERS`.
LIMIT_KEYWORDS: tuple[str, str, str] = ("pellet", "fresh", "oligo")
#: The model's derived detection limits (assignment rules; never set directly), in the order of
#: :func:`detection_limits`.
DERIVED_LIMITS: tuple[str, str, str] = ("fresh_detection_limit", "pellet_detection_limit", "motile_detection_limit")
#: The parameters the detection limits are derived from (with their units: uL, share, mL).
DETECTION_INPUTS: tuple[str, str, str] = ("examined_volume_fresh_uL", "pellet_fraction_examined", "ejaculate_volume_mL")
#: Sperm per (million/mL x uL): a concentration in million/mL times a volume in uL is this many sperm.
SPERM_PER_M_PER_ML_UL = 1e3
#: Sperm per (million/mL x mL).
SPERM_PER_M_PER_ML_ML = 1e6


def detection_limits(values: Mapping[str, float]) -> dict[str, float]:
    """Return the model's derived detection limits from the measurement parameters (million/mL).

    The same formulas as the model's assignment rules: the concentration at which one sperm is expected in the
    examined volume (fresh count) or in the searched pellet (the whole ejaculate times the searched share).

    Args:
        values: Parameter values by model id holding :data:`DETECTION_INPUTS` (extra ids are ignored).

    Returns:
        ``fresh_detection_limit``, ``pellet_detection_limit`` and ``motile_detection_limit`` (= the pellet's),
        million/mL.

    Raises:
        InvalidValueError: An input missing, or not a finite number > 0.

    Examples:
        >>> values = {"examined_volume_fresh_uL": 1, "pellet_fraction_examined": 1, "ejaculate_volume_mL": 4}
        >>> limits = detection_limits(values)
        >>> limits["fresh_detection_limit"], limits["pellet_detection_limit"]
        (0.001, 2.5e-07)
    """
    inputs = {}
    for name in DETECTION_INPUTS:
        if name not in values:
            raise InvalidValueError(f"the model has no parameter {name!r}, needed for the semen detection limits")
        value = values[name]
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if isinstance(value, bool) or not (np.isfinite(number) and number > 0):
            raise InvalidValueError(f"{name} = {value!r}; use a finite number > 0")
        inputs[name] = number
    fresh = 1.0 / (inputs["examined_volume_fresh_uL"] * SPERM_PER_M_PER_ML_UL)
    pellet = 1.0 / (inputs["pellet_fraction_examined"] * inputs["ejaculate_volume_mL"] * SPERM_PER_M_PER_ML_ML)
    return {"fresh_detection_limit": fresh, "pellet_detection_limit": pellet, "motile_detection_limit": pellet}


def check_limits(pellet: npt.ArrayLike, fresh: npt.ArrayLike, oligo: npt.ArrayLike) -> None:
    """Raise ``InvalidValueError`` unless 0 < pellet <= fresh <= oligo, all finite (million/mL).

    Args:
        pellet: ``pellet_detection_limit``: a number, or an array (one value per row).
        fresh: ``fresh_detection_limit``, the same.
        oligo: ``oligozoospermia_limit``, the same.

    Raises:
        InvalidValueError: A limit that is not a finite number > 0, limits out of order, or arrays of
            shapes that do not broadcast.
    """
    arrays = []
    for name, value in zip(LIMIT_PARAMETERS, (pellet, fresh, oligo), strict=True):
        try:
            if np.asarray(value).dtype == bool:
                raise TypeError
            array = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise InvalidValueError(f"{name} = {value!r}; use a finite concentration > 0 (million/mL)") from None
        bad = ~(np.isfinite(array) & (array > 0))
        if bad.any():
            shown = value if array.ndim == 0 else array[bad][0]
            raise InvalidValueError(f"{name} = {shown!r}; use a finite concentration > 0 (million/mL)")
        arrays.append(array)
    try:
        p, f, o = np.broadcast_arrays(*arrays)
    except ValueError:
        shapes = ", ".join(f"{n} {a.shape}" for n, a in zip(LIMIT_PARAMETERS, arrays, strict=True))
        raise InvalidValueError(
            f"semen category limits of shapes {shapes} do not match; give one number, or one value per row"
        ) from None
    wrong = ~((p <= f) & (f <= o))
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        text = ", ".join(f"{n} = {a.flat[i]:g}" for n, a in zip(LIMIT_PARAMETERS, (p, f, o), strict=True))
        raise InvalidValueError(
            f"semen category limits {text} are out of order; they must rise from the pellet to the fresh count to "
            "the WHO limit (million/mL): search a larger share of the ejaculate in the pellet "
            "(pellet_fraction_examined x ejaculate_volume_mL) than the fresh count examines "
            "(examined_volume_fresh_uL), "
            "and keep oligozoospermia_limit above the fresh-count limit"
        )


def limits_from(values: Mapping[str, float]) -> dict[str, float]:
    """Return the three cut-offs from parameter values by id, as keyword arguments of :func:`semen_category`.

    The detection limits are derived (:func:`detection_limits`) from the measurement parameters in ``values``;
    derived ids in ``values`` are ignored, so the cut-offs always follow the measurement.

    Args:
        values: Parameter values by model id (holding :data:`DETECTION_INPUTS` and ``oligozoospermia_limit``).

    Returns:
        ``{"pellet": ..., "fresh": ..., "oligo": ...}``, million/mL, checked by :func:`check_limits`.

    Raises:
        InvalidValueError: A parameter missing, not a positive number, or limits out of order.
    """
    if "oligozoospermia_limit" not in values:
        raise InvalidValueError("the model has no parameter 'oligozoospermia_limit', needed for the semen category")
    derived = detection_limits(values) | {"oligozoospermia_limit": values["oligozoospermia_limit"]}
    limits = {k: float(derived[p]) for k, p in zip(LIMIT_KEYWORDS, LIMIT_PARAMETERS, strict=True)}
    check_limits(**limits)
    return limits


def semen_category_codes(
    concentration: npt.ArrayLike, *, pellet: npt.ArrayLike, fresh: npt.ArrayLike, oligo: npt.ArrayLike
) -> npt.NDArray[np.int64]:
    """Return the semen category code of each sperm concentration (the cut-offs are :func:`semen_category`'s).

    Args:
        concentration: Ejaculate sperm concentrations, million/mL (any shape).
        pellet: ``pellet_detection_limit``, million/mL: a number, or an array broadcasting against the
            concentrations (e.g. one value per man, shape ``(n, 1)`` against ``(n, visits)``).
        fresh: ``fresh_detection_limit``, million/mL, the same.
        oligo: ``oligozoospermia_limit``, million/mL, the same.

    Returns:
        Integer codes of the broadcast shape: the index in :data:`CATEGORIES` (0 azoospermia ... 3 normal),
        so a higher code is a better category; -1 where the concentration is NaN.

    Raises:
        InvalidValueError: Limits that are not positive, finite and in order.
    """
    check_limits(pellet, fresh, oligo)
    conc = np.asarray(concentration, dtype=float)
    p, f, o = (np.asarray(x, dtype=float) for x in (pellet, fresh, oligo))
    codes = (conc >= p).astype(np.int64) + (conc >= f) + (conc >= o)  # at a limit: the higher category
    return np.where(np.isnan(conc), -1, codes).astype(np.int64)


def semen_category(
    concentration: npt.ArrayLike, *, pellet: npt.ArrayLike, fresh: npt.ArrayLike, oligo: npt.ArrayLike
) -> npt.NDArray[np.object_]:
    """Return the semen category label of each sperm concentration.

    The cut-offs (million/mL; a value exactly at a limit belongs to the higher category):

    - ``"azoospermia"``: below ``pellet``, no sperm even in the centrifuged pellet;
    - ``"cryptozoospermia"``: at or above ``pellet`` and below ``fresh``, sperm only in the pellet;
    - ``"oligozoospermia"``: at or above ``fresh`` and below ``oligo``, sperm in a fresh count but few;
    - ``"normal"``: at or above ``oligo`` (WHO 2010: 15 million/mL).

    Args:
        concentration: Ejaculate sperm concentrations, million/mL (any shape).
        pellet: ``pellet_detection_limit``, million/mL (> 0); a number or an array broadcasting against
            the concentrations.
        fresh: ``fresh_detection_limit``, million/mL (>= ``pellet``), the same.
        oligo: ``oligozoospermia_limit``, million/mL (>= ``fresh``), the same.

    Returns:
        Labels from :data:`CATEGORIES` (Python strings) of the broadcast shape; None where the concentration
        is NaN.

    Raises:
        InvalidValueError: Limits that are not positive, finite and in order.

    Examples:
        >>> semen_category([0.0, 0.001, 0.1, 15.0], pellet=0.001, fresh=0.1, oligo=15).tolist()
        ['azoospermia', 'cryptozoospermia', 'oligozoospermia', 'normal']
    """
    return category_labels(semen_category_codes(concentration, pellet=pellet, fresh=fresh, oligo=oligo))


def category_labels(codes: npt.ArrayLike) -> npt.NDArray[np.object_]:
    """Return the labels of category codes (:func:`semen_category_codes`): ``CATEGORIES[code]``, None for -1."""
    labels = np.array([*CATEGORIES, None], dtype=object)  # code -1 (no concentration) picks the last entry
    index = np.asarray(codes, dtype=np.int64)
    return labels[index.reshape(-1)].reshape(index.shape)  # an array even for one code


def limit_attrs(limits: Mapping[str, float]) -> dict[str, float]:
    """Return the cut-offs as ``DataFrame.attrs`` entries named by :data:`LIMIT_ATTRS` (million/mL).

    Args:
        limits: What :func:`limits_from` returned.
    """
    return {LIMIT_ATTRS[p]: float(limits[k]) for k, p in zip(LIMIT_KEYWORDS, LIMIT_PARAMETERS, strict=True)}
