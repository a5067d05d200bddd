"""Label computed arrays as an xarray Dataset: dims, coordinates, units, long names, flags.

Nothing here computes: it turns the arrays an experiment's ``compute_points`` returns for a
batch of points into the block's Dataset, using only what the experiment declares (axes, point
dims, variables). A block's dimension is ``point``; each point carries its key and its
parameters (one coordinate per axis), and every variable's grid dimensions become ``point``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .blockstore import BlockData

if TYPE_CHECKING:  # xarray only where a block becomes a Dataset (block jobs never need it)
    import xarray as xr

    from .experiments.base import Experiment, Points

__all__ = ["POINT", "block_content", "block_dims", "coord_attrs", "label", "to_dataset"]

POINT = "point"
TABLE_ATTRS = {
    "key": {"units": "1", "long_name": "point key (content hash of experiment, version, "
            "parameters and settings)"},
    "point_wall_time": {"units": "s", "long_name": "wall time spent on the point (a batch's "
                        "time shared equally by its points)"},
    "point_cost": {"units": "s", "long_name": "the planner's uncalibrated cost estimate"},
}  # fmt: skip


def coord_attrs(experiment: Experiment) -> dict[str, dict[str, str]]:
    """Units and long names of every dimension coordinate of ``experiment``."""
    attrs = {a.dimension: {"units": a.units, "long_name": a.long_name} for a in experiment.axes}
    for dim, (units, long_name) in experiment.point_dims.items():
        attrs[dim] = {"units": units, "long_name": long_name}
    return attrs


def block_dims(experiment: Experiment, dims: tuple[str, ...]) -> tuple[str, ...]:
    """Dims of a variable in a block: its grid dims become ``point``, inner dims stay."""
    grid = {a.dimension for a in experiment.axes}
    return (POINT, *(d for d in dims if d not in grid))


def block_content(
    experiment: Experiment,
    points: Points,
    data: Mapping[str, np.ndarray],
    settings: Mapping[str, Any],
    wall: np.ndarray | None = None,
    cost: np.ndarray | None = None,
) -> BlockData:
    """Return the labelled content of one block as plain numpy arrays (no xarray).

    This is what a block job writes (:func:`sweeplab.sweep.blockstore.write_block`), so that
    computing a block needs neither xarray nor dask.array; :func:`label` turns it into the same
    block as an :class:`xarray.Dataset`.

    Parameters
    ----------
    experiment, points
        The experiment and the batch of points the arrays belong to.
    data : mapping of str to ndarray
        One array per declared variable, shape ``(n_points, *inner)``.
    settings : mapping
        The points' settings (for the non-grid coordinates).
    wall, cost : ndarray, optional
        Wall time (s) and estimated cost (s) of each point, shape ``(n_points,)`` (nan if not
        given).

    Returns
    -------
    BlockData
        Arrays (coordinates first: one per axis and ``key`` along ``point``, then the inner
        dimensions; then the variables, ``point_wall_time`` and ``point_cost``), their dims,
        their attributes (units, long names, flags) and the names of the coordinates.

    Raises
    ------
    ValueError
        If a variable is missing, unexpected, or has the wrong number of values.

    """
    n = len(points)
    arrays: dict[str, np.ndarray] = {}
    dims: dict[str, tuple[str, ...]] = {}
    for axis in experiment.axes:
        arrays[axis.dimension] = np.asarray(axis.column(points.columns[axis.name]))
        dims[axis.dimension] = (POINT,)
    arrays["key"] = np.asarray(points.keys, dtype=object)
    dims["key"] = (POINT,)
    for dim, values in experiment.inner_coords(settings, points).items():
        arrays[dim] = np.asarray(values)
        dims[dim] = (dim,)
    coords = tuple(arrays)
    if set(data) != set(experiment.variables):
        raise ValueError(
            f"{experiment.name}: computed variables {sorted(data)} differ from the declared "
            f"{sorted(experiment.variables)}"
        )
    attrs: dict[str, dict[str, Any]] = {name: {} for name in arrays}
    for dim, extra in coord_attrs(experiment).items():
        if dim in attrs:
            attrs[dim].update(extra)
    attrs["key"].update(TABLE_ATTRS["key"])
    for name, var in experiment.variables.items():
        vdims = block_dims(experiment, var.dims)
        shape = (n, *(len(arrays[d]) for d in vdims[1:]))
        values = np.asarray(data[name])
        if values.size != int(np.prod(shape)):
            raise ValueError(
                f"{experiment.name}.{name}: {values.size} values for dims {vdims} of shape {shape}"
            )
        dtype = object if var.dtype == "str" else var.dtype
        arrays[name] = values.reshape(shape).astype(dtype)
        dims[name] = vdims
        attrs[name] = var.attrs()
    nan = np.full(n, np.nan)
    for name, values in (("point_wall_time", wall), ("point_cost", cost)):
        arrays[name] = nan if values is None else np.asarray(values, dtype=float)
        dims[name] = (POINT,)
        attrs[name] = dict(TABLE_ATTRS[name])
    return BlockData({}, arrays, dims, attrs, coords)


def to_dataset(block: BlockData) -> xr.Dataset:
    """Return ``block`` (from :func:`block_content`) as an :class:`xarray.Dataset`."""
    import xarray as xr

    def variable(name: str) -> xr.Variable:
        return xr.Variable(block.dims[name], block.arrays[name], block.array_attrs.get(name, {}))

    coords = {name: variable(name) for name in block.coords}
    data = {name: variable(name) for name in block.arrays if name not in coords}
    return xr.Dataset(data, coords=coords, attrs=dict(block.attrs))


def label(
    experiment: Experiment,
    points: Points,
    data: Mapping[str, np.ndarray],
    settings: Mapping[str, Any],
    wall: np.ndarray | None = None,
    cost: np.ndarray | None = None,
) -> xr.Dataset:
    """Return the labelled dataset of one block: :func:`block_content` as xarray.

    Parameters and errors are those of :func:`block_content`.
    """
    return to_dataset(block_content(experiment, points, data, settings, wall, cost))
