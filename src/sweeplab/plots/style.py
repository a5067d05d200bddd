"""Helpers shared by the figure modules."""

from __future__ import annotations

import numpy as np
import xarray as xr


def flags(var: xr.DataArray) -> dict[int, str]:
    """Return code -> meaning of a CF flag variable (``flag_values`` / ``flag_meanings``)."""
    values = [int(v) for v in np.atleast_1d(var.attrs["flag_values"])]
    return dict(zip(values, var.attrs["flag_meanings"].split(), strict=True))
