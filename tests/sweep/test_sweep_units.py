"""Sweep layer pieces against direct calls: names, seeds, blocks, atomic stores."""

import os
import subprocess

import numpy as np
import pytest
import xarray as xr

from sweeplab import dmf, mcvd
from sweeplab.sweep import (
    Block,
    block_name,
    blocks_for,
    compute_block,
    format_value,
    open_dataset,
    parse_block,
    parse_block_name,
    point_seed,
    validate_config,
    write_atomic,
)
from sweeplab.sweep.cluster import dask_client
from sweeplab.sweep.experiments import sharpness_minimizer

SHARP = {
    "depth": [2, 3], "width": [4], "d_io": [1, 2], "family": ["balanced", "gaussian"],
    "seeds": 3, "seeds_per_block": 2, "gauge_spread": 0.5, "lanczos_tol": 1e-12,
    "dense_max_params": 200,
}  # fmt: skip


def test_canonical_values():
    assert format_value(0.1 + 0.2) == format_value(0.3) == "0.3"
    assert format_value(1) == format_value(1.0) == "1"
    assert format_value(1e-9) == "1e-09"
    assert format_value(79.4) == "79.4"
    assert format_value(True) == "true"
    for bad in (float("nan"), "a_b", "x~y", "", None, [1]):
        with pytest.raises(ValueError):
            format_value(bad)


def test_block_name_roundtrip_and_canonical_check():
    name = block_name({"depth": 15, "width": 1, "c": 1.01, "radius": 1e-9, "seeds": "0-7"})
    assert name == "depth~15_width~1_c~1.01_radius~1e-09_seeds~0-7"
    assert parse_block_name(name)["c"] == "1.01"
    block = parse_block("escape", name)
    assert block.params == {"depth": 15, "width": 1, "c": 1.01, "radius": 1e-9, "seeds": "0-7"}
    with pytest.raises(ValueError, match="not canonical"):
        parse_block("escape", "depth~15_width~1_c~1.010_radius~1e-09_seeds~0-7")
    with pytest.raises(ValueError, match="must have keys"):
        parse_block("escape", "depth~15")


def test_point_seed_depends_on_parameters_only():
    a = point_seed(3, "sharpness", depth=2, width=4)
    b = point_seed(3, "sharpness", width=4, depth=2)  # order of keywords is irrelevant
    c = point_seed(3, "sharpness", depth=2, width=5)
    draw = [np.random.default_rng(s).random() for s in (a, b, c)]
    assert draw[0] == draw[1] != draw[2]


def test_blocks_extend_only_adds_names():
    cfg = {"sharpness": SHARP}
    before = {b.name for b in blocks_for("sharpness", cfg)}
    assert len(before) == 2 * 1 * 2 * 2 * 2  # seeds 0-2 in chunks 0-1, 2-2
    wider = {"sharpness": {**SHARP, "depth": [2, 3, 5], "seeds": 4}}
    after = {b.name for b in blocks_for("sharpness", wider)}
    # seeds 3 changes chunk 2-2 into 2-3 (documented: extend seeds in multiples of the chunk)
    kept = {n for n in before if not n.endswith("seeds~2-2")}
    assert kept <= after


def test_compute_sharpness_block_matches_direct_calls():
    block = Block("sharpness", {"depth": 3, "width": 4, "dio": 2, "family": "balanced",
                                "seeds": "0-1"})  # fmt: skip
    with dask_client(2) as client:
        ds = compute_block(block, {"sharpness": SHARP}, client)
    assert dict(ds.sizes) == {"depth": 1, "width": 1, "dio": 1, "family": 1, "seed": 2}
    for seed in (0, 1):
        ws, target = sharpness_minimizer(3, 4, 2, "balanced", seed, 0.5)
        point = ds.sel(seed=seed).squeeze()
        assert float(point.exact) == dmf.sharpness(ws)
        assert float(point.flattest) == pytest.approx(dmf.flattest_sharpness(target, 3))
        assert float(point.rel_err_lanczos) < 1e-9
        assert int(point.status) == 0
    assert ds.exact.attrs["units"] == "1" and "Kronecker" in ds.exact.attrs["long_name"]


def test_failed_point_is_recorded_not_dropped():
    # width 1 < rank 2 of the target: a balanced minimizer cannot exist
    block = Block("sharpness", {"depth": 2, "width": 1, "dio": 2, "family": "balanced",
                                "seeds": "0-0"})  # fmt: skip
    with dask_client(1) as client:
        ds = compute_block(block, {"sharpness": SHARP}, client)
    assert int(ds.status.squeeze()) == 1
    assert "ValueError" in str(ds.error.squeeze().item())
    assert np.isnan(float(ds.exact.squeeze()))


def test_channel_block_matches_direct_simulation():
    settings = {
        "geometry": {"paper": {"tx": [0, 0, 10], "rx": [10, 0, 0], "radius": 5}},
        "wall": True, "D": [79.4], "dt": [1e-3], "correction": ["bridge"], "seed": [4],
        "n_molecules": 3000, "t_end": 0.5, "bin_width": 0.05, "batch_size": 1000,
    }  # fmt: skip
    block = Block("channel", {"geometry": "paper", "D": 79.4, "dt": 1e-3,
                              "correction": "bridge", "seed": 4})  # fmt: skip
    with dask_client(2) as client:
        ds = compute_block(block, {"channel": settings}, client).squeeze()
    g = mcvd.Geometry((0, 0, 10), (10, 0, 0), 5, 79.4)
    seed = point_seed(4, "channel", geometry="paper", D=79.4, dt=1e-3, correction="bridge")
    direct = mcvd.simulate(g, 0.5, 1e-3, 3000, seed=seed, batch_size=1000)
    f, _ = mcvd.cumulative_fraction(direct)
    np.testing.assert_array_equal(ds.fraction_sim.values, f[49::50])
    np.testing.assert_allclose(ds.fraction_first_order.values,
                               mcvd.absorbed_fraction(g, ds.time.values))  # fmt: skip
    assert float(ds.fraction_exact_inf) == mcvd.steady_state_fraction(g)
    assert float(ds.molecule_steps) == direct.molecule_steps


def test_write_atomic_replaces_and_cleans_only_dead_writers(tmp_path):
    target = tmp_path / "x.zarr"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".x.zarr.tmp-{dead.pid}-deadbeef"  # left by a process that is gone
    live = tmp_path / f".x.zarr.tmp-{os.getpid()}-cafe0000"  # another writer, still running
    stale.mkdir()
    live.mkdir()
    write_atomic(xr.Dataset({"a": ("i", [1.0, 2.0])}), target)
    write_atomic(xr.Dataset({"a": ("i", [3.0])}), target)
    assert open_dataset(target).a.values.tolist() == [3.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "x.zarr"]


def test_validate_config_names_the_bad_value():
    cfg = {
        "experiments": ["channel"],
        "channel": {
            "geometry": {"bad": {"tx": [0, 0, 10], "rx": [4, 0, 0], "radius": 5}},
            "wall": True, "D": [79.4], "dt": [1e-3], "t_end": 1.0, "bin_width": 0.1,
            "correction": ["bridge"], "seed": [0], "n_molecules": 1000, "batch_size": 1000,
        },
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"channel.geometry.bad: .*crosses or touches"):
        validate_config(cfg)
    cfg["channel"]["geometry"] = {"ok": {"tx": [0, 0, 10], "rx": [10, 0, 0], "radius": 5}}
    cfg["channel"]["bin_width"] = 0.3
    with pytest.raises(ValueError, match=r"bin_width = 0\.3 s must divide"):
        validate_config(cfg)


def test_equal_after_canonicalisation_axis_values_are_refused():
    cfg = {"experiments": ["escape"], "escape": {
        "depth": [4], "width": [1], "c": [0.9, 0.9000000000000001], "radius": [1e-9],
        "seeds": 1, "seeds_per_block": 1, "escape_radius": 1e-3, "max_steps": 10,
        "loss_tol": 1e-20,
    }}  # fmt: skip
    with pytest.raises(ValueError, match=r"escape\.c: values 0\.9 and 0\.9000000000000001"):
        validate_config(cfg)
