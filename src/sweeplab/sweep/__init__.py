"""The sweep layer: grids -> points -> packed blocks -> Dask tasks -> labelled xarray -> zarr.

The only layer that knows how a grid point becomes a task and a result becomes a labelled array.
Experiments are declared in :mod:`sweeplab.sweep.experiments` (the registry); points are
identified by content keys (:mod:`.identity`), indexed by the ledger (:mod:`.ledger`) and packed
into blocks by the planner (:mod:`.planner`).
"""

from .aggregate import aggregate
from .blockstore import CorruptBlockError, open_block, read_block, write_block
from .canonical import format_value, point_seed
from .experiments import EXPERIMENTS, REGISTRY, Points, validate_config
from .export import export_dataset
from .identity import grid_points
from .ledger import Ledger
from .planner import plan
from .runner import compute_points, run_plan
from .store import open_dataset, provenance, write_atomic

__all__ = [
    "EXPERIMENTS",
    "REGISTRY",
    "CorruptBlockError",
    "Ledger",
    "Points",
    "aggregate",
    "compute_points",
    "export_dataset",
    "format_value",
    "grid_points",
    "open_block",
    "open_dataset",
    "plan",
    "point_seed",
    "provenance",
    "read_block",
    "run_plan",
    "validate_config",
    "write_atomic",
    "write_block",
]
