"""Channel experiment: MCvD receiver near one or two reflecting planes, simulation vs models.

Every block is one simulation (its molecule batches are the Dask tasks) and, for the same
geometry, every model of :mod:`sweeplab.mcvd`: the exact solution, the free-space form, the
paper's first-order form and its convolved variant (the two-mirror forms in a slab) and the
Kelvin image chain (half-space only; nan in a slab). An approximate form is stored only within its
validity domain (:func:`sweeplab.mcvd.validity_limit`: its ``F`` in ``[0, 1]`` and increasing;
``valid_until_<model>`` records where it ends, nan after). Each model is compared with the exact one
(``relerr_<model>_exact``, ``nrmse_<model>_exact``) and with the simulation; the channel metrics
of :mod:`sweeplab.mcvd.metrics` (peak, ``F(Ts)``, ISI taps) are stored for every model and for
the simulation, over the symbol durations ``Ts`` of the config (``symbol_time``, an inner
dimension: one simulation serves every ``Ts``).

The link metrics of :mod:`sweeplab.mcvd.link` (issue 21) are stored for every model and for the
simulation: on-off keying with ``n_tx`` molecules per 1-bit and ISI memory ``isi_memory`` (the
first ``isi_memory + 1`` stored taps), the optimal threshold and its exact BER at every ``Ts``
(``threshold_*``, ``ber_*``; the simulation's with a delta-method standard error ``ber_sim_se``),
the achievable rate at ``ber_target`` (``max_rate_*``, a grid search over the symbol time, see
:func:`sweeplab.mcvd.achievable_rate`) and each model's errors against the exact one
(``ber_relerr_*_exact``, ``max_rate_relerr_*_exact``).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sweeplab import mcvd

from ..canonical import point_seed

if TYPE_CHECKING:
    from distributed import Client

from .base import Axis, Experiment, FigureSpec, Points, Var, status_vars

__all__ = ["CHANNEL", "EXPERIMENT", "channel_geometry"]

logger = logging.getLogger(__name__)

RETRIES = 2
DIMS = ("geometry", "reactivity", "D", "dt", "correction", "seed")
T = (*DIMS, "time")
TM = (*DIMS, "time_mid")
TS = (*DIMS, "Ts")
TAPS = (*DIMS, "Ts", "tap")
#: variable suffix -> mcvd model name
MODELS = {
    "free": "free",
    "first_order": "first-order",
    "convolved": "first-order-convolved",
    "image_chain": "image-chain",
    "exact": "exact",
}
#: the models compared with the exact one
APPROX = tuple(k for k in MODELS if k != "exact")
#: the approximate forms with a validity domain (``valid_until_<key>``); free space is exact
VALIDITY = ("first_order", "convolved", "image_chain")
#: ISI taps h_k stored, k = 0 .. N_TAPS - 1
N_TAPS = 5
#: symbol durations (s) when the config has no ``symbol_time``
DEFAULT_SYMBOL_TIME = (0.1,)
#: relative errors against the exact F(t) are nan where it is not above this
RELERR_FLOOR = 1e-3
#: link settings when the config has none: molecules per 1-bit, ISI memory K, BER target
DEFAULT_N_TX = 1000
DEFAULT_ISI_MEMORY = 4
DEFAULT_BER_TARGET = 1e-3
#: exact-model windows charged for the achievable-rate search (96 symbol times x 6 edges over
#: 1e-4 .. 50 s): measured 1.2-2.3 windows in a half-space (gaps 5 .. 0.05 um), 4-15 in slabs
#: (W = 100 .. 12 um), paper geometry
LINK_WINDOWS = 16


def channel_geometry(
    spec: Mapping[str, Any], D: float, wall: bool, reactivity: float = math.inf
) -> mcvd.Geometry:
    """Build the :class:`~sweeplab.mcvd.Geometry` of a named geometry entry of the config.

    ``slab_width`` (µm, optional) adds the second reflecting plane ``x = slab_width``;
    ``reactivity`` (µm/s) is the receiver's Collins–Kimball reactivity (inf: absorbing).
    """
    return mcvd.Geometry(
        tuple(spec["tx"]), tuple(spec["rx"]), spec["radius"], D, wall=wall,
        slab_width=spec.get("slab_width"), reactivity=reactivity,
    )  # fmt: skip


def _applies(key: str, g: mcvd.Geometry) -> bool:
    """Return whether model ``key`` is evaluated for ``g``.

    The image chain needs a half-space; only the exact model handles a partially absorbing
    (finite-reactivity) receiver.
    """
    if key == "image_chain" and g.is_slab:
        return False
    return key == "exact" or not g.is_reactive


def _seed_params(p: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters a simulation's seed derives from: all but ``seed``; ``reactivity`` if finite.

    An absorbing receiver (``reactivity`` inf) keeps the seeds it had before the axis existed,
    so its simulations are bit-identical to those of version 2.
    """
    out = {k: p[k] for k in ("geometry", "D", "dt", "correction")}
    if math.isfinite(p.get("reactivity", math.inf)):
        out["reactivity"] = p["reactivity"]
    return out


def _copy(value: Any) -> Any:
    """Return a copy of a row value: arrays copied, scalars (floats, strings) as they are."""
    return value.copy() if isinstance(value, np.ndarray) else value


def symbol_times(settings: Mapping[str, Any]) -> np.ndarray:
    """Sorted symbol durations ``Ts`` (s) of a channel section."""
    return np.asarray(sorted(settings.get("symbol_time", DEFAULT_SYMBOL_TIME)), dtype=np.float64)


def link_settings(settings: Mapping[str, Any]) -> tuple[int, int, float]:
    """``(n_tx, isi_memory, ber_target)`` of a channel section (defaults where absent)."""
    return (
        int(settings.get("n_tx", DEFAULT_N_TX)),
        int(settings.get("isi_memory", DEFAULT_ISI_MEMORY)),
        float(settings.get("ber_target", DEFAULT_BER_TARGET)),
    )


def _link_vars(src: str, what: str) -> dict[str, Var]:
    link = "on-off keying with n_tx molecules per 1-bit and ISI memory isi_memory"
    searched = ("Ts = whole steps with (isi_memory + 1) Ts <= t_end" if src == "sim"
                else "Ts searched over 1e-4 .. 10 s")  # fmt: skip
    out = {
        f"ber_{src}": Var(TS, "1", f"bit error rate at the optimal threshold (exact count "
                          f"distribution, {link}), {what}"),
        f"threshold_{src}": Var(TS, "1", f"optimal detection threshold (molecules counted in "
                                f"a symbol; decide 1 at >= threshold), {what}"),
        f"max_rate_{src}": Var(DIMS, "bit/s", f"achievable rate 1/Ts at BER <= ber_target "
                               f"(smallest Ts on a search grid, {searched}; nan: not "
                               f"reached), {what}"),
    }  # fmt: skip
    if src == "sim":
        out["ber_sim_se"] = Var(
            TS, "1", "standard error of ber_sim from the simulated taps' multinomial "
            "uncertainty (delta method)",
        )  # fmt: skip
    return out


def _metric_vars(src: str, what: str) -> dict[str, Var]:
    out = {
        f"peak_time_{src}": Var(DIMS, "s", f"peak time of the hitting rate, {what}"),
        f"peak_rate_{src}": Var(DIMS, "1/s", f"peak hitting rate f(t_peak), {what}"),
        f"received_{src}": Var(TS, "1", f"fraction received within one symbol F(Ts), {what}"),
        f"isi_{src}": Var(TAPS, "1", f"ISI tap h_k = F((k+1)Ts) - F(k Ts), {what}"),
    }
    if src == "sim":
        for name in list(out):
            var = out[name]
            out[f"{name}_se"] = Var(var.dims, var.units, f"standard error of {name}")
    return out


#: closed forms of an absorbing receiver: nan at a finite reactivity (they refuse it)
_ABSORBING_ONLY = "; nan for a finite reactivity"
_LABEL = {
    "free": "free space (RX alone" + _ABSORBING_ONLY + ")",
    "first_order": "first-order form (two-mirror in a slab" + _ABSORBING_ONLY + ")",
    "convolved": "first-order-convolved variant (" + _ABSORBING_ONLY[2:] + ")",
    "image_chain": "image chain (half-space only, nan in a slab" + _ABSORBING_ONLY + ")",
    "exact": "exact model",
}


def _variables() -> dict[str, Var]:
    v: dict[str, Var] = {
        "fraction_sim": Var(T, "1", "simulated cumulative absorbed fraction F(t)"),
        "fraction_se": Var(T, "1", "binomial standard error of fraction_sim"),
        "rate_sim": Var(TM, "1/s", "simulated hitting rate, bin average"),
        "rate_se": Var(TM, "1/s", "binomial standard error of rate_sim"),
    }
    for key, what in _LABEL.items():
        v[f"fraction_{key}"] = Var(T, "1", f"F(t), {what}")
        v[f"rate_{key}"] = Var(TM, "1/s", f"hitting rate, {what}, bin average (diff of F)")
    for key in APPROX:
        v[f"relerr_{key}_exact"] = Var(
            T, "1", f"relative error of F(t) vs the exact model, {_LABEL[key]} "
            f"(nan where exact F <= {RELERR_FLOOR:g})",
        )  # fmt: skip
        v[f"nrmse_{key}_exact"] = Var(
            DIMS, "1", f"NRMSE of the binned hitting rate vs the exact model, {_LABEL[key]}"
        )
    for key, what in _LABEL.items():
        v[f"nrmse_{key}"] = Var(
            DIMS, "1", f"NRMSE of the binned hitting rate vs the simulation, {what}"
        )
        v[f"relerr_{key}"] = Var(DIMS, "1", f"relative error of F(T) vs the simulation, {what}")
    v["zscore_sim_exact"] = Var(
        T, "1", "z-score of the simulation against the exact model, "
        "(fraction_sim - fraction_exact) / fraction_se (nan where fraction_se = 0)",
    )  # fmt: skip
    for key, what in _LABEL.items():
        v.update(_metric_vars(key, what))
    v.update(_metric_vars("sim", "simulation"))
    for key, what in _LABEL.items():
        v.update(_link_vars(key, what))
    v.update(_link_vars("sim", "simulation"))
    for key in APPROX:
        v[f"ber_relerr_{key}_exact"] = Var(
            TS, "1", f"relative error of the optimal BER vs the exact model, {_LABEL[key]}"
        )
        v[f"max_rate_relerr_{key}_exact"] = Var(
            DIMS, "1", f"relative error of the achievable rate vs the exact model, {_LABEL[key]}"
        )
    for key in VALIDITY:
        v[f"valid_until_{key}"] = Var(
            DIMS, "s", f"end of the validity domain of the {_LABEL[key]}: its F(t) stops "
            "increasing (or reaches 1) there, so its values after are nan (inf: never)",
        )  # fmt: skip
    v["fraction_exact_inf"] = Var(DIMS, "1", "exact F(infinity) (1 in a slab)")
    v["gap"] = Var(DIMS, "um", "gap between RX surface and the reflecting plane x = 0")
    v["slab_width"] = Var(DIMS, "um", "slab width W (second plane x = W); nan for a half-space")
    v["n_molecules"] = Var(DIMS, "1", "molecules simulated")
    v["molecule_steps"] = Var(DIMS, "1", "molecule-steps simulated (absorbed molecules stop)")
    v["wall_time"] = Var(DIMS, "s", "simulation kernel wall time, summed over batches", timing=True)
    v.update(status_vars(DIMS))
    return v


class Channel(Experiment):
    """Simulated channel response of an absorbing sphere near plane(s) vs the models."""

    name = "channel"
    #: 2: approximate forms are nan beyond their validity domain (were negative, decreasing F
    #: in slabs), ``valid_until_*`` added, a simulation without absorption has a nan peak
    #: 3: link metrics (``ber_*``, ``threshold_*``, ``max_rate_*``, their errors vs exact) and
    #: the ``reactivity`` axis
    version = 3
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
        Axis(
            "reactivity",
            "reactivity",
            float,
            "um/s",
            "Collins-Kimball reactivity k of the receiver surface (inf: perfectly absorbing)",
            default=(math.inf,),
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
        "Ts": ("s", "symbol duration (config channel.symbol_time)"),
        "tap": ("1", "ISI tap index k: slot k after the symbol"),
    }
    variables: ClassVar[dict[str, Var]] = _variables()
    figures = (
        FigureSpec(
            "channel_response",
            "Hitting rate (1/s; `rate_sim` with `rate_se`, `rate_exact`, `rate_first_order`, "
            "`rate_image_chain`, `rate_free`) and cumulative fraction F(t) (`fraction_*`, "
            "dimensionless) against time (s) for the 'paper' geometry at the smallest dt, with "
            "the exact F(infinity).",
        ),
        FigureSpec(
            "channel_gap",
            "Relative error of the first-order F(T) against the simulation (`relerr_first_order`,"
            " %) versus the RX-plane gap (`gap`, um), half-space geometries.",
        ),
        FigureSpec(
            "channel_dt",
            "Simulated F(T) (`fraction_sim` at the last time, with its standard error) against "
            "the time step dt (s), per crossing correction, with the first-order and exact models.",
        ),
        FigureSpec(
            "channel_model_error",
            "Relative error (%) of F(t) against the exact model, first-order form "
            "(`relerr_first_order_exact`) and image chain (`relerr_image_chain_exact`), as maps "
            "over the RX-plane gap (`gap`, um, half-space geometries) and time (s); blank where "
            "the exact F(t) <= 1e-3.",
        ),
        FigureSpec(
            "channel_slab",
            "F(T) at the last time (dimensionless) against the slab width W (`slab_width`, um) for "
            "the slab geometries: exact model (`fraction_exact`), two-mirror first-order form "
            "(`fraction_first_order`) and simulation (`fraction_sim` with its standard error, "
            "smallest dt); dotted: the exact F(T) of the half-space geometry with the same gap.",
        ),
        FigureSpec(
            "channel_dt_exact",
            "Simulator error against the exact model versus the time step dt (s), per crossing "
            "correction: relative error of F(T) (%, with its standard error) and RMS over time of "
            "the z-score `zscore_sim_exact` (about 1 for an unbiased simulator).",
        ),
        FigureSpec(
            "channel_ber",
            "Bit error rate of on-off keying at the optimal threshold (`ber_*`, dimensionless, "
            "log scale) against the symbol time Ts (s), for the geometries nearest to and "
            "farthest from the plane x = 0: every model (exact, first-order, image chain, free "
            "space) and the simulation with a ±1 standard-error band (`ber_sim_se`); absorbing "
            "receiver, smallest dt.",
        ),
        FigureSpec(
            "channel_rate",
            "Achievable rate at the BER target (`max_rate_*`, bit/s) against the RX-plane gap "
            "(um, half-space geometries) and against the slab width W (um, one series per gap), "
            "every model and the simulation (open circles; nan where no symbol time reaches "
            "the target).",
        ),
        FigureSpec(
            "channel_rate_cost",
            "What the first-order model's error costs: relative error (%) of its achievable "
            "rate against the exact one (`max_rate_relerr_first_order_exact`) against the gap "
            "(half-space line, slabs as markers), and a map of log10(BER first-order / BER "
            "exact) (`ber_relerr_first_order_exact`) over the gap (um) and Ts (s).",
        ),
        FigureSpec(
            "channel_reactivity",
            "Partially absorbing receiver, geometry nearest to the plane: F(t) (dimensionless) "
            "per reactivity k (exact model lines, simulation markers) and the achievable rate "
            "(bit/s) against k (um/s, log scale; the absorbing receiver k = inf as horizontal "
            "lines), exact model and simulation.",
        ),
    )
    threads, mem_mb, runtime = 2, 2000, 30

    def validate(self, section: Mapping[str, Any]) -> None:
        """Geometries valid for every D and the exact model; times whole numbers of steps.

        ``t_end``, ``bin_width`` and ``symbol_time`` are whole numbers of every ``dt``. Every
        point runs the exact model, which refuses a gap below
        :data:`~sweeplab.mcvd.limits.MIN_GAP_RATIO` × radius (its cost grows as gap^-1.5): so
        does this check, before any job.
        """
        for name, spec in section["geometry"].items():  # before the memory check (base)
            for d in section["D"]:
                try:
                    mcvd.check_exact_gap(channel_geometry(spec, d, section["wall"]))
                except ValueError as exc:
                    raise ValueError(f"channel.geometry.{name}: {exc}") from None
        for k in section.get("reactivity", [math.inf]):
            real = isinstance(k, int | float) and not isinstance(k, bool)
            if not (real and k > 0):  # nan fails too; inf is the absorbing receiver
                raise ValueError(
                    f"channel.reactivity: {k!r}; allowed: numbers > 0 µm/s (.inf: perfectly "
                    "absorbing receiver)"
                )
        super().validate(section)
        for dt in section["dt"]:
            for key in ("t_end", "bin_width"):
                if not mcvd.whole_steps(section[key], dt):
                    raise ValueError(
                        f"channel.{key} = {section[key]} s must be a whole number of steps of "
                        f"channel.dt = {dt} s"
                    )
        self._validate_link(section)
        if not mcvd.whole_steps(section["t_end"], section["bin_width"]):
            raise ValueError(
                f"channel.bin_width = {section['bin_width']} s must divide channel.t_end = "
                f"{section['t_end']} s"
            )
        ts_list = list(section.get("symbol_time", DEFAULT_SYMBOL_TIME))
        if len(set(ts_list)) != len(ts_list):
            raise ValueError(f"channel.symbol_time = {ts_list} s has repeated values")
        for ts in ts_list:
            if not (isinstance(ts, int | float) and math.isfinite(ts) and ts > 0):
                raise ValueError(f"channel.symbol_time: {ts!r} must be a number > 0 s")
            if ts > section["t_end"] * (1 + 1e-12):
                raise ValueError(
                    f"channel.symbol_time = {ts} s must be <= channel.t_end = {section['t_end']} s"
                )
            for dt in section["dt"]:
                if not mcvd.whole_steps(ts, dt):
                    raise ValueError(
                        f"channel.symbol_time = {ts} s must be a whole number of steps of "
                        f"channel.dt = {dt} s"
                    )

    @staticmethod
    def _validate_link(section: Mapping[str, Any]) -> None:
        """Check ``n_tx`` >= 1, ``isi_memory`` in 0 .. N_TAPS − 1, ``ber_target`` in (0, 0.5)."""
        rules = (
            ("n_tx", DEFAULT_N_TX, int, 1, None, "an integer >= 1 (molecules per 1-bit)"),
            ("isi_memory", DEFAULT_ISI_MEMORY, int, 0, N_TAPS - 1,
             f"an integer in 0 .. {N_TAPS - 1} (the {N_TAPS} stored ISI taps)"),
            ("ber_target", DEFAULT_BER_TARGET, float, None, None, "a number in (0, 0.5)"),
        )  # fmt: skip
        for key, default, kind, lo, hi, allowed in rules:
            value = section.get(key, default)
            if kind is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
                ok = ok and value >= lo and (hi is None or value <= hi)
            else:
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                ok = ok and 0.0 < value < 0.5
            if not ok:
                raise ValueError(f"channel.{key} = {value!r}; allowed: {allowed}")

    def inner_coords(
        self, settings: Mapping[str, Any], points: Points | None = None
    ) -> dict[str, np.ndarray]:
        """Bin ends ``time``, bin centres ``time_mid`` (s), symbol times ``Ts`` (s), ``tap``."""
        edges = self._edges(settings)
        return {
            "time": edges[1:],
            "time_mid": 0.5 * (edges[1:] + edges[:-1]),
            "Ts": symbol_times(settings),
            "tap": np.arange(N_TAPS, dtype=np.int64),
        }

    @staticmethod
    def _edges(settings: Mapping[str, Any]) -> np.ndarray:
        bw = settings["bin_width"]
        return bw * np.arange(round(settings["t_end"] / bw) + 1)

    @staticmethod
    def _exact_cost(columns: Mapping[str, np.ndarray], settings: Mapping[str, Any]
                    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Seconds and peak bytes of each point's exact model (0 without the geometries).

        A point evaluates about ``14 + 2 n_Ts + windows(t_end / bin_width)`` time windows of the
        exact model (peak search, ``F`` at the bin ends, ``F(Ts)`` and taps per symbol time;
        counted for the tiny config: 16), plus :data:`LINK_WINDOWS` for the achievable-rate
        search, each costing
        :func:`~sweeplab.mcvd.exact_window_cost` (growing as ``gap^-1.5``, bounded by the minimum
        gap). The geometries' entries are in ``settings["geometry"]``: the planner and a block job
        pass them with the settings (without them, only the simulation is estimated).
        """
        names = np.asarray(columns["geometry"], dtype=object)
        seconds, nbytes = np.zeros(names.size), np.zeros(names.size)
        entries = settings.get("geometry")
        if not isinstance(entries, Mapping):
            return seconds, nbytes
        ratio = settings["t_end"] / settings["bin_width"]
        n_ts = len(settings.get("symbol_time", DEFAULT_SYMBOL_TIME))
        windows = 14 + 2 * n_ts + math.ceil(math.log(max(ratio, 1.0)) / math.log(20.0))
        windows += LINK_WINDOWS
        for name in set(names.tolist()):
            try:  # D does not change the cost; an invalid geometry fails at once in the point
                g = channel_geometry(entries[name], 1.0, settings.get("wall", True))
                sec, byt = mcvd.exact_window_cost(g)
            except (KeyError, TypeError, ValueError):
                continue
            seconds[names == name], nbytes[names == name] = windows * sec, byt
        return seconds, nbytes

    def point_memory(self, columns: Mapping[str, np.ndarray], settings: Mapping[str, Any]
                     ) -> tuple[np.ndarray, str]:  # fmt: skip
        """Peak bytes of a point: the simulation's or the exact model's, whichever is larger.

        Simulation: every batch's counts (``n_steps`` int64) are held until combined, with a
        Dask task and a seed sequence each (~4 kB); a batch holds ~128 B per molecule. The
        models run before it (see :meth:`_exact_cost`).
        """
        n_steps = np.round(settings["t_end"] / np.asarray(columns["dt"], dtype=float))
        n_batches = math.ceil(settings["n_molecules"] / settings["batch_size"])
        need = n_batches * (24.0 * n_steps + 4096.0) + 128.0 * settings["batch_size"]
        _, exact = self._exact_cost(columns, settings)
        return (
            np.maximum(need + 128.0 * n_steps, exact),
            f"{n_batches} batches of t_end/dt steps, or the exact model's window",
        )

    def point_cost(self, columns: Mapping[str, np.ndarray], settings: Mapping[str, Any]
                   ) -> np.ndarray:  # fmt: skip
        """Seconds per point: models, exact model, ~20 ns per molecule-step simulated.

        ~1 s of models plus the exact model's windows (:meth:`_exact_cost`). Absorbed molecules
        stop early; the planner scales this to the recorded wall times.
        """
        n_steps = settings["t_end"] / np.asarray(columns["dt"], dtype=float)
        seconds, _ = self._exact_cost(columns, settings)
        return 1.0 + seconds + 2e-8 * float(settings["n_molecules"]) * n_steps

    def compute_points(
        self, points: Points, settings: Mapping[str, Any], client: Client
    ) -> dict[str, np.ndarray]:
        """Each point in turn: models in this process, the simulation's batches as Dask tasks.

        ``settings`` holds the geometries' entries (``geometry``) of the block's points. The
        models depend on the geometry, D and the reactivity only: points of the block that share
        them (other dt, correction or seed) reuse the first one's model values.
        """
        n = len(points)
        data = self.empty_points(n, settings, points)
        data["point_wall_time"] = np.zeros(n)
        models: dict[tuple[Any, ...], dict[str, Any]] = {}
        for i in range(n):
            t0 = time.perf_counter()
            row = self._point(points.params(i), settings, client, models)
            for key, value in row.items():
                data[key][i] = value
            data["point_wall_time"][i] = time.perf_counter() - t0
        return data

    def _point(self, p: Mapping[str, Any], settings: Mapping[str, Any], client: Client,
               models: dict[tuple[Any, ...], dict[str, Any]] | None = None
               ) -> dict[str, Any]:  # fmt: skip
        """One point's row; ``models`` caches the rows' model part by (geometry, D, reactivity).

        The cached row is the point's row before the simulation: fill values plus everything
        the models wrote, so a copy of it is exactly what recomputing the models would give.
        """
        data = {k: v[0] for k, v in self.empty_points(1, settings).items()}
        try:
            spec = settings["geometry"][p["geometry"]]
            g = channel_geometry(spec, p["D"], settings["wall"], p["reactivity"])
            key = (p["geometry"], p["D"], p["reactivity"])
            if models is not None and key in models:
                data = {k: _copy(v) for k, v in models[key].items()}
            else:
                data["gap"] = g.gap
                data["slab_width"] = math.nan if g.slab_width is None else g.slab_width
                self._models(g, settings, data)
                self._link_models(g, settings, data)
                if models is not None:
                    models[key] = {k: _copy(v) for k, v in data.items()}
            seed = point_seed(p["seed"], "channel", **_seed_params(p))
            result = self._simulate(p, g, settings, seed, client)
            self._simulation(result, settings, seed, data)
            self._link_simulation(result, settings, data)
        except Exception as exc:
            logger.warning("channel point %s failed: %s", p, exc)
            data["status"], data["error"] = np.int8(1), f"{type(exc).__name__}: {exc}"
        return data

    @staticmethod
    def _models(g: mcvd.Geometry, settings: Mapping[str, Any], data: dict[str, Any]) -> None:
        """Store every model's F(t), binned rate, metrics and error against the exact model."""
        edges = Channel._edges(settings)
        ts_all = symbol_times(settings)
        with warnings.catch_warnings():  # nan beyond a validity limit: recorded, not warned
            warnings.simplefilter("ignore", mcvd.ValidityWarning)
            Channel._model_values(g, settings, data, edges, ts_all)
        for key in APPROX:
            data[f"relerr_{key}_exact"] = mcvd.relative_error(
                data[f"fraction_{key}"], data["fraction_exact"], RELERR_FLOOR
            )
            if _applies(key, g):
                data[f"nrmse_{key}_exact"] = mcvd.rate_nrmse(
                    data[f"rate_{key}"], data["rate_exact"]
                )
        data["fraction_exact_inf"] = mcvd.steady_state_fraction(g)

    @staticmethod
    def _model_values(g: mcvd.Geometry, settings: Mapping[str, Any], data: dict[str, Any],
                      edges: np.ndarray, ts_all: np.ndarray) -> None:  # fmt: skip
        """Every model's F, rate and metrics; approximate forms nan beyond their validity."""
        bw = settings["bin_width"]
        for key, model in MODELS.items():
            if not _applies(key, g):
                continue  # stays nan
            if key in VALIDITY:
                limit = mcvd.validity_limit(g, model)
                data[f"valid_until_{key}"] = limit
                if limit < edges[-1]:
                    logger.info("model %s is nan after its validity limit %.4g s", model, limit)
            f = mcvd.absorbed_fraction(g, edges, model)
            data[f"fraction_{key}"] = f[1:]
            data[f"rate_{key}"] = np.diff(f) / bw
            try:
                t_peak, f_peak = mcvd.peak(g, model=model)
                data[f"peak_time_{key}"], data[f"peak_rate_{key}"] = t_peak.value, f_peak.value
            except ValueError as exc:  # no interior maximum: left nan
                logger.warning("peak of model %s not found: %s", model, exc)
            for i, ts in enumerate(ts_all):
                data[f"received_{key}"][i] = mcvd.received_fraction(g, ts, model=model).value
                data[f"isi_{key}"][i] = mcvd.isi_taps(g, ts, N_TAPS, model=model)[0]

    @staticmethod
    def _link_models(g: mcvd.Geometry, settings: Mapping[str, Any], data: dict[str, Any]) -> None:
        """Store every model's optimal threshold and BER over Ts, rate and errors vs exact.

        The BER uses the first ``isi_memory + 1`` stored taps ``isi_<model>`` (rounding noise
        of the exact model clipped, :func:`~sweeplab.mcvd.clip_model_taps`); nan where a tap is
        nan (an approximate form beyond its validity domain, or a model that does not apply).
        """
        n_tx, k, target = link_settings(settings)
        for key, model in MODELS.items():
            taps = mcvd.clip_model_taps(data[f"isi_{key}"][:, : k + 1])
            ok = np.isfinite(taps).all(axis=1)
            if ok.any():
                tau, best = mcvd.optimal_threshold(taps[ok], n_tx)
                data[f"threshold_{key}"][ok], data[f"ber_{key}"][ok] = tau, best
            if _applies(key, g):
                rate, _ = mcvd.achievable_rate(g, n_tx, target, k, model=model)
                data[f"max_rate_{key}"] = rate
        for key in APPROX:
            data[f"ber_relerr_{key}_exact"] = mcvd.relative_error(
                data[f"ber_{key}"], data["ber_exact"], 0.0
            )
            data[f"max_rate_relerr_{key}_exact"] = mcvd.relative_error(
                np.asarray(data[f"max_rate_{key}"]), np.asarray(data["max_rate_exact"]), 0.0
            )

    @staticmethod
    def _link_simulation(
        result: mcvd.SimulationResult, settings: Mapping[str, Any], data: dict[str, Any]
    ) -> None:
        """Store the simulation's optimal threshold, BER (with its standard error) and rate.

        Its taps are ``isi_sim`` (nan where ``(isi_memory + 1) Ts > t_end``: BER nan there).
        """
        n_tx, k, target = link_settings(settings)
        taps = data["isi_sim"][:, : k + 1]
        ok = np.isfinite(taps).all(axis=1)
        if ok.any():
            tau, best = mcvd.optimal_threshold(taps[ok], n_tx)
            data["threshold_sim"][ok], data["ber_sim"][ok] = tau, best
            data["ber_sim_se"][ok] = mcvd.ber_stderr(taps[ok], n_tx, tau, result.n_molecules)
        data["max_rate_sim"] = mcvd.achievable_rate(result, n_tx, target, k)[0]

    @staticmethod
    def _simulation(
        result: mcvd.SimulationResult,
        settings: Mapping[str, Any],
        seed: np.random.SeedSequence,
        data: dict[str, Any],
    ) -> None:
        """Store the simulation's F(t), rate and metrics, and every model's error against it."""
        bw = settings["bin_width"]
        per_bin = round(bw / result.dt)
        frac, se = mcvd.cumulative_fraction(result)
        _, rate, rate_se = mcvd.binned_hitting_rate(result, bw)
        data["fraction_sim"] = frac[per_bin - 1 :: per_bin]
        data["fraction_se"] = se[per_bin - 1 :: per_bin]
        data["rate_sim"] = rate
        data["rate_se"] = rate_se
        for key in MODELS:
            data[f"nrmse_{key}"] = mcvd.rate_nrmse(data[f"rate_{key}"], rate)
            last = data["fraction_sim"][-1]
            data[f"relerr_{key}"] = data[f"fraction_{key}"][-1] / last - 1.0 if last > 0 else np.nan
        z = np.full(data["fraction_sim"].shape, math.nan)
        ok = data["fraction_se"] > 0
        z[ok] = (data["fraction_sim"][ok] - data["fraction_exact"][ok]) / data["fraction_se"][ok]
        data["zscore_sim_exact"] = z
        try:
            boot_seed = int(seed.generate_state(1)[0])
            t_peak, f_peak = mcvd.peak(result, bin_width=bw, seed=boot_seed)
            data["peak_time_sim"], data["peak_time_sim_se"] = t_peak.value, t_peak.stderr
            data["peak_rate_sim"], data["peak_rate_sim_se"] = f_peak.value, f_peak.stderr
        except ValueError as exc:  # too few bins around the peak: left nan
            logger.warning("simulated peak not found: %s", exc)
        for i, ts in enumerate(symbol_times(settings)):
            est = mcvd.received_fraction(result, ts)
            data["received_sim"][i], data["received_sim_se"][i] = est.value, est.stderr
            n_taps = min(N_TAPS, math.floor(result.t_end / ts * (1 + 1e-9)))
            h, h_se = mcvd.isi_taps(result, ts, n_taps)  # taps past t_end stay nan
            data["isi_sim"][i, :n_taps], data["isi_sim_se"][i, :n_taps] = h, h_se
        data["n_molecules"] = float(result.n_molecules)
        data["molecule_steps"] = float(result.molecule_steps)
        data["wall_time"] = result.wall_time

    def _simulate(
        self,
        p: Mapping[str, Any],
        g: mcvd.Geometry,
        settings: Mapping[str, Any],
        seed: np.random.SeedSequence,
        client: Client,
    ) -> mcvd.SimulationResult:
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
            logger.info("channel %s: batch %d/%d done", p["geometry"], i + 1, len(futures))
        return mcvd.combine(results)


EXPERIMENT = CHANNEL = Channel()
