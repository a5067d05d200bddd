"""Is it a real number? The type check shared by the input validators of ``dmf`` and ``mcvd``.

Numpy only, so the science packages keep their core-only dependencies.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["non_real_reason", "to_float64"]

_REAL_KINDS = "iuf"
_COMPLEX_KINDS = "iufc"


def _bad_scalar_type(value: object, allow_complex: bool) -> bool:
    if isinstance(value, bool | np.bool_):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind not in (_COMPLEX_KINDS if allow_complex else _REAL_KINDS)
    return not isinstance(value, numbers.Complex if allow_complex else numbers.Real)


def non_real_reason(value: object, *, allow_complex: bool = False) -> str | None:
    """Say why ``value`` is not a real number or an array_like of real numbers.

    Parameters
    ----------
    value : object
        A scalar, a numpy array or a (nested) sequence.
    allow_complex : bool
        Accept complex numbers too (real ones always are).

    Returns
    -------
    str or None
        ``None`` if every entry is an integer or a floating-point number (Python or numpy, or a
        complex one with ``allow_complex``); otherwise a short reason such as
        ``"bool, not a real number"`` or ``"an array of dtype complex128: complex entries are
        refused (...)"``. Booleans and object arrays are refused.

    """
    kinds = _COMPLEX_KINDS if allow_complex else _REAL_KINDS
    what = "numbers" if allow_complex else "real numbers"
    if isinstance(value, np.ndarray):
        if value.dtype.kind in kinds:
            return None
        if value.dtype.kind == "c":
            return (
                f"an array of dtype {value.dtype}: complex entries are refused (converting "
                "them to float64 would drop their imaginary part)"
            )
        return f"an array of dtype {value.dtype}, not {what}"
    if not isinstance(value, list | tuple):
        if _bad_scalar_type(value, allow_complex):
            return f"{type(value).__name__}, not a {what[:-1]}"
        return None
    try:
        entries = np.asarray(value, dtype=object)
    except ValueError:
        return f"a ragged sequence, not {what}"
    bad = sorted({type(x).__name__ for x in entries.flat if _bad_scalar_type(x, allow_complex)})
    if bad:
        return f"entries of type {', '.join(bad)}, not {what}"
    return None


def to_float64(value: ArrayLike) -> NDArray[np.float64] | str:
    """Return ``value`` as a float64 array, or the reason it is not real numbers.

    The callers turn the reason into their own error message, naming the parameter.
    """
    reason = non_real_reason(value)
    if reason is not None:
        return reason
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        return str(exc)
