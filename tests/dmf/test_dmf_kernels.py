"""Compiled escape kernels (issue 19) against the numpy reference path and exact identities."""

import importlib

import numpy as np
import pytest

from sweeplab import dmf
from sweeplab.dmf import kernels

esc = importlib.import_module("sweeplab.dmf.escape")  # the module (dmf.escape is the function)

KEYS = ("outcome", "escape_step", "steps_run", "period", "final_sharpness_method", "window_start")
TRAJ = ("loss", "distance", "proj_top", "proj_null")
WINDOW = ("window_loss", "window_distance", "window_proj_top", "window_proj_null")


def _minimizer(depth, width, seed):
    rng = np.random.default_rng([depth, width, seed])
    if width == 1:
        return dmf.scalar_minimizer(depth, rng)[0]
    return dmf.gaussian_minimizer((width,) * (depth + 1), rng)[0]


def _assert_same_runs(kernel_runs, numpy_runs, scalar):
    for k, n in zip(kernel_runs, numpy_runs, strict=True):
        what = (k.c, k.outcome, n.outcome)
        assert tuple(getattr(k, a) for a in KEYS) == tuple(getattr(n, a) for a in KEYS), what
        if scalar:
            # same operations in the same order: bit-identical iterates, hence identical
            # loss, final point and (same Lanczos code on the same point) final sharpness
            for a, b in zip(k.final_weights, n.final_weights, strict=True):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(k.loss, n.loss)
            np.testing.assert_array_equal(k.window_loss, n.window_loss)
            np.testing.assert_array_equal(k.final_sharpness, n.final_sharpness)
            # norms and projections: sequential sums vs numpy reductions
            for field in (*TRAJ, *WINDOW):
                np.testing.assert_allclose(
                    getattr(k, field), getattr(n, field), rtol=1e-12, atol=1e-14, err_msg=field
                )
            continue
        # matrix chains: index-order sums vs BLAS matmul differ by rounding, ~1e-16 absolute
        # on a deviation that starts at r = 1e-9 (so ~1e-7 relative) and grows with it until
        # the escape; after it the nonlinear transient amplifies it (4e-5 seen at L = 2, d = 2)
        # the final sharpness is that of wherever the run ends: a minimizer for converged runs,
        # else a point on an orbit, where a drifted trajectory ends elsewhere
        if k.converged:  # possibly another minimizer of the valley, ~1e-8 apart after a transient
            np.testing.assert_allclose(k.final_sharpness, n.final_sharpness, rtol=1e-6)
        end = k.escape_step if k.escape_step >= 0 else k.steps_run
        for fields, steps in ((TRAJ, k.checkpoints), (WINDOW, k.window_steps)):
            before = steps <= end
            for field in fields:
                a, b = getattr(k, field), getattr(n, field)
                np.testing.assert_allclose(a[before], b[before], rtol=1e-5, atol=1e-14)
                if k.converged:  # non-converged orbits may drift apart after the escape
                    np.testing.assert_allclose(a[~before], b[~before], rtol=1e-2, atol=1e-14)


def _compare_grid(depth, width, seeds, max_steps):
    cs = [0.5, 0.99, 1.01, 1.5, 3.0, 40.0]
    seen = set()
    for seed in seeds:
        ws = _minimizer(depth, width, seed)
        lam = dmf.sharpness(ws)
        etas = [c * 2 / lam for c in cs]
        kw = {"max_steps": max_steps, "loss_tol": 1e-20}
        k = dmf.escape_batch(ws, etas, engine="kernel", **kw)
        n = dmf.escape_batch(ws, etas, engine="numpy", **kw)
        _assert_same_runs(k, n, scalar=width == 1)
        seen |= {r.outcome for r in k}
    return seen


@pytest.mark.parametrize("depth", [2, 4, 15])
@pytest.mark.parametrize("width", [1, 2, 4])
def test_kernel_matches_numpy_reference(depth, width):
    assert "stayed" in _compare_grid(depth, width, range(2), 300)


@pytest.mark.slow
@pytest.mark.parametrize("depth", [2, 4, 15])
@pytest.mark.parametrize("width", [1, 2, 4])
def test_kernel_matches_numpy_reference_long_runs(depth, width):
    seen = _compare_grid(depth, width, range(3), 3000)
    assert "stayed" in seen and len(seen) >= 3


def test_kernel_covers_every_outcome_and_stalls(scalar15, matrix4):
    """Runs that stay, escape, orbit (period 2), stall (period 1), trend and diverge."""
    ws, m, lam = scalar15
    flat = dmf.flattest_sharpness(m, len(ws))
    cases = [
        (ws, [0.9 * 2 / lam, 1.01 * 2 / lam, 1.05 * 2 / flat], 5000),
        (ws, [1.01 * 2 / lam], 300),  # cut short before the escape: growing transient
        (list(matrix4[0]), [c * 2 / matrix4[2] for c in (0.7, 1.05, 30.0)], 3000),
        ([np.ones((1, 1))] * 3, [1.1 * 2 / 6], 2000),  # the period-2 orbit
    ]
    seen = set()
    for weights, etas, steps in cases:
        kw = {"max_steps": steps, "loss_tol": 1e-20}
        k = dmf.escape_batch(weights, etas, engine="kernel", **kw)
        n = dmf.escape_batch(weights, etas, engine="numpy", **kw)
        _assert_same_runs(k, n, scalar=weights[0].size == 1)
        seen |= {(r.outcome, r.period) for r in k}
    assert {o for o, _ in seen} == set(dmf.OUTCOMES)
    assert ("edge_of_stability", 2) in seen


def test_kernel_matches_numpy_on_many_minimizers():
    mins = [_minimizer(3, 2, s) for s in range(3)]
    etas = [1.2 * 2 / dmf.sharpness(w) for w in mins]
    k = dmf.escape_batch(mins, etas, max_steps=1500, loss_tol=1e-20, engine="kernel")
    n = dmf.escape_batch(mins, etas, max_steps=1500, loss_tol=1e-20, engine="numpy")
    _assert_same_runs(k, n, scalar=False)


def test_general_matrix_kernel_on_rectangular_chain():
    ws, _ = dmf.gaussian_minimizer((2, 3, 5, 2), np.random.default_rng(7))
    lam = dmf.sharpness(ws)
    etas = [c * 2 / lam for c in (0.9, 1.2, 2.0, 30.0)]
    k = dmf.escape_batch(ws, etas, max_steps=2000, loss_tol=1e-20, engine="kernel")
    n = dmf.escape_batch(ws, etas, max_steps=2000, loss_tol=1e-20, engine="numpy")
    _assert_same_runs(k, n, scalar=False)


def test_auto_engine_dispatch(monkeypatch):
    monkeypatch.setattr(esc, "KERNEL_MAX_WIDTH", 2)  # small chains: no compilation for d = 16
    used = []
    for name in ("_run_kernel", "_run_numpy"):
        orig = getattr(esc, name)

        def spy(*a, _orig=orig, _name=name, **k):
            used.append(_name)
            return _orig(*a, **k)

        monkeypatch.setattr(esc, name, spy)
    small = _minimizer(2, esc.KERNEL_MAX_WIDTH, 0)
    wide = _minimizer(2, esc.KERNEL_MAX_WIDTH + 1, 0)
    for ws in (small, wide):
        dmf.escape_batch(ws, [0.5 * 2 / dmf.sharpness(ws)], max_steps=5)
    dmf.escape_batch(small, [0.5 * 2 / dmf.sharpness(small)], max_steps=5, track_sharpness=True)
    assert used == ["_run_kernel", "_run_numpy", "_run_numpy"]
    with pytest.raises(ValueError, match="engine must be one of"):
        dmf.escape_batch(small, [0.1], engine="fast")
    with pytest.raises(ValueError, match="cannot track the sharpness"):
        dmf.escape_batch(small, [0.1], engine="kernel", track_sharpness=True)


# --- the compiled HVP behind the final Lanczos sharpness of d x d chains -----------------------


@pytest.mark.parametrize(("d", "depth"), [(1, 15), (2, 3), (4, 4), (4, 15)])
def test_square_hvp_matches_general_hvp(d, depth):
    rng = np.random.default_rng([d, depth])
    ws = [rng.standard_normal((d, d)) for _ in range(depth)]
    m = rng.standard_normal((d, d))
    vs = [rng.standard_normal((d, d)) for _ in range(depth)]
    ref = dmf.flatten(dmf.hvp(ws, m, vs))
    out = np.empty(ref.size)
    kernels.square_hvp(dmf.flatten(ws), m.ravel(), (0,) * d, dmf.flatten(vs), out)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13 * np.max(np.abs(ref)))


def test_final_lanczos_of_square_chain_matches_dense_hessian(matrix4):
    ws, m, _ = matrix4
    rng = np.random.default_rng(5)
    point = [w + 0.05 * rng.standard_normal(w.shape) for w in ws]  # not a minimizer
    dense = float(np.linalg.eigvalsh(dmf.dense_hessian(point, m))[-1])
    assert esc._lanczos_sharpness(point, m) == pytest.approx(dense, rel=1e-9)
    ref = dmf.sharpness_numerical(point, m, "lanczos", tol=esc.LANCZOS_TOL, seed=0)
    assert esc._lanczos_sharpness(point, m) == pytest.approx(ref, rel=1e-11)


# --- the exact GD-step identity of scalar chains ------------------------------------------------


def _kernel_iterates(kind, w0, m, etas, steps):
    """Iterates ``w_t`` (shape ``(len(steps), n, L)``) of plain GD run by one kernel.

    ``kind``: ``"scalar"`` (prefix/suffix products), ``"square"`` (the ``1 × 1`` version of the
    fixed-width matrix code) or ``"general"`` (the general matrix code); every run is stopped at
    ``t`` by ``max_steps = t``, with the monitors unable to end it earlier; runs that
    overflow before ``t`` are nan.
    """
    n, depth = etas.size, w0.size
    out = []
    for t in steps:
        status = np.zeros(n, dtype=np.int64)
        steps_run = np.zeros(n, dtype=np.int64)
        e = np.zeros(n, dtype=np.int64)
        fl, fd = np.zeros(n), np.zeros(n)
        final_p = np.zeros((n, depth))
        kernels.escape_runs(
            kind == "scalar",
            (0,) if kind == "square" else (),
            np.tile(w0, (n, 1)),
            w0[None, :],
            np.ones((1, depth)),
            np.ones((1, depth)),
            np.array([[m]]),
            np.ones(depth + 1, dtype=np.int64),
            etas,
            np.full(1, -1.0),  # loss_tol < 0: never converged
            1e300,
            1e300,
            int(t),
            np.zeros(1, dtype=np.int64),
            0,
            1,
            0,
            0,
            status,
            steps_run,
            e,
            fl,
            fd,
            final_p,
            np.full((n, 5, 1), np.nan),
            np.full((n, 4), -np.inf),
            np.full((n, 24), np.nan),
            np.full((n, 24), np.nan),
            np.zeros(n, dtype=np.int64),
            np.full((n, 4, 1), np.nan),
        )
        assert np.all(status[steps_run < t] == kernels.DIVERGED)
        out.append(np.where((status == kernels.RUNNING)[:, None], final_p, np.nan))
    return np.stack(out)


@pytest.mark.parametrize("kind", ["scalar", "square", "general"])
@pytest.mark.parametrize("depth", [3, 6, 15])
def test_scalar_imbalance_identity(kind, depth):
    """One GD step maps w_i^2 − w_j^2 to (w_i^2 − w_j^2)(1 − 4η^2 r^2 Π_{k≠i,j} w_k^2)."""
    ws, m = dmf.scalar_minimizer(depth, np.random.default_rng(depth))
    lam = dmf.sharpness(ws)
    w0 = dmf.flatten(ws) + 1e-3 * dmf.flatten(dmf.top_eigenvector(ws))
    etas = np.linspace(0.3, 3.0, 10) * 2 / lam
    steps = np.arange(0, 121)
    it = _kernel_iterates(kind, w0, float(m[0, 0]), etas, steps)
    finite = np.all(np.isfinite(it), axis=(0, 2))
    assert np.count_nonzero(finite) >= 6  # the largest steps may overflow (dropped)
    it = it[:, finite]
    etas = etas[finite]
    w, w_next = it[:-1], it[1:]  # (t, run, L)
    r = np.prod(w, axis=2) - m[0, 0]
    sq, sq_next = w**2, w_next**2
    i, j = np.triu_indices(depth, 1)
    # Π_{k≠i,j} w_k^2 without dividing by w_i, w_j
    others = np.ones((*w.shape[:2], i.size))
    for k in range(depth):
        others *= np.where((i == k) | (j == k), 1.0, sq[..., k : k + 1])
    eta = etas[None, :, None]
    lhs = sq_next[..., i] - sq_next[..., j]
    rhs = (sq[..., i] - sq[..., j]) * (1 - 4 * eta**2 * r[..., None] ** 2 * others)
    # rounding: each side is a difference of squares of O(1) numbers computed in float64
    scale = sq_next[..., i] + sq_next[..., j] + sq[..., i] + sq[..., j]
    assert np.max(np.abs(lhs - rhs) / scale) < 64 * np.finfo(float).eps
    # the identity is not vacuous: the imbalances do change, by more than rounding
    change = np.abs(sq_next[..., i] - sq_next[..., j] - (sq[..., i] - sq[..., j])) / scale
    assert np.max(change) > 1e-6


def test_kernels_agree_on_scalar_chains():
    """The three kernels on one scalar chain: the matrix codes with 1 × 1 layers."""
    ws, m = dmf.scalar_minimizer(6, np.random.default_rng(3))
    w0 = dmf.flatten(ws) + 1e-3 * dmf.flatten(dmf.top_eigenvector(ws))
    etas = np.array([0.5, 1.2, 2.5]) * 2 / dmf.sharpness(ws)
    its = [_kernel_iterates(k, w0, float(m[0, 0]), etas, [200]) for k in ("square", "general")]
    np.testing.assert_array_equal(its[0], its[1])  # the same sums in the same order
    # prefix/suffix products round differently: compare before chaos sets in
    its = [_kernel_iterates(k, w0, float(m[0, 0]), etas, [20]) for k in ("scalar", "square")]
    np.testing.assert_allclose(its[0], its[1], rtol=1e-10)


# --- the dense window around the escape step ----------------------------------------------------


def test_window_is_dense_around_the_escape_step(scalar15):
    ws, _, lam = scalar15
    ck = dmf.default_checkpoints(3000)
    runs = dmf.escape_batch(
        ws, [c * 2 / lam for c in (0.9, 1.01, 1.5)], max_steps=3000, loss_tol=1e-20
    )
    stay, slow, fast = runs
    assert stay.window_start == -1 and np.all(np.isnan(stay.window_loss))
    assert np.all(stay.window_steps == -1)
    for r in (slow, fast):
        assert r.escape_step > esc.WINDOW // 8 and r.steps_run == 3000
        assert r.window_start == r.escape_step - esc.WINDOW // 8
        steps = r.window_steps
        np.testing.assert_array_equal(np.diff(steps), 1)  # every step, no gap
        assert r.window_loss.shape == (esc.WINDOW,)
        k = r.escape_step - r.window_start
        assert r.window_distance[k] > r.escape_radius >= r.window_distance[k - 1]
        # before the escape the deviation along v_1 flips sign every step (1 − ηλ* < 0)
        assert np.all(np.sign(r.window_proj_top[1:k]) == -np.sign(r.window_proj_top[: k - 1]))
        # log-spaced checkpoints elsewhere; where both record a step the values are identical
        shared, i_ck, i_win = np.intersect1d(ck, steps, return_indices=True)
        assert shared.size >= 1
        for a, b in zip(TRAJ, WINDOW, strict=True):
            np.testing.assert_array_equal(getattr(r, a)[i_ck], getattr(r, b)[i_win])
    assert np.count_nonzero(np.isin(ck, slow.window_steps)) < 10  # checkpoints stay sparse


def test_window_of_single_run_matches_batch(matrix4):
    ws, _, lam = matrix4
    for c in (1.05, 30.0):
        single = dmf.escape(ws, c * 2 / lam, max_steps=3000, loss_tol=1e-20, window=64)
        (batch,) = dmf.escape_batch(ws, [c * 2 / lam], max_steps=3000, loss_tol=1e-20, window=64)
        (ref,) = dmf.escape_batch(
            ws, [c * 2 / lam], max_steps=3000, loss_tol=1e-20, window=64, engine="numpy"
        )
        for r in (batch, ref):
            assert (r.window_start, r.outcome) == (single.window_start, single.outcome)
            for field in WINDOW:
                np.testing.assert_allclose(
                    getattr(r, field), getattr(single, field), rtol=1e-5, atol=1e-14
                )
    # a run that diverges inside its window: nan from the diverging step on
    assert batch.outcome == "diverged"
    k = batch.steps_run - batch.window_start
    assert np.all(np.isnan(batch.window_loss[k:])) and np.all(np.isfinite(batch.window_loss[:k]))


def test_window_fill_after_convergence():
    ws = [np.array([[2.0]]), np.array([[0.5]])]  # m = 1, λ* = 8.5; the flattest is 4
    (r,) = dmf.escape_batch(ws, [1.2 * 2 / 8.5], radius=1e-4, max_steps=2000, loss_tol=1e-20)
    assert r.outcome == "escaped"
    k = r.steps_run - r.window_start
    assert 0 < k < r.window_loss.size - 1
    assert np.all(r.window_loss[k:] == r.final_loss)
    assert r.window_start == max(0, r.escape_step - esc.WINDOW // 8)


# --- a start already below the loss tolerance ---------------------------------------------------


def test_start_below_tolerance_is_refused_and_named():
    """The paper grid's L = 15 seed 18 chain: λ* r^2 / 2 = 4.8e-21 < 1e-20 at r = 1e-9."""
    # = sweeplab.sweep.canonical.point_seed(18, "escape", depth=15, width=1), written out so
    # that this test does not import the sweep layer
    seed = np.random.SeedSequence(18, spawn_key=(380412299, 3984245309, 2497512207, 3481524525))
    ws, _ = dmf.scalar_minimizer(15, np.random.default_rng(seed))
    lam = dmf.sharpness(ws)
    assert lam * 1e-18 / 2 == pytest.approx(4.8e-21, rel=0.02)
    pattern = r"starting loss L\(w\* \+ r v_1\) = 4\.8\d*e-21 .* not above loss_tol = 1e-20"
    with pytest.raises(ValueError, match=pattern):
        dmf.escape_batch(ws, [0.5 * 2 / lam], max_steps=100, loss_tol=1e-20)
    with pytest.raises(ValueError, match=pattern):
        dmf.escape(ws, 0.5 * 2 / lam, max_steps=100, loss_tol=1e-20)
    # the default tolerance is tied to the start: the same chain is classified
    (r,) = dmf.escape_batch(ws, [0.5 * 2 / lam], max_steps=1000)
    assert r.loss_tol == pytest.approx(esc.LOSS_TOL_REL * r.start_loss, rel=1e-15)
    assert r.start_loss == pytest.approx(lam * 1e-18 / 2, rel=1e-6)
    assert r.outcome == "stayed" and 0 < r.steps_run < 1000
    assert r.final_loss <= r.loss_tol


def test_relative_loss_tol_is_per_minimizer():
    mins = [_minimizer(4, 1, s) for s in range(3)]
    etas = [0.5 * 2 / dmf.sharpness(w) for w in mins]
    runs = dmf.escape_batch(mins, etas, max_steps=2000)
    single = [dmf.escape(w, e, max_steps=2000) for w, e in zip(mins, etas, strict=True)]
    for r, s in zip(runs, single, strict=True):
        assert r.loss_tol == s.loss_tol == esc.LOSS_TOL_REL * r.start_loss
        assert (r.outcome, r.steps_run) == (s.outcome, s.steps_run)
    assert len({r.loss_tol for r in runs}) == 3


# --- agreement on the sweep's default escape grid (slow: the numpy path takes minutes) ---------

DEFAULT_GRID_SHARPNESS_DIFFER = 4
"""Runs of the default grid whose final sharpness differs by more than 1e-6 relative between the
engines (measured on this machine by ``bench/dmf_escape.py --default-grid``): all width-4
``edge_of_stability`` runs at ``c = 3``, after a chaotic post-escape transient (one aperiodic
orbit; two period-2 and one period-1 orbits reached at different points of their family)."""


@pytest.mark.slow
def test_default_escape_grid_engines_agree():
    from sweeplab.sweep.canonical import point_seed  # the sweep's seeding (read only)

    cs = [0.5, 0.99, 1.01, 1.1, 1.5, 3.0]
    key = ("outcome", "escape_step", "steps_run", "period", "final_sharpness_method")
    differ = []
    n_runs = 0
    for depth in (4, 15):
        for width in (1, 4):
            for seed in range(4):
                rng = np.random.default_rng(point_seed(seed, "escape", depth=depth, width=width))
                if width == 1:
                    ws = dmf.scalar_minimizer(depth, rng)[0]
                else:
                    ws = dmf.gaussian_minimizer((width,) * (depth + 1), rng)[0]
                etas = [c * 2 / dmf.sharpness(ws) for c in cs]
                kw = {"max_steps": 20_000, "loss_tol": 1e-20}
                k = dmf.escape_batch(ws, etas, engine="kernel", **kw)
                n = dmf.escape_batch(ws, etas, engine="numpy", **kw)
                for c, a, b in zip(cs, k, n, strict=True):
                    n_runs += 1
                    assert tuple(getattr(a, f) for f in key) == tuple(getattr(b, f) for f in key)
                    if not a.final_sharpness == pytest.approx(
                        b.final_sharpness, rel=1e-6, nan_ok=True
                    ):
                        assert width > 1  # scalar chains are bit-identical
                        differ.append((depth, seed, c, a.outcome, a.period))
    assert n_runs == 96
    assert all(o == "edge_of_stability" for *_, o, _ in differ), differ
    assert len(differ) <= DEFAULT_GRID_SHARPNESS_DIFFER, differ


# --- agreement on the paper escape grid, width 4 (slow: ~1000 runs of up to 100,000 steps) ------

PAPER_KEY_DIFFER = 6
"""Width-4 runs of the paper grid whose outcome, escape step, steps_run or period differ between
the kernel and the numpy path (``bench/dmf_escape.py --paper``, this machine): three at c = 3
after chaotic transients (a divergence at another step, a convergence 2 steps apart, an
aperiodic orbit read as period 1) and three slowly drifting orbits at c = 1.1, 1.2 and 2 on the
edge_of_stability / unconverged boundary. All-scalar chains: none (bit-identical)."""
PAPER_SHARPNESS_DIFFER = 42
"""Further width-4 runs whose final sharpness alone differs by more than 1e-6 relative: all
edge_of_stability or unconverged (the end point of an orbit, after a sensitive transient)."""


@pytest.mark.slow
def test_paper_escape_grid_width4_matches_stored_numpy_results():
    import json
    from pathlib import Path

    from sweeplab.sweep.canonical import point_seed  # the sweep's seeding (read only)

    ref = json.loads((Path(__file__).parent / "data/paper_escape_width4_numpy.json").read_text())
    key_differ, sharp_differ, n_runs = [], [], 0
    for depth, seed, rows in ref["rows"]:
        rng = np.random.default_rng(point_seed(seed, "escape", depth=depth, width=4))
        ws = dmf.gaussian_minimizer((4,) * (depth + 1), rng)[0]
        etas = [c * 2 / dmf.sharpness(ws) for c in ref["c"]]
        runs = dmf.escape_batch(ws, etas, max_steps=100_000, loss_tol=1e-20, engine="kernel")
        for c, r, row in zip(ref["c"], runs, rows, strict=True):
            n_runs += 1
            if [r.outcome, r.escape_step, r.steps_run, r.period] != row[:4]:
                key_differ.append((depth, seed, c, row[0], r.outcome))
            elif not r.final_sharpness == pytest.approx(
                np.nan if row[4] is None else row[4], rel=1e-6, nan_ok=True
            ):
                sharp_differ.append((depth, seed, c, row[0]))
    assert n_runs == 960
    assert all((c >= 1.1 and o != "escaped") or c == 3.0 for *_, c, o, _ in key_differ), key_differ
    assert len(key_differ) <= PAPER_KEY_DIFFER, key_differ
    assert all(o in ("edge_of_stability", "unconverged") for *_, o in sharp_differ), sharp_differ
    assert len(sharp_differ) <= PAPER_SHARPNESS_DIFFER, sharp_differ


def test_kernel_compiles_once_per_chain_kind_whatever_the_inputs():
    """One run or several (a broadcast, read-only start), read-only checkpoints or not: the
    kernel always gets writable C arrays, so numba compiles one version per chain kind (an
    array's read-only flag is part of its numba type; each version costs about 6 s)."""
    ws = _minimizer(3, 1, 0)
    lam = dmf.sharpness(ws)
    checkpoints = np.array([0, 10, 20])
    checkpoints.setflags(write=False)
    for etas in ([1.1 * 2 / lam], [0.9 * 2 / lam, 1.1 * 2 / lam]):
        for ck in (checkpoints, checkpoints.copy(), None):
            dmf.escape_batch(ws, etas, max_steps=30, checkpoints=ck, engine="kernel")
    from numba.core.types import Array

    arrays = [
        (i, t) for sig in kernels.escape_runs.signatures for i, t in enumerate(sig)
        if isinstance(t, Array)
    ]  # fmt: skip
    assert arrays and all(t.mutable and t.layout == "C" for _, t in arrays), [
        (i, str(t)) for i, t in arrays if not (t.mutable and t.layout == "C")
    ]
