"""Channel experiment: exact model, slabs, metrics and figures against direct mcvd calls."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from distributed import LocalCluster
from synth import at, run_section

from sweeplab import mcvd
from sweeplab.plots import channel as channel_plots
from sweeplab.sweep import open_block, open_dataset, point_seed, validate_config
from sweeplab.sweep.aggregate import aggregate
from sweeplab.sweep.experiments import REGISTRY

GEOMETRIES = {
    "paper": {"tx": [0, 0, 10], "rx": [10, 0, 0], "radius": 5},
    "gap1": {"tx": [0, 0, 10], "rx": [6, 0, 0], "radius": 5},
    "slab20": {"tx": [0, 0, 10], "rx": [6, 0, 0], "radius": 5, "slab_width": 20},
}
SECTION = {
    "geometry": GEOMETRIES, "wall": True, "D": [79.4], "dt": [1e-3], "correction": ["bridge"],
    "seed": [3], "n_molecules": 3000, "t_end": 0.5, "bin_width": 0.05, "batch_size": 1000,
    "symbol_time": [0.05, 0.2], "n_tx": 10000, "isi_memory": 1, "ber_target": 1e-3,
}  # fmt: skip
#: one geometry, a partially absorbing receiver (k = 10 µm/s) and the absorbing one
REACTIVE = {**SECTION, "geometry": {"gap1": GEOMETRIES["gap1"]}, "reactivity": [10.0, math.inf],
            "correction": ["bridge", "none"], "n_molecules": 1000}  # fmt: skip
MODELS = {"free": "free", "first_order": "first-order", "convolved": "first-order-convolved",
          "image_chain": "image-chain", "exact": "exact"}  # fmt: skip


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    """SECTION planned and computed by run_plan (one block of every geometry), aggregated."""
    tmp = tmp_path_factory.mktemp("channel")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address="127.0.0.1:0",
                      worker_dashboard_address="127.0.0.1:0") as cluster:  # fmt: skip
        p = run_section("channel", SECTION, tmp, cluster.scheduler_address)
        r = run_section("channel", REACTIVE, tmp / "reactive", cluster.scheduler_address)
    assert len(p.blocks) == 1 and p.counts()["pending"] == len(GEOMETRIES)
    block = open_block(tmp / "blocks" / "channel" / f"{p.blocks[0].name}.zarr.zip")
    aggregate("channel", SECTION, tmp / "blocks" / "channel", tmp / "channel.zarr")
    blocks = tmp / "reactive" / "blocks" / "channel"
    aggregate("channel", REACTIVE, blocks, tmp / "reactive.zarr")
    reactive = [open_block(blocks / f"{b.name}.zarr.zip") for b in r.blocks]
    agg = open_dataset(tmp / "reactive.zarr").load()
    return block, open_dataset(tmp / "channel.zarr").load(), reactive, agg


@pytest.fixture(scope="module")
def reactive(computed):
    """The points of REACTIVE with k = 10 µm/s: bridge correction, then none."""
    points = [at(b, reactivity=10.0, correction=c) for c in ("bridge", "none") for b in computed[2]
              if ((b.reactivity == 10.0) & (b.correction == c)).any()]  # fmt: skip
    assert len(points) == 2
    return points[0].squeeze(), points[1].squeeze()


@pytest.fixture(scope="module")
def blocks(computed):
    """Each geometry's point of the computed block."""
    return {name: at(computed[0], geometry=name) for name in GEOMETRIES}


@pytest.fixture(scope="module")
def aggregated(computed):
    """The aggregate of that block, as the pipeline writes it."""
    return computed[1]


@pytest.mark.parametrize("name", ["gap1", "slab20"])
def test_block_matches_direct_mcvd_calls(blocks, name):
    ds = blocks[name].squeeze()
    spec = GEOMETRIES[name]
    g = mcvd.Geometry(tuple(spec["tx"]), tuple(spec["rx"]), 5, 79.4,
                      slab_width=spec.get("slab_width"))  # fmt: skip
    assert int(ds.status) == 0, str(ds.error.values)
    edges = np.concatenate([[0.0], ds.time.values])
    exact = mcvd.absorbed_fraction(g, edges, "exact")
    np.testing.assert_allclose(ds.fraction_exact.values, exact[1:], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ds.rate_exact.values, np.diff(exact) / 0.05, rtol=1e-12)
    for key, model in MODELS.items():
        if key == "image_chain" and g.is_slab:
            assert ds.fraction_image_chain.isnull().all() and ds.isi_image_chain.isnull().all()
            assert np.isnan(float(ds.peak_time_image_chain))
            continue
        f = mcvd.absorbed_fraction(g, edges, model)
        np.testing.assert_allclose(ds[f"fraction_{key}"].values, f[1:], rtol=1e-12, atol=1e-15)
        t_peak, f_peak = mcvd.peak(g, model=model)
        assert float(ds[f"peak_time_{key}"]) == pytest.approx(t_peak.value, rel=1e-12)
        assert float(ds[f"peak_rate_{key}"]) == pytest.approx(f_peak.value, rel=1e-12)
        for ts in (0.05, 0.2):
            got = ds.sel(Ts=ts)
            assert float(got[f"received_{key}"]) == pytest.approx(
                mcvd.received_fraction(g, ts, model=model).value, rel=1e-12, abs=1e-15
            )
            np.testing.assert_allclose(got[f"isi_{key}"].values,
                                       mcvd.isi_taps(g, ts, 5, model=model)[0],
                                       rtol=1e-12, atol=1e-15)  # fmt: skip
        if key != "exact":
            ok = exact[1:] > 1e-3
            rel = ds[f"relerr_{key}_exact"].values
            np.testing.assert_allclose(rel[ok], f[1:][ok] / exact[1:][ok] - 1, rtol=1e-9)
            assert np.isnan(rel[~ok]).all()
            rate = np.diff(f) / 0.05
            nrmse = np.sqrt(np.mean((rate - np.diff(exact) / 0.05) ** 2)) / ds.rate_exact.max()
            assert float(ds[f"nrmse_{key}_exact"]) == pytest.approx(float(nrmse), rel=1e-9)
    assert float(ds.fraction_exact_inf) == mcvd.steady_state_fraction(g)
    assert float(ds.gap) == g.gap
    assert (float(ds.slab_width) == 20) if g.is_slab else np.isnan(float(ds.slab_width))

    # the simulation and its metrics, against a direct run with the point's seed
    seed = point_seed(3, "channel", geometry=name, D=79.4, dt=1e-3, correction="bridge")
    sim = mcvd.simulate(g, 0.5, 1e-3, 3000, seed=seed, batch_size=1000)
    f, se = mcvd.cumulative_fraction(sim)
    np.testing.assert_array_equal(ds.fraction_sim.values, f[49::50])
    ok = se[49::50] > 0
    np.testing.assert_allclose(ds.zscore_sim_exact.values[ok],
                               (f[49::50] - exact[1:])[ok] / se[49::50][ok])  # fmt: skip
    t_peak, f_peak = mcvd.peak(sim, bin_width=0.05, seed=int(seed.generate_state(1)[0]))
    assert float(ds.peak_time_sim) == t_peak.value and float(ds.peak_time_sim_se) == t_peak.stderr
    assert float(ds.peak_rate_sim) == f_peak.value and float(ds.peak_rate_sim_se) == f_peak.stderr
    est = mcvd.received_fraction(sim, 0.2)
    assert float(ds.received_sim.sel(Ts=0.2)) == est.value
    assert float(ds.received_sim_se.sel(Ts=0.2)) == est.stderr
    h, h_se = mcvd.isi_taps(sim, 0.05, 5)
    np.testing.assert_array_equal(ds.isi_sim.sel(Ts=0.05).values, h)
    np.testing.assert_array_equal(ds.isi_sim_se.sel(Ts=0.05).values, h_se)
    h, _ = mcvd.isi_taps(sim, 0.2, 2)  # 5 * 0.2 s > t_end: taps 2..4 are nan
    np.testing.assert_array_equal(ds.isi_sim.sel(Ts=0.2).values[:2], h)
    assert np.isnan(ds.isi_sim.sel(Ts=0.2).values[2:]).all()
    assert float(ds.relerr_exact) == pytest.approx(exact[-1] / f[-1] - 1, rel=1e-12)


def test_new_variables_declared_with_units_and_inner_dims(blocks, computed):
    ds = blocks["paper"]
    assert computed[0].isi_exact.dims == ("point", "Ts", "tap")
    exp = REGISTRY["channel"]
    # the variables, and the point table (wall time and the planner's cost estimate)
    assert set(ds.data_vars) == set(exp.variables) | {"point_wall_time", "point_cost"}
    new = ["fraction_exact", "rate_exact", "fraction_image_chain", "rate_image_chain",
           "relerr_first_order_exact", "nrmse_image_chain_exact", "zscore_sim_exact",
           "peak_time_sim", "peak_rate_sim_se", "received_exact", "isi_sim", "isi_sim_se",
           "slab_width", "status", "error"]  # fmt: skip
    for name in new:
        assert name in ds, name
    for name, var in ds.data_vars.items():
        assert var.attrs["units"] and var.attrs["long_name"], name
    assert ds.Ts.values.tolist() == [0.05, 0.2] and ds.Ts.attrs["units"] == "s"
    assert ds.tap.values.tolist() == [0, 1, 2, 3, 4]
    assert ds.isi_exact.dims[-2:] == ("Ts", "tap") and ds.received_sim.dims[-1] == "Ts"
    assert ds.rate_exact.attrs["units"] == "1/s" and ds.peak_time_exact.attrs["units"] == "s"
    assert ds.slab_width.attrs["units"] == "um"
    # every block has the same inner dims, taken from the section
    assert exp.grid(SECTION)["Ts"].tolist() == [0.05, 0.2]


def _config(**changes):
    section = {**SECTION, "geometry": dict(GEOMETRIES), **changes}
    return {"experiments": ["channel"], "channel": section}


def test_validation_names_geometry_and_value():
    bad = {"tx": [0, 0, 10], "rx": [6, 0, 0], "radius": 5, "slab_width": 9.5}
    cfg = _config()
    cfg["channel"]["geometry"]["thin"] = bad
    with pytest.raises(ValueError, match=r"channel\.geometry\.thin: slab_width .* got 9\.5"):
        validate_config(cfg)
    cfg["channel"]["geometry"]["thin"] = {**bad, "slab_width": 11.0}  # RX touches x = W
    with pytest.raises(ValueError, match=r"channel\.geometry\.thin: .*second reflecting plane"):
        validate_config(cfg)
    with pytest.raises(ValueError, match=r"symbol_time = 0\.0505 s must be a whole number"):
        validate_config(_config(symbol_time=[0.0505]))
    with pytest.raises(ValueError, match=r"symbol_time = 0\.6 s must be <= channel\.t_end"):
        validate_config(_config(symbol_time=[0.6]))
    validate_config(_config())


def test_aggregate_holds_every_geometry(aggregated):
    assert aggregated.geometry.values.tolist() == ["gap1", "paper", "slab20"]
    assert dict(aggregated.sizes)["Ts"] == 2 and int(aggregated.status.sum()) == 0
    assert aggregated.fraction_image_chain.sel(geometry="slab20").isnull().all()


@pytest.mark.parametrize("case", ["full", "no_slab", "old_store", "reactive"])
def test_figures_render(aggregated, computed, case):
    ds = aggregated
    if case == "reactive":  # one geometry, k = 10 µm/s and inf
        ds = computed[3]
        fig = channel_plots.FIGURES["channel_reactivity"](ds)
        assert len(fig.axes) == 2 and all(ax.has_data() for ax in fig.axes)
        assert fig.axes[1].get_xscale() == "log"  # the finite k on a log axis
        assert len(fig.axes[0].get_lines()) == 4  # exact and simulated F(t) per k
        plt.close(fig)
    elif case == "no_slab":
        ds = ds.sel(geometry=["gap1", "paper"])
    elif case == "old_store":  # a store without the exact model and the new variables
        new = [v for v in ds.data_vars if "exact" in v and v != "fraction_exact_inf"]
        ds = ds.drop_vars([*new, "slab_width", "fraction_image_chain", "rate_image_chain"])
    for name, draw in channel_plots.FIGURES.items():
        fig = draw(ds)
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        if name == "channel_slab" and case not in ("full", "reactive"):
            assert "no slab geometries" in texts
        if name == "channel_slab" and case == "full":
            assert not texts
        fig.canvas.draw()
        plt.close(fig)


@pytest.mark.parametrize("name", ["gap1", "slab20"])
def test_link_metrics_match_direct_link_calls(blocks, name):
    """ber_*/threshold_* are mcvd.link on the stored taps; rates, SE and errors likewise."""
    ds = blocks[name].squeeze()
    spec = GEOMETRIES[name]
    g = mcvd.Geometry(tuple(spec["tx"]), tuple(spec["rx"]), 5, 79.4,
                      slab_width=spec.get("slab_width"))  # fmt: skip
    n_tx, k = 10000, 1
    for key, model in MODELS.items():
        if key == "image_chain" and g.is_slab:
            assert ds.ber_image_chain.isnull().all() and np.isnan(float(ds.max_rate_image_chain))
            continue
        taps = mcvd.clip_model_taps(ds[f"isi_{key}"].values[:, : k + 1])
        tau, best = mcvd.optimal_threshold(taps, n_tx)
        np.testing.assert_array_equal(ds[f"threshold_{key}"].values, tau)
        np.testing.assert_array_equal(ds[f"ber_{key}"].values, best)
        # independently: the BER at every threshold from 0 to past the counts' support
        every = mcvd.ber(taps[:, None, :], n_tx, np.arange(n_tx * 0.6)[None, :])
        np.testing.assert_allclose(best, every.min(axis=1), rtol=1e-12, atol=1e-300)
        rate = float(ds[f"max_rate_{key}"])
        assert rate == mcvd.achievable_rate(g, n_tx, 1e-3, k, model=model)[0]
        if key != "exact":
            rel, ref = ds[f"ber_relerr_{key}_exact"].values, ds.ber_exact.values
            np.testing.assert_allclose(rel[ref > 0], best[ref > 0] / ref[ref > 0] - 1, rtol=1e-12)
            assert np.isnan(rel[ref == 0]).all()  # a BER below 1e-300 rounds to 0
            assert float(ds[f"max_rate_relerr_{key}_exact"]) == pytest.approx(
                rate / float(ds.max_rate_exact) - 1, rel=1e-12
            )
    # the simulation: its taps, with their multinomial uncertainty ((K + 1) Ts <= t_end here)
    seed = point_seed(3, "channel", geometry=name, D=79.4, dt=1e-3, correction="bridge")
    sim = mcvd.simulate(g, 0.5, 1e-3, 3000, seed=seed, batch_size=1000)
    for ts in (0.05, 0.2):
        h, _ = mcvd.isi_taps(sim, ts, k + 1)
        tau, best = mcvd.optimal_threshold(h, n_tx)
        got = ds.sel(Ts=ts)
        assert float(got.threshold_sim) == tau and float(got.ber_sim) == best
        assert float(got.ber_sim_se) == mcvd.ber_stderr(h, n_tx, tau, 3000)
    assert float(ds.max_rate_sim) == mcvd.achievable_rate(sim, n_tx, 1e-3, k)[0]
    assert np.isfinite(float(ds.max_rate_sim)) and float(ds.max_rate_sim) > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [({"n_tx": 0}, r"channel\.n_tx = 0; allowed: an integer >= 1"),
     ({"n_tx": True}, r"channel\.n_tx = True; allowed"),
     ({"isi_memory": 5}, r"channel\.isi_memory = 5; allowed: an integer in 0 \.\. 4"),
     ({"isi_memory": -1}, r"channel\.isi_memory = -1; allowed"),
     ({"ber_target": 0.5}, r"channel\.ber_target = 0\.5; allowed: a number in \(0, 0\.5\)"),
     ({"ber_target": 0}, r"channel\.ber_target = 0; allowed")],
)  # fmt: skip
def test_link_settings_refused_in_one_line(change, message):
    with pytest.raises(ValueError, match=message) as info:
        validate_config(_config(**change))
    assert "\n" not in str(info.value)


def test_reactive_receiver_point_matches_direct_mcvd_calls(reactive):
    """k = 10 µm/s: the exact model and the simulator with partial absorption; closed forms nan.

    The point without the bridge correction reuses the models of the one with it (same block,
    geometry, D and k): every model variable is the same, the simulation is its own.
    """
    ds, other = reactive
    sim_part = (
        "sim",
        "_se",
        "wall_time",
        "zscore",
        "n_molecules",
        "molecule_steps",
        "status",
        "error",
    )
    models = [v for v in ds.data_vars if not any(s in v for s in sim_part)
              and v not in {f"nrmse_{k}" for k in MODELS} | {f"relerr_{k}" for k in MODELS}
              and not v.startswith("point_")]  # fmt: skip
    assert len(models) > 60 and "ber_exact" in models and "fraction_exact" in models
    for v in models:
        np.testing.assert_array_equal(other[v].values, ds[v].values, err_msg=v)
    assert not np.array_equal(other.fraction_sim.values, ds.fraction_sim.values)
    assert int(ds.status) == 0, str(ds.error.values)
    g = mcvd.Geometry((0, 0, 10), (6, 0, 0), 5, 79.4, reactivity=10.0)
    edges = np.concatenate([[0.0], ds.time.values])
    exact = mcvd.absorbed_fraction(g, edges, "exact")
    np.testing.assert_allclose(ds.fraction_exact.values, exact[1:], rtol=1e-12, atol=1e-15)
    absorbing = mcvd.absorbed_fraction(mcvd.Geometry((0, 0, 10), (6, 0, 0), 5, 79.4), edges[-1:])
    assert ds.fraction_exact.values[-1] < absorbing[0]  # partial absorption receives less
    assert float(ds.fraction_exact_inf) == mcvd.steady_state_fraction(g)
    for key in MODELS:
        if key == "exact":
            continue
        for var in (f"fraction_{key}", f"isi_{key}", f"ber_{key}", f"max_rate_{key}",
                    f"relerr_{key}_exact", f"max_rate_relerr_{key}_exact"):  # fmt: skip
            assert ds[var].isnull().all(), var
            assert "nan for a finite reactivity" in ds[var].attrs["long_name"], var
    n_tx, k = 10000, 1
    taps = mcvd.clip_model_taps(ds.isi_exact.values[:, : k + 1])
    np.testing.assert_array_equal(ds.ber_exact.values, mcvd.optimal_threshold(taps, n_tx)[1])
    assert float(ds.max_rate_exact) == mcvd.achievable_rate(g, n_tx, 1e-3, k)[0]
    # the simulation: its seed derives from k too
    seed = point_seed(3, "channel", geometry="gap1", D=79.4, dt=1e-3, correction="bridge",
                      reactivity=10.0)  # fmt: skip
    sim = mcvd.simulate(g, 0.5, 1e-3, 1000, seed=seed, batch_size=1000)
    np.testing.assert_array_equal(ds.fraction_sim.values, mcvd.cumulative_fraction(sim)[0][49::50])
    assert float(ds.max_rate_sim) == mcvd.achievable_rate(sim, n_tx, 1e-3, k)[0] or (
        np.isnan(float(ds.max_rate_sim)) and np.isnan(mcvd.achievable_rate(sim, n_tx, 1e-3, k)[0])
    )


def test_reactivity_axis_in_the_aggregate(computed):
    """The absorbing receiver's point of REACTIVE has the seed and values it had without the
    axis; the aggregate has both k (inf sorted last) and the axis' units."""
    blocks = computed[2]
    absorbing = next(
        at(b, reactivity=math.inf, correction="bridge")
        for b in blocks
        if (np.isinf(b.reactivity) & (b.correction == "bridge")).any()
    )
    g = mcvd.Geometry((0, 0, 10), (6, 0, 0), 5, 79.4)
    seed = point_seed(3, "channel", geometry="gap1", D=79.4, dt=1e-3, correction="bridge")
    sim = mcvd.simulate(g, 0.5, 1e-3, 1000, seed=seed, batch_size=1000)
    got = absorbing.squeeze().fraction_sim.values
    np.testing.assert_array_equal(got, mcvd.cumulative_fraction(sim)[0][49::50])
    assert computed[1].reactivity.values.tolist() == [math.inf]  # SECTION: the default axis
    agg = computed[3]
    assert agg.reactivity.values.tolist() == [10.0, math.inf]
    assert agg.reactivity.attrs["units"] == "um/s" and int(agg.status.sum()) == 0
    np.testing.assert_array_equal(
        agg.fraction_sim.sel(reactivity=math.inf, correction="bridge").squeeze().values, got
    )
    assert agg.fraction_first_order.sel(reactivity=10.0).isnull().all()


@pytest.mark.parametrize("bad", [0, -1.0, -math.inf, True, "fast"])
def test_bad_reactivity_is_refused_in_one_line(bad):
    with pytest.raises(ValueError, match=r"channel\.reactivity") as info:
        validate_config(_config(reactivity=[math.inf, bad]))
    assert "\n" not in str(info.value) and repr(bad) in str(info.value)


def test_nan_reactivity_is_refused_and_inf_accepted():
    with pytest.raises(ValueError, match=r"channel\.reactivity\[0\] = nan; allowed: a number > 0"):
        validate_config(_config(reactivity=[math.nan]))
    validate_config(_config(reactivity=[math.inf, 10.0]))
