"""Minimizer families, the Kronecker matrix and the null direction, checked independently."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeplab import dmf


def product(ws):
    p = ws[0]
    for w in ws[1:]:
        p = w @ p
    return p


def fd_jacobian_of_product(ws, h=1e-6):
    """d vec(W_L...W_1) / dw (column-major vec), by central differences."""
    x = dmf.flatten(ws)
    shapes = [w.shape for w in ws]
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        p_plus = product(dmf.unflatten(x + e, shapes))
        p_minus = product(dmf.unflatten(x - e, shapes))
        cols.append(((p_plus - p_minus) / (2 * h)).ravel(order="F"))
    return np.array(cols).T


@pytest.mark.parametrize("dims", [(2, 3, 4), (3, 2, 5, 2), (1, 4, 3, 2), (2, 2, 2, 2, 3)])
def test_kronecker_matrix_equals_fd_jacobian_gram(dims):
    ws, _ = dmf.gaussian_minimizer(dims, np.random.default_rng(4))
    jac = fd_jacobian_of_product(ws)
    np.testing.assert_allclose(dmf.kronecker_matrix(ws), jac @ jac.T, atol=1e-8)


@pytest.mark.parametrize("widths", [[], [3], [4, 2], [5, 3, 6]])
def test_balanced_minimizer_product_and_flatness(widths):
    target = np.random.default_rng(0).standard_normal((2, 3))
    target[:, 2] = target[:, 0] - target[:, 1]  # rank 2 <= every width
    for rng in (None, np.random.default_rng(1)):
        ws = dmf.balanced_minimizer(target, widths, rng=rng)
        assert [w.shape for w in ws] == [
            (d_out, d_in) for d_in, d_out in zip((3, *widths), (*widths, 2), strict=True)
        ]
        np.testing.assert_allclose(product(ws), target, atol=1e-13)
        flat = dmf.flattest_sharpness(target, len(ws))
        assert dmf.sharpness_numerical(ws, target) == pytest.approx(flat, rel=1e-11)
        # spectral norms are balanced: ||W_i||_2 = ||M||_2^(1/L) for every layer
        norms = [np.linalg.norm(w, 2) for w in ws]
        np.testing.assert_allclose(norms, np.linalg.norm(target, 2) ** (1 / len(ws)), rtol=1e-12)


def test_balanced_minimizer_rank_too_large():
    target = np.random.default_rng(0).standard_normal((3, 3))
    with pytest.raises(ValueError, match="rank of target is 3 but hidden width d_2 = 2"):
        dmf.balanced_minimizer(target, [4, 2, 5])


def test_gauge_minimizer_product_and_sharpness_order():
    rng = np.random.default_rng(5)
    target = rng.standard_normal((2, 2))
    flat = dmf.flattest_sharpness(target, 4)
    orth = dmf.gauge_minimizer(target, [3, 3, 3], rng, 0.0)
    np.testing.assert_allclose(product(orth), target, atol=1e-13)
    # orthogonal gauges keep the flattest value (checked by Lanczos, not by K)
    assert dmf.sharpness_numerical(orth, target) == pytest.approx(flat, rel=1e-10)
    lams = []
    for _ in range(5):
        ws = dmf.gauge_minimizer(target, [3, 3, 3], rng, 1.0)
        np.testing.assert_allclose(product(ws), target, atol=1e-10)
        lams.append(dmf.sharpness_numerical(ws, target))
    assert min(lams) > flat * (1 + 1e-6)  # generic non-orthogonal gauges are sharper


def test_gaussian_minimizer_entry_variance():
    """Entries of W_i are N(0, 1/d_{i-1}): sample variance within 5 standard errors."""
    dims = (50, 40, 30)
    ws, target = dmf.gaussian_minimizer(dims, np.random.default_rng(6))
    np.testing.assert_allclose(product(ws), target, rtol=0, atol=0)
    for w, d_in in zip(ws, dims[:-1], strict=True):
        n = w.size
        var = np.mean(w**2)
        se = np.sqrt(2.0 / n) / d_in  # sd of the mean of chi^2_1 / d_in
        assert abs(var - 1.0 / d_in) < 5 * se
        assert abs(np.mean(w)) < 5 / np.sqrt(n * d_in)


def test_scalar_minimizer_range_and_signs():
    ws, m = dmf.scalar_minimizer(200, np.random.default_rng(7))
    w = np.array([x[0, 0] for x in ws])
    assert np.all((np.abs(w) >= 0.5) & (np.abs(w) <= 1.5))
    assert 60 < np.sum(w > 0) < 140  # Binomial(200, 1/2): mean 100, sd 7.1 -> 5.6 sd band
    assert m[0, 0] == pytest.approx(np.prod(w), rel=1e-13)


def test_haar_orthogonal_columns():
    q = dmf.haar_orthogonal(6, np.random.default_rng(8), 3)
    np.testing.assert_allclose(q.T @ q, np.eye(3), atol=1e-14)


def test_minimizer_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"rng must be a numpy\.random\.Generator"):
        dmf.gaussian_minimizer((2, 3), 0)
    with pytest.raises(ValueError, match=r"dims\[1\] must be an integer >= 1, got 0"):
        dmf.gaussian_minimizer((2, 0, 3), rng)
    with pytest.raises(ValueError, match="dims must have at least 2 entries"):
        dmf.gaussian_minimizer((2,), rng)
    with pytest.raises(ValueError, match="spread must be a finite number >= 0"):
        dmf.gauge_minimizer(np.eye(2), [2], rng, -1.0)
    with pytest.raises(ValueError, match=r"widths\[0\] must be an integer >= 1"):
        dmf.balanced_minimizer(np.eye(2), [2.5])
    with pytest.raises(ValueError, match="need low < high"):
        dmf.scalar_minimizer(3, rng, low=2.0, high=1.0)


def test_null_direction_is_in_fd_hessian_kernel():
    ws, target = dmf.gaussian_minimizer((2, 3, 4, 2), np.random.default_rng(9))
    vn = dmf.flatten(dmf.null_direction(ws))
    v1 = dmf.flatten(dmf.top_eigenvector(ws))
    assert np.linalg.norm(vn) == pytest.approx(1.0)
    h = 1e-6
    shapes = [w.shape for w in ws]
    x = dmf.flatten(ws)
    g_plus = dmf.flatten(dmf.gradient(dmf.unflatten(x + h * vn, shapes), target))
    g_minus = dmf.flatten(dmf.gradient(dmf.unflatten(x - h * vn, shapes), target))
    assert np.linalg.norm((g_plus - g_minus) / (2 * h)) < 1e-7 * dmf.sharpness(ws)
    assert abs(np.vdot(vn, v1)) < 1e-12


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(1, 4), min_size=2, max_size=5),
    st.integers(0, 2**32 - 1),
)
def test_property_balanced_is_flattest_and_gauge_not_flatter(dims, seed):
    rng = np.random.default_rng(seed)
    d0, dl, hidden = dims[0], dims[-1], dims[1:-1]
    r = min(dims)
    target = rng.standard_normal((dl, r)) @ rng.standard_normal((r, d0))
    depth = len(hidden) + 1
    flat = dmf.flattest_sharpness(target, depth)
    bal = dmf.sharpness(dmf.balanced_minimizer(target, hidden, rng=rng))
    assert bal == pytest.approx(flat, rel=1e-9, abs=1e-12)
    gauged = dmf.sharpness(dmf.gauge_minimizer(target, hidden, rng, 0.7))
    assert gauged >= flat * (1 - 1e-9) - 1e-12
