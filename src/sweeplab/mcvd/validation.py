"""Argument checks shared by the :mod:`sweeplab.mcvd` functions.

Every public function checks its numeric arguments here, so that the same inputs are refused
everywhere with the same kind of message: ``"<name> must be <allowed range>, got <value!r>"``,
followed by the reason when the value is not a real number at all (a bool, a complex number, a
string, an object array, ...). Booleans are refused even though Python treats them as the
integers 0 and 1: ``D=True`` or ``t_end=True`` is a mistake, never a unit value. All errors are
:class:`ValueError`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._realnumbers import non_real_reason, to_float64

__all__ = [
    "check_boolean",
    "check_integer",
    "check_number",
    "non_real_reason",
    "real_array",
    "short_repr",
    "whole_steps",
]


def real_array(value: ArrayLike, name: str, allowed: str) -> NDArray[np.float64]:
    """Return ``value`` as a float64 array after refusing non-real entries.

    Only the types are checked here (no range); the caller checks the values.

    Raises
    ------
    ValueError
        ``"<name> must be <allowed>, got <value!r> (<reason>)"`` if an entry is a bool, a
        complex number, a string, ``None`` or another non-real object, or an object array.

    """
    array = to_float64(value)
    if isinstance(array, str):
        raise ValueError(f"{name} must be {allowed}, got {short_repr(value)} ({array})")
    return array


def check_number(
    value: object,
    name: str,
    allowed: str,
    *,
    minimum: float = -math.inf,
    maximum: float = math.inf,
    strict: bool = False,
) -> float:
    """Return ``float(value)`` for a finite real number in range.

    Parameters
    ----------
    value : object
        A Python or numpy integer or float, or a 0-d real array; bools are refused.
    name : str
        Parameter name used in the message.
    allowed : str
        The allowed range in words, e.g. ``"a finite number > 0 s"``.
    minimum, maximum : float
        Bounds (inclusive unless ``strict``, which makes the lower bound exclusive).
    strict : bool
        ``value > minimum`` instead of ``value >= minimum``.

    Raises
    ------
    ValueError
        ``"<name> must be <allowed>, got <value!r>"``, with the reason appended when ``value``
        is not a real number.

    """
    reason = non_real_reason(value)
    if reason is None and np.ndim(value) != 0:
        reason = f"an array of shape {np.shape(value)}, not a single number"
    if reason is not None:
        raise ValueError(f"{name} must be {allowed}, got {short_repr(value)} ({reason})")
    v = float(value)  # type: ignore[arg-type]
    low_ok = v > minimum if strict else v >= minimum
    if not (math.isfinite(v) and low_ok and v <= maximum):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return v


def check_integer(value: object, name: str, minimum: int) -> int:
    """Return ``int(value)`` for a Python or numpy integer ``>= minimum`` (bools refused).

    Raises
    ------
    ValueError
        ``"<name> must be an integer >= <minimum>, got <value!r>"``.

    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {short_repr(value)} "
            f"({type(value).__name__}, not an integer)"
        )
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_boolean(value: object, name: str, meaning: str) -> bool:
    """Return ``bool(value)`` for ``True``/``False`` (or numpy bools), refusing anything else.

    ``meaning`` says what ``True`` does; the message is
    ``"<name> must be True (<meaning>) or False, got <value!r>"``.
    """
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True ({meaning}) or False, got {short_repr(value)}")
    return bool(value)


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters for long sequences and arrays."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def whole_steps(duration: float, step: float, rtol: float = 1e-9) -> bool:
    """Whether ``duration`` (s) is a whole number of time steps ``step`` (s), to ``rtol``.

    Binned rates, symbol durations and the end time of a simulation must fall on step
    boundaries; this is the check the sweep applies to every such setting.

    Parameters
    ----------
    duration : float
        Finite, >= 0 (s).
    step : float
        Finite, > 0 (s).
    rtol : float
        Finite, >= 0: relative tolerance on the number of steps.

    Raises
    ------
    ValueError
        If an argument is not a real number in its range (bools are refused).

    """
    duration = check_number(duration, "duration", "a finite number >= 0 s", minimum=0.0)
    step = check_number(step, "step", "a finite number > 0 s", minimum=0.0, strict=True)
    rtol = check_number(rtol, "rtol", "a finite number >= 0", minimum=0.0)
    n = duration / step
    return abs(n - round(n)) <= rtol * n
