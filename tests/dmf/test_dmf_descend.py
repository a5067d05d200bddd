"""Gradient descent from arbitrary starts (sweeplab.dmf.descend) and the mode experiment.

The experiment (issue 20): target singular values (6, 5.5, 5), depth L = 3, 3 × 3 layers,
start 0.3 I, 20,000 steps. Mode thresholds 1/(L σ_i^{4/3}) = 0.03057, 0.03433, 0.03899.

Measured here (and encoded below):

=======  =======================  =========================  =========================
η        diagonal                 rotated (Haar, seed 0)     perturbed (1e-6, seed 0)
=======  =======================  =========================  =========================
0.029    converged, 0 modes       converged, 0 modes         converged, 0 modes
0.0325   EoS period 2, 1 mode     EoS period 2, 1 mode       EoS aperiodic, 2 modes
0.0365   EoS period 2, 2 modes    diverged (step 275)        diverged (step 132)
0.0405   EoS aperiodic, 3 modes   diverged (step 153)        diverged (step 79)
=======  =======================  =========================  =========================

The diagonal subspace is invariant (exactly so in floating point for a diagonal start and
target), and within it the modes are independent scalar chains. Off it, the Floquet
multiplier of the diagonal period-2 orbit (two-step map restricted to off-diagonal
perturbations; the 6 multipliers equal to 1 of the O(3) × O(3) gauge symmetry, and 2 more of
the converged modes' minimizer manifold, excluded) is 0.9914 at η = 0.0320, crosses 1 at
η ≈ 0.032454, is 1.0027 at η = 0.0325 and 1.3613 at η = 0.0365 (eigenvector on the (1, 2)
entries); the aperiodic 3-mode orbit at 0.0405 has a positive off-diagonal Lyapunov exponent
(≈ 0.27 per step). So the rotated run's single mode at η = 0.0325 is a finite-horizon effect:
rounding (1e-16) grows by 1.0027 per two steps and a second mode appears after about 22,000
steps (a 1e-6 perturbation: after about 9,000). Scanning η from 0.030 to 0.041 in steps of
0.0005 over 60,000 steps, generic starts (rotated, perturbed) converge up to 0.0305, keep one
period-2 mode for 0.031–0.032, two bounded modes (aperiodic or slowly drifting) for
0.0325–0.034 and diverge from 0.0345 on (just above the second threshold 0.03433), while
the diagonal start stays bounded up to 0.041 (period 2, 4 from 0.0385, 8 at 0.040,
aperiodic from 0.0405).
"""

import numpy as np
import pytest

from sweeplab import dmf
from sweeplab.dmf import kernels

SIGMAS = np.array([6.0, 5.5, 5.0])
TARGET = np.diag(SIGMAS)
START = [0.3 * np.eye(3)] * 3
SHAPES = [(3, 3)] * 3
IDX = np.arange(27)
OFF = (IDX % 9) // 3 != IDX % 3  # off-diagonal layer entries (flatten order, row-major)
MAP = {"stayed": "converged", "escaped": "converged"}


def _rotated(seed=0):
    """The same problem in rotated bases: M' = U M Vᵀ, W_1' = Q_1 W_1 Vᵀ, ..., W_3' = U W_3 Q_2ᵀ."""
    rng = np.random.default_rng(seed)
    u, v, q1, q2 = (dmf.haar_orthogonal(3, rng) for _ in range(4))
    ws = [q1 @ START[0] @ v.T, q2 @ START[1] @ q1.T, u @ START[2] @ q2.T]
    return ws, u @ TARGET @ v.T, u, v


def _perturbed(seed=0, size=1e-6):
    rng = np.random.default_rng(seed)
    return [w + size * rng.standard_normal(w.shape) for w in START]


def _hessian(p):
    """Full 27 × 27 Hessian of the diagonal problem at flat p (compiled HVP, column by column)."""
    h = np.empty((27, 27))
    e = np.zeros(27)
    out = np.empty(27)
    m = TARGET.ravel().copy()
    for j in range(27):
        e[j] = 1.0
        kernels.square_hvp(p, m, (0, 0, 0), e, out)
        h[:, j] = out
        e[j] = 0.0
    return 0.5 * (h + h.T)


def _gd_step(p, eta):
    return p - eta * dmf.flatten(dmf.gradient(dmf.unflatten(p, SHAPES), TARGET))


# --- equivalence with escape -----------------------------------------------------------------


@pytest.mark.parametrize("chain", ["scalar15", "matrix4"])
def test_descend_from_escape_start_reproduces_escape(chain, request):
    # escape starts at w* + r v_1; descend from that same point is the same run
    ws, m, lam = request.getfixturevalue(chain)
    cs = [0.9, 1.01, 1.5, 3.0, 5.0]  # stayed, escaped/unconverged, EoS, EoS/escaped, diverged
    etas = [c * 2 / lam for c in cs]
    runs = dmf.escape_batch(ws, etas, max_steps=5000, engine="kernel")
    start = dmf.unflatten(
        dmf.flatten(ws) + 1e-9 * dmf.flatten(dmf.top_eigenvector(ws)), [w.shape for w in ws]
    )
    outcomes = set()
    for eta, e in zip(etas, runs, strict=True):
        d = dmf.descend(
            start, m, eta, max_steps=5000, loss_tol=e.loss_tol, checkpoints=e.checkpoints
        )
        outcomes.add(d.outcome)
        assert d.outcome == MAP.get(e.outcome, e.outcome)
        assert (d.period, d.steps_run) == (e.period, e.steps_run)
        # same compiled kernel from the same bits: identical iterates
        np.testing.assert_array_equal(dmf.flatten(d.final_weights), dmf.flatten(e.final_weights))
        np.testing.assert_array_equal(d.loss, e.loss)
        assert d.final_sharpness_method == e.final_sharpness_method
        np.testing.assert_array_equal(d.final_sharpness, e.final_sharpness)
    assert {"converged", "diverged"} <= outcomes
    # the per-run numpy reference agrees to rounding where the run is not chaotic
    for c in (0.9, 1.01):
        e = dmf.escape(ws, c * 2 / lam, max_steps=5000)
        d = dmf.descend(start, m, c * 2 / lam, max_steps=5000, loss_tol=e.loss_tol)
        assert d.outcome == MAP.get(e.outcome, e.outcome)
        np.testing.assert_allclose(
            dmf.flatten(d.final_weights), dmf.flatten(e.final_weights), rtol=0, atol=1e-12
        )


def test_descend_at_an_exact_minimizer_stays(matrix4):
    # r = 0: the start is the minimizer itself
    ws, m, lam = matrix4
    d = dmf.descend(ws, m, 1.5 * 2 / lam, max_steps=100, checkpoints=[0, 50, 100])
    assert d.outcome == "converged" and d.steps_run == 0
    np.testing.assert_array_equal(dmf.flatten(d.final_weights), dmf.flatten(ws))
    assert d.final_sharpness_method == "exact"
    assert d.final_sharpness == pytest.approx(lam, rel=1e-14)
    assert d.checkpoint_sharpness_method == ("exact",) * 3
    np.testing.assert_array_equal(d.checkpoint_sharpness, [d.final_sharpness] * 3)
    assert d.orbit_steps.tolist() == [0]
    np.testing.assert_allclose(d.orbit_amplitudes[0], np.linalg.svd(m)[1], rtol=1e-10)
    assert not d.oscillating().any()


# --- records ---------------------------------------------------------------------------------


def test_checkpoint_sharpness_exact_near_minimizers_lanczos_elsewhere():
    ck = [0, 10, 100, 3000]
    d = dmf.descend(START, TARGET, 0.02, max_steps=3000, checkpoints=ck)
    assert d.outcome == "converged" and d.steps_run < 3000
    assert d.checkpoint_sharpness_method == ("lanczos", "lanczos", "exact", "exact")
    assert d.checkpoint_sharpness[-1] == d.final_sharpness
    assert d.final_sharpness == pytest.approx(dmf.sharpness(d.final_weights), rel=1e-14)
    # the checkpoint iterates are the run's own: a run stopped there ends on them
    d10 = dmf.descend(START, TARGET, 0.02, max_steps=10, track_sharpness=False)
    dense = dmf.sharpness_numerical(d10.final_weights, TARGET, "dense")
    assert d.checkpoint_sharpness[1] == pytest.approx(dense, rel=1e-9)
    # the checkpoint weights are those iterates (bit for bit), the final one after convergence
    np.testing.assert_array_equal(d.checkpoint_weights[1], dmf.flatten(d10.final_weights))
    np.testing.assert_array_equal(d.checkpoint_weights[0], dmf.flatten(START))
    np.testing.assert_array_equal(d.checkpoint_weights[3], dmf.flatten(d.final_weights))
    off = dmf.descend(START, TARGET, 0.02, max_steps=3000, checkpoints=ck, track_sharpness=False)
    assert np.isnan(off.checkpoint_sharpness).all()
    assert off.checkpoint_weights.shape == (4, 27) and np.isnan(off.checkpoint_weights).all()
    np.testing.assert_array_equal(off.loss, d.loss)


def test_orbit_amplitudes_follow_target_modes():
    d = dmf.descend(START, TARGET, 0.0365, max_steps=20_000, track_sharpness=False)
    assert (d.outcome, d.period) == ("edge_of_stability", 2)
    assert d.orbit_steps.tolist() == [19_999, 20_000]
    assert d.orbit_amplitudes.shape == (2, 3)
    # diagonal problem: the amplitudes are the diagonal of P at the orbit's two points
    w = dmf.descend(START, TARGET, 0.0365, max_steps=19_999, track_sharpness=False)
    prod = w.final_weights[2] @ w.final_weights[1] @ w.final_weights[0]
    np.testing.assert_allclose(d.orbit_amplitudes[0], np.diag(prod), rtol=1e-14)
    # mode 1 swings below mode 2: sorted singular values of P would swap the modes
    assert d.orbit_amplitudes[:, 0].min() < d.orbit_amplitudes[:, 1].min()
    # the loss over the orbit is the sum of squared mode errors (P stays diagonal)
    np.testing.assert_allclose(
        d.orbit_loss, ((d.orbit_amplitudes - SIGMAS) ** 2).sum(axis=1), rtol=1e-12
    )
    assert d.final_sharpness_method == "lanczos" and d.final_sharpness > 2 / 0.0365


def test_descend_diverged_run(problems):
    ws, m = problems["rot"]
    d = dmf.descend(ws, m, 0.0405, max_steps=2000, checkpoints=[0, 5, 2000])
    assert d.outcome == "diverged" and d.steps_run < 2000
    assert d.orbit_steps.size == 0 and d.orbit_amplitudes.shape == (0, 3)
    assert np.isnan(d.amplitude_range).all() and not d.oscillating().any()
    assert d.final_sharpness_method == "none" and np.isnan(d.final_sharpness)
    assert d.checkpoint_sharpness_method[-1] == "none" and np.isnan(d.loss[-1])
    assert np.isfinite(d.checkpoint_sharpness[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eta": 0.0}, "eta must be a finite number > 0"),
        ({"eta": True}, "eta must be"),
        ({"max_steps": 0}, "max_steps must be an integer >= 1"),
        ({"checkpoints": [0, 5, 5]}, "strictly increasing"),
        ({"checkpoints": [0, 200]}, r"checkpoints must lie in \[0, max_steps = 100\]"),
        ({"loss_tol": -1.0}, "loss_tol must be a finite number > 0"),
        ({"divergence_norm": np.inf}, "divergence_norm must be a finite number > 0"),
        ({"engine": "gpu"}, "engine must be one of"),
        ({"track_sharpness": 1}, "track_sharpness must be True or False"),
        ({"target": np.ones((2, 3))}, "does not match the weights"),
        ({"target": np.zeros((3, 3))}, "loss_tol must be given"),
        ({"weights0": [np.eye(3), np.ones((2, 2))]}, "shape chain"),
    ],
)
def test_descend_refuses_bad_input(kwargs, match):
    args = {"weights0": START, "target": TARGET, "eta": 0.01, "max_steps": 100}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        dmf.descend(**args)


def test_descend_numpy_engine_agrees():
    # the stacked numpy path (used for chains wider than KERNEL_MAX_WIDTH)
    a = dmf.descend(START, TARGET, 0.0325, max_steps=3000, track_sharpness=False)
    b = dmf.descend(START, TARGET, 0.0325, max_steps=3000, track_sharpness=False, engine="numpy")
    assert (a.outcome, a.period) == (b.outcome, b.period) == ("edge_of_stability", 2)
    np.testing.assert_allclose(b.orbit_amplitudes, a.orbit_amplitudes, rtol=1e-9)


# --- the mode experiment (issue 20) ----------------------------------------------------------

EXPECTED = {
    # eta: {variant: (outcome, period, oscillating modes)}
    0.029: {"diag": ("converged", 0, 0), "rot": ("converged", 0, 0), "pert": ("converged", 0, 0)},
    0.0325: {
        "diag": ("edge_of_stability", 2, 1),
        "rot": ("edge_of_stability", 2, 1),
        "pert": ("edge_of_stability", 0, 2),
    },
    0.0365: {
        "diag": ("edge_of_stability", 2, 2),
        "rot": ("diverged", 0, 0),
        "pert": ("diverged", 0, 0),
    },
    0.0405: {
        "diag": ("edge_of_stability", 0, 3),
        "rot": ("diverged", 0, 0),
        "pert": ("diverged", 0, 0),
    },
}


@pytest.fixture(scope="module")
def problems():
    rot, rot_target, _, _ = _rotated()
    return {"diag": (START, TARGET), "rot": (rot, rot_target), "pert": (_perturbed(), TARGET)}


@pytest.mark.parametrize("eta", sorted(EXPECTED))
def test_mode_experiment_table(problems, eta):
    thresholds = dmf.mode_thresholds(TARGET, 3)
    for variant, (ws, m) in problems.items():
        d = dmf.descend(ws, m, eta, max_steps=20_000, track_sharpness=False)
        got = (d.outcome, d.period, int(d.oscillating().sum()))
        assert got == EXPECTED[eta][variant], variant
        if variant == "diag":
            # exactly the modes whose threshold lies below eta oscillate
            np.testing.assert_array_equal(d.oscillating(), thresholds < eta)


def test_rotated_single_mode_orbit_is_transient(problems):
    ws, m = problems["rot"]
    d = dmf.descend(ws, m, 0.0325, max_steps=40_000, track_sharpness=False)
    assert (d.outcome, d.period, int(d.oscillating().sum())) == ("edge_of_stability", 0, 2)
    assert d.amplitude_range[1] > 0.05 * SIGMAS[1]
    assert np.isfinite(d.final_loss)


def _off_diagonal_growth(ws, m, u, v, steps):
    """Largest off-diagonal entry of Uᵀ P V (P in the target's bases) after each step count."""
    out = []
    for t in steps:
        w = dmf.descend(ws, m, 0.0325, max_steps=t, track_sharpness=False).final_weights
        p = u.T @ (w[2] @ w[1] @ w[0]) @ v
        out.append(np.abs(p - np.diag(np.diag(p))).max())
    return np.array(out)


def _period_two_multipliers(eta):
    """Floquet multipliers (moduli) of the diagonal period-2 orbit: (off-diagonal, diagonal)."""
    d = dmf.descend(START, TARGET, eta, max_steps=20_000, track_sharpness=False)
    assert d.period == 2
    p = dmf.flatten(d.final_weights)
    jac = np.eye(27)
    for _ in range(2):
        h = _hessian(p)
        # the diagonal subspace is invariant: the linearization does not couple the two blocks
        assert np.abs(h[np.ix_(OFF, ~OFF)]).max() <= 1e-12 * np.abs(h).max()
        jac = (np.eye(27) - eta * h) @ jac
        p = _gd_step(p, eta)
    off = np.abs(np.linalg.eigvals(jac[np.ix_(OFF, OFF)]))
    diag = np.abs(np.linalg.eigvals(jac[np.ix_(~OFF, ~OFF)]))
    return off, diag


@pytest.mark.parametrize(
    ("eta", "rho", "n_neutral"),
    [(0.0320, 0.991396, 8), (0.0325, 1.002722, 8), (0.0365, 1.361326, 6)],
)
def test_diagonal_orbits_unstable_off_the_diagonal(eta, rho, n_neutral):
    off, diag = _period_two_multipliers(eta)
    # stable (or neutral) within the diagonal subspace
    assert diag.max() <= 1 + 1e-9
    # neutral multipliers: O(3) × O(3) gauge (6), and 2 more along the minimizer manifold when
    # modes 2 and 3 have both converged
    neutral = np.abs(off - 1) < 1e-7
    assert neutral.sum() == n_neutral
    assert off[~neutral].max() == pytest.approx(rho, abs=2e-5)


def test_off_diagonal_growth_rate_matches_floquet_multiplier(problems):
    # rotated run at eta = 0.0325: the rounding-level off-diagonal part of P grows at
    # ln(1.002722) / 2 per step, as the multiplier of the diagonal orbit predicts
    ws, m, u, v = _rotated()
    a, b = _off_diagonal_growth(ws, m, u, v, [8000, 16_000])
    rate = np.log(b / a) / 8000
    assert rate == pytest.approx(np.log(1.002722) / 2, rel=0.2)
    # a 1e-6 perturbation is 1e9 times larger and takes ~9,000 steps to make a second mode
    d = dmf.descend(_perturbed(), TARGET, 0.0325, max_steps=12_000, track_sharpness=False)
    assert int(d.oscillating().sum()) == 2


def test_aperiodic_three_mode_orbit_has_positive_off_diagonal_lyapunov_exponent():
    eta = 0.0405
    d = dmf.descend(START, TARGET, eta, max_steps=5000, track_sharpness=False)
    assert d.outcome == "edge_of_stability" and d.period == 0
    p = dmf.flatten(d.final_weights)
    q = np.linalg.qr(np.random.default_rng(0).standard_normal((18, 18)))[0][:, :2]
    total, steps = 0.0, 400
    for _ in range(steps):
        jac = np.eye(18) - eta * _hessian(p)[np.ix_(OFF, OFF)]
        q, r = np.linalg.qr(jac @ q)
        total += np.log(abs(r[0, 0]))
        p = _gd_step(p, eta)
    assert total / steps > 0.1  # ≈ 0.27 per step measured over 2000 steps
