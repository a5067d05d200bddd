"""What an experiment declares: block axes, settings, variables, figures, resources, compute.

Everything the rest of the pipeline needs about an experiment (CLI choices, Snakemake rules and
targets, block names, the aggregate's grid, dataset labels, report figures) is derived from one
:class:`Experiment` object per experiment module; see ``docs/architecture.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import product
from typing import Any, ClassVar

import numpy as np
import xarray as xr
from distributed import Client

from ..canonical import block_name, format_value, parse_block_name

__all__ = ["MAX_BLOCK_NAME", "Axis", "Block", "Experiment", "FigureSpec", "Var"]

#: longest block name: ``<name>.zarr.zip`` and its temporary sibling (``.<file>.tmp-<pid>-<hex>``)
#: must stay under the usual 255-byte file-name limit
MAX_BLOCK_NAME = 200


@dataclass(frozen=True)
class Block:
    """One Snakemake job: an experiment and the values of its block axes (in path order)."""

    experiment: str
    params: dict[str, Any]

    @cached_property
    def name(self) -> str:
        """Canonical ``key~value_...`` name (the block's path stem)."""
        return block_name(self.params)


@dataclass(frozen=True)
class Axis:
    """A block axis: a config entry whose values appear in block names and become a dimension.

    Parameters
    ----------
    name : str
        Key in the block name (``name~value``).
    key : str
        Key of the experiment's config section holding the values.
    type : type
        ``int``, ``float`` or ``str``.
    dim : str
        Dataset dimension the axis fills (defaults to ``name``).
    units, long_name : str
        Attributes of the dimension coordinate.
    kind : {"list", "mapping", "chunks"}
        ``list``: the section's list of values, one per block; ``mapping``: the keys of a
        mapping (named entries, e.g. geometries); ``chunks``: the section holds a count ``n`` and
        ``<per_block>``; blocks hold ranges ``lo-hi`` of the values ``0 .. n-1`` (seeds).
    per_block : str
        Config key of the chunk size (``kind="chunks"`` only).

    """

    name: str
    key: str
    type: type
    units: str
    long_name: str
    dim: str = ""
    kind: str = "list"
    per_block: str = ""

    @classmethod
    def seed_chunks(cls, long_name: str) -> Axis:
        """Return the usual seed axis: ``seeds`` (a count) in blocks of ``seeds_per_block``."""
        return cls("seeds", "seeds", str, "1", long_name, dim="seed", kind="chunks",
                   per_block="seeds_per_block")  # fmt: skip

    @property
    def dimension(self) -> str:
        """Dataset dimension filled by this axis."""
        return self.dim or self.name

    def block_values(self, section: Mapping[str, Any]) -> list[Any]:
        """Values of this axis in block names, in config order (chunks: ``"lo-hi"`` text)."""
        if self.kind == "chunks":
            n, per = int(section[self.key]), int(section[self.per_block])
            return [f"{lo}-{min(lo + per, n) - 1}" for lo in range(0, n, per)]
        if self.kind == "mapping":
            return sorted(section[self.key])
        return list(section[self.key])

    def coords(self, section: Mapping[str, Any]) -> np.ndarray:
        """Return the dimension's coordinate values in the aggregate: sorted, unique."""
        if self.kind == "chunks":
            return np.arange(int(section[self.key]), dtype=np.int64)
        values = sorted(self.block_values(section))
        if self.type is str:
            return np.array(values, dtype=object)
        return np.asarray(values, dtype=np.int64 if self.type is int else np.float64)

    def dim_values(self, value: Any) -> list[Any]:
        """Coordinate values covered by one block value (a chunk covers a range)."""
        if self.kind == "chunks":
            lo, hi = chunk_bounds(value)
            return list(range(lo, hi + 1))
        return [value]

    def parse(self, text: str) -> Any:
        """Parse the text of a block name back into a typed value."""
        if self.kind == "chunks":
            chunk_bounds(text)
            return text
        try:
            return self.type(text)
        except ValueError:
            pass
        if self.type is int:
            try:
                as_float = float(text)
            except ValueError:
                as_float = math.nan
            if math.isfinite(as_float) and as_float == int(as_float):
                raise ValueError(
                    f"block axis {self.name}~{text} is not canonical; expected "
                    f"{self.name}~{int(as_float)}"
                ) from None
        raise ValueError(f"block axis {self.name}~{text}: not a valid {self.type.__name__}")

    def section_entries(self, value: Any, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Config entries of a section holding only this block value (inverse of a block)."""
        if self.kind == "chunks":
            lo, hi = chunk_bounds(value)
            return {self.key: hi + 1, self.per_block: hi - lo + 1}
        if self.kind == "mapping":
            entries = settings.get(self.key)
            if not isinstance(entries, Mapping) or value not in entries:
                raise ValueError(f"block {self.name}~{value}: settings have no {self.key}.{value}")
            return {self.key: {value: entries[value]}}
        return {self.key: [value]}


def chunk_bounds(text: str) -> tuple[int, int]:
    """Return ``(lo, hi)`` of a chunk ``"lo-hi"`` (``0 <= lo <= hi``)."""
    lo, sep, hi = str(text).partition("-")
    if not (sep and lo.isdigit() and hi.isdigit()) or int(lo) > int(hi):
        raise ValueError(f"seed chunk {text!r} must be 'lo-hi' with 0 <= lo <= hi")
    return int(lo), int(hi)


@dataclass(frozen=True)
class Var:
    """A dataset variable: its dims, dtype, units and long name.

    ``dtype`` is ``"float64"``, ``"int8"`` or ``"str"``. Categorical variables are integer codes
    with CF ``flag_values`` / ``flag_meanings`` attributes (``flags``: code -> meaning).
    """

    dims: tuple[str, ...]
    units: str
    long_name: str
    dtype: str = "float64"
    flags: Mapping[int, str] | None = None

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

    Subclasses set the class attributes and implement :meth:`compute_points` (and, where the
    JSON schema cannot check something, :meth:`validate`).
    """

    name: ClassVar[str]
    #: position in the registry (CLI choices, default experiment order)
    order: ClassVar[int] = 100
    axes: ClassVar[tuple[Axis, ...]]
    variables: ClassVar[dict[str, Var]]
    figures: ClassVar[tuple[FigureSpec, ...]]
    #: coordinate attributes of the non-block dimensions (step, time, ...): dim -> (units, name)
    point_dims: ClassVar[dict[str, tuple[str, str]]] = {}
    #: Snakemake resources of one block job: threads, mem_mb, runtime (minutes)
    threads: ClassVar[int] = 2
    mem_mb: ClassVar[int] = 2000
    runtime: ClassVar[int] = 60

    # --- blocks -----------------------------------------------------------------------------
    @property
    def grid_keys(self) -> tuple[str, ...]:
        """Config keys that define the grid (axis values and chunk sizes)."""
        keys = [a.key for a in self.axes] + [a.per_block for a in self.axes if a.per_block]
        return tuple(keys)

    def blocks(self, section: Mapping[str, Any]) -> list[Block]:
        """Every block the config section asks for, in a stable order."""
        values = [a.block_values(section) for a in self.axes]
        # each value formatted once (block_name per block costs ~30 us; sweeps have thousands)
        texts = [[f"{a.name}~{format_value(v)}" for v in vals] for a, vals in zip(
            self.axes, values, strict=True)]  # fmt: skip
        out = []
        for combo, parts in zip(product(*values), product(*texts), strict=True):
            block = Block(self.name, {a.name: v for a, v in zip(self.axes, combo, strict=True)})
            block.__dict__["name"] = "_".join(parts)  # the cached ``name``, same text
            out.append(block)
        return out

    def parse_block(self, name: str) -> Block:
        """Parse a block name into typed parameters, checking keys, types and canonical form."""
        raw = parse_block_name(name)
        keys = [a.name for a in self.axes]
        if list(raw) != keys:
            raise ValueError(f"{self.name} block {name!r} must have keys {keys}, got {list(raw)}")
        params = {a.name: a.parse(raw[a.name]) for a in self.axes}
        block = Block(self.name, params)
        if block.name != name:
            raise ValueError(f"block name {name!r} is not canonical; expected {block.name!r}")
        return block

    def block_settings(self, section: Mapping[str, Any], block: Block) -> dict[str, Any]:
        """Return what a block depends on besides its name: the section minus the grid keys."""
        return {k: v for k, v in section.items() if k not in self.grid_keys}

    def block_section(self, block: Block, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Rebuild a config section asking for just ``block`` (inverse of :meth:`block_settings`).

        Used to validate a block run on its own exactly as a sweep's section is validated.
        """
        section = dict(settings)
        for axis in self.axes:
            section.update(axis.section_entries(block.params[axis.name], settings))
        return section

    # --- grid -------------------------------------------------------------------------------
    def inner_coords(
        self, settings: Mapping[str, Any], block: Block | None = None
    ) -> dict[str, np.ndarray]:
        """Coordinates of the non-block dimensions (e.g. checkpoint steps, time bins).

        With ``block``, those of that block; without, those of the aggregate's grid (``settings``
        is then the whole config section).
        """
        return {}

    def grid(self, section: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Coordinates of every dimension of the aggregated dataset, from the config alone."""
        coords = {a.dimension: a.coords(section) for a in self.axes}
        coords.update(self.inner_coords(section))
        return coords

    def block_coords(self, block: Block) -> dict[str, list[Any]]:
        """Coordinate values of the block dimensions covered by ``block``."""
        return {a.dimension: a.dim_values(block.params[a.name]) for a in self.axes}

    # --- config -----------------------------------------------------------------------------
    def validate(self, section: Mapping[str, Any]) -> None:
        """Check what the JSON schema cannot (raise ``ValueError`` naming key and value)."""
        for axis in self.axes:
            if axis.kind == "chunks":
                continue
            seen: dict[str, Any] = {}
            for value in axis.block_values(section):
                text = format_value(value)
                if text in seen:
                    raise ValueError(
                        f"{self.name}.{axis.key}: values {seen[text]!r} and {value!r} are the "
                        f"same once canonicalised ({text})"
                    )
                seen[text] = value
        blocks = self.blocks(section)
        for block in blocks:
            if len(block.name) > MAX_BLOCK_NAME:
                raise ValueError(
                    f"{self.name} block name {block.name[:60]!r}... has {len(block.name)} "
                    f"characters; allowed: at most {MAX_BLOCK_NAME} (it becomes a file name: "
                    "shorten the longest name or value)"
                )
        self.check_memory(section, blocks)

    def point_memory(self, block: Block, settings: Mapping[str, Any]) -> tuple[float, str]:
        """Estimated peak memory of one point of ``block``, in bytes, and how it was estimated.

        The default, for experiments whose points are small, is ``(0, "")``; estimates are
        fitted with ``tracemalloc`` (see ``bench/point_memory.py``).
        """
        return 0.0, ""

    def check_memory(
        self, section: Mapping[str, Any], blocks: Sequence[Block] | None = None
    ) -> None:
        """Refuse a section with a point that cannot fit a block job's memory.

        A block job has ``mem_mb`` MiB and runs up to ``threads`` points at once. ``blocks``:
        the section's blocks, if the caller has them already.

        Raises
        ------
        ValueError
            Naming the block, the estimate (and its terms) and the limit.

        """
        limit = self.mem_mb * 2**20 / self.threads
        for block in self.blocks(section) if blocks is None else blocks:
            need, how = self.point_memory(block, self.block_settings(section, block))
            if need > limit:
                raise ValueError(
                    f"{self.name} block {block.name}: a point needs about {need / 2**30:.3g} GiB "
                    f"({how}); allowed: at most {limit / 2**30:.3g} GiB per point (mem_mb = "
                    f"{self.mem_mb} MiB shared by {self.threads} threads). Use smaller values."
                )

    # --- compute ----------------------------------------------------------------------------
    def compute_points(
        self, block: Block, settings: Mapping[str, Any], client: Client
    ) -> dict[str, np.ndarray]:
        """Compute the block's points on ``client``; arrays per variable (see :meth:`label`)."""
        raise NotImplementedError

    def compute(self, block: Block, settings: Mapping[str, Any], client: Client) -> xr.Dataset:
        """Compute ``block`` on ``client`` and return its labelled dataset."""
        from ..datasets import label

        return label(self, block, self.compute_points(block, settings, client), settings)

    def empty_points(
        self, n: int, settings: Mapping[str, Any], block: Block | None = None
    ) -> dict[str, np.ndarray]:
        """Arrays of fill values for ``n`` points (the point axis first, then inner dims)."""
        inner = self.inner_coords(settings, block)
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


def status_vars(point_dims: Sequence[str]) -> dict[str, Var]:
    """Return the ``status`` and ``error`` variables every experiment has."""
    dims = tuple(point_dims)
    return {
        "status": Var(dims, "1", "point status (flag_meanings)", "int8", STATUS_FLAGS),
        "error": Var(dims, "1", "error message of a failed point (empty if ok)", "str"),
    }
