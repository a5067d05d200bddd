"""The eos figures on edge cases of valid configs: failed, diverged, tiny grids, no scalar chain.

Cases are the tiny run of ``.test/config`` edited the way the pipeline records them (status
failed and every float nan; a diverged run keeps its thresholds and checkpoint values up to the
divergence but no final orbit, balance or sharpness) or sliced to a grid a config could ask for.
"""

import numpy as np
from plotcheck import (
    fail_everything,
    messages,
    outside_canvas,
    render,
    unlabelled_axes,
    write_store,
)

from sweeplab import dmf
from sweeplab.plots import FIGURES, draw_all

NAMES = [n for n, (e, _) in FIGURES.items() if e == "eos"]
DIVERGED = dmf.DESCEND_OUTCOMES.index("diverged")
FINAL = ("final_loss", "final_sharpness", "sharpness_ratio", "n_oscillating", "trace",
         "product_norm_ratio", "frobenius_norm_ratio", "imbalance_spectral",
         "imbalance_frobenius", "amp_min", "amp_max", "product_norms", "spectral_norms",
         "frobenius_norms", "checkpoint_sharpness", "gfs_sharpness")  # fmt: skip


def _check(fig):
    assert outside_canvas(fig) == []
    assert unlabelled_axes(fig) == []


def test_eos_figures_with_every_point_failed(tiny, tmp_path):
    failed = fail_everything(tiny["eos"])
    store = write_store(failed, tmp_path / "eos.zarr")
    paths = draw_all([store], tmp_path / "figures", NAMES)
    assert len(paths) == 3 * len(NAMES)
    for name in NAMES:
        fig = render(name, failed)
        _check(fig)
        found = messages(fig)
        assert found and all("every point failed" in m for m in found), (name, found)


def test_eos_figures_with_every_run_diverged(tiny):
    ds = tiny["eos"].copy(deep=True)
    ds["outcome"][...] = DIVERGED
    for name in FINAL:
        ds[name][...] = np.nan
    for name in NAMES:
        fig = render(name, ds)
        _check(fig)
        found = messages(fig)
        assert found and all("diverged" in m for m in found), (name, found)


def test_eos_figures_on_one_step_size_one_start_and_no_scalar_chain(tiny):
    ds = tiny["eos"].isel(eta=[1], start=[0]).sel(spectrum=["s3"], width=[3])
    for name in NAMES:
        fig = render(name, ds)
        _check(fig)
    gfs = render("eos_gfs", ds)
    assert any("no scalar chain" in t.get_text() for t in gfs.texts + gfs.axes[0].texts)
    bif = render("eos_bifurcation", ds)
    assert all(ax.has_data() for ax in bif.axes)
