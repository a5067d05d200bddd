"""Turn point results into labelled xarray Datasets (units, long names) for each experiment."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from sweeplab import mcvd

from .experiments import Block, _seeds, channel_geometry

__all__ = ["VARIABLES", "channel_dataset", "escape_dataset", "sharpness_dataset"]

# name -> (units, long_name)
VARIABLES: dict[str, tuple[str, str]] = {
    # sharpness
    "exact": ("1", "exact sharpness lambda_max of the Hessian (Kronecker K)"),
    "closed_form": ("1", "special-case closed form of the sharpness (nan where none applies)"),
    "bound": ("1", "spectral-norm-sum upper bound (S) on the sharpness"),
    "flattest": ("1", "smallest sharpness over all minimizers, 2 L ||M||_2^(2-2/L)"),
    "lanczos": ("1", "sharpness by Lanczos (scipy eigsh) over Hessian-vector products"),
    "dense": ("1", "sharpness of the dense Hessian (nan above dense_max_params)"),
    "rel_err_lanczos": ("1", "relative difference |lanczos - exact| / exact"),
    "rel_err_dense": ("1", "relative difference |dense - exact| / exact"),
    "time_exact": ("s", "wall time of the exact sharpness"),
    "time_lanczos": ("s", "wall time of the Lanczos sharpness"),
    "time_dense": ("s", "wall time of the dense-Hessian sharpness"),
    "n_params": ("1", "number of parameters N"),
    # escape
    "outcome": ("1", "gradient-descent outcome: stayed / escaped / oscillating / diverged"),
    "sharpness_star": ("1", "exact sharpness lambda* of the starting minimizer"),
    "two_over_eta": ("1", "linear-stability limit 2/eta"),
    "eta": ("1", "step size eta = c 2 / lambda*"),
    "escape_step": ("step", "first step with ||w_t - w*|| > escape radius (nan: never)"),
    "predicted_escape_step": ("step", "linear theory ln(r_esc/r) / ln|1 - eta lambda*|"),
    "final_loss": ("1", "loss at the last step"),
    "final_sharpness": ("1", "exact sharpness of the minimizer reached (nan unless converged)"),
    "steps_run": ("step", "gradient steps taken"),
    "loss": ("1", "loss at checkpoint steps"),
    "distance": ("1", "||w_t - w*|| at checkpoint steps"),
    "proj_top": ("1", "<w_t - w*, v_1>, projection on the top Hessian eigenvector"),
    "proj_null": ("1", "<w_t - w*, v_N>, projection on a Hessian null direction"),
    # channel
    "fraction_sim": ("1", "simulated cumulative absorbed fraction F(t)"),
    "fraction_se": ("1", "binomial standard error of fraction_sim"),
    "rate_sim": ("1/s", "simulated hitting rate, bin average"),
    "rate_se": ("1/s", "binomial standard error of rate_sim"),
    "fraction_free": ("1", "analytic F(t), free space (RX alone)"),
    "fraction_first_order": ("1", "analytic F(t), first-order half-space form"),
    "fraction_convolved": ("1", "analytic F(t), first-order-convolved variant"),
    "rate_free": ("1/s", "analytic hitting rate, free space, bin average"),
    "rate_first_order": ("1/s", "analytic hitting rate, first-order, bin average"),
    "rate_convolved": ("1/s", "analytic hitting rate, first-order-convolved, bin average"),
    "fraction_exact_inf": ("1", "exact F(infinity) (image-charge series)"),
    "nrmse_first_order": ("1", "NRMSE of the binned hitting rate, first-order vs simulation"),
    "nrmse_free": ("1", "NRMSE of the binned hitting rate, free space vs simulation"),
    "relerr_first_order": ("1", "relative error of F(T), first-order vs simulation"),
    "relerr_free": ("1", "relative error of F(T), free space vs simulation"),
    "gap": ("um", "gap between RX surface and reflecting plane"),
    "n_molecules": ("1", "molecules simulated"),
    "molecule_steps": ("1", "molecule-steps simulated (absorbed molecules stop)"),
    "wall_time": ("s", "simulation kernel wall time, summed over batches"),
    # all
    "status": ("1", "0 = ok, 1 = the point raised (see error)"),
    "error": ("1", "error message of a failed point (empty if ok)"),
}

COORD_ATTRS: dict[str, tuple[str, str]] = {
    "depth": ("1", "number of layers L"),
    "width": ("1", "hidden width (escape: 1 = all-scalar chain)"),
    "dio": ("1", "input and output dimension d_0 = d_L"),
    "family": ("1", "minimizer family"),
    "seed": ("1", "seed value (the point's generator derives from all its parameters)"),
    "c": ("1", "step-size factor c = eta lambda* / 2"),
    "radius": ("1", "initial distance r from the minimizer along v_1"),
    "step": ("step", "gradient-descent checkpoint step"),
    "geometry": ("1", "named channel geometry (config channel.geometry)"),
    "D": ("um^2/s", "diffusion coefficient"),
    "dt": ("s", "simulation time step"),
    "correction": ("1", "crossing correction of the simulator"),
    "time": ("s", "time (end of bin)"),
    "time_mid": ("s", "bin centre time"),
}


def _annotate(ds: xr.Dataset) -> xr.Dataset:
    for name in ds.data_vars:
        units, long_name = VARIABLES.get(str(name), ("1", str(name)))
        ds[name].attrs.update(units=units, long_name=long_name)
    for name in ds.coords:
        units, long_name = COORD_ATTRS.get(str(name), ("1", str(name)))
        ds[name].attrs.update(units=units, long_name=long_name)
    return ds


def _scalar_points(
    block: Block, seeds: Sequence[int], results: Sequence[Mapping[str, Any] | BaseException],
    scalar_names: Sequence[str], array_names: Sequence[str] = (), array_dim: str = "",
    array_coord: np.ndarray | None = None,
) -> xr.Dataset:  # fmt: skip
    block_axes = {k: v for k, v in block.params.items() if k != "seeds" and k != "seed"}
    n = len(seeds)
    data: dict[str, Any] = {}
    status = np.zeros(n, dtype=np.int8)
    errors = np.array([""] * n, dtype=object)
    for name in scalar_names:
        data[name] = np.full(n, math.nan) if name != "outcome" else np.array([""] * n, dtype=object)
    m = 0 if array_coord is None else len(array_coord)
    for name in array_names:
        data[name] = np.full((n, m), math.nan)
    for i, res in enumerate(results):
        if isinstance(res, BaseException):
            status[i] = 1
            errors[i] = f"{type(res).__name__}: {res}"
            continue
        for name in scalar_names:
            data[name][i] = res[name]
        for name in array_names:
            data[name][i] = res[name]
    variables: dict[str, Any] = {name: (("seed",), data[name]) for name in scalar_names}
    for name in array_names:
        variables[name] = (("seed", array_dim), data[name])
    variables["status"] = (("seed",), status)
    variables["error"] = (("seed",), errors)
    coords: dict[str, Any] = {"seed": np.asarray(seeds, dtype=np.int64)}
    if array_coord is not None:
        coords[array_dim] = array_coord
    ds = xr.Dataset(variables, coords=coords)
    ds = ds.expand_dims({k: [v] for k, v in block_axes.items()})
    return ds


SHARPNESS_VARS = (
    "exact", "closed_form", "bound", "flattest", "lanczos", "dense", "rel_err_lanczos",
    "rel_err_dense", "time_exact", "time_lanczos", "time_dense", "n_params",
)  # fmt: skip
ESCAPE_SCALARS = (
    "outcome", "sharpness_star", "two_over_eta", "eta", "escape_step", "predicted_escape_step",
    "final_loss", "final_sharpness", "steps_run",
)  # fmt: skip
ESCAPE_ARRAYS = ("loss", "distance", "proj_top", "proj_null")


def sharpness_dataset(block: Block, results: Sequence[Any]) -> xr.Dataset:
    """Dataset of one sharpness block: dims (depth, width, dio, family, seed)."""
    return _annotate(_scalar_points(block, _seeds(block.params["seeds"]), results, SHARPNESS_VARS))


def escape_dataset(block: Block, results: Sequence[Any], steps: np.ndarray) -> xr.Dataset:
    """Dataset of one escape block: dims (depth, width, c, radius, seed, step)."""
    return _annotate(
        _scalar_points(
            block,
            _seeds(block.params["seeds"]),
            results,
            ESCAPE_SCALARS,
            ESCAPE_ARRAYS,
            "step",
            steps,
        )
    )


def channel_dataset(
    block: Block, result: mcvd.SimulationResult | BaseException, settings: Mapping[str, Any]
) -> xr.Dataset:
    """Dataset of one channel block: dims (geometry, D, dt, correction, seed, time/time_mid)."""
    p = block.params
    g = channel_geometry(settings["geometry"][p["geometry"]], p["D"], settings["wall"])
    bw = settings["bin_width"]
    n_bins = round(settings["t_end"] / bw)
    edges = bw * np.arange(n_bins + 1)
    t = edges[1:]
    mid = 0.5 * (edges[1:] + edges[:-1])
    v: dict[str, Any] = {}
    models = {"free": "free", "first_order": "first-order", "convolved": "first-order-convolved"}
    for key, model in models.items():
        f = mcvd.absorbed_fraction(g, edges, model)
        v[f"fraction_{key}"] = ("time", f[1:])
        v[f"rate_{key}"] = ("time_mid", np.diff(f) / bw)
    v["fraction_exact_inf"] = ((), mcvd.steady_state_fraction(g))
    v["gap"] = ((), g.gap)
    if isinstance(result, BaseException):
        nan_t = np.full(n_bins, math.nan)
        for name in ("fraction_sim", "fraction_se"):
            v[name] = ("time", nan_t)
        for name in ("rate_sim", "rate_se"):
            v[name] = ("time_mid", nan_t)
        for name in ("nrmse_first_order", "nrmse_free", "relerr_first_order", "relerr_free",
                     "n_molecules", "molecule_steps", "wall_time"):  # fmt: skip
            v[name] = ((), math.nan)
        v["status"] = ((), np.int8(1))
        v["error"] = ((), np.array(f"{type(result).__name__}: {result}", dtype=object))
    else:
        per_bin = round(bw / result.dt)
        frac, se = mcvd.cumulative_fraction(result)
        _, rate, rate_se = mcvd.binned_hitting_rate(result, bw)
        v["fraction_sim"] = ("time", frac[per_bin - 1 :: per_bin])
        v["fraction_se"] = ("time", se[per_bin - 1 :: per_bin])
        v["rate_sim"] = ("time_mid", rate)
        v["rate_se"] = ("time_mid", rate_se)
        for key in ("first_order", "free"):
            model_rate = v[f"rate_{key}"][1]
            v[f"nrmse_{key}"] = ((), float(np.sqrt(np.mean((model_rate - rate) ** 2)) / rate.max()))
            f_end = v["fraction_sim"][1][-1]
            v[f"relerr_{key}"] = ((), float(v[f"fraction_{key}"][1][-1] / f_end - 1.0))
        v["n_molecules"] = ((), float(result.n_molecules))
        v["molecule_steps"] = ((), float(result.molecule_steps))
        v["wall_time"] = ((), result.wall_time)
        v["status"] = ((), np.int8(0))
        v["error"] = ((), np.array("", dtype=object))
    ds = xr.Dataset(v, coords={"time": t, "time_mid": mid})
    ds = ds.expand_dims({k: [val] for k, val in p.items()})
    return _annotate(ds)
