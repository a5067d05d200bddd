"""Balance, Hessian trace, mode thresholds and GFS sharpness (sweeplab.dmf.balance)."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from sweeplab import dmf


def _random_chain(dims, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((dims[i + 1], dims[i])) for i in range(len(dims) - 1)]


# --- balance ---------------------------------------------------------------------------------


def test_balance_spec_example():
    # spec §8: W_1 = diag(2, 1), W_2 = diag(1, 2) has equal spectral norms but is not flattest
    b = dmf.balance([np.diag([2.0, 1.0]), np.diag([1.0, 2.0])])
    np.testing.assert_allclose(b.spectral_norms, [2.0, 2.0])
    np.testing.assert_allclose(b.frobenius_norms, [np.sqrt(5.0)] * 2)
    np.testing.assert_allclose(b.product_norms, [2.0, 2.0])  # ||W_2|| · 1 and 1 · ||W_1||
    np.testing.assert_allclose(b.imbalance_spectral, [3.0])  # diag(1, 4) − diag(4, 1)
    np.testing.assert_allclose(b.imbalance_frobenius, [3.0 * np.sqrt(2.0)])


@pytest.mark.parametrize("dims", [(3, 5, 2, 4), (2, 2), (1, 4, 3, 1), (4, 3, 3, 3, 2)])
def test_balance_matches_direct_computation(dims):
    ws = _random_chain(dims, 0)
    b = dmf.balance(ws)
    depth = len(ws)
    assert b.spectral_norms.shape == b.frobenius_norms.shape == b.product_norms.shape == (depth,)
    assert b.imbalance_spectral.shape == b.imbalance_frobenius.shape == (depth - 1,)
    for i in range(depth):
        a_i = np.eye(dims[-1])
        for w in ws[i + 1 :][::-1]:
            a_i = a_i @ w
        b_i = np.eye(dims[0])
        for w in ws[:i]:
            b_i = w @ b_i
        assert b.product_norms[i] == pytest.approx(
            np.linalg.norm(a_i, 2) * np.linalg.norm(b_i, 2), rel=1e-12
        )
        assert b.spectral_norms[i] == pytest.approx(np.linalg.svd(ws[i])[1][0], rel=1e-12)
        assert b.frobenius_norms[i] == pytest.approx(np.sqrt(np.sum(ws[i] ** 2)), rel=1e-12)
    for i in range(depth - 1):
        d = ws[i + 1].T @ ws[i + 1] - ws[i] @ ws[i].T
        assert b.imbalance_spectral[i] == pytest.approx(np.abs(np.linalg.eigvalsh(d)).max())
        assert b.imbalance_frobenius[i] == pytest.approx(np.linalg.norm(d))
    with pytest.raises(ValueError):
        b.spectral_norms[0] = 1.0


def test_balance_of_balanced_minimizer():
    m = np.random.default_rng(3).standard_normal((3, 4))
    ws = dmf.balanced_minimizer(m, (5, 4), rng=np.random.default_rng(4))
    b = dmf.balance(ws)
    target = np.linalg.norm(m, 2) ** (2 / 3)  # ||M||_2^{(L−1)/L}, sufficient for flatness
    np.testing.assert_allclose(b.product_norms, target, rtol=1e-12)
    assert np.all(b.imbalance_spectral <= 1e-12 * np.linalg.norm(m, 2))


def test_balance_refuses_bad_weights():
    with pytest.raises(ValueError, match="shape chain"):
        dmf.balance([np.ones((2, 3)), np.ones((2, 3))])
    with pytest.raises(ValueError, match="non-finite"):
        dmf.balance([np.array([[np.nan]])])


# --- hessian_trace ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dims", [(3,), (2, 3), (3, 2, 4), (2, 3, 3, 2), (1, 3, 2, 1), (3, 3, 3, 3), (1, 1, 1, 1, 1)]
)
def test_hessian_trace_exact_at_any_point(dims):
    # not a minimizer: the residual part of the Hessian has a zero diagonal, so the trace is
    # the Gauss–Newton trace 2 Σ ||A_i||_F^2 ||B_i||_F^2 everywhere
    if len(dims) == 1:
        dims = (dims[0], 2)
    ws = _random_chain(dims, 1)
    m = np.random.default_rng(2).standard_normal((dims[-1], dims[0])) + 2.0
    assert dmf.loss(ws, m) > 1e-2
    dense = float(np.trace(dmf.dense_hessian(ws, m)))
    assert dmf.hessian_trace(ws, m) == pytest.approx(dense, rel=1e-12)
    assert dmf.hessian_trace(ws) == dmf.hessian_trace(ws, m)


def test_hessian_trace_at_minimizer_and_depth2_formula():
    ws, m = dmf.gaussian_minimizer((3, 4, 2, 5), np.random.default_rng(5))
    dense = float(np.trace(dmf.dense_hessian(ws, m)))
    assert dmf.hessian_trace(ws) == pytest.approx(dense, rel=1e-12)
    # with 2 eig(K) at a minimizer the trace is also 2 tr K
    assert dmf.hessian_trace(ws) == pytest.approx(2 * np.trace(dmf.kronecker_matrix(ws)), rel=1e-12)
    w1, w2 = _random_chain((3, 4, 2), 6)
    d0, d2 = 3, 2
    expected = 2 * (d0 * np.sum(w2**2) + d2 * np.sum(w1**2))
    assert dmf.hessian_trace([w1, w2]) == pytest.approx(expected, rel=1e-12)


def test_hessian_trace_refuses_bad_target():
    ws = _random_chain((2, 3, 2), 0)
    with pytest.raises(ValueError, match="does not match"):
        dmf.hessian_trace(ws, np.ones((3, 3)))


# --- mode_thresholds -------------------------------------------------------------------------


def test_mode_thresholds_values():
    s = np.array([6.0, 5.5, 5.0])
    th = dmf.mode_thresholds(np.diag(s), 3)
    np.testing.assert_allclose(th, 1.0 / (3 * s ** (4.0 / 3.0)), rtol=1e-14)
    assert np.all(np.diff(th) > 0)
    # the largest mode's threshold is 2 / flattest sharpness
    assert th[0] == pytest.approx(2.0 / dmf.flattest_sharpness(np.diag(s), 3), rel=1e-14)
    # rotation invariant, rank-deficient targets keep only the nonzero singular values
    rng = np.random.default_rng(0)
    u = dmf.haar_orthogonal(4, rng, 3)
    v = dmf.haar_orthogonal(5, rng, 3)
    rot = u @ np.diag([6.0, 5.5, 0.0]) @ v.T
    np.testing.assert_allclose(dmf.mode_thresholds(rot, 3), th[:2], rtol=1e-12)
    assert dmf.mode_thresholds(np.diag(s), 1).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("target", "depth", "match"),
    [
        (np.zeros((2, 2)), 3, "nonzero singular value"),
        (np.ones(3), 3, "2-D"),
        (np.array([[np.nan]]), 3, "non-finite"),
        (np.eye(2), 0, "depth must be an integer >= 1"),
        (np.eye(2), True, "depth must be an integer"),
        (np.eye(2), 2.0, "depth must be an integer"),
    ],
)
def test_mode_thresholds_refuses_bad_input(target, depth, match):
    with pytest.raises(ValueError, match=match):
        dmf.mode_thresholds(target, depth)


# --- gradient-flow solution (scalar chains) --------------------------------------------------


def _integrate_flow(w0, m, t_end):
    """Gradient flow dw/dt = −∇L for L(w) = (Π w − m)^2, integrated with LSODA."""

    def rhs(_t, w):
        left = np.concatenate([[1.0], np.cumprod(w[:-1])])
        right = np.concatenate([np.cumprod(w[::-1][:-1])[::-1], [1.0]])
        r = np.prod(w) - m
        return -2.0 * r * left * right

    sol = solve_ivp(rhs, (0.0, t_end), w0, method="LSODA", rtol=1e-12, atol=1e-14)
    assert sol.success
    return sol.y[:, -1]


def _scalar_sharpness(w):
    w2 = np.asarray(w) ** 2
    return 2.0 * sum(np.prod(np.delete(w2, i)) for i in range(w2.size))


@pytest.mark.parametrize(
    ("w0", "m"),
    [
        ([0.3, 0.5, 0.9, 1.1], 2.0),  # grows to the target
        ([1.5, -1.2, 0.8], -0.5),  # shrinks, signs kept
        ([0.4, 1.3, -0.9, 1.2, 0.7], 1.0),  # sign(Π w) ≠ sign(m): the smallest |w_i| flips
        ([0.2, 0.0, 1.0], 0.7),  # Π w = 0 with a single zero layer
        ([0.6, 1.1, 0.9], 0.0),  # zero target: the smallest layer goes to zero
    ],
)
def test_gfs_sharpness_matches_integrated_gradient_flow(w0, m):
    w0 = np.array(w0)
    weights = [np.array([[x]]) for x in w0]
    limit = dmf.gradient_flow_limit(weights, m)
    lam = dmf.gfs_sharpness(weights, m)
    assert np.prod(limit) == pytest.approx(m, abs=1e-12)
    # conserved w_i² − w_1²
    np.testing.assert_allclose(limit**2 - limit[0] ** 2, w0**2 - w0[0] ** 2, atol=1e-12)
    # independent: integrate the flow for 60 e-foldings of the distance to the limit (the
    # Hessian there is rank one with eigenvalue lam, also for m = 0 with a unique smallest |w|)
    end = _integrate_flow(w0, m, 60.0 / lam)
    np.testing.assert_allclose(end, limit, rtol=1e-8, atol=1e-10)
    assert _scalar_sharpness(end) == pytest.approx(lam, rel=1e-8)


def test_gfs_sharpness_closed_forms():
    # balanced start: w_i = (m)^{1/L}, sharpness 2 L m^{2 − 2/L}
    ws = [np.array([[1.0]])] * 3
    assert dmf.gfs_sharpness(ws, 8.0) == pytest.approx(96.0, rel=1e-14)
    assert dmf.gfs_sharpness(ws, 8.0) == pytest.approx(dmf.flattest_sharpness([[8.0]], 3))
    # at a minimizer gradient flow does not move: the GFS sharpness is the sharpness
    mins, m = dmf.scalar_minimizer(6, np.random.default_rng(0))
    assert dmf.gfs_sharpness(mins, m) == pytest.approx(dmf.sharpness(mins), rel=1e-12)
    np.testing.assert_allclose(
        dmf.gradient_flow_limit(mins, m), [w[0, 0] for w in mins], rtol=1e-12
    )


def test_gfs_sharpness_refuses_bad_input():
    with pytest.raises(ValueError, match="scalar chain"):
        dmf.gfs_sharpness([np.ones((1, 2)), np.ones((1, 1))], 1.0)
    with pytest.raises(ValueError, match="single number"):
        dmf.gfs_sharpness([np.ones((1, 1))] * 2, [1.0, 2.0])
    with pytest.raises(ValueError, match="saddle"):
        # product +1, target −1, two layers share the smallest |w|: both reach 0 together
        dmf.gfs_sharpness([np.array([[0.5]]), np.array([[0.5]]), np.array([[4.0]])], -1.0)
    with pytest.raises(ValueError, match="finite"):
        dmf.gfs_sharpness([np.ones((1, 1))] * 2, np.inf)
