"""Synthetic blocks (random values, real labels and block format) for the sweep-layer tests."""

import numpy as np

from sweeplab.sweep.blockstore import write_block
from sweeplab.sweep.datasets import label
from sweeplab.sweep.experiments import REGISTRY

SETTINGS = {"gauge_spread": 0.5, "lanczos_tol": 1e-12, "dense_max_params": 0}


def sharp_section(depth=(2, 3, 4), family=("balanced", "gaussian"), seeds=4, per_block=2):
    return {
        "depth": list(depth), "width": [4], "d_io": [1, 2], "family": list(family),
        "seeds": seeds, "seeds_per_block": per_block, **SETTINGS,
    }  # fmt: skip


def synthetic_block(block, offset=0.0, failed=(), settings=SETTINGS):
    """The labelled dataset of ``block`` with values derived from its name (deterministic)."""
    exp = REGISTRY[block.experiment]
    seeds = exp.block_coords(block)["seed"]
    rng = np.random.default_rng(abs(hash(block.name)) % 2**32)
    data = exp.empty_points(len(seeds), settings, block)
    coords = exp.block_coords(block)
    for name, var in exp.variables.items():
        if var.dtype != "float64":
            continue
        if set(coords) <= set(var.dims):
            data[name][...] = rng.random(data[name].shape) + offset
        else:  # shared by several blocks (e.g. escape's w_star): a function of its own coords
            own = [coords[d][0] for d in var.dims if d in coords and d != "seed"]
            base = np.asarray(coords["seed"], dtype=float)[:, None] * 100 + sum(own)
            data[name][...] = base + np.arange(data[name].shape[-1])
    for i in failed:
        exp.record_failure(data, i, RuntimeError(f"point {i} failed"))
    ds = label(exp, block, data, settings)
    ds.attrs = {"experiment": block.experiment, "block": block.name}
    return ds


def write_blocks(blocks_dir, section, experiment="sharpness", **kw):
    """Write every block of ``section`` that is not there yet; return {name: dataset}."""
    out = {}
    for block in REGISTRY[experiment].blocks(section):
        path = blocks_dir / f"{block.name}.zarr.zip"
        ds = synthetic_block(block, settings=section, **kw)
        if not path.exists():
            write_block(ds, path)
        out[block.name] = ds
    return out
