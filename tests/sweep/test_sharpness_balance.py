"""Trace, balance measures and the equal-norm family of the sharpness experiment (issue 20).

The recorded variables are checked against direct numpy computations (explicit partial
products, SVDs) and the trace against the dense Hessian, on a tiny grid.
"""

import numpy as np
import pytest

from sweeplab import dmf
from sweeplab.sweep import REGISTRY, compute_points, grid_points, validate_config
from sweeplab.sweep.cluster import dask_client
from sweeplab.sweep.experiments import sharpness_minimizer

SECTION = {
    "depth": [2, 3], "width": [3], "d_io": [2], "family": ["gauge", "equal-norm", "top-balanced"],
    "seeds": 1, "gauge_spread": 0.5, "lanczos_tol": 1e-12, "dense_max_params": 100,
}  # fmt: skip


def _direct(ws, target):
    """The balance measures from explicit products and numpy norms."""
    depth = len(ws)
    s1 = np.linalg.svd(target, compute_uv=False)[0]
    u, _, vt = np.linalg.svd(target)
    prods, tops = [], []
    for i in range(depth):
        a_i = np.eye(target.shape[0])
        for w in ws[i + 1 :][::-1]:
            a_i = a_i @ w
        b_i = np.eye(target.shape[1])
        for w in ws[:i]:
            b_i = w @ b_i
        prods.append(np.linalg.svd(a_i, compute_uv=False)[0] * np.linalg.svd(b_i)[1][0])
        tops.append(np.linalg.norm(a_i.T @ u[:, 0]) * np.linalg.norm(b_i @ vt[0]))
    spec = np.array([np.linalg.svd(w, compute_uv=False)[0] for w in ws])
    prods = np.array(prods)
    imb = max(
        np.sqrt(np.sum((ws[i + 1].T @ ws[i + 1] - ws[i] @ ws[i].T) ** 2)) for i in range(depth - 1)
    )
    return {
        "trace": np.trace(dmf.dense_hessian(ws, target)),
        "imbalance_frobenius": imb / s1 ** (2 / depth),
        "spectral_spread": 1 - spec.min() / spec.max(),
        "product_spread": 1 - prods.min() / prods.max(),
        "product_excess": prods.max() / s1 ** ((depth - 1) / depth) - 1,
        "top_mode_excess": max(tops) / s1 ** ((depth - 1) / depth) - 1,
    }


def test_sharpness_balance_variables_match_direct_computation():
    grid = grid_points(REGISTRY["sharpness"], SECTION)
    points = grid.points(np.arange(len(grid.keys)))
    with dask_client(1) as client:
        ds = compute_points(REGISTRY["sharpness"], points, SECTION, client)
    assert int(ds.sizes["point"]) == 6 and (ds.status.values == 0).all()
    for k in range(6):
        point = ds.isel(point=k)
        depth, family = int(point.depth), str(point.family.item())
        ws, target = sharpness_minimizer(depth, 3, 2, family, int(point.seed), 0.5)
        for name, value in _direct(ws, target).items():
            assert float(point[name]) == pytest.approx(value, rel=1e-9, abs=1e-12), name
        gap = float(point.exact) / float(point.flattest) - 1
        if family == "top-balanced":  # the necessary condition holds, whether flat or not
            assert abs(float(point.top_mode_excess)) <= 1e-12
        else:
            assert gap > 1e-3  # gauge (spread 0.5) and equal-norm are not flat
        if family == "equal-norm":  # shared spectrum, sharpness checked by the dense Hessian
            assert float(point.spectral_spread) <= 1e-14
            assert float(point.rel_err_dense) <= 1e-10
    assert "necessary" in ds.top_mode_excess.attrs["long_name"]


def test_equal_norm_family_needs_two_modes():
    section = {**SECTION, "d_io": [1, 2]}
    with pytest.raises(ValueError, match=r"equal-norm needs depth >= 2 and width, d_io >= 2"):
        validate_config({"experiments": ["sharpness"], "sharpness": section})
    # width 1 < d_io no longer blocks a section without balanced or gauge
    ok = {**SECTION, "family": ["gaussian"], "width": [1]}
    validate_config({"experiments": ["sharpness"], "sharpness": ok})
