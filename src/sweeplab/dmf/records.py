"""What an escape run records: its outcome names, sharpness methods and checkpoint steps.

Kept apart from :mod:`.escape` (which loads scipy and the compiled kernels) so that the sweep
layer can plan and describe escape blocks (coordinates, memory) without loading either.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .validation import check_int

__all__ = ["DESCEND_OUTCOMES", "OUTCOMES", "SHARPNESS_METHODS", "WINDOW", "default_checkpoints"]

OUTCOMES: tuple[str, ...] = ("stayed", "escaped", "edge_of_stability", "unconverged", "diverged")
"""Possible values of :attr:`~.escape.EscapeResult.outcome`; the index is the integer code
stored by the sweep layer (``OUTCOMES.index(outcome)``)."""

DESCEND_OUTCOMES: tuple[str, ...] = ("converged", "edge_of_stability", "unconverged", "diverged")
"""Possible values of :attr:`~.descend.DescendResult.outcome`; the index is the integer code
stored by the sweep layer (the eos experiment)."""

SHARPNESS_METHODS: tuple[str, ...] = ("exact", "lanczos", "none", "dense")
"""Possible values of :attr:`~.escape.EscapeResult.final_sharpness_method` (see :mod:`.escape`);
the index is the stored integer code, so new methods are appended."""

WINDOW = 128
"""Default length (steps) of the dense trajectory window around the escape step."""


def default_checkpoints(max_steps: int, num: int = 64) -> NDArray[np.int64]:
    """Return ``0`` plus about ``num`` log-spaced steps in ``[1, max_steps]`` (both included).

    Parameters
    ----------
    max_steps : int
        Last step (``>= 1``).
    num : int, optional
        Number of log-spaced steps before rounding and removing duplicates (``>= 1``).

    Returns
    -------
    ndarray of int64, shape (n,)
        Sorted unique steps, ``n <= num + 1``, starting at 0 and ending at ``max_steps``.

    Examples
    --------
    >>> default_checkpoints(10, num=4).tolist()
    [0, 1, 2, 5, 10]

    """
    steps = check_int(max_steps, "max_steps", 1)
    num = check_int(num, "num", 1)
    pts = np.round(np.geomspace(1, steps, num)).astype(np.int64)
    return np.unique(np.concatenate([np.zeros(1, dtype=np.int64), pts]))
