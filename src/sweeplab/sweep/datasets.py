"""Label computed arrays as an xarray Dataset: dims, coordinates, units, long names, flags.

Nothing here computes: it turns the arrays an experiment's ``compute_points`` returns into the
block's Dataset, using only what the experiment declares (axes, point dims, variables).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from .experiments.base import Block, Experiment

__all__ = ["coord_attrs", "label"]


def coord_attrs(experiment: Experiment) -> dict[str, dict[str, str]]:
    """Units and long names of every dimension coordinate of ``experiment``."""
    attrs = {a.dimension: {"units": a.units, "long_name": a.long_name} for a in experiment.axes}
    for dim, (units, long_name) in experiment.point_dims.items():
        attrs[dim] = {"units": units, "long_name": long_name}
    return attrs


def _coord(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    return arr.astype(object) if arr.dtype.kind == "U" else arr


def label(
    experiment: Experiment,
    block: Block,
    data: Mapping[str, np.ndarray],
    settings: Mapping[str, Any],
) -> xr.Dataset:
    """Return the labelled dataset of one block.

    Parameters
    ----------
    experiment, block
        The experiment and the block the arrays belong to.
    data : mapping of str to ndarray
        One array per declared variable, holding the variable's values over its dims with the
        block's single-valued dims left out (e.g. shape ``(n_seeds,)`` for a sharpness variable,
        ``(n_seeds, n_steps)`` for an escape trajectory).
    settings : mapping
        The block's settings (for the non-block coordinates).

    Raises
    ------
    ValueError
        If a variable is missing, unexpected, or has the wrong number of values.

    """
    coords: dict[str, Any] = {
        dim: _coord(values) for dim, values in experiment.block_coords(block).items()
    }
    coords.update(experiment.inner_coords(settings, block))
    if set(data) != set(experiment.variables):
        raise ValueError(
            f"{experiment.name}: computed variables {sorted(data)} differ from the declared "
            f"{sorted(experiment.variables)}"
        )
    variables = {}
    for name, var in experiment.variables.items():
        shape = tuple(len(coords[d]) for d in var.dims)
        values = np.asarray(data[name])
        if values.size != int(np.prod(shape)):
            raise ValueError(
                f"{experiment.name}.{name}: {values.size} values for dims {var.dims} of shape "
                f"{shape}"
            )
        dtype = object if var.dtype == "str" else var.dtype
        variables[name] = xr.Variable(var.dims, values.reshape(shape).astype(dtype), var.attrs())
    ds = xr.Dataset(variables, coords=coords)
    for dim, attrs in coord_attrs(experiment).items():
        if dim in ds.coords:
            ds[dim].attrs.update(attrs)
    return ds
