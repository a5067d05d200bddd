"""Edge-of-stability experiment through the sweep layer, against direct dmf calls."""

import numpy as np
import pytest
from distributed import LocalCluster
from synth import run_section

from sweeplab import dmf
from sweeplab.sweep import open_dataset, provenance
from sweeplab.sweep.aggregate import aggregate
from sweeplab.sweep.configcheck import check_schema
from sweeplab.sweep.experiments import REGISTRY, validate_config
from sweeplab.sweep.experiments.eos import eos_problem, eta_values

ETAS = [0.029, 0.0325, 0.0365, 0.0405]  # around the thresholds 0.0306, 0.0343, 0.0390 (L = 3)
SECTION = {
    "spectra": {"s3": [6, 5.5, 5], "s1": [6]},
    "depth": [3], "width": [1, 3], "start": ["small", "gaussian"], "eta": ETAS, "seeds": 1,
    "max_steps": 2000, "alpha": 0.3, "checkpoints": 8,
}  # fmt: skip
EXP = REGISTRY["eos"]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """The tiny grid planned, computed block by block and aggregated, as the pipeline does."""
    root = tmp_path_factory.mktemp("eos")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address="127.0.0.1:0",
                      worker_dashboard_address="127.0.0.1:0") as cluster:  # fmt: skip
        run_section("eos", SECTION, root, cluster.scheduler_address)
    aggregate("eos", SECTION, root / "blocks" / "eos", root / "eos.zarr",
              attrs=provenance({"eos": SECTION}))  # fmt: skip
    return open_dataset(root / "eos.zarr").load()


def _direct(ws, target, eta):
    ck = dmf.default_checkpoints(2000, 8)
    return dmf.descend(ws, target, eta, max_steps=2000, checkpoints=ck)


def test_small_start_points_equal_direct_descend(ds):
    target = np.diag([6.0, 5.5, 5.0])
    start = [0.3 * np.eye(3)] * 3  # built here, not by the experiment
    thresholds = dmf.mode_thresholds(target, 3)
    assert (ds.status == 0).all()
    for eta in ETAS:
        p = ds.sel(spectrum="s3", depth=3, width=3, start="small", eta=eta, seed=0)
        r = _direct(start, target, eta)
        assert dmf.DESCEND_OUTCOMES[int(p.outcome)] == r.outcome
        assert int(p.period) == r.period and int(p.steps_run) == r.steps_run
        assert float(p.final_sharpness) == r.final_sharpness
        assert float(p.sharpness_ratio) == pytest.approx(r.final_sharpness * eta / 2, rel=1e-15)
        np.testing.assert_array_equal(p.amp_min.values, r.orbit_amplitudes.min(axis=0))
        np.testing.assert_array_equal(p.amp_max.values, r.orbit_amplitudes.max(axis=0))
        np.testing.assert_array_equal(p.checkpoint_sharpness.values, r.checkpoint_sharpness)
        np.testing.assert_array_equal(p.threshold.values, thresholds)
        assert int(p.n_predicted) == int(np.sum(thresholds < eta))
        # on the diagonal subspace exactly the modes above their threshold oscillate
        assert int(p.n_oscillating) == int(p.n_predicted) == int(r.oscillating().sum())
        assert float(p.flattest_sharpness) == pytest.approx(2 * 3 * 6.0 ** (4 / 3), rel=1e-14)
        ws = list(r.final_weights)
        assert float(p.trace) == pytest.approx(np.trace(dmf.dense_hessian(ws, target)), rel=1e-9)
        prod = [np.linalg.norm(ws[2] @ ws[1], 2), np.linalg.norm(ws[2], 2) * np.linalg.norm(
            ws[0], 2), np.linalg.norm(ws[1] @ ws[0], 2)]  # fmt: skip
        assert float(p.product_norm_ratio) == pytest.approx(max(prod) / min(prod), rel=1e-12)
        assert np.isnan(p.gfs_sharpness.values).all()  # not a scalar chain


def test_generic_start_is_shared_by_the_step_sizes_and_diverges_past_the_second_threshold(ds):
    target = np.diag([6.0, 5.5, 5.0])
    ws, m = eos_problem([6, 5.5, 5], 3, 3, "gaussian", 0, SECTION, "s3")
    np.testing.assert_array_equal(m, target)
    loss0 = float(np.sum((ws[2] @ ws[1] @ ws[0] - target) ** 2))
    g = ds.sel(spectrum="s3", depth=3, width=3, start="gaussian", seed=0)
    np.testing.assert_allclose(g.loss.isel(step=0).values, loss0, rtol=1e-12)
    for eta in ETAS:
        r = _direct(ws, target, eta)
        assert dmf.DESCEND_OUTCOMES[int(g.outcome.sel(eta=eta))] == r.outcome
    outcomes = [dmf.DESCEND_OUTCOMES[int(c)] for c in g.outcome.values]
    # generic start: no stable 2- or 3-mode orbit (issue 20); diverged points keep nan modes
    assert outcomes[2:] == ["diverged", "diverged"], outcomes
    assert np.isnan(g.n_oscillating.values[2:]).all() and np.isnan(g.amp_min.values[2:]).all()


def test_scalar_chain_records_gfs_sharpness_at_the_checkpoints(ds):
    p = ds.sel(spectrum="s1", depth=3, width=1, start="gaussian", eta=0.0325, seed=0)
    ws, target = eos_problem([6], 3, 1, "gaussian", 0, SECTION, "s1")
    steps = p.step.values
    for k in (0, 3, len(steps) - 1):
        t = int(steps[k])
        w = ws if t == 0 else list(dmf.descend(ws, target, 0.0325, max_steps=t,
                                               track_sharpness=False).final_weights)  # fmt: skip
        assert float(p.gfs_sharpness.isel(step=k)) == pytest.approx(
            dmf.gfs_sharpness(w, target), rel=1e-12
        )
    assert p.singular_value.values[0] == 6.0 and np.isnan(p.singular_value.values[1:]).all()


def test_eta_range_is_a_linspace_and_bad_sections_are_refused_in_one_line():
    rng = {"start": 0.01, "stop": 0.02, "num": 11}
    assert eta_values(rng) == pytest.approx(np.linspace(0.01, 0.02, 11).tolist(), rel=0)
    section = {**SECTION, "eta": rng}
    config = {"experiments": ["eos"], "eos": section}
    check_schema(config)
    validate_config(config)
    assert EXP.grid_size(section) == 2 * 2 * 2 * 11
    np.testing.assert_array_equal(EXP.grid(section)["eta"], np.linspace(0.01, 0.02, 11))
    bad = [
        ({"eta": {"start": 0.02, "stop": 0.01, "num": 3}}, "stop = 0.01"),
        ({"eta": {"start": 0.01, "stop": 0.02}}, "num"),
        ({"eta": {"start": 0.01, "stop": 0.02, "num": 0}}, "num"),
        ({"spectra": {"z": [0, 0]}}, "eos.spectra.z"),
        ({"spectra": {"z": [1, -1]}}, "-1"),
        ({"start": ["tiny"]}, "tiny"),
        ({"alpha": 0}, "alpha"),
    ]
    for override, needle in bad:
        cfg = {"experiments": ["eos"], "eos": {**SECTION, **override}}
        with pytest.raises(ValueError) as info:
            check_schema(cfg)
            validate_config(cfg)
        text = str(info.value)
        assert needle in text and "\n" not in text, (override, text)


def test_cost_and_memory_grow_with_the_chain():
    cols = {"spectrum": np.array(["s1", "s3", "s3"], dtype=object), "depth": np.array([3, 3, 6]),
            "width": np.array([1, 3, 3]), "start": np.array(["small"] * 3, dtype=object),
            "eta": np.array([0.03] * 3), "seed": np.array([0, 0, 0])}  # fmt: skip
    settings = {**EXP.settings(SECTION), **EXP.entries(SECTION)}
    cost = EXP.point_cost(cols, settings)
    need, how = EXP.point_memory(cols, settings)
    assert np.all(np.diff(cost) > 0) and np.all(np.diff(need) > 0) and "N" in how
