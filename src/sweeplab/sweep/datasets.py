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
import xarray as xr

if TYPE_CHECKING:
    from .experiments.base import Experiment, Points

__all__ = ["POINT", "block_dims", "coord_attrs", "label"]

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


def label(
    experiment: Experiment,
    points: Points,
    data: Mapping[str, np.ndarray],
    settings: Mapping[str, Any],
    wall: np.ndarray | None = None,
    cost: np.ndarray | None = None,
) -> xr.Dataset:
    """Return the labelled dataset of one block.

    Parameters
    ----------
    experiment, points
        The experiment and the batch of points the arrays belong to.
    data : mapping of str to ndarray
        One array per declared variable, shape ``(n_points, *inner)``.
    settings : mapping
        The points' settings (for the non-grid coordinates).
    wall, cost : ndarray, optional
        Wall time (s) and estimated cost (s) of each point (nan if not given).

    Raises
    ------
    ValueError
        If a variable is missing, unexpected, or has the wrong number of values.

    """
    n = len(points)
    coords: dict[str, Any] = {}
    for axis in experiment.axes:
        coords[axis.dimension] = (POINT, axis.column(points.columns[axis.name]))
    coords["key"] = (POINT, np.asarray(points.keys, dtype=object))
    coords.update(experiment.inner_coords(settings, points))
    if set(data) != set(experiment.variables):
        raise ValueError(
            f"{experiment.name}: computed variables {sorted(data)} differ from the declared "
            f"{sorted(experiment.variables)}"
        )
    variables = {}
    for name, var in experiment.variables.items():
        dims = block_dims(experiment, var.dims)
        shape = (n, *(len(coords[d]) for d in dims[1:]))
        values = np.asarray(data[name])
        if values.size != int(np.prod(shape)):
            raise ValueError(
                f"{experiment.name}.{name}: {values.size} values for dims {dims} of shape {shape}"
            )
        dtype = object if var.dtype == "str" else var.dtype
        variables[name] = xr.Variable(dims, values.reshape(shape).astype(dtype), var.attrs())
    nan = np.full(n, np.nan)
    variables["point_wall_time"] = xr.Variable(
        (POINT,), nan if wall is None else np.asarray(wall, float), TABLE_ATTRS["point_wall_time"]
    )
    variables["point_cost"] = xr.Variable(
        (POINT,), nan if cost is None else np.asarray(cost, float), TABLE_ATTRS["point_cost"]
    )
    ds = xr.Dataset(variables, coords=coords)
    for dim, attrs in coord_attrs(experiment).items():
        if dim in ds.coords:
            ds[dim].attrs.update(attrs)
    ds["key"].attrs.update(TABLE_ATTRS["key"])
    return ds
