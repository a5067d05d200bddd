"""The gradient-descent escape experiment (spec §6) and the batched engine."""

import numpy as np
import pytest

from sweeplab import dmf

# Stated tolerance for "lands on a minimizer no sharper than 2/eta": the last iterate is within
# sqrt(loss_tol) ~ 1e-10 of a minimizer, so its sharpness can exceed the limit point's by ~1e-9.
SHARPNESS_RTOL = 1e-6


@pytest.fixture(scope="module")
def scalar15_runs(scalar15):
    ws, _, lam = scalar15
    cs = [0.5, 0.9, 0.99, 1.01]
    return cs, dmf.escape_batch(ws, [c * 2 / lam for c in cs], max_steps=20_000)


@pytest.mark.parametrize("i", [0, 1, 2])
def test_scalar15_below_threshold_stays(scalar15_runs, i):
    cs, runs = scalar15_runs
    r = runs[i]
    assert r.c == pytest.approx(cs[i])
    assert r.outcome == "stayed"
    assert r.escape_step == -1
    assert r.predicted_escape_step == np.inf
    assert r.final_loss <= 1e-20
    assert np.all(r.distance <= r.radius * (1 + 1e-6))


def test_scalar15_just_above_threshold_escapes_as_predicted(scalar15_runs):
    _, runs = scalar15_runs
    r = runs[3]
    assert r.outcome == "escaped"
    # linear theory ln(1e6)/ln(1.02) = 697.7 steps
    assert r.predicted_escape_step == pytest.approx(np.log(1e6) / np.log(1.02), rel=1e-12)
    assert abs(r.escape_step - r.predicted_escape_step) <= 0.02 * r.predicted_escape_step
    assert r.final_loss <= 1e-20
    # independent check of where it landed: Lanczos on the final point
    final = list(r.final_weights)
    lam_final = dmf.sharpness_numerical(final, dmf.right_products(final)[-1])
    assert lam_final == pytest.approx(r.final_sharpness, rel=1e-9)
    assert r.final_sharpness <= (2 / r.eta) * (1 + SHARPNESS_RTOL)
    assert r.final_sharpness < r.sharpness_star


@pytest.mark.parametrize("c", [1.01, 1.05, 1.2, 1.5])
def test_matrix_case_escapes_as_predicted(matrix4, c):
    ws, _, lam = matrix4
    (r,) = dmf.escape_batch(ws, [c * 2 / lam], max_steps=5_000)
    assert r.outcome == "escaped"
    assert abs(r.escape_step - r.predicted_escape_step) <= max(0.02 * r.predicted_escape_step, 1.0)
    final = list(r.final_weights)
    lam_final = dmf.sharpness_numerical(final, dmf.right_products(final)[-1])
    assert lam_final == pytest.approx(r.final_sharpness, rel=1e-9)
    assert r.final_sharpness <= (2 / r.eta) * (1 + SHARPNESS_RTOL)


@pytest.mark.parametrize("which", ["scalar15", "matrix4"])
def test_step_beyond_flattest_threshold_never_converges(which, request):
    ws, m, _ = request.getfixturevalue(which)
    eta = 1.05 * 2 / dmf.flattest_sharpness(m, len(ws))  # no minimizer is stable at this eta
    (r,) = dmf.escape_batch(ws, [eta], max_steps=5_000)
    assert r.outcome in ("edge_of_stability", "diverged")
    if r.outcome == "diverged":
        assert r.final_sharpness_method == "none" and np.isnan(r.final_sharpness)
    else:  # bounded, not converging: measured at the last iterate (dense for scalar chains)
        assert r.final_sharpness_method == ("dense" if which == "scalar15" else "lanczos")
        assert np.isfinite(r.final_sharpness) and r.final_sharpness > 0


def test_linear_growth_along_top_direction(scalar15):
    """Before escape, <w_t - w*, v_1> = r (1 - eta lam)^t (linear theory, up to O(r^2))."""
    ws, _, lam = scalar15
    eta = 1.1 * 2 / lam
    ck = np.arange(0, 40)
    r = dmf.escape(ws, eta, checkpoints=ck, max_steps=200)
    expected = r.radius * (1 - eta * lam) ** ck
    np.testing.assert_allclose(r.proj_top, expected, rtol=1e-5)
    # the null-direction component stays at rounding level early on
    assert np.max(np.abs(r.proj_null)) < 1e-6 * np.max(np.abs(r.proj_top[-1]))


def test_batch_agrees_with_one_at_a_time(matrix4):
    ws, _, lam = matrix4
    cs = [0.7, 1.05, 1.5, 3.0, 30.0]
    ck = dmf.default_checkpoints(3000)
    batch = dmf.escape_batch(ws, [c * 2 / lam for c in cs], max_steps=3000, checkpoints=ck)
    for c, b in zip(cs, batch, strict=True):
        s = dmf.escape(ws, c * 2 / lam, max_steps=3000, checkpoints=ck)
        assert (b.outcome, b.escape_step, b.steps_run) == (s.outcome, s.escape_step, s.steps_run)
        np.testing.assert_array_equal(b.checkpoints, s.checkpoints)
        # the matrix kernel sums in index order, BLAS (escape) does not: 1e-16 differences,
        # amplified after the escape to ~1e-6 relative by step 3000 (c = 1.05 and 3)
        for field in ("loss", "distance", "proj_top", "proj_null"):
            np.testing.assert_allclose(
                getattr(b, field), getattr(s, field), rtol=1e-5, atol=1e-14, err_msg=field
            )
        # converged after the transient within ~1e-8 of each other: sharpness 5e-8 apart
        np.testing.assert_allclose(b.final_sharpness, s.final_sharpness, rtol=1e-6)
    assert {b.outcome for b in batch} >= {"stayed", "escaped", "diverged"}


def test_batch_agrees_with_one_at_a_time_scalar_path(scalar15):
    ws, _, lam = scalar15
    cs = [0.9, 1.2, 40.0]
    batch = dmf.escape_batch(ws, [c * 2 / lam for c in cs], max_steps=2000)
    for c, b in zip(cs, batch, strict=True):
        s = dmf.escape(ws, c * 2 / lam, max_steps=2000)
        assert (b.outcome, b.escape_step, b.steps_run) == (s.outcome, s.escape_step, s.steps_run)
        np.testing.assert_allclose(b.loss, s.loss, rtol=1e-6, atol=1e-14)
        np.testing.assert_allclose(b.proj_top, s.proj_top, rtol=1e-6, atol=1e-14)


def test_batch_of_many_minimizers_agrees_with_each():
    rngs = [np.random.default_rng(s) for s in (1, 2, 3)]
    mins = [dmf.gaussian_minimizer((2, 3, 3, 2), g)[0] for g in rngs]
    lams = [dmf.sharpness(w) for w in mins]
    etas = [1.2 * 2 / lam for lam in lams]
    batch = dmf.escape_batch(mins, etas, max_steps=1500)
    for w, eta, b in zip(mins, etas, batch, strict=True):
        s = dmf.escape(w, eta, max_steps=1500)
        assert b.sharpness_star == s.sharpness_star
        assert (b.outcome, b.escape_step, b.steps_run) == (s.outcome, s.escape_step, s.steps_run)
        np.testing.assert_allclose(b.distance, s.distance, rtol=1e-6, atol=1e-14)


def test_checkpoint_fill_rules(matrix4):
    ws, _, lam = matrix4
    ck = np.array([0, 1, 10, 100, 1000, 2000])
    stayed, diverged = dmf.escape_batch(
        ws, [0.9 * 2 / lam, 50 * 2 / lam], max_steps=2000, checkpoints=ck
    )
    assert stayed.outcome == "stayed" and stayed.steps_run < 1000
    assert stayed.loss[-1] == stayed.loss[-2] == stayed.final_loss
    assert diverged.outcome == "diverged" and diverged.steps_run < 100
    assert np.all(np.isnan(diverged.loss[ck >= diverged.steps_run]))
    assert np.isfinite(diverged.loss[0])
    assert diverged.loss.shape == diverged.proj_null.shape == ck.shape


def test_result_is_frozen_and_readonly(scalar15):
    ws, _, lam = scalar15
    r = dmf.escape(ws, 2 / lam * 0.5, max_steps=10)
    with pytest.raises(AttributeError):
        r.outcome = "escaped"
    with pytest.raises(ValueError):
        r.loss[0] = 1.0
    assert r.checkpoints.dtype == np.int64
    assert r.checkpoints[0] == 0 and r.checkpoints[-1] == 10


def test_escape_bad_inputs(matrix4):
    ws, m, _ = matrix4
    with pytest.raises(ValueError, match=r"eta must be a finite number > 0, got -0\.1"):
        dmf.escape(ws, -0.1)
    with pytest.raises(ValueError, match=r"etas\[1\] must be a finite number > 0"):
        dmf.escape_batch(ws, [0.1, 0.0])
    with pytest.raises(ValueError, match="depth L >= 2"):
        dmf.escape([np.eye(2)], 0.1)
    with pytest.raises(ValueError, match="strictly increasing"):
        dmf.escape(ws, 0.1, max_steps=10, checkpoints=[0, 5, 5])
    with pytest.raises(ValueError, match=r"in \[0, max_steps = 10\]"):
        dmf.escape(ws, 0.1, max_steps=10, checkpoints=[0, 11])
    with pytest.raises(ValueError, match="escape_radius must exceed radius"):
        dmf.escape(ws, 0.1, radius=1e-2, escape_radius=1e-3)
    with pytest.raises(ValueError, match=r"not a minimizer .* relative residual"):
        dmf.escape(ws, 0.1, target=m + 0.1)
    with pytest.raises(ValueError, match=r"len\(weights\) = 2 must equal len\(etas\) = 3"):
        dmf.escape_batch([list(ws), list(ws)], [0.1, 0.2, 0.3])


def test_escape_with_explicit_target_runs_on_it(matrix4):
    ws, m, lam = matrix4
    a = dmf.escape(ws, 1.2 * 2 / lam, max_steps=300, target=m)
    b = dmf.escape(ws, 1.2 * 2 / lam, max_steps=300)
    assert (a.outcome, a.escape_step) == (b.outcome, b.escape_step)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-9, atol=1e-20)


def test_equal_checkpoints_stack(matrix4):
    ws, _, lam = matrix4
    runs = dmf.escape_batch(ws, [0.9 * 2 / lam, 1.5 * 2 / lam], max_steps=500)
    single = dmf.escape(ws, 0.9 * 2 / lam, max_steps=500)
    stacked = np.stack([r.distance for r in [*runs, single]])
    assert stacked.shape == (3, dmf.default_checkpoints(500).size)
    np.testing.assert_array_equal(runs[0].checkpoints, single.checkpoints)
