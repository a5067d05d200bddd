"""Edge-of-stability experiment: gradient descent from small or generic starts, mode by mode.

Every point runs :func:`sweeplab.dmf.descend` from a start that is *not* next to a minimizer,
on the diagonal target ``M = diag(s_1, ..., s_n)`` of a named spectrum (config ``spectra``:
name -> list of ``n`` singular values ``>= 0``), with layers ``W_1`` of shape
``(width, n)``, ``W_2..W_{L-1}`` of shape ``(width, width)`` and ``W_L`` of shape
``(n, width)`` (depth ``L = 1``: one ``n × n`` layer). Starts (setting ``alpha`` = scale):

* ``small``: ``W_i = alpha I`` (the rectangular identity ``np.eye(d_i, d_{i-1})``): on the
  diagonal invariant subspace of a diagonal target, where the modes are independent scalar
  chains (the setting of Ghosh et al. 2025);
* ``perturbed``: ``alpha I`` plus ``perturbation`` times standard Gaussian entries (setting
  ``perturbation``, default ``1e-6``): off that subspace by a tiny amount;
* ``orthogonal``: ``alpha`` times Haar (semi-)orthogonal layers: generic directions, the
  norms of ``alpha I``;
* ``gaussian``: independent ``N(0, alpha² / d_{i-1})`` entries.

The start's generator derives from the seed, spectrum, depth, width and start kind, not from
``eta``: every step size of one ``(spectrum, depth, width, start, seed)`` starts from the same
weights, and the planner packs them into the same blocks (``batch_axes``), one task per thread
running its step sizes one after the other (the start and target built once).

Recorded per point: the outcome of :data:`sweeplab.dmf.DESCEND_OUTCOMES` and the period; the
final sharpness, its ratio to ``2/η`` (``sharpness_ratio = λ η / 2``, 1 at the edge of
stability) and the flattest sharpness ``2 L σ_1^{2−2/L}``; each target mode's amplitude
``u_iᵀ P v_i`` over the final orbit (min and max, dimension ``mode``, descending ``σ_i``), the
number of oscillating modes (range ``> OSCILLATION_RTOL σ_i``, :meth:`DescendResult.oscillating`)
next to the number predicted by :func:`sweeplab.dmf.mode_thresholds` (modes with threshold
``< η``); balance measures (:func:`sweeplab.dmf.balance`) and the Hessian trace at the last
iterate; loss and sharpness at ``checkpoints`` log-spaced steps (dimension ``step``), and for
scalar chains (``n = 1``, ``width = 1``) the GFS sharpness (:func:`sweeplab.dmf.gfs_sharpness`)
there, nan otherwise.

The step sizes (``eta``) are a list, or ``{start, stop, num}``: ``num`` evenly spaced values
from ``start`` to ``stop`` (both included, ``numpy.linspace``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sweeplab import dmf

from ..canonical import point_seed

if TYPE_CHECKING:
    from distributed import Client

from .base import Axis, Experiment, FigureSpec, Points, Var, status_vars

__all__ = [
    "EOS",
    "EXPERIMENT",
    "STARTS",
    "eos_points",
    "eos_problem",
    "eta_values",
]

RETRIES = 2
STARTS = ("small", "perturbed", "orthogonal", "gaussian")
DEFAULT_CHECKPOINTS = 64
DEFAULT_PERTURBATION = 1e-6
DIMS = ("spectrum", "depth", "width", "start", "eta", "seed")
MODES = (*DIMS, "mode")
LAYERS = (*DIMS, "layer")
STEPS = (*DIMS, "step")
OUTCOME_FLAGS = {-1: "none", **dict(enumerate(dmf.DESCEND_OUTCOMES))}
METHOD_FLAGS = dict(enumerate(dmf.SHARPNESS_METHODS))
SCALARS = (
    "period",
    "steps_run",
    "final_loss",
    "final_sharpness",
    "sharpness_ratio",
    "flattest_sharpness",
    "n_oscillating",
    "n_predicted",
    "trace",
    "product_norm_ratio",
    "frobenius_norm_ratio",
    "imbalance_spectral",
    "imbalance_frobenius",
)


def eta_values(value: Any) -> list[float]:
    """Return the step sizes of an ``eta`` entry: a list, or ``{start, stop, num}`` (linspace).

    Raises
    ------
    ValueError
        One line naming the bad entry: a mapping without exactly ``start``, ``stop``, ``num``,
        ``num`` not an integer ``>= 1``, bounds not numbers ``> 0`` or ``stop < start``.

    """
    if isinstance(value, Mapping):
        if set(value) != {"start", "stop", "num"}:
            raise ValueError(
                f"eos.eta = {dict(value)!r}: a range needs exactly the keys start, stop, num"
            )
        start, stop, num = value["start"], value["stop"], value["num"]
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"eos.eta.num = {num!r}; allowed: an integer >= 1")
        for key, x in (("start", start), ("stop", stop)):
            ok = isinstance(x, int | float) and not isinstance(x, bool)
            if not (ok and math.isfinite(x) and x > 0):
                raise ValueError(f"eos.eta.{key} = {x!r}; allowed: a number > 0")
        if stop < start or (num > 1 and stop == start):
            raise ValueError(f"eos.eta: stop = {stop!r} must exceed start = {start!r} (or num = 1)")
        return [float(x) for x in np.linspace(float(start), float(stop), num)]
    return list(value)


@dataclass(frozen=True)
class EtaAxis(Axis):
    """The step-size axis: a list of values, or ``{start, stop, num}`` (see :func:`eta_values`)."""

    def size(self, section: Mapping[str, Any]) -> int:
        """Return the number of step sizes."""
        value = section[self.key]
        return int(value["num"]) if isinstance(value, Mapping) else len(value)

    def coords(self, section: Mapping[str, Any]) -> np.ndarray:
        """Return the sorted step sizes."""
        return np.asarray(sorted(eta_values(section[self.key])), dtype=np.float64)


def _dims(n: int, width: int, depth: int) -> tuple[int, ...]:
    return (n, n) if depth == 1 else (n, *([width] * (depth - 1)), n)


def eos_problem(
    spectrum: Sequence[float], depth: int, width: int, start: str, seed: int,
    settings: Mapping[str, Any], name: str = "",
) -> tuple[list[np.ndarray], np.ndarray]:  # fmt: skip
    """Return the start ``W_1..W_L`` and the diagonal target of one point (module docstring).

    Parameters
    ----------
    spectrum : sequence of float
        Singular values of the target ``diag(spectrum)`` (``n`` values ``>= 0``).
    depth, width : int
        Number of layers ``L`` and hidden width.
    start : str
        One of :data:`STARTS`.
    seed : int
        Seed value; the generator derives from it and ``name``, depth, width and start.
    settings : mapping
        ``alpha`` (scale of the start, ``> 0``) and ``perturbation`` (``perturbed`` start).
    name : str
        Name of the spectrum (part of the generator's seed).

    Returns
    -------
    (list of ndarray, ndarray)
        The layers (shapes ``(d_i, d_{i-1})``) and the target, shape ``(n, n)``.

    """
    if start not in STARTS:
        raise ValueError(f"eos.start = {start!r}; allowed: one of {STARTS}")
    s = np.asarray(spectrum, dtype=float)
    dims = _dims(s.size, width, depth)
    alpha = float(settings["alpha"])
    rng = np.random.default_rng(
        point_seed(seed, "eos", spectrum=name, depth=depth, width=width, start=start)
    )
    ws = []
    for rows, cols in zip(dims[1:], dims[:-1], strict=True):
        if start in ("small", "perturbed"):
            w = alpha * np.eye(rows, cols)
            if start == "perturbed":
                eps = float(settings.get("perturbation", DEFAULT_PERTURBATION))
                w = w + eps * rng.standard_normal((rows, cols))
        elif start == "orthogonal":
            if rows >= cols:
                w = alpha * dmf.haar_orthogonal(rows, rng, cols)
            else:
                w = alpha * dmf.haar_orthogonal(cols, rng, rows).T
        else:
            w = alpha / math.sqrt(cols) * rng.standard_normal((rows, cols))
        ws.append(w)
    return ws, np.diag(s)


def _ratio(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    return float(x.max() / x.min()) if x.size and x.min() > 0 else math.inf


def _summary(res: Any, target: np.ndarray, depth: int, eta: float, scalar: bool) -> dict[str, Any]:
    """Return the stored values of one :class:`~sweeplab.dmf.DescendResult`."""
    thresholds = dmf.mode_thresholds(target, depth)
    out: dict[str, Any] = {
        "outcome": dmf.DESCEND_OUTCOMES.index(res.outcome),
        "period": float(res.period),
        "steps_run": float(res.steps_run),
        "final_loss": res.final_loss,
        "final_sharpness": res.final_sharpness,
        "final_sharpness_method": dmf.SHARPNESS_METHODS.index(res.final_sharpness_method),
        "sharpness_ratio": res.final_sharpness * eta / 2.0,
        "flattest_sharpness": dmf.flattest_sharpness(target, depth),
        "n_predicted": float(np.count_nonzero(thresholds < eta)),
        "singular_value": np.asarray(res.singular_values),
        "threshold": thresholds,
        "loss": np.asarray(res.loss),
        "checkpoint_sharpness": np.asarray(res.checkpoint_sharpness),
    }
    if res.outcome == "diverged":
        out["n_oscillating"] = math.nan
        return out
    out["n_oscillating"] = float(np.count_nonzero(res.oscillating()))
    out["amp_min"] = res.orbit_amplitudes.min(axis=0)
    out["amp_max"] = res.orbit_amplitudes.max(axis=0)
    ws = list(res.final_weights)
    try:
        b = dmf.balance(ws)
        out.update(
            trace=dmf.hessian_trace(ws),
            product_norms=np.asarray(b.product_norms),
            spectral_norms=np.asarray(b.spectral_norms),
            frobenius_norms=np.asarray(b.frobenius_norms),
            product_norm_ratio=_ratio(b.product_norms),
            frobenius_norm_ratio=_ratio(b.frobenius_norms),
            imbalance_spectral=float(np.max(b.imbalance_spectral, initial=0.0)),
            imbalance_frobenius=float(np.max(b.imbalance_frobenius, initial=0.0)),
        )
    except ValueError:  # a norm overflows float64 (a run about to diverge): left nan
        pass
    if scalar:
        gfs = np.full(res.checkpoints.size, np.nan)
        shapes = [w.shape for w in ws]
        for k, p in enumerate(res.checkpoint_weights):
            if np.all(np.isfinite(p)):
                try:
                    gfs[k] = dmf.gfs_sharpness(dmf.unflatten(p, shapes), target)
                except ValueError:  # gradient flow ends at a saddle from there: no GFS
                    pass
        out["gfs_sharpness"] = gfs
    return out


def eos_points(
    name: str, spectrum: Sequence[float], depth: int, width: int, start: str, seed: int,
    etas: Sequence[float], settings: Mapping[str, Any],
) -> list[dict[str, Any]]:  # fmt: skip
    """Run gradient descent for every step size of one start (one ``dmf.descend`` call each).

    Returns one dict of stored values per step size (keys: variable names; arrays over
    ``mode``, ``layer`` and ``step`` unpadded).
    """
    ws, target = eos_problem(spectrum, depth, width, start, seed, settings, name)
    max_steps = int(settings["max_steps"])
    ck = dmf.default_checkpoints(max_steps, int(settings.get("checkpoints", DEFAULT_CHECKPOINTS)))
    scalar = target.shape == (1, 1) and (width == 1 or depth == 1)
    out = []
    for eta in etas:
        res = dmf.descend(ws, target, float(eta), max_steps=max_steps, checkpoints=ck)
        out.append(_summary(res, target, depth, float(eta), scalar))
    return out


def _task(group: Mapping[str, Any], spectrum: list[float], etas: list[float],
          settings: Mapping[str, Any]) -> tuple[Any, float]:  # fmt: skip
    """One start's step sizes; its exception is returned (recorded on every point)."""
    t0 = time.perf_counter()
    try:
        res: Any = eos_points(group["spectrum"], spectrum, group["depth"], group["width"],
                              group["start"], group["seed"], etas, settings)  # fmt: skip
    except Exception as exc:
        res = exc
    return res, time.perf_counter() - t0


def _nonzero(spectrum: Sequence[float]) -> int:
    """Return the number of nonzero singular values (numpy's rank tolerance)."""
    s = np.sort(np.asarray(spectrum, dtype=float))[::-1]
    if s.size == 0 or not s[0] > 0:
        return 0
    return int(np.count_nonzero(s > s[0] * s.size * np.finfo(np.float64).eps))


def _n_params(columns: Mapping[str, np.ndarray], spectra: Mapping[str, Any]) -> np.ndarray:
    n = np.array([len(spectra[s]) for s in columns["spectrum"]], dtype=float)
    depth = np.asarray(columns["depth"], dtype=float)
    width = np.asarray(columns["width"], dtype=float)
    return np.where(depth == 1, n * n, 2 * n * width + np.maximum(depth - 2, 0) * width**2)


def _n_checkpoints(settings: Mapping[str, Any]) -> int:
    num = int(settings.get("checkpoints", DEFAULT_CHECKPOINTS))
    return len(dmf.default_checkpoints(int(settings["max_steps"]), num))


def _v(dims: tuple[str, ...], units: str, long_name: str) -> Var:
    return Var(dims, units, long_name)


class Eos(Experiment):
    """Gradient descent from small or generic starts beyond the edge of stability (issue 20)."""

    name = "eos"
    version = 1
    order = 25
    axes = (
        Axis("spectrum", "spectra", str, "1",
             "named target spectrum (singular values of the diagonal target)", kind="mapping"),
        Axis("depth", "depth", int, "1", "number of layers L"),
        Axis("width", "width", int, "1", "hidden width (1 + one-value spectrum: scalar chain)"),
        Axis("start", "start", str, "1", "start kind (small, perturbed, orthogonal, gaussian)"),
        EtaAxis("eta", "eta", float, "1", "step size eta"),
        Axis.seed_count("seed value (the start's generator derives from seed and the start)"),
    )  # fmt: skip
    batch_axes = ("spectrum", "depth", "width", "start", "seed")
    point_dims: ClassVar[dict[str, tuple[str, str]]] = {
        "mode": ("1", "target mode i (descending singular value sigma_i)"),
        "layer": ("1", "layer index i - 1 (W_1 first)"),
        "step": ("step", "gradient-descent checkpoint step"),
    }
    variables: ClassVar[dict[str, Var]] = {
        "outcome": Var(
            DIMS, "1", "gradient-descent outcome (flag_meanings)", "int8", OUTCOME_FLAGS
        ),
        "period": _v(DIMS, "step", "period of the final orbit (edge_of_stability; 0: none found)"),
        "steps_run": _v(DIMS, "step", "gradient steps taken"),
        "final_loss": _v(DIMS, "1", "loss ||W_L...W_1 - M||_F^2 at the last step"),
        "final_sharpness": _v(
            DIMS, "1", "lambda_max of the Hessian at the last iterate (final_sharpness_method)"
        ),
        "final_sharpness_method": Var(
            DIMS, "1", "how final_sharpness was computed (flag_meanings)", "int8", METHOD_FLAGS
        ),
        "sharpness_ratio": _v(
            DIMS, "1", "final_sharpness eta / 2 (1: the edge of stability lambda = 2/eta)"
        ),
        "flattest_sharpness": _v(
            DIMS, "1", "sharpness of the flattest minimizer 2 L sigma_1^(2 - 2/L)"
        ),
        "n_oscillating": _v(
            DIMS,
            "1",
            "modes whose amplitude range over the final orbit exceeds 1e-3 sigma_i (nan: diverged)",
        ),
        "n_predicted": _v(
            DIMS, "1", "modes that cannot settle: threshold 1/(L sigma_i^(2-2/L)) < eta"
        ),
        "trace": _v(DIMS, "1", "trace of the Hessian at the last iterate (nan: diverged)"),
        "product_norm_ratio": _v(
            DIMS,
            "1",
            "max_i / min_i of ||A_i||_2 ||B_i||_2 at the last iterate (1: spectrally balanced)",
        ),
        "frobenius_norm_ratio": _v(DIMS, "1", "max_i / min_i of ||W_i||_F at the last iterate"),
        "imbalance_spectral": _v(
            DIMS, "1", "max_i ||W_(i+1)^T W_(i+1) - W_i W_i^T||_2 at the last iterate"
        ),
        "imbalance_frobenius": _v(
            DIMS, "1", "max_i ||W_(i+1)^T W_(i+1) - W_i W_i^T||_F at the last iterate"
        ),
        "singular_value": _v(MODES, "1", "target singular value sigma_i (nan-padded)"),
        "threshold": _v(MODES, "1", "mode threshold 1/(L sigma_i^(2-2/L)) (nan-padded)"),
        "amp_min": _v(MODES, "1", "min over the final orbit of the mode amplitude u_i^T P v_i"),
        "amp_max": _v(MODES, "1", "max over the final orbit of the mode amplitude u_i^T P v_i"),
        "product_norms": _v(
            LAYERS, "1", "||A_i||_2 ||B_i||_2 at the last iterate (nan-padded beyond L)"
        ),
        "spectral_norms": _v(LAYERS, "1", "||W_i||_2 at the last iterate (nan-padded)"),
        "frobenius_norms": _v(LAYERS, "1", "||W_i||_F at the last iterate (nan-padded)"),
        "loss": _v(STEPS, "1", "loss at checkpoint steps (nan after a divergence)"),
        "checkpoint_sharpness": _v(
            STEPS,
            "1",
            "lambda_max of the Hessian at checkpoint steps (exact at convergence, "
            "Lanczos or dense elsewhere)",
        ),
        "gfs_sharpness": _v(
            STEPS,
            "1",
            "sharpness of the gradient-flow solution from the checkpoint iterate "
            "(scalar chains only; nan otherwise)",
        ),
        **status_vars(DIMS),
    }
    figures = (
        FigureSpec(
            "eos_bifurcation",
            "Bifurcation diagram: min and max over the final orbit of each target mode's "
            "amplitude u_i^T P v_i (`amp_min`, `amp_max`, P = W_L...W_1 projected on the "
            "target's singular vectors) against the step size eta, one colour per mode, with "
            "the thresholds 1/(L sigma_i^(2-2/L)) (`threshold`) drawn as vertical lines; one "
            "panel per start kind and depth, first spectrum, width and seed. Diverged runs "
            "leave gaps.",
        ),
        FigureSpec(
            "eos_sharpness",
            "Final sharpness times eta/2 (`sharpness_ratio`) against eta, coloured by outcome, "
            "one panel per start kind, one marker per depth (first spectrum, width and seed): "
            "1 marks the edge of stability lambda = 2/eta; the dotted line is the flattest "
            "minimizer's sharpness 2 L sigma_1^(2-2/L) times eta/2; diverged runs (no "
            "sharpness) are crosses along the bottom.",
        ),
        FigureSpec(
            "eos_balance",
            "Balance at the last iterate against eta: max/min over layers of "
            "||A_i||_2 ||B_i||_2 (`product_norm_ratio`, 1 = spectrally balanced) and of "
            "||W_i||_F (`frobenius_norm_ratio`), one panel each, one line per start kind and "
            "depth (first spectrum, width and seed).",
        ),
        FigureSpec(
            "eos_progressive",
            "Sharpness at the checkpoint steps (`checkpoint_sharpness`) times eta/2 against the "
            "step, for up to six step sizes spread over the grid (first spectrum, width, start "
            "and seed, deepest chain): progressive sharpening up to 1 (lambda = 2/eta), then "
            "oscillation around it or convergence below it.",
        ),
        FigureSpec(
            "eos_gfs",
            "Sharpness of the gradient-flow solution from the iterate (`gfs_sharpness`, "
            "Kreisler et al. 2023) times eta/2 against the checkpoint step, for scalar chains "
            "(one-value spectrum, width 1), up to six step sizes (first such spectrum, start, "
            "seed; deepest chain); a panel says so when the grid has no scalar chain.",
        ),
    )
    threads, mem_mb, runtime = 2, 2000, 30

    def inner_coords(
        self, settings: Mapping[str, Any], points: Points | None = None
    ) -> dict[str, np.ndarray]:
        """Checkpoint steps, mode index (largest spectrum) and layer index (deepest chain)."""
        spectra = settings["spectra"]
        if points is None:
            names, depths = list(spectra), list(settings["depth"])
        else:
            names = np.unique(points.columns["spectrum"]).tolist()
            depths = points.columns["depth"].tolist()
        n_ck = int(settings.get("checkpoints", DEFAULT_CHECKPOINTS))
        return {
            "mode": np.arange(max(_nonzero(spectra[s]) for s in names), dtype=np.int64),
            "layer": np.arange(int(max(depths)), dtype=np.int64),
            "step": dmf.default_checkpoints(int(settings["max_steps"]), n_ck),
        }

    def validate(self, section: Mapping[str, Any]) -> None:
        """Spectra with a positive value, an eta range that is well formed, widths wide enough.

        A width below the number of nonzero singular values is allowed (GD then converges to a
        low-rank approximation at best; the stored ``n_predicted`` ignores that).
        """
        eta_values(section["eta"])  # one-line errors on a malformed range
        for name, values in section["spectra"].items():
            if not values or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                and v >= 0 for v in values
            ):  # fmt: skip
                raise ValueError(
                    f"eos.spectra.{name} = {values!r}; allowed: a non-empty list of numbers >= 0"
                )
            if _nonzero(values) == 0:
                raise ValueError(f"eos.spectra.{name} = {values!r} has no positive value")
        super().validate({**section, "eta": eta_values(section["eta"])})

    def point_memory(self, columns: Mapping[str, np.ndarray], settings: Mapping[str, Any]
                     ) -> tuple[np.ndarray, str]:  # fmt: skip
        """Peak bytes of a run: Lanczos ~100 N, the checkpoint iterates and the results.

        ``N`` parameters; ``descend`` keeps every checkpoint iterate (``n_ck N``) and the
        final orbit (at most 64 iterates), plus the Kronecker matrix of an exact sharpness
        (``(n^2)^2``, ``n`` = spectrum length), plus 64 KiB. Checked with ``tracemalloc``
        (second call of one shape, 20,000 steps, 64 checkpoints): estimate / peak 1.4 (scalar
        L = 3, peak 52 kB), 1.7 (3 x 3, L = 4, 88 kB), 1.55 (n = 5, width 3, L = 4, 115 kB),
        1.7 (n = 16, width 16, L = 4, 1.7 MB) and 1.8 (n = 16, width 32, L = 3, 2.9 MB).
        """
        n = _n_params(columns, settings["spectra"])
        dim = np.array([len(settings["spectra"][s]) for s in columns["spectrum"]], dtype=float)
        n_ck = _n_checkpoints(settings)
        work = (100.0 + 2 * n_ck + 64) * n + dim**4
        return 8.0 * work + 65536.0, f"(164 + 2 n_ck) N + n^4 floats + 64 KiB (n_ck = {n_ck})"

    def point_cost(self, columns: Mapping[str, np.ndarray], settings: Mapping[str, Any]
                   ) -> np.ndarray:  # fmt: skip
        """Seconds per run: GD steps and one sharpness per checkpoint, by chain kind.

        Per GD step / per checkpoint (sharpness, and GFS for scalar chains):

        * scalar chains: 70 ns / 0.2 ms (dense L × L Hessian, one root solve);
        * ``n = width`` (square layers, compiled kernels and HVP): 0.1 us + 8 ns N /
          0.5 ms + 10 us N;
        * other shapes (general loops, scipy Lanczos): 25 ns N / 4 ms + 10 us N;

        plus 0.5 ms per run (classification, balance, trace). ``N`` parameters. Measured on one
        thread (20,000 steps, 33 checkpoints, gaussian start, eta 0.031): scalar L = 3 3.5 ms
        (GD 1.3 ms); s3 3 x 3 L = 3 31 ms (GD 5.8 ms, 0.78 ms per checkpoint); s5 (n = 5)
        width 3 L = 3 147 ms (GD 21 ms, 3.9 ms per checkpoint). In a 2-thread block of the
        default config the wall time per point was 2.2 x this estimate (machine shared).
        Runs that converge or diverge stop early; the planner scales the estimate to the wall
        times recorded in the blocks.
        """
        n = _n_params(columns, settings["spectra"])
        dim = np.array([len(settings["spectra"][s]) for s in columns["spectrum"]], dtype=float)
        width = np.asarray(columns["width"], dtype=float)
        depth = np.asarray(columns["depth"], dtype=float)
        scalar = (dim == 1) & ((width == 1) | (depth == 1))
        square = ~scalar & ((dim == width) | (depth == 1))
        step = np.where(scalar, 7e-8, np.where(square, 1e-7 + 8e-9 * n, 2.5e-8 * n))
        ck = np.where(scalar, 2e-4, np.where(square, 5e-4, 4e-3) + 1e-5 * n)
        return 5e-4 + float(settings["max_steps"]) * step + _n_checkpoints(settings) * ck

    def compute_points(
        self, points: Points, settings: Mapping[str, Any], client: Client
    ) -> dict[str, np.ndarray]:
        """One task per start (split in at most ``threads`` parts), its step sizes in a loop."""
        n = len(points)
        data = self.empty_points(n, settings, points)
        data["point_wall_time"] = np.full(n, np.nan)
        threads = max(1, sum(client.nthreads().values()))
        groups = points.groups(self.batch_axes)
        parts = max(1, math.ceil(threads / max(len(groups), 1)))
        tasks = []
        for group, idx in groups:
            spectrum = [float(x) for x in settings["spectra"][group["spectrum"]]]
            for part in np.array_split(idx, min(parts, len(idx))):
                etas = [float(points.columns["eta"][i]) for i in part]
                fut = client.submit(_task, group, spectrum, etas, dict(settings),
                                    retries=RETRIES, pure=False)  # fmt: skip
                tasks.append((part, fut))
        for part, fut in tasks:
            res, wall = fut.result()
            data["point_wall_time"][part] = wall / len(part)
            for j, i in enumerate(part):
                if isinstance(res, BaseException):
                    self.record_failure(data, i, res)
                    continue
                for key, value in res[j].items():
                    if np.ndim(value):
                        data[key][i, : len(value)] = value  # modes and layers nan-padded
                    else:
                        data[key][i] = value
        return data


EXPERIMENT = EOS = Eos()
