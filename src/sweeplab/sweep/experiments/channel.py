"""Channel experiment: MCvD receiver near a reflecting plane, simulation vs closed forms."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from distributed import Client

from sweeplab import mcvd

from ..canonical import point_seed
from .base import Axis, Block, Experiment, FigureSpec, Var, status_vars

__all__ = ["CHANNEL", "EXPERIMENT", "channel_geometry"]

logger = logging.getLogger(__name__)

RETRIES = 2
DIMS = ("geometry", "D", "dt", "correction", "seed")
T = (*DIMS, "time")
TM = (*DIMS, "time_mid")
MODELS = {"free": "free", "first_order": "first-order", "convolved": "first-order-convolved"}


def channel_geometry(spec: Mapping[str, Any], D: float, wall: bool) -> mcvd.Geometry:
    """Build the :class:`~sweeplab.mcvd.Geometry` of a named geometry entry of the config."""
    return mcvd.Geometry(tuple(spec["tx"]), tuple(spec["rx"]), spec["radius"], D, wall=wall)


def _whole(value: float, step: float) -> bool:
    n = value / step
    return abs(n - round(n)) <= 1e-9 * n


class Channel(Experiment):
    """Simulated channel response of an absorbing sphere near a plane vs the analytic models."""

    name = "channel"
    order = 30
    axes = (
        Axis(
            "geometry",
            "geometry",
            str,
            "1",
            "named channel geometry (config channel.geometry)",
            kind="mapping",
        ),
        Axis("D", "D", float, "um^2/s", "diffusion coefficient"),
        Axis("dt", "dt", float, "s", "simulation time step"),
        Axis("correction", "correction", str, "1", "crossing correction of the simulator"),
        Axis(
            "seed",
            "seed",
            int,
            "1",
            "seed value (the simulation's generator derives from all its parameters)",
        ),
    )
    point_dims: ClassVar[dict[str, tuple[str, str]]] = {
        "time": ("s", "time (end of bin)"),
        "time_mid": ("s", "bin centre time"),
    }
    variables: ClassVar[dict[str, Var]] = {
        "fraction_sim": Var(T, "1", "simulated cumulative absorbed fraction F(t)"),
        "fraction_se": Var(T, "1", "binomial standard error of fraction_sim"),
        "rate_sim": Var(TM, "1/s", "simulated hitting rate, bin average"),
        "rate_se": Var(TM, "1/s", "binomial standard error of rate_sim"),
        "fraction_free": Var(T, "1", "analytic F(t), free space (RX alone)"),
        "fraction_first_order": Var(T, "1", "analytic F(t), first-order half-space form"),
        "fraction_convolved": Var(T, "1", "analytic F(t), first-order-convolved variant"),
        "rate_free": Var(TM, "1/s", "analytic hitting rate, free space, bin average"),
        "rate_first_order": Var(TM, "1/s", "analytic hitting rate, first-order, bin average"),
        "rate_convolved": Var(
            TM, "1/s", "analytic hitting rate, first-order-convolved, bin average"
        ),
        "fraction_exact_inf": Var(DIMS, "1", "exact F(infinity) (image-charge series)"),
        "nrmse_first_order": Var(
            DIMS, "1", "NRMSE of the binned hitting rate, first-order vs simulation"
        ),
        "nrmse_free": Var(DIMS, "1", "NRMSE of the binned hitting rate, free space vs simulation"),
        "relerr_first_order": Var(DIMS, "1", "relative error of F(T), first-order vs simulation"),
        "relerr_free": Var(DIMS, "1", "relative error of F(T), free space vs simulation"),
        "gap": Var(DIMS, "um", "gap between RX surface and reflecting plane"),
        "n_molecules": Var(DIMS, "1", "molecules simulated"),
        "molecule_steps": Var(DIMS, "1", "molecule-steps simulated (absorbed molecules stop)"),
        "wall_time": Var(DIMS, "s", "simulation kernel wall time, summed over batches"),
        **status_vars(DIMS),
    }
    figures = (
        FigureSpec(
            "channel_response",
            "Hitting rate (1/s; `rate_sim` with `rate_se`, `rate_first_order`, `rate_free`) and "
            "cumulative fraction F(t) (`fraction_*`, dimensionless) against time (s) for the "
            "'paper' geometry at the smallest dt, with the exact F(infinity).",
        ),
        FigureSpec(
            "channel_gap",
            "Relative error of the first-order F(T) against the simulation (`relerr_first_order`,"
            " %) versus the RX-plane gap (`gap`, um).",
        ),
        FigureSpec(
            "channel_dt",
            "Simulated F(T) (`fraction_sim` at the last time, with its standard error) against "
            "the time step dt (s), per crossing correction, with the first-order model.",
        ),
    )
    threads, mem_mb, runtime = 2, 2000, 30

    def validate(self, section: Mapping[str, Any]) -> None:
        """Geometries must be valid for every D; t_end and bin_width whole numbers of steps."""
        super().validate(section)
        for name, spec in section["geometry"].items():
            for d in section["D"]:
                try:
                    channel_geometry(spec, d, section["wall"])
                except ValueError as exc:
                    raise ValueError(f"channel.geometry.{name}: {exc}") from None
        for dt in section["dt"]:
            for key in ("t_end", "bin_width"):
                if not _whole(section[key], dt):
                    raise ValueError(
                        f"channel.{key} = {section[key]} s must be a whole number of steps of "
                        f"channel.dt = {dt} s"
                    )
        if not _whole(section["t_end"], section["bin_width"]):
            raise ValueError(
                f"channel.bin_width = {section['bin_width']} s must divide channel.t_end = "
                f"{section['t_end']} s"
            )

    def block_settings(self, section: Mapping[str, Any], block: Block) -> dict[str, Any]:
        """Keep only the block's own geometry: editing another one leaves this block valid."""
        settings = super().block_settings(section, block)
        name = block.params["geometry"]
        settings["geometry"] = {name: section["geometry"][name]}
        return settings

    @property
    def grid_keys(self) -> tuple[str, ...]:
        """The geometry mapping is a grid axis but also a setting (see :meth:`block_settings`)."""
        return tuple(k for k in super().grid_keys if k != "geometry")

    def inner_coords(
        self, settings: Mapping[str, Any], block: Block | None = None
    ) -> dict[str, np.ndarray]:
        """Bin ends ``time`` and bin centres ``time_mid`` (s)."""
        edges = self._edges(settings)
        return {"time": edges[1:], "time_mid": 0.5 * (edges[1:] + edges[:-1])}

    @staticmethod
    def _edges(settings: Mapping[str, Any]) -> np.ndarray:
        bw = settings["bin_width"]
        return bw * np.arange(round(settings["t_end"] / bw) + 1)

    def compute_points(
        self, block: Block, settings: Mapping[str, Any], client: Client
    ) -> dict[str, np.ndarray]:
        """One simulation; its molecule batches are the Dask tasks."""
        p = block.params
        data = {k: v[0] for k, v in self.empty_points(1, settings).items()}
        g = channel_geometry(settings["geometry"][p["geometry"]], p["D"], settings["wall"])
        bw = settings["bin_width"]
        edges = self._edges(settings)
        for key, model in MODELS.items():
            f = mcvd.absorbed_fraction(g, edges, model)
            data[f"fraction_{key}"] = f[1:]
            data[f"rate_{key}"] = np.diff(f) / bw
        data["fraction_exact_inf"] = mcvd.steady_state_fraction(g)
        data["gap"] = g.gap
        try:
            result = self._simulate(block, g, settings, client)
        except Exception as exc:
            logger.warning("block %s failed: %s", block.name, exc)
            data["status"], data["error"] = np.int8(1), f"{type(exc).__name__}: {exc}"
            return {k: np.asarray(v)[None] for k, v in data.items()}
        per_bin = round(bw / result.dt)
        frac, se = mcvd.cumulative_fraction(result)
        _, rate, rate_se = mcvd.binned_hitting_rate(result, bw)
        data["fraction_sim"] = frac[per_bin - 1 :: per_bin]
        data["fraction_se"] = se[per_bin - 1 :: per_bin]
        data["rate_sim"] = rate
        data["rate_se"] = rate_se
        for key in ("first_order", "free"):
            err = np.sqrt(np.mean((data[f"rate_{key}"] - rate) ** 2)) / rate.max()
            data[f"nrmse_{key}"] = float(err)
            data[f"relerr_{key}"] = float(
                data[f"fraction_{key}"][-1] / data["fraction_sim"][-1] - 1.0
            )
        data["n_molecules"] = float(result.n_molecules)
        data["molecule_steps"] = float(result.molecule_steps)
        data["wall_time"] = result.wall_time
        return {k: np.asarray(v)[None] for k, v in data.items()}

    def _simulate(
        self, block: Block, g: mcvd.Geometry, settings: Mapping[str, Any], client: Client
    ) -> mcvd.SimulationResult:
        p = block.params
        seed = point_seed(
            p["seed"],
            "channel",
            geometry=p["geometry"],
            D=p["D"],
            dt=p["dt"],
            correction=p["correction"],
        )
        plan = mcvd.plan_batches(int(settings["n_molecules"]), int(settings["batch_size"]), seed)
        futures = [
            client.submit(
                mcvd.simulate_batch,
                g,
                settings["t_end"],
                p["dt"],
                n,
                s,
                p["correction"],
                retries=RETRIES,
                pure=False,
            )
            for n, s in plan
        ]
        results = []
        for i, f in enumerate(futures):
            results.append(f.result())
            logger.info("block %s: batch %d/%d done", block.name, i + 1, len(futures))
        return mcvd.combine(results)


EXPERIMENT = CHANNEL = Channel()
