"""Which balance makes a minimum flat (issue 20, item 3), against the dense Hessian.

Findings of ``bench/flatness_balance.py`` encoded on minimizers built for them. Flatness is
always decided by the dense Hessian (N Hessian-vector products), never by the Kronecker K:

* ``‖A_i‖₂‖B_i‖₂ = ‖M‖₂^{(L−1)/L}`` for every i is sufficient; it is also necessary for
  depth 2 and for scalar targets (d_0 = d_L = 1), but not for L >= 3 with matrix targets;
* equal spectral norms, a constant product ``‖A_i‖₂‖B_i‖₂`` (at another value) and equal
  Frobenius norms are not sufficient; Frobenius balance is sufficient, not necessary;
* balance of the top mode (:func:`dmf.top_mode_products`) is necessary, not sufficient.
"""

import numpy as np
import pytest

from sweeplab import dmf

FLAT_RTOL = 1e-9


def dense_sharpness(ws, target):
    return float(np.linalg.eigvalsh(dmf.dense_hessian(ws, target))[-1])


def product(ws):
    p = ws[0]
    for w in ws[1:]:
        p = w @ p
    return p


def is_flat(ws):
    m = product(ws)
    flattest = dmf.flattest_sharpness(m, len(ws))
    return dense_sharpness(ws, m) <= flattest * (1 + FLAT_RTOL)


def product_excess(ws):
    """max_i ||A_i|| ||B_i|| / ||M||^((L-1)/L) - 1 (0 iff every product is at that value)."""
    depth = len(ws)
    s1 = np.linalg.norm(product(ws), 2)
    return dmf.balance(ws).product_norms.max() / s1 ** ((depth - 1) / depth) - 1


def spread(x):
    return (x.max() - x.min()) / x.max()


# --- the equal-norm family -------------------------------------------------------------------


def test_equal_norm_spec_example():
    ws, m = dmf.equal_norm_minimizer((2, 2, 2), [2.0, 1.0])
    np.testing.assert_array_equal(ws[0], np.diag([2.0, 1.0]))
    np.testing.assert_array_equal(ws[1], np.diag([1.0, 2.0]))
    np.testing.assert_array_equal(m, 2.0 * np.eye(2))
    assert dense_sharpness(ws, m) == pytest.approx(16.0, rel=1e-12)
    assert dmf.flattest_sharpness(m, 2) == pytest.approx(8.0, rel=1e-15)


@pytest.mark.parametrize("dims", [(2, 3, 2), (2, 2, 3, 2), (3, 4, 3, 3), (2, 3, 2, 2, 3)])
def test_equal_norm_minimizer_shared_spectrum_and_not_flat(dims):
    rng = np.random.default_rng(list(dims))
    r = min(dims)
    values = np.exp(rng.uniform(-1, 1, r))
    ws, m = dmf.equal_norm_minimizer(dims, values, rng)
    assert [w.shape for w in ws] == [(dims[i + 1], dims[i]) for i in range(len(dims) - 1)]
    np.testing.assert_allclose(product(ws), m, atol=1e-14)
    for w in ws:  # every layer has exactly the singular values `values` (plus zeros)
        s = np.linalg.svd(w, compute_uv=False)
        np.testing.assert_allclose(s[:r], np.sort(values)[::-1], rtol=1e-13)
        np.testing.assert_allclose(s[r:], 0.0, atol=1e-13)
    dense = dense_sharpness(ws, m)
    assert dmf.sharpness(ws) == pytest.approx(dense, rel=1e-10)
    assert dense > dmf.flattest_sharpness(m, len(ws)) * (1 + 1e-3)


def test_equal_norm_minimizer_refuses_bad_input():
    with pytest.raises(ValueError, match="r >= 2 singular values, got 1"):
        dmf.equal_norm_minimizer((2, 2, 2), [1.0])
    with pytest.raises(ValueError, match="pairwise distinct"):
        dmf.equal_norm_minimizer((2, 2, 2), [1.0, 1.0])
    with pytest.raises(ValueError, match="positive and finite"):
        dmf.equal_norm_minimizer((2, 2, 2), [1.0, 0.0])
    with pytest.raises(ValueError, match=r"must be >= len\(values\) = 3"):
        dmf.equal_norm_minimizer((3, 2, 3), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="at least 3 entries"):
        dmf.equal_norm_minimizer((2, 2), [1.0, 2.0])
    with pytest.raises(ValueError, match=r"numpy\.random\.Generator"):
        dmf.equal_norm_minimizer((2, 2, 2), [1.0, 2.0], rng=3)


# --- top_mode_products -----------------------------------------------------------------------


def test_top_mode_products_against_direct_computation():
    rng = np.random.default_rng(7)
    ws = [rng.standard_normal(s) for s in [(3, 2), (4, 3), (2, 4)]]
    u, _, vt = np.linalg.svd(ws[2] @ ws[1] @ ws[0])
    direct = [
        np.linalg.norm((ws[2] @ ws[1]).T @ u[:, 0]),  # B_1 = I
        np.linalg.norm(ws[2].T @ u[:, 0]) * np.linalg.norm(ws[0] @ vt[0]),
        np.linalg.norm(ws[1] @ ws[0] @ vt[0]),  # A_3 = I
    ]
    np.testing.assert_allclose(dmf.top_mode_products(ws), direct, rtol=1e-12)
    zero = [np.zeros((2, 2)), np.eye(2)]
    np.testing.assert_array_equal(dmf.top_mode_products(zero), [0.0, 0.0])


# --- flatness <=> balance --------------------------------------------------------------------


def test_product_condition_sufficient():
    """Balanced, orthogonally gauged and dead-mode minimizers: products at the value, flat."""
    rng = np.random.default_rng(11)
    m = rng.standard_normal((2, 2))
    balanced = dmf.balanced_minimizer(m, [3, 3], rng=rng)
    gauged = dmf.gauge_minimizer(m, [3, 3], rng, 0.0)
    # W_2 gains a block on the hidden mode neither W_1 reaches nor W_3 reads: K is unchanged
    q_in = np.linalg.svd(balanced[0])[0][:, 2]
    q_out = np.linalg.svd(balanced[2].T)[0][:, 2]
    dead = [balanced[0], balanced[1] + 5.0 * np.outer(q_out, q_in), balanced[2]]
    for ws in (balanced, gauged, dead):
        np.testing.assert_allclose(product(ws), m, atol=1e-12)
        assert abs(product_excess(ws)) <= 1e-12
        assert is_flat(ws)
    # the dead block unbalances every layer norm yet keeps flatness
    b = dmf.balance(dead)
    assert spread(b.spectral_norms) > 0.5 and b.imbalance_frobenius.max() > 1.0


@pytest.mark.parametrize("a", [0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 2.5, 3.0])
def test_depth2_flat_iff_products_at_value(a):
    """M = diag(4, 1), W_1 = diag(2, a), W_2 = diag(2, 1/a): flat iff max(a, 1/a) <= 2."""
    ws = [np.diag([2.0, a]), np.diag([2.0, 1.0 / a])]
    flat = is_flat(ws)
    assert flat == (max(a, 1 / a) <= 2.0)
    assert flat == (product_excess(ws) <= 1e-12)
    b = dmf.balance(ws)
    # Frobenius balance only at a = 1, flat or not
    assert (b.imbalance_frobenius[0] <= 1e-12) == (a == 1.0)


def test_scalar_target_flat_iff_products_at_value():
    """d_0 = d_L = 1: constant products are not enough; at the value they are exact."""
    theta = 0.7
    misaligned = [np.array([[1.0], [0.0]]), np.array([[np.cos(theta), np.sin(theta)]])]
    b = dmf.balance(misaligned)
    assert spread(b.product_norms) <= 1e-15 and spread(b.spectral_norms) <= 1e-15
    assert not is_flat(misaligned)  # sharpness 4 against flattest 4 cos(theta)
    assert product_excess(misaligned) > 0.1
    # dead hidden mode of norm 3 > 1: spectral norms unequal, products at the value, flat
    t = 1.0
    dead = [np.array([[t], [0.0]]), np.diag([t, 3.0]), np.array([[t, 0.0]])]
    assert spread(dmf.balance(dead).spectral_norms) > 0.5
    assert abs(product_excess(dead)) <= 1e-15
    assert is_flat(dead)


def test_deep_matrix_target_flat_without_product_balance():
    """L = 3, M = diag(1, 0.3): flat, yet products and spectral norms are unbalanced."""
    ws = [np.diag([1.0, 1.2]), np.diag([1.0, 0.5]), np.diag([1.0, 0.5])]
    assert dense_sharpness(ws, product(ws)) == pytest.approx(6.0, rel=1e-12)
    assert is_flat(ws)
    b = dmf.balance(ws)
    np.testing.assert_allclose(b.product_norms, [1.0, 1.2, 1.0], rtol=1e-15)
    np.testing.assert_allclose(b.spectral_norms, [1.2, 1.0, 1.0], rtol=1e-15)
    np.testing.assert_allclose(dmf.top_mode_products(ws), 1.0, rtol=1e-15)


def test_constant_products_not_sufficient():
    """Spectrally balanced aligned chains (equal-norm): constant products, not flat."""
    for dims in [(2, 2, 2), (3, 3, 3)]:
        values = np.arange(1.0, min(dims) + 1.0)
        ws, _ = dmf.equal_norm_minimizer(dims, values, np.random.default_rng(3))
        b = dmf.balance(ws)
        assert spread(b.spectral_norms) <= 1e-14 and spread(b.frobenius_norms) <= 1e-14
        assert spread(b.product_norms) <= 1e-14  # depth 2: products are the layer norms
        assert not is_flat(ws)


def test_top_mode_balance_necessary_not_sufficient():
    # necessary: every flat minimizer above has its top mode balanced
    rng = np.random.default_rng(5)
    m = rng.standard_normal((2, 2))
    s1 = np.linalg.norm(m, 2)
    for ws in (dmf.balanced_minimizer(m, [3], rng=rng), dmf.gauge_minimizer(m, [2, 2], rng, 0.0)):
        depth = len(ws)
        assert is_flat(ws)
        np.testing.assert_allclose(dmf.top_mode_products(ws), s1 ** ((depth - 1) / depth))
    # not sufficient: top mode balanced (1, 1), the second mode is sharper
    ws = [np.diag([1.0, 2.0]), np.diag([1.0, 0.25])]
    np.testing.assert_allclose(dmf.top_mode_products(ws), [1.0, 1.0], rtol=1e-15)
    assert dense_sharpness(ws, product(ws)) == pytest.approx(10.0, rel=1e-12)  # flattest 4
    assert not is_flat(ws)
    # and a sharp gauge fails it: the bound of the docstring is strict there
    ws = dmf.gauge_minimizer(m, [2, 2], rng, 1.0)
    top = dmf.top_mode_products(ws)
    assert not is_flat(ws)
    assert np.prod(top) >= s1**2 * (1 - 1e-12)  # prod_i a_i b_i >= sigma_1^(L-1)
    assert top.max() > s1 ** (2 / 3) * (1 + 1e-6)


# --- the top-balanced family -----------------------------------------------------------------


def test_top_balanced_minimizer_spectrum_and_top_mode():
    m = np.diag([3.0, 1.5])
    for spread, flat in ((0.2, True), (2.0, False)):
        ws = dmf.top_balanced_minimizer(m, [3, 3], np.random.default_rng(0), spread)
        np.testing.assert_allclose(product(ws), m, atol=1e-13)
        np.testing.assert_allclose(dmf.top_mode_products(ws), 3.0 ** (2 / 3), rtol=1e-13)
        # the nonzero spectrum of the dense Hessian is the aligned closed form over mode pairs
        evals = np.linalg.eigvalsh(dmf.dense_hessian(ws, m))[-4:]
        np.testing.assert_allclose(evals, _aligned_eigenvalues_in_modes(ws, m), rtol=1e-10)
        assert is_flat(ws) == flat
        assert dmf.balance(ws).imbalance_frobenius.max() > 0.01  # not Frobenius balanced


def _aligned_eigenvalues_in_modes(ws, m):
    """2 Σ_i Π_{l>i} w_lj² Π_{l<i} w_lk² over mode pairs (j, k), w_ij read along the chain."""
    _, _, vt = np.linalg.svd(m)
    q = vt.T  # Q_0 = V: columns are the modes
    vals = []
    for w in ws:
        img = w @ q  # = Q_i diag(w_i)
        d = np.linalg.norm(img, axis=0)
        vals.append(d)
        q = img / d
    vals = np.array(vals)
    depth, r = vals.shape
    out = [
        2 * sum(np.prod(vals[i + 1 :, j] ** 2) * np.prod(vals[:i, k] ** 2) for i in range(depth))
        for j in range(r)
        for k in range(r)
    ]
    return np.sort(out)


def test_top_balanced_minimizer_special_cases_and_bad_input():
    m = np.random.default_rng(8).standard_normal((2, 2))
    ws = dmf.top_balanced_minimizer(m, [2, 2], np.random.default_rng(1), 0.0)
    assert is_flat(ws) and dmf.balance(ws).imbalance_frobenius.max() < 1e-12
    with pytest.raises(ValueError, match="spread"):
        dmf.top_balanced_minimizer(m, [2], np.random.default_rng(1), -1.0)
    with pytest.raises(ValueError, match="rank of target is 2"):
        dmf.top_balanced_minimizer(m, [1], np.random.default_rng(1), 0.5)
