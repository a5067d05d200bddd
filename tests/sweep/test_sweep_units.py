"""Sweep layer pieces against direct calls: keys, block names, seeds, points, atomic stores."""

import os
import re
import subprocess

import numpy as np
import pytest
import xarray as xr
from synth import write_blocks

from sweeplab import dmf, mcvd
from sweeplab.sweep import (
    REGISTRY,
    compute_points,
    format_value,
    grid_points,
    open_dataset,
    plan,
    point_seed,
    validate_config,
    write_atomic,
)
from sweeplab.sweep.cluster import dask_client
from sweeplab.sweep.experiments import sharpness_minimizer
from sweeplab.sweep.identity import block_name, hex_keys, raw_keys
from sweeplab.sweep.planner import load_plan_file

SHARP = {
    "depth": [2, 3], "width": [4], "d_io": [1, 2], "family": ["balanced", "gaussian"],
    "seeds": 3, "gauge_spread": 0.5, "lanczos_tol": 1e-12, "dense_max_params": 200,
}  # fmt: skip


def _points(experiment, section, **where):
    """The grid points of ``section`` whose parameters match ``where`` (a Points batch)."""
    grid = grid_points(REGISTRY[experiment], section)
    cols = grid.columns(np.arange(len(grid.keys)))
    mask = np.ones(len(grid.keys), dtype=bool)
    for k, v in where.items():
        mask &= cols[k] == v
    return grid.points(np.flatnonzero(mask))


def test_canonical_values():
    assert format_value(0.1 + 0.2) == format_value(0.3) == "0.3"
    assert format_value(1) == format_value(1.0) == "1"
    assert format_value(1e-9) == "1e-09"
    assert format_value(79.4) == "79.4"
    assert format_value(True) == "true"
    for bad in (float("nan"), "a_b", "x~y", "", None, [1]):
        with pytest.raises(ValueError):
            format_value(bad)


def test_block_name_is_a_content_hash_and_the_plan_file_round_trips(tmp_path):
    """Block names replaced parameter strings: a hash of the points' keys (and salt)."""
    points = _points("escape", {
        "depth": [15], "width": [1], "c": [1.01], "radius": [1e-9], "seeds": 8,
        "escape_radius": 1e-3, "max_steps": 100, "loss_tol": 1e-20,
    })  # fmt: skip
    raw = raw_keys(points.keys)
    name = block_name(raw)
    assert re.fullmatch(r"b[0-9a-f]{24}", name)
    assert block_name(raw.copy()) == name  # deterministic
    assert block_name(raw[:-1]) != name and block_name(raw[::-1]) != name
    assert block_name(raw, ("bold",)) != name  # a retry of the same points: another name
    np.testing.assert_array_equal(hex_keys(raw), points.keys)
    with pytest.raises(ValueError, match="32 hexadecimal"):
        raw_keys(["abc"])
    # a plan file holds its points; loading it gives them back with the same keys
    section = {"depth": [15], "width": [1], "c": [1.01], "radius": [1e-9], "seeds": 8,
               "escape_radius": 1e-3, "max_steps": 100, "loss_tol": 1e-20}  # fmt: skip
    p = plan("escape", section, tmp_path / "blocks")
    (path,) = p.write_plan_files(tmp_path / "plans")
    exp, loaded, settings, _sec, salt = load_plan_file(path)
    assert exp.name == "escape" and path.stem == p.blocks[0].name and salt == ()
    assert sorted(loaded.keys) == sorted(points.keys)
    assert loaded.columns["c"].tolist() == [1.01] * 8 and sorted(loaded.columns["seed"]) == list(
        range(8)
    )
    assert settings == {"escape_radius": 1e-3, "max_steps": 100, "loss_tol": 1e-20}


def test_point_seed_depends_on_parameters_only():
    a = point_seed(3, "sharpness", depth=2, width=4)
    b = point_seed(3, "sharpness", width=4, depth=2)  # order of keywords is irrelevant
    c = point_seed(3, "sharpness", depth=2, width=5)
    draw = [np.random.default_rng(s).random() for s in (a, b, c)]
    assert draw[0] == draw[1] != draw[2]


def test_extending_axes_only_adds_points(tmp_path):
    """Extending depth and seeds keeps every old key: only the new points are pending."""
    blocks = tmp_path / "blocks"
    write_blocks(blocks, SHARP)
    before = plan("sharpness", SHARP, blocks)
    assert before.counts() == {"done": 2 * 1 * 2 * 2 * 3, "failed": 0, "pending": 0}
    assert before.blocks == []
    wider = {**SHARP, "depth": [2, 3, 5], "seeds": 4}
    old_keys = set(grid_points(REGISTRY["sharpness"], SHARP).keys.tolist())
    new_keys = set(grid_points(REGISTRY["sharpness"], wider).keys.tolist())
    assert old_keys < new_keys  # no chunk of seeds to break: seed 2 keeps its key
    after = plan("sharpness", wider, blocks)
    assert after.counts() == {"done": 24, "failed": 0, "pending": 3 * 2 * 2 * 4 - 24}
    pending = np.concatenate([b.rows for b in after.blocks])
    assert set(after.grid.keys[pending].tolist()) == new_keys - old_keys


def test_compute_sharpness_points_match_direct_calls():
    points = _points("sharpness", {**SHARP, "seeds": 2}, depth=3, dio=2, family="balanced")
    with dask_client(2) as client:
        ds = compute_points(REGISTRY["sharpness"], points, SHARP, client)
    assert dict(ds.sizes) == {"point": 2}
    assert ds.key.values.tolist() == points.keys.tolist()
    for seed in (0, 1):
        ws, target = sharpness_minimizer(3, 4, 2, "balanced", seed, 0.5)
        point = ds.isel(point=int(np.flatnonzero(ds.seed.values == seed)[0]))
        assert (int(point.depth), int(point.width), int(point.dio)) == (3, 4, 2)
        assert float(point.exact) == dmf.sharpness(ws)
        assert float(point.flattest) == pytest.approx(dmf.flattest_sharpness(target, 3))
        assert float(point.rel_err_lanczos) < 1e-9
        assert int(point.status) == 0
    assert ds.exact.attrs["units"] == "1" and "Kronecker" in ds.exact.attrs["long_name"]


def test_failed_point_is_recorded_not_dropped():
    # width 1 < rank 2 of the target: a balanced minimizer cannot exist
    section = {**SHARP, "depth": [2], "width": [1], "d_io": [2], "family": ["balanced"],
               "seeds": 1}  # fmt: skip
    with dask_client(1) as client:
        ds = compute_points(REGISTRY["sharpness"], _points("sharpness", section), section, client)
    assert int(ds.status.squeeze()) == 1
    assert "ValueError" in str(ds.error.squeeze().item())
    assert np.isnan(float(ds.exact.squeeze()))


def test_channel_point_matches_direct_simulation():
    settings = {
        "geometry": {"paper": {"tx": [0, 0, 10], "rx": [10, 0, 0], "radius": 5}},
        "wall": True, "D": [79.4], "dt": [1e-3], "correction": ["bridge"], "seed": [4],
        "n_molecules": 3000, "t_end": 0.5, "bin_width": 0.05, "batch_size": 1000,
    }  # fmt: skip
    with dask_client(2) as client:
        ds = compute_points(REGISTRY["channel"], _points("channel", settings), settings,
                            client).squeeze()  # fmt: skip
    assert (ds.geometry.item(), float(ds.D), int(ds.seed)) == ("paper", 79.4, 4)
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
        "seeds": 1, "escape_radius": 1e-3, "max_steps": 10,
        "loss_tol": 1e-20,
    }}  # fmt: skip
    with pytest.raises(ValueError, match=r"escape\.c: values 0\.9 and 0\.9000000000000001"):
        validate_config(cfg)
