"""The experiment registry: one module per experiment, everything else derived from it.

Every module of this package (but ``base``) defines ``EXPERIMENT``, an
:class:`~.base.Experiment`; they are found by name, so adding an experiment edits no list.
``REGISTRY`` maps an experiment's name to that object, in ``Experiment.order``. The CLI's
choices, the Snakemake block rules, targets and aggregate wildcard, the report's figures and the
config schema's experiment enum (checked by a test) all come from here; see
``docs/architecture.md`` ("Adding an experiment").
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from .base import MAX_GRID_POINTS, Axis, Experiment, FigureSpec, Points, Var
from .channel import channel_geometry
from .escape import escape_minimizer
from .sharpness import sharpness_minimizer, sharpness_point

__all__ = [
    "EXPERIMENTS",
    "MAX_GRID_POINTS",
    "REGISTRY",
    "Axis",
    "Experiment",
    "FigureSpec",
    "Points",
    "Var",
    "channel_geometry",
    "escape_minimizer",
    "get",
    "sharpness_minimizer",
    "sharpness_point",
    "validate_config",
]


def _discover() -> dict[str, Experiment]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            found.append(importlib.import_module(f"{__name__}.{info.name}").EXPERIMENT)
    return {e.name: e for e in sorted(found, key=lambda e: (e.order, e.name))}


REGISTRY: dict[str, Experiment] = _discover()
EXPERIMENTS: tuple[str, ...] = tuple(REGISTRY)


def get(name: str) -> Experiment:
    """Return the registered experiment ``name`` (``ValueError`` naming the choices)."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown experiment {name!r}; expected one of {EXPERIMENTS}") from None


def validate_config(config: Mapping[str, Any]) -> None:
    """Check, for every selected experiment, what the JSON schema cannot.

    Every number must be finite (JSON-schema ranges let NaN and infinities through).

    Only the experiments in ``config["experiments"]`` (default: all) are checked, and only their
    sections need to be present.

    Raises
    ------
    ValueError
        Naming the key and the bad value, or a selected experiment without its section.

    """
    from ..configcheck import check_finite  # imports this package

    check_finite(config)
    seconds = config.get("block_seconds", 60)
    if not (isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0):
        raise ValueError(f"block_seconds = {seconds!r}; allowed: a number > 0 (seconds)")
    for name in config.get("experiments", EXPERIMENTS):
        exp = get(name)
        if name not in config:
            raise ValueError(f"experiments selects {name!r} but the config has no {name!r} section")
        exp.validate(config[name])
