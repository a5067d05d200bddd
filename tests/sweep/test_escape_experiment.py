"""Escape experiment through the sweep layer: settings, the 2/eta check and its figures."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from distributed import LocalCluster
from matplotlib.text import Text
from synth import at, run_section, select

from sweeplab import dmf
from sweeplab.dmf.escape import WINDOW
from sweeplab.plots import escape as figs
from sweeplab.sweep import compute_points, open_dataset, provenance
from sweeplab.sweep.aggregate import aggregate
from sweeplab.sweep.cluster import dask_client
from sweeplab.sweep.experiments import REGISTRY, escape_minimizer
from sweeplab.sweep.experiments.escape import STABILITY_RTOL, stability_violations

ESC = {
    "depth": [4], "width": [1], "c": [1.1], "radius": [1e-9], "seeds": 2,
    "escape_radius": 1e-3, "max_steps": 2000, "loss_tol": 1e-20,
}  # fmt: skip
ESCAPED = dmf.OUTCOMES.index("escaped")
WINDOW_ARRAYS = ("window_loss", "window_distance", "window_proj_top", "window_proj_null")
EXP = REGISTRY["escape"]


def _compute(section, client, **where):
    """The block dataset of the points of ``section`` matching ``where``."""
    return compute_points(EXP, select("escape", section, **where), section, client)


@pytest.fixture(scope="module")
def address():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address="127.0.0.1:0",
                      worker_dashboard_address="127.0.0.1:0") as cluster:  # fmt: skip
        yield cluster.scheduler_address


def _dataset(tmp_path, address, **section):
    """Plan and compute an escape section, and aggregate it (the pipeline's store)."""
    sec = {**ESC, **section}
    run_section("escape", sec, tmp_path, address)
    out = tmp_path / "escape.zarr"
    aggregate("escape", sec, tmp_path / "blocks" / "escape", out,
              attrs=provenance({"escape": sec}))  # fmt: skip
    return open_dataset(out).load()


def _texts(fig):
    text = " ".join(t.get_text() for t in fig.findobj(Text))
    plt.close(fig)
    return text


def test_track_sharpness_is_stored_over_step_and_nan_when_off():
    with dask_client(1) as client:
        on = _compute({**ESC, "track_sharpness": True}, client)
        off = _compute(ESC, client)
    assert on.checkpoint_sharpness.dims == ("point", "step")
    assert on.checkpoint_sharpness.attrs["units"] == "1"
    assert np.isnan(off.checkpoint_sharpness.values).all()
    ws = [escape_minimizer(4, 1, s)[0] for s in (0, 1)]
    etas = [1.1 * 2 / dmf.sharpness(w) for w in ws]
    direct = dmf.escape_batch(ws, etas, max_steps=2000, track_sharpness=True)
    for seed, r in zip((0, 1), direct, strict=True):
        point = at(on, seed=seed)
        got = point.checkpoint_sharpness.values
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, r.checkpoint_sharpness, rtol=1e-9)
        # at w* + 1e-9 v_1 the full-Hessian sharpness is lambda* up to O(1e-9)
        assert got[0] == pytest.approx(float(point.sharpness_star), rel=1e-6)
        # the last checkpoint of a converged run is the final iterate
        assert got[-1] == pytest.approx(float(point.final_sharpness), rel=1e-6)
    # everything else is what the run without tracking gives (same points, same order)
    assert on.key.values.tolist() != off.key.values.tolist()  # a setting: other points
    assert on.seed.values.tolist() == off.seed.values.tolist()
    np.testing.assert_array_equal(on.loss.values, off.loss.values)


def _direct(section, runs):
    """``dmf.escape_batch`` of the escape points ``runs`` ((seed, c)), settings of ``section``."""
    ws = [escape_minimizer(section["depth"][0], 1, seed)[0] for seed, _ in runs]
    etas = [c * 2 / dmf.sharpness(w) for w, (_, c) in zip(ws, runs, strict=True)]
    max_steps = section["max_steps"]
    return dmf.escape_batch(
        ws, etas, radius=section["radius"][0], escape_radius=section["escape_radius"],
        max_steps=max_steps, checkpoints=dmf.default_checkpoints(max_steps),
        loss_tol=section["loss_tol"],
    )  # fmt: skip


def _check_window(point, r):
    """The stored dense window of one point equals the direct run's, exactly.

    Where a checkpoint step lies in the window, the window's values at that step are the
    checkpoint trajectory's (both are the same iterate); returns how many such steps.
    """
    assert float(point.window_start) == r.window_start
    for name in WINDOW_ARRAYS:
        np.testing.assert_array_equal(point[name].values, getattr(r, name), err_msg=name)
    if r.window_start < 0:  # never escaped: no window
        assert r.escape_step == -1 and np.isnan(point.escape_step)
        for name in WINDOW_ARRAYS:
            assert np.isnan(point[name].values).all(), name
        return 0
    assert r.window_start == max(0, r.escape_step - WINDOW // 8)
    steps = point.step.values
    shared = (steps >= r.window_start) & (steps < r.window_start + WINDOW)
    offsets = steps[shared] - r.window_start
    for name in ("loss", "distance", "proj_top", "proj_null"):
        np.testing.assert_array_equal(
            point[f"window_{name}"].values[offsets], point[name].values[shared], err_msg=name
        )
    return int(shared.sum())


def test_dense_window_is_stored_as_the_direct_run_gives_it():
    """c = 0.9 stays (no window), c = 1.1 escapes: the window of each is the direct run's."""
    section = {**ESC, "c": [0.9, 1.1]}
    with dask_client(1) as client:
        ds = _compute(section, client)
    assert ds.window_loss.dims == ("point", "window_step")
    np.testing.assert_array_equal(ds.window_step.values, np.arange(WINDOW))
    assert ds.window_step.attrs["units"] == "step"
    for name in ("window_start", *WINDOW_ARRAYS):
        assert ds[name].attrs["units"] in ("1", "step") and ds[name].attrs["long_name"]
    runs = [(seed, c) for seed in (0, 1) for c in (0.9, 1.1)]
    shared = 0
    for (seed, c), r in zip(runs, _direct(section, runs), strict=True):
        point = at(ds, seed=seed, c=c)
        assert (r.window_start == -1) == (c < 1)
        shared += _check_window(point, r)
    assert shared >= 4  # the checkpoint comparison is not vacuous


def test_escaped_runs_end_at_most_two_over_eta():
    """Every escaped run lands on a minimizer with sharpness <= (2/eta)(1 + 1e-6)."""
    section = {**ESC, "seeds": 4, "max_steps": 20000, "width": [1, 4], "c": [1.01, 1.1, 1.5]}
    parts = []
    with dask_client(2) as client:
        for width in (1, 4):  # one batch of every c and seed per chain shape
            ds = _compute(section, client, width=width)
            assert ds.sizes["point"] == 12
            parts.append(ds)
            assert stability_violations(ds) == []
    n_escaped = 0
    for ds in parts:
        esc = (ds.outcome == ESCAPED).values
        n_escaped += int(esc.sum())
        fs, limit = ds.final_sharpness.values[esc], ds.two_over_eta.values[esc]
        assert np.all(fs <= limit * (1 + STABILITY_RTOL)), (fs / limit).tolist()
        method = ds.final_sharpness_method.values[esc]
        assert (method == dmf.SHARPNESS_METHODS.index("exact")).all()
    assert n_escaped >= 12  # the check is not vacuous (measured: 16 of 24)
    assert STABILITY_RTOL == 1e-6


def test_stability_violations_names_the_point():
    with dask_client(1) as client:
        ds = _compute({**ESC, "max_steps": 20000}, client)
    assert (ds.outcome == ESCAPED).all() and stability_violations(ds) == []
    bad = ds.copy(deep=True)
    one = int(np.flatnonzero(bad.seed.values == 1)[0])
    zero = int(np.flatnonzero(bad.seed.values == 0)[0])
    bad["final_sharpness"][one] = bad.two_over_eta[one] * (1 + 1e-3)
    (text,) = stability_violations(bad)
    assert "depth=4 width=1 c=1.1 radius=1e-09 seed=1" in text and "> 2/eta" in text
    bad["final_sharpness"][zero] = np.nan  # an escaped run without a final sharpness
    assert len(stability_violations(bad)) == 2


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, address):
    """Depth 4 scalar: c = 0.9 stays, 1.1 escapes, 3 diverges (seeds 0 and 1)."""
    return _dataset(tmp_path_factory.mktemp("mixed"), address, c=[0.9, 1.1, 3.0],
                    max_steps=20000)  # fmt: skip


def test_aggregate_holds_the_dense_window_of_every_point(mixed):
    """Stayed, escaped and diverged runs: the aggregate's windows are the direct runs'."""
    assert mixed.window_proj_top.dims == (
        "depth", "width", "c", "radius", "seed", "window_step"
    )  # fmt: skip
    np.testing.assert_array_equal(mixed.window_step.values, np.arange(WINDOW))
    section = {**ESC, "c": [0.9, 1.1, 3.0], "max_steps": 20000}
    runs = [(seed, c) for seed in (0, 1) for c in (0.9, 1.1, 3.0)]
    sub = mixed.sel(depth=4, width=1, radius=1e-9)
    for (seed, c), r in zip(runs, _direct(section, runs), strict=True):
        point = sub.sel(seed=seed, c=c)
        _check_window(point, r)
        if r.outcome == "diverged":  # nan from the diverging step on
            n = r.steps_run - r.window_start
            assert 0 < n < WINDOW and np.isfinite(point.window_loss.values[:n]).all()
            assert np.isnan(point.window_loss.values[n:]).all()
    assert (sub.window_start.sel(c=0.9) == -1).all()  # stayed: -1, not the fill (nan)


def test_figures_draw_the_computed_dataset(mixed):
    assert dmf.OUTCOMES[mixed.outcome.sel(c=3.0).isel(seed=0).item()] == "diverged"
    ws = [mixed.w_star.sel(depth=4, width=1, seed=0).values[i].reshape(1, 1) for i in range(4)]
    text = _texts(figs.escape_contour(mixed))
    assert "all-scalar chain, L = 4, seed 0" in text
    assert f"{dmf.sharpness(ws):.6g}" in text  # exact lambda* of the stored w_star
    assert "near w*" in text and "far: the whole paths" in text and "c = 1.1" in text
    assert "edge of stability" in _texts(figs.escape_sharpness(mixed))
    assert "ratio to linear theory" in _texts(figs.escape_steps(mixed))
    assert "fraction of seeds" in _texts(figs.escape_phase(mixed))


def test_figures_without_escapes_say_so(tmp_path, address):
    ds = _dataset(tmp_path, address, c=[0.5, 0.9], max_steps=300)
    assert not (ds.outcome == ESCAPED).any()
    assert "no run left the escape ball" in _texts(figs.escape_contour(ds))
    assert "no run left the escape ball" in _texts(figs.escape_steps(ds))
    assert "edge of stability" in _texts(figs.escape_sharpness(ds))
    assert "stayed" in _texts(figs.escape_phase(ds))


def test_figures_without_scalar_chain_or_results_say_so(mixed):
    matrix = mixed.assign_coords(width=[4])  # relabelled: no width-1 chain in the dataset
    assert "no all-scalar chain (width 1)" in _texts(figs.escape_contour(matrix))
    for name in ("escape_sharpness", "escape_steps", "escape_phase"):
        plt.close(figs.FIGURES[name](matrix))
    failed = mixed.copy(deep=True)  # every point failed: no minimizer, nothing finite
    for name, var in failed.data_vars.items():
        if var.dtype.kind == "f":
            failed[name][...] = np.nan
    failed["outcome"][...] = -1
    assert "every point failed" in _texts(figs.escape_contour(failed))
    assert "no final sharpness" in _texts(figs.escape_sharpness(failed))
    assert "no run left the escape ball" in _texts(figs.escape_steps(failed))
    assert "no result (failed point)" in _texts(figs.escape_phase(failed))
    diverged = mixed.sel(c=[3.0])  # only diverged runs: paths end, no final sharpness
    assert "far: the whole paths" in _texts(figs.escape_contour(diverged))
    assert "no final sharpness" in _texts(figs.escape_sharpness(diverged))
    plt.close(figs.escape_steps(diverged))
    assert "diverged" in _texts(figs.escape_phase(diverged))
