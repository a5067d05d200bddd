"""The sweep layer: grids -> blocks -> Dask tasks -> labelled xarray Datasets -> zarr stores.

The only layer that knows how a grid point becomes a task and a result becomes a labelled array.
Experiments are declared in :mod:`sweeplab.sweep.experiments` (the registry).
"""

from .aggregate import aggregate
from .blockstore import CorruptBlockError, open_block, read_block, write_block
from .canonical import block_name, format_value, parse_block_name, point_seed
from .experiments import (
    EXPERIMENTS,
    REGISTRY,
    Block,
    blocks_for,
    parse_block,
    validate_config,
)
from .export import export_dataset
from .runner import compute_block, run_block
from .store import open_dataset, provenance, write_atomic

__all__ = [
    "EXPERIMENTS",
    "REGISTRY",
    "Block",
    "CorruptBlockError",
    "aggregate",
    "block_name",
    "blocks_for",
    "compute_block",
    "export_dataset",
    "format_value",
    "open_block",
    "open_dataset",
    "parse_block",
    "parse_block_name",
    "point_seed",
    "provenance",
    "read_block",
    "run_block",
    "validate_config",
    "write_atomic",
    "write_block",
]
