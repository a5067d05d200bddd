"""Loss, gradient and HVP against central finite differences at non-minimizers."""

import numpy as np
import pytest

from sweeplab import dmf


def random_point(dims, seed):
    rng = np.random.default_rng(np.random.SeedSequence([seed, *dims]))
    ws = [
        rng.standard_normal((dims[i + 1], dims[i])) / np.sqrt(dims[i]) for i in range(len(dims) - 1)
    ]
    target = rng.standard_normal((dims[-1], dims[0]))  # generic target: not a minimizer
    return ws, target


def fd_gradient(ws, target, h=1e-6):
    x = dmf.flatten(ws)
    shapes = [w.shape for w in ws]
    g = np.empty_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        lp = dmf.loss(dmf.unflatten(x + e, shapes), target)
        lm = dmf.loss(dmf.unflatten(x - e, shapes), target)
        g[j] = (lp - lm) / (2 * h)
    return g


CHAINS = [(1, 1, 1), (3, 2), (2, 4, 3), (3, 5, 2, 4), (1, 6, 5, 1), (2, 3, 4, 3, 2)]


def test_loss_hand_computed():
    ws = [np.array([[1.0, 2.0]]), np.array([[3.0], [-1.0]])]  # product [[3, 6], [-1, -2]]
    target = np.array([[3.0, 5.0], [0.0, -2.0]])
    assert dmf.loss(ws, target) == pytest.approx(1.0 + 1.0)


@pytest.mark.parametrize("dims", CHAINS)
def test_gradient_matches_central_differences_of_loss(dims):
    ws, target = random_point(dims, 1)
    g = dmf.flatten(dmf.gradient(ws, target))
    g_fd = fd_gradient(ws, target)
    # central differences: error O(h^2 L''') + O(eps L / h) ~ 1e-9 relative here
    np.testing.assert_allclose(g, g_fd, rtol=1e-6, atol=1e-8 * np.linalg.norm(g_fd))


@pytest.mark.parametrize("dims", CHAINS)
def test_hvp_matches_central_differences_of_gradient(dims):
    ws, target = random_point(dims, 2)
    rng = np.random.default_rng(3)
    vs = [rng.standard_normal(w.shape) for w in ws]
    h = 1e-6
    plus = dmf.gradient([w + h * v for w, v in zip(ws, vs, strict=True)], target)
    minus = dmf.gradient([w - h * v for w, v in zip(ws, vs, strict=True)], target)
    fd = (dmf.flatten(plus) - dmf.flatten(minus)) / (2 * h)
    hv = dmf.flatten(dmf.hvp(ws, target, vs))
    np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-7 * np.linalg.norm(fd))


def test_hvp_is_symmetric_bilinear_form():
    ws, target = random_point((2, 3, 4, 2), 4)
    rng = np.random.default_rng(5)
    u = [rng.standard_normal(w.shape) for w in ws]
    v = [rng.standard_normal(w.shape) for w in ws]
    uhv = np.vdot(dmf.flatten(u), dmf.flatten(dmf.hvp(ws, target, v)))
    vhu = np.vdot(dmf.flatten(v), dmf.flatten(dmf.hvp(ws, target, u)))
    assert uhv == pytest.approx(vhu, rel=1e-12)


def test_gradient_vanishes_at_minimizer():
    ws, target = dmf.gaussian_minimizer((3, 4, 2), np.random.default_rng(0))
    for g in dmf.gradient(ws, target):
        assert np.max(np.abs(g)) < 1e-13


def test_flatten_unflatten_roundtrip():
    ws, _ = random_point((2, 3, 4), 0)
    back = dmf.unflatten(dmf.flatten(ws), [w.shape for w in ws])
    for a, b in zip(ws, back, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="length 18"):
        dmf.unflatten(np.zeros(5), [w.shape for w in ws])


def test_bad_inputs_name_the_problem():
    ws, target = random_point((2, 3, 4), 0)
    with pytest.raises(
        ValueError, match=r"shape chain broken between W_1 \(shape \(3, 2\)\) and W_2"
    ):
        dmf.loss([ws[0], np.ones((4, 5))], target)
    bad = [ws[0].copy(), ws[1]]
    bad[0][0, 0] = np.nan
    with pytest.raises(ValueError, match="W_1 has 1 non-finite"):
        dmf.gradient(bad, target)
    with pytest.raises(ValueError, match=r"target shape \(2, 4\) does not match.*\(4, 2\)"):
        dmf.loss(ws, target.T)
    with pytest.raises(ValueError, match="non-finite"):
        dmf.loss(ws, np.full_like(target, np.inf))
    with pytest.raises(ValueError, match="must be 2-D"):
        dmf.loss([np.ones(3)], target)
    with pytest.raises(ValueError, match="at least one layer"):
        dmf.loss([], target)
    with pytest.raises(ValueError, match="vectors must have the shapes"):
        dmf.hvp(ws, target, [np.ones((3, 2))])


@pytest.mark.parametrize("depth", [1, 2, 3, 7, 15])
def test_scalar_hessian_equals_the_hessian_built_from_hvps(depth):
    """The closed form 2 g g^T + 2 r Q against N HVP columns (an independent computation),
    at random points (not minimizers: r != 0) including a zero layer."""
    from sweeplab.dmf.numerical import scalar_hessian

    rng = np.random.default_rng(depth)
    for trial in range(3):
        ws = [rng.normal(size=(1, 1)) for _ in range(depth)]
        if trial == 2:
            ws[depth // 2][0, 0] = 0.0  # no division by w_i anywhere
        m = rng.normal(size=(1, 1))
        h = scalar_hessian(ws, m)
        ref = dmf.dense_hessian(ws, m)
        np.testing.assert_allclose(h, ref, rtol=1e-12, atol=1e-14 * np.abs(ref).max())
        assert np.array_equal(h, h.T)


def test_scalar_hessian_refuses_matrix_layers():
    from sweeplab.dmf.numerical import scalar_hessian

    with pytest.raises(ValueError, match=r"1 x 1 layers, got the chain dims \(1, 2, 1\)"):
        scalar_hessian([np.ones((2, 1)), np.ones((1, 2))], np.ones((1, 1)))
