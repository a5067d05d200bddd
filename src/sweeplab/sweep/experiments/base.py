"""What an experiment declares: grid axes, settings, variables, figures, costs, compute.

Everything the rest of the pipeline needs about an experiment (CLI choices, point identity, the
planner's packing, the aggregate's grid, dataset labels, report figures) is derived from one
:class:`Experiment` object per experiment module; see ``docs/architecture.md``.

Points, not blocks, are the unit of identity: a point is one combination of the axes' values,
and its key (:mod:`sweeplab.sweep.identity`) hashes the experiment, its ``version``, the point's
parameters and the settings it depends on. Blocks are batches of pending points packed by the
planner (:mod:`sweeplab.sweep.planner`); an experiment computes any batch (:class:`Points`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..canonical import format_value

if TYPE_CHECKING:  # imported lazily: status and planning need neither
    import xarray as xr
    from distributed import Client

    from ..blockstore import BlockData

__all__ = [
    "MAX_GRID_POINTS",
    "Axis",
    "Experiment",
    "FigureSpec",
    "Points",
    "Var",
    "status_vars",
]

#: largest grid one experiment section may ask for (points), checked from the axes' lengths
#: before anything is enumerated
MAX_GRID_POINTS = 10_000_000


@dataclass(frozen=True)
class Axis:
    """A grid axis: a config entry whose values become a dimension of the aggregate.

    Parameters
    ----------
    name : str
        Parameter name of the axis (and of the point's column).
    key : str
        Key of the experiment's config section holding the values.
    type : type
        ``int``, ``float`` or ``str``.
    units, long_name : str
        Attributes of the dimension coordinate.
    dim : str
        Dataset dimension the axis fills (defaults to ``name``).
    kind : {"list", "mapping", "count"}
        ``list``: the section's list of values; ``mapping``: the keys of a mapping of named
        entries (e.g. geometries; the entry's content is part of the point's identity);
        ``count``: the section holds a count ``n``, the values are ``0 .. n-1`` (seeds).
    default : tuple, optional
        Values of a ``list`` axis whose key the section lacks (``None``: the key is required).

    """

    name: str
    key: str
    type: type
    units: str
    long_name: str
    dim: str = ""
    kind: str = "list"
    default: tuple[Any, ...] | None = None

    @classmethod
    def seed_count(cls, long_name: str) -> Axis:
        """Return the usual seed axis: ``seeds`` (a count), dimension ``seed``."""
        return cls("seed", "seeds", int, "1", long_name, dim="seed", kind="count")

    def raw(self, section: Mapping[str, Any]) -> Any:
        """Return the section's value of the axis (its ``default`` where the key is absent)."""
        if self.default is not None and self.key not in section:
            return list(self.default)
        return section[self.key]

    @property
    def dimension(self) -> str:
        """Dataset dimension filled by this axis."""
        return self.dim or self.name

    def size(self, section: Mapping[str, Any]) -> int:
        """Return the number of values, without enumerating them."""
        value = self.raw(section)
        return int(value) if self.kind == "count" else len(value)

    def coords(self, section: Mapping[str, Any]) -> np.ndarray:
        """Return the dimension's coordinate values in the aggregate: sorted, unique."""
        if self.kind == "count":
            return np.arange(int(section[self.key]), dtype=np.int64)
        values = sorted(self.raw(section))
        if self.type is str:
            return np.array(values, dtype=object)
        return np.asarray(values, dtype=np.int64 if self.type is int else np.float64)

    def texts(self, values: np.ndarray, section: Mapping[str, Any]) -> list[str]:
        """Identity text of each value: ``name~value;`` (mapping axes add the entry's content).

        Each distinct value is formatted once.
        """
        if len(values) > 64:
            uniq, inverse = np.unique(values, return_inverse=True)
            if len(uniq) < len(values):
                texts = self.texts(uniq, section)
                return [texts[i] for i in inverse.ravel().tolist()]
        if self.kind == "mapping":
            entries = section[self.key]
            return [
                f"{self.name}~{v}~{canonical_json(entries[v])};" for v in values.tolist()
            ]  # fmt: skip
        if values.dtype.kind in "iu":
            return [f"{self.name}~{v};" for v in values.tolist()]
        return [f"{self.name}~{format_value(v)};" for v in values.tolist()]

    def column(self, values: Any) -> np.ndarray:
        """Return ``values`` as this axis's column dtype."""
        if self.type is str:
            return np.asarray(values, dtype=object)
        return np.asarray(values, dtype=np.int64 if self.type is int else np.float64)


def canonical(value: Any) -> Any:
    """Return ``value`` with every number in canonical form (``1.0`` and ``1`` alike)."""
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, bool | np.bool_) or value is None:
        return value
    if isinstance(value, int | float | np.integer | np.floating):
        text = format_value(value)
        return int(text) if text.lstrip("-").isdigit() else float(text)
    return value


def canonical_json(value: Any) -> str:
    """Canonical JSON text of a config value (sorted keys, canonical numbers)."""
    return json.dumps(canonical(value), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, eq=False)
class Points:
    """A batch of points of one experiment: one column of values per axis, in point order.

    Attributes
    ----------
    experiment : str
        Experiment name.
    columns : dict of str to ndarray
        Axis name -> values of shape ``(n,)`` (int64, float64 or object for strings).
    keys : ndarray of str
        The points' identity keys (32 hex characters), shape ``(n,)``.

    """

    experiment: str
    columns: dict[str, np.ndarray]
    keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def params(self, i: int) -> dict[str, Any]:
        """Parameters of point ``i`` as Python scalars."""
        return {k: v[i].item() if isinstance(v[i], np.generic) else v[i]
                for k, v in self.columns.items()}  # fmt: skip

    def groups(self, names: tuple[str, ...]) -> list[tuple[dict[str, Any], np.ndarray]]:
        """Point indices grouped by the values of the axes ``names`` (in first-seen order)."""
        out: dict[tuple, list[int]] = {}
        cols = [self.columns[n].tolist() for n in names]
        for i, combo in enumerate(zip(*cols, strict=True)):
            out.setdefault(combo, []).append(i)
        return [(dict(zip(names, combo, strict=True)), np.asarray(idx))
                for combo, idx in out.items()]  # fmt: skip


@dataclass(frozen=True)
class Var:
    """A dataset variable: its dims, dtype, units and long name.

    ``dtype`` is ``"float64"``, ``"int8"`` or ``"str"``. Categorical variables are integer codes
    with CF ``flag_values`` / ``flag_meanings`` attributes (``flags``: code -> meaning). The
    grid dimensions come first in ``dims``, the inner ones (steps, times) last. ``timing``
    marks wall-time measurements, which differ between two computations of the same point and
    are left out when two blocks holding the same point are compared.
    """

    dims: tuple[str, ...]
    units: str
    long_name: str
    dtype: str = "float64"
    flags: Mapping[int, str] | None = None
    timing: bool = False

    @property
    def fill(self) -> Any:
        """Value of a point with no result (nan, the ``-1`` code, or the empty string)."""
        return {"float64": math.nan, "int8": -1, "str": ""}[self.dtype]

    def attrs(self) -> dict[str, Any]:
        """CF attributes of the variable."""
        attrs: dict[str, Any] = {"units": self.units, "long_name": self.long_name}
        if self.flags is not None:
            attrs["flag_values"] = [int(k) for k in self.flags]
            attrs["flag_meanings"] = " ".join(self.flags.values())
        return attrs

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        """Return an array of ``shape`` holding the fill value."""
        if self.dtype == "str":
            return np.full(shape, "", dtype=object)
        return np.full(shape, self.fill, dtype=self.dtype)


@dataclass(frozen=True)
class FigureSpec:
    """A figure drawn from the experiment's aggregated store (by ``sweeplab.plots``)."""

    name: str
    caption: str


STATUS_FLAGS = {0: "ok", 1: "failed"}


class Experiment:
    """Base class of the experiment modules (one instance each, listed in the registry).

    Subclasses set the class attributes and implement :meth:`compute_points`,
    :meth:`point_cost` and (where points are large) :meth:`point_memory`.
    """

    name: ClassVar[str]
    #: bumped whenever a change of the science changes results: every point is then new
    version: ClassVar[int] = 1
    #: position in the registry (CLI choices, default experiment order)
    order: ClassVar[int] = 100
    axes: ClassVar[tuple[Axis, ...]]
    #: points that share these axes' values are packed together (one batched kernel call)
    batch_axes: ClassVar[tuple[str, ...]] = ()
    variables: ClassVar[dict[str, Var]]
    figures: ClassVar[tuple[FigureSpec, ...]]
    #: coordinate attributes of the non-grid dimensions (step, time, ...): dim -> (units, name)
    point_dims: ClassVar[dict[str, tuple[str, str]]] = {}
    #: Snakemake resources of one block job: threads, mem_mb, runtime (minutes)
    threads: ClassVar[int] = 2
    mem_mb: ClassVar[int] = 2000
    runtime: ClassVar[int] = 60

    # --- grid and identity ------------------------------------------------------------------
    @property
    def grid_keys(self) -> tuple[str, ...]:
        """Config keys that define the grid (the axes' keys)."""
        return tuple(a.key for a in self.axes)

    @property
    def axis(self) -> dict[str, Axis]:
        """The axes by name."""
        return {a.name: a for a in self.axes}

    def settings(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """Return what every point depends on besides its parameters: the section minus axes."""
        return {k: v for k, v in section.items() if k not in self.grid_keys}

    def entries(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """Return the mapping axes' entries of the section (e.g. ``geometry``: name -> spec).

        With :meth:`settings`, what ``point_cost`` and ``point_memory`` are given, as in a
        block job.
        """
        return {a.key: section[a.key] for a in self.axes if a.kind == "mapping"}

    def grid_size(self, section: Mapping[str, Any]) -> int:
        """Return the number of points of the section's grid (from the axes' lengths alone)."""
        return math.prod(a.size(section) for a in self.axes)

    def inner_coords(
        self, settings: Mapping[str, Any], points: Points | None = None
    ) -> dict[str, np.ndarray]:
        """Coordinates of the non-grid dimensions (e.g. checkpoint steps, time bins).

        With ``points``, those of that batch; without, those of the aggregate's grid
        (``settings`` is then the whole config section).
        """
        return {}

    def grid(self, section: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Coordinates of every dimension of the aggregated dataset, from the config alone."""
        coords = {a.dimension: a.coords(section) for a in self.axes}
        coords.update(self.inner_coords(section))
        return coords

    # --- config -----------------------------------------------------------------------------
    def validate(self, section: Mapping[str, Any]) -> None:
        """Check what the JSON schema cannot (raise ``ValueError`` naming key and value).

        The grid's size is computed from the axes' lengths first and refused above
        :data:`MAX_GRID_POINTS`; values equal once canonical are refused, naming both.
        """
        size = self.grid_size(section)
        if size > MAX_GRID_POINTS:
            lengths = " x ".join(f"{a.key} {a.size(section)}" for a in self.axes)
            raise ValueError(
                f"{self.name}: the grid has {size:.4g} points ({lengths}); allowed: at most "
                f"{MAX_GRID_POINTS:.0e} per experiment section"
            )
        for axis in self.axes:
            if axis.kind == "count":
                continue
            seen: dict[str, Any] = {}
            for value in axis.raw(section):
                text = format_value(value)
                if text in seen:
                    raise ValueError(
                        f"{self.name}.{axis.key}: values {seen[text]!r} and {value!r} are the "
                        f"same once canonicalised ({text})"
                    )
                seen[text] = value
        self.check_memory(section)

    def point_memory(self, columns: Mapping[str, np.ndarray], settings: Mapping[str, Any]
                     ) -> tuple[np.ndarray, str]:  # fmt: skip
        """Estimated peak memory of each point, in bytes, and how it was estimated.

        ``columns`` holds the points' parameters (one array per axis). The default, for
        experiments whose points are small, is zero; estimates are fitted with ``tracemalloc``
        (see ``bench/point_memory.py``).
        """
        n = len(next(iter(columns.values())))
        return np.zeros(n), ""

    def point_cost(self, columns: Mapping[str, np.ndarray], settings: Mapping[str, Any]
                   ) -> np.ndarray:  # fmt: skip
        """Estimated compute time of each point, in seconds on one core (uncalibrated)."""
        n = len(next(iter(columns.values())))
        return np.ones(n)

    def block_memory(self, columns: Mapping[str, np.ndarray], settings: Mapping[str, Any]
                     ) -> float:  # fmt: skip
        """Estimated peak bytes of a block holding these points: ``threads`` points at once."""
        need, _ = self.point_memory(columns, settings)
        return float(self.threads * need.max()) if len(need) else 0.0

    def check_memory(self, section: Mapping[str, Any]) -> None:
        """Refuse a section with a point that cannot fit a block job's memory.

        A block job has ``mem_mb`` MiB and runs up to ``threads`` points at once. Only the
        corners of the grid are evaluated (each estimate grows with every axis it depends on).

        Raises
        ------
        ValueError
            Naming the point, the estimate (and its terms) and the limit.

        """
        limit = self.mem_mb * 2**20 / self.threads
        corners = {}
        for a in self.axes:
            c = a.coords(section)
            corners[a.name] = a.column([c[0], c[-1]] if len(c) > 1 else [c[0]])
        grids = np.meshgrid(*corners.values(), indexing="ij")
        columns = {n: a.column(g.ravel()) for (n, a), g in
                   zip(self.axis.items(), grids, strict=True)}  # fmt: skip
        need, how = self.point_memory(columns, {**self.settings(section), **self.entries(section)})
        i = int(np.argmax(need))
        if need[i] > limit:
            where = " ".join(f"{k}={v[i]}" for k, v in columns.items())
            raise ValueError(
                f"{self.name} point {where}: a point needs about {need[i] / 2**30:.3g} GiB "
                f"({how}); allowed: at most {limit / 2**30:.3g} GiB per point "
                f"(mem_mb = {self.mem_mb} MiB shared by {self.threads} threads). Use smaller "
                "values."
            )

    # --- compute ----------------------------------------------------------------------------
    def compute_points(
        self, points: Points, settings: Mapping[str, Any], client: Client
    ) -> dict[str, np.ndarray]:
        """Compute ``points`` on ``client``: one array per variable, the point axis first."""
        raise NotImplementedError

    def compute_block(
        self, points: Points, settings: Mapping[str, Any], client: Client
    ) -> BlockData:
        """Compute ``points`` on ``client``; return the labelled block content (numpy only).

        ``compute_points`` may return ``point_wall_time`` (s per point); otherwise the batch's
        wall time is shared equally by its points. This is what a block job writes; it needs
        no xarray (:meth:`compute` is the same as a Dataset).
        """
        import time

        from ..datasets import block_content

        t0 = time.perf_counter()
        data = dict(self.compute_points(points, settings, client))
        wall = data.pop("point_wall_time", None)
        if wall is None:
            wall = np.full(len(points), (time.perf_counter() - t0) / len(points))
        cost = self.point_cost(points.columns, settings)
        return block_content(self, points, data, settings, wall=wall, cost=cost)

    def compute(self, points: Points, settings: Mapping[str, Any], client: Client) -> xr.Dataset:
        """Compute ``points`` on ``client`` and return the labelled block dataset."""
        from ..datasets import to_dataset

        return to_dataset(self.compute_block(points, settings, client))

    def empty_points(
        self, n: int, settings: Mapping[str, Any], points: Points | None = None
    ) -> dict[str, np.ndarray]:
        """Arrays of fill values for ``n`` points (the point axis first, then inner dims)."""
        inner = self.inner_coords(settings, points)
        out = {}
        for name, var in self.variables.items():
            shape = (n, *(len(inner[d]) for d in var.dims if d in inner))
            out[name] = var.empty(shape)
        out["status"][...] = 0  # a point is ok unless record_failure marks it
        return out

    def record_failure(self, data: dict[str, np.ndarray], i: int, exc: BaseException) -> None:
        """Mark point ``i`` of ``data`` failed (status 1, message in ``error``)."""
        data["status"][i] = 1
        data["error"][i] = f"{type(exc).__name__}: {exc}"


def status_vars(point_dims: tuple[str, ...] | list[str]) -> dict[str, Var]:
    """Return the ``status`` and ``error`` variables every experiment has."""
    dims = tuple(point_dims)
    return {
        "status": Var(dims, "1", "point status (flag_meanings)", "int8", STATUS_FLAGS),
        "error": Var(dims, "1", "error message of a failed point (empty if ok)", "str"),
    }
