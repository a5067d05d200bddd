"""Exact (Kronecker) sharpness vs independent numerics: a dense Hessian built from central
differences of the gradient (never from ``hvp``) and Lanczos over the HVP."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeplab import dmf


def fd_hessian(ws, target, h=1e-5):
    """Dense Hessian by central differences of the gradient (independent of hvp and K)."""
    x = dmf.flatten(ws)
    shapes = [w.shape for w in ws]
    n = x.size
    hess = np.empty((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = h
        gp = dmf.flatten(dmf.gradient(dmf.unflatten(x + e, shapes), target))
        gm = dmf.flatten(dmf.gradient(dmf.unflatten(x - e, shapes), target))
        hess[:, j] = (gp - gm) / (2 * h)
    return 0.5 * (hess + hess.T)


def product(ws):
    p = ws[0]
    for w in ws[1:]:
        p = w @ p
    return p


def _gauss(dims, seed):
    return dmf.gaussian_minimizer(
        dims, np.random.default_rng(np.random.SeedSequence([seed, *dims]))
    )


def _case(name):
    if name.startswith("scalar") and name[len("scalar") :].isdigit():
        depth = int(name[len("scalar") :])
        return dmf.scalar_minimizer(depth, np.random.default_rng(depth))
    if name == "diag":
        ws = [np.diag([2.0, 1.0]), np.diag([1.0, 10.0]), np.diag([2.0, 1.0])]
        return ws, product(ws)
    if name == "balanced":
        target = np.random.default_rng(7).standard_normal((3, 2))
        return dmf.balanced_minimizer(target, [4, 3, 5], rng=np.random.default_rng(8)), target
    chains = {
        "scalar_target_wide": (1, 6, 7, 5, 1),
        "depth2_matrix": (3, 5, 2),
        "depth2_wide": (2, 6, 4),
        "L3_unequal": (2, 5, 3, 4),
        "L4_unequal": (3, 2, 6, 4, 2),
        "L5_unequal": (2, 4, 3, 5, 2, 3),
    }
    return _gauss(chains[name], 11)


CASES = [
    "scalar2",
    "scalar5",
    "scalar15",
    "scalar_target_wide",
    "depth2_matrix",
    "depth2_wide",
    "L3_unequal",
    "L4_unequal",
    "L5_unequal",
    "diag",
    "balanced",
]
CLOSED_FORM_CASES = {
    "scalar2",
    "scalar5",
    "scalar15",
    "scalar_target_wide",
    "depth2_matrix",
    "depth2_wide",
}


@pytest.fixture(scope="module", params=CASES)
def case(request):
    ws, target = _case(request.param)
    hess = fd_hessian(ws, target)
    return request.param, ws, target, hess


def test_sharpness_matches_fd_dense_hessian(case):
    _, ws, _target, hess = case
    lam_fd = np.linalg.eigvalsh(hess)[-1]
    # FD truncation O(h^2) ~ 1e-10 and rounding O(eps/h) ~ 1e-11: 1e-8 relative is the stated budget
    assert dmf.sharpness(ws) == pytest.approx(lam_fd, rel=1e-8)


def test_sharpness_matches_lanczos(case):
    _, ws, target, _ = case
    assert dmf.sharpness(ws) == pytest.approx(dmf.sharpness_numerical(ws, target), rel=1e-11)


def test_sharpness_matches_hvp_dense(case):
    _, ws, target, _ = case
    assert dmf.sharpness(ws) == pytest.approx(
        dmf.sharpness_numerical(ws, target, method="dense"), rel=1e-11
    )


def test_nonzero_spectrum_matches_fd_hessian(case):
    _, ws, _target, hess = case
    ev_fd = np.linalg.eigvalsh(hess)
    ev_k = dmf.hessian_eigenvalues(ws)
    k = ev_k.size
    scale = ev_fd[-1]
    np.testing.assert_allclose(ev_k, ev_fd[-k:], atol=1e-7 * scale)
    # the remaining N - d_0 d_L eigenvalues vanish
    assert np.max(np.abs(ev_fd[:-k])) < 1e-7 * scale


def test_trace_formula(case):
    _, ws, _, hess = case
    a = dmf.left_products(ws)
    b = dmf.right_products(ws)
    trace = 2 * sum(np.sum(a[i + 1] ** 2) * np.sum(b[i] ** 2) for i in range(len(ws)))
    assert np.trace(hess) == pytest.approx(trace, rel=1e-8)


def test_top_eigenvector_is_unit_eigenvector_of_fd_hessian(case):
    _, ws, _, hess = case
    lam = dmf.sharpness(ws)
    v = dmf.flatten(dmf.top_eigenvector(ws))
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-13)
    np.testing.assert_allclose(hess @ v, lam * v, atol=1e-7 * lam)


def test_closed_form_where_it_applies(case):
    name, ws, _, hess = case
    if name in CLOSED_FORM_CASES:
        assert dmf.sharpness_closed_form(ws) == pytest.approx(
            np.linalg.eigvalsh(hess)[-1], rel=1e-8
        )
        assert dmf.sharpness_bound(ws) == pytest.approx(dmf.sharpness(ws), rel=1e-12)
    else:
        with pytest.raises(ValueError, match="no closed form"):
            dmf.sharpness_closed_form(ws)


def test_scalar_closed_form_matches_spec_formula():
    ws, m = dmf.scalar_minimizer(15, np.random.default_rng(3))
    w = np.array([x[0, 0] for x in ws])
    spec = 2 * m[0, 0] ** 2 * np.sum(1 / w**2)
    assert dmf.sharpness_closed_form(ws) == pytest.approx(spec, rel=1e-13)


def test_diag_example_exact_402_bound_432():
    ws, target = _case("diag")
    assert dmf.sharpness(ws) == pytest.approx(402.0, rel=1e-14)
    assert dmf.sharpness_bound(ws) == pytest.approx(432.0, rel=1e-14)
    assert dmf.sharpness_numerical(ws, target) == pytest.approx(402.0, rel=1e-12)


def test_balanced_minimizer_attains_flattest_value():
    ws, target = _case("balanced")
    flat = dmf.flattest_sharpness(target, len(ws))
    assert dmf.sharpness_numerical(ws, target) == pytest.approx(flat, rel=1e-11)
    assert dmf.sharpness_bound(ws) == pytest.approx(flat, rel=1e-12)


def test_sharpness_with_target_checks_minimizer():
    ws, target = _case("L3_unequal")
    with pytest.raises(ValueError, match=r"relative residual .* = 3\.333e-01 exceeds .* 1\.0e-08"):
        dmf.sharpness(ws, target=1.5 * target)  # residual 0.5||M|| / 1.5||M|| = 1/3
    assert dmf.sharpness(ws, target=target) == dmf.sharpness(ws)


def test_flattest_sharpness_inputs():
    assert dmf.flattest_sharpness(np.array([[3.0]]), 1) == 2.0
    assert dmf.flattest_sharpness(np.diag([4.0, 1.0]), 2) == pytest.approx(2 * 2 * 4.0)
    with pytest.raises(ValueError, match="depth must be an integer >= 1"):
        dmf.flattest_sharpness(np.eye(2), 0)


def test_top_eigenvector_zero_hessian_raises():
    ws = [np.zeros((2, 2))] * 3
    with pytest.raises(ValueError, match="Hessian at weights is zero"):
        dmf.top_eigenvector(ws)


def test_sharpness_numerical_bad_method():
    ws, target = _case("depth2_matrix")
    with pytest.raises(ValueError, match="method must be 'lanczos' or 'dense'"):
        dmf.sharpness_numerical(ws, target, method="power")


def test_sharpness_numerical_away_from_minimizer_matches_fd():
    ws, target = _case("L3_unequal")
    target = target + 0.3  # not a minimizer: the Gauss-Newton reduction does not apply
    lam_fd = np.linalg.eigvalsh(fd_hessian(ws, target))[-1]
    assert dmf.sharpness_numerical(ws, target) == pytest.approx(lam_fd, rel=1e-8)


@st.composite
def random_minimizer(draw):
    depth = draw(st.integers(2, 5))
    dims = tuple(draw(st.lists(st.integers(1, 4), min_size=depth + 1, max_size=depth + 1)))
    seed = draw(st.integers(0, 2**32 - 1))
    family = draw(st.sampled_from(["gaussian", "gauge"]))
    rng = np.random.default_rng(seed)
    if family == "gaussian":
        return dmf.gaussian_minimizer(dims, rng)
    r = min(dims)
    target = rng.standard_normal((dims[-1], r)) @ rng.standard_normal((r, dims[0]))
    spread = draw(st.floats(0.0, 1.0))
    return dmf.gauge_minimizer(target, dims[1:-1], rng, spread), target


@settings(max_examples=60, deadline=None)
@given(random_minimizer())
def test_property_bound_ge_exact_ge_flattest(wt):
    ws, _target = wt
    exact = dmf.sharpness(ws)
    tol = 1e-10 * max(exact, 1.0)
    assert dmf.sharpness_bound(ws) >= exact - tol
    assert exact >= dmf.flattest_sharpness(product(ws), len(ws)) - tol


@settings(max_examples=25, deadline=None)
@given(random_minimizer())
def test_property_exact_matches_lanczos(wt):
    ws, _target = wt
    exact = dmf.sharpness(ws)
    assert exact == pytest.approx(dmf.sharpness_numerical(ws, product(ws)), rel=1e-10, abs=1e-12)


def test_dense_hessian_refuses_large_problems():
    ws, target = dmf.gaussian_minimizer((8, 64, 64, 8), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"dense Hessian needs N <= 4000 parameters, got N = 5120"):
        dmf.sharpness_numerical(ws, target, method="dense")
