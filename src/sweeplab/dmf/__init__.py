"""Deep matrix factorization: exact sharpness of minimizers and the escape experiment.

Loss ``L(W) = ||W_L⋯W_1 − M||_F^2`` over layers ``W_i`` of shape ``(d_i, d_{i-1})``, target
``M`` of shape ``(d_L, d_0)`` (spec: ``/work/shared/spec/dmf.md``). Conventions:

* ``weights``: a sequence of float64 matrices ``W_1..W_L`` (depth ``L = len(weights)``);
* ``widths``: hidden widths ``(d_1, ..., d_{L-1})``; ``d_0``, ``d_L`` come from the target;
* ``dims``: the full chain ``(d_0, d_1, ..., d_L)``.

Pure numpy/scipy; no I/O. Bad input raises ``ValueError`` naming the problem.

The names below are imported from their submodules on first use (as in :mod:`sweeplab.sweep`),
so that code needing only :mod:`.records` (the sweep layer's planner) loads neither scipy nor
numba.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:
    from .balance import (
        Balance,
        balance,
        gfs_sharpness,
        gradient_flow_limit,
        hessian_trace,
        mode_thresholds,
        top_mode_products,
    )
    from .derivatives import gradient, hvp, loss
    from .descend import DescendResult, descend
    from .escape import EscapeResult, escape, escape_batch, null_direction, predicted_escape_step
    from .minimizers import (
        balanced_minimizer,
        equal_norm_minimizer,
        gauge_minimizer,
        gaussian_minimizer,
        haar_orthogonal,
        scalar_minimizer,
        top_balanced_minimizer,
    )
    from .numerical import dense_hessian, sharpness_numerical
    from .products import flatten, left_products, right_products, unflatten
    from .records import DESCEND_OUTCOMES, OUTCOMES, SHARPNESS_METHODS, WINDOW, default_checkpoints
    from .sharpness import (
        flattest_sharpness,
        hessian_eigenvalues,
        kronecker_matrix,
        sharpness,
        sharpness_bound,
        sharpness_closed_form,
        top_eigenvector,
    )

_WHERE = {
    "Balance": "balance",
    "balance": "balance",
    "balanced_minimizer": "minimizers",
    "default_checkpoints": "records",
    "dense_hessian": "numerical",
    "descend": "descend",
    "DESCEND_OUTCOMES": "records",
    "DescendResult": "descend",
    "equal_norm_minimizer": "minimizers",
    "escape": "escape",
    "escape_batch": "escape",
    "EscapeResult": "escape",
    "flatten": "products",
    "flattest_sharpness": "sharpness",
    "gauge_minimizer": "minimizers",
    "gaussian_minimizer": "minimizers",
    "gfs_sharpness": "balance",
    "gradient": "derivatives",
    "gradient_flow_limit": "balance",
    "haar_orthogonal": "minimizers",
    "hessian_eigenvalues": "sharpness",
    "hessian_trace": "balance",
    "hvp": "derivatives",
    "kronecker_matrix": "sharpness",
    "left_products": "products",
    "loss": "derivatives",
    "mode_thresholds": "balance",
    "null_direction": "escape",
    "OUTCOMES": "records",
    "predicted_escape_step": "escape",
    "right_products": "products",
    "scalar_minimizer": "minimizers",
    "sharpness": "sharpness",
    "sharpness_bound": "sharpness",
    "sharpness_closed_form": "sharpness",
    "SHARPNESS_METHODS": "records",
    "sharpness_numerical": "numerical",
    "top_balanced_minimizer": "minimizers",
    "top_eigenvector": "sharpness",
    "top_mode_products": "balance",
    "unflatten": "products",
    "WINDOW": "records",
}

__all__ = [
    "DESCEND_OUTCOMES",
    "OUTCOMES",
    "SHARPNESS_METHODS",
    "WINDOW",
    "Balance",
    "DescendResult",
    "EscapeResult",
    "balance",
    "balanced_minimizer",
    "default_checkpoints",
    "dense_hessian",
    "descend",
    "equal_norm_minimizer",
    "escape",
    "escape_batch",
    "flatten",
    "flattest_sharpness",
    "gauge_minimizer",
    "gaussian_minimizer",
    "gfs_sharpness",
    "gradient",
    "gradient_flow_limit",
    "haar_orthogonal",
    "hessian_eigenvalues",
    "hessian_trace",
    "hvp",
    "kronecker_matrix",
    "left_products",
    "loss",
    "mode_thresholds",
    "null_direction",
    "predicted_escape_step",
    "right_products",
    "scalar_minimizer",
    "sharpness",
    "sharpness_bound",
    "sharpness_closed_form",
    "sharpness_numerical",
    "top_balanced_minimizer",
    "top_eigenvector",
    "top_mode_products",
    "unflatten",
]

lazy_names(__name__, _WHERE)
