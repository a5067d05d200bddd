"""Deep matrix factorization: exact sharpness of minimizers and the escape experiment.

Loss ``L(W) = ||W_L⋯W_1 − M||_F^2`` over layers ``W_i`` of shape ``(d_i, d_{i-1})``, target
``M`` of shape ``(d_L, d_0)`` (spec: ``/work/shared/spec/dmf.md``). Conventions:

* ``weights``: a sequence of float64 matrices ``W_1..W_L`` (depth ``L = len(weights)``);
* ``widths``: hidden widths ``(d_1, ..., d_{L-1})``; ``d_0``, ``d_L`` come from the target;
* ``dims``: the full chain ``(d_0, d_1, ..., d_L)``.

Pure numpy/scipy; no I/O. Bad input raises ``ValueError`` naming the problem.
"""

from .derivatives import gradient, hvp, loss
from .escape import (
    OUTCOMES,
    SHARPNESS_METHODS,
    EscapeResult,
    default_checkpoints,
    escape,
    escape_batch,
    null_direction,
    predicted_escape_step,
)
from .minimizers import (
    balanced_minimizer,
    gauge_minimizer,
    gaussian_minimizer,
    haar_orthogonal,
    scalar_minimizer,
)
from .numerical import dense_hessian, sharpness_numerical
from .products import flatten, left_products, right_products, unflatten
from .sharpness import (
    flattest_sharpness,
    hessian_eigenvalues,
    kronecker_matrix,
    sharpness,
    sharpness_bound,
    sharpness_closed_form,
    top_eigenvector,
)

__all__ = [
    "OUTCOMES",
    "SHARPNESS_METHODS",
    "EscapeResult",
    "balanced_minimizer",
    "default_checkpoints",
    "dense_hessian",
    "escape",
    "escape_batch",
    "flatten",
    "flattest_sharpness",
    "gauge_minimizer",
    "gaussian_minimizer",
    "gradient",
    "haar_orthogonal",
    "hessian_eigenvalues",
    "hvp",
    "kronecker_matrix",
    "left_products",
    "loss",
    "null_direction",
    "predicted_escape_step",
    "right_products",
    "scalar_minimizer",
    "sharpness",
    "sharpness_bound",
    "sharpness_closed_form",
    "sharpness_numerical",
    "top_eigenvector",
    "unflatten",
]
