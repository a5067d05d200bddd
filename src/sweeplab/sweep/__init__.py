"""The sweep layer: grids -> blocks -> Dask tasks -> labelled xarray Datasets -> zarr stores.

The only layer that knows how a grid point becomes a task and a result becomes a labelled array.
"""

from .canonical import block_name, format_value, parse_block_name, point_seed
from .experiments import EXPERIMENTS, Block, blocks_for, parse_block, validate_config
from .runner import compute_block, run_block
from .store import aggregate, open_dataset, provenance, write_atomic

__all__ = [
    "EXPERIMENTS",
    "Block",
    "aggregate",
    "block_name",
    "blocks_for",
    "compute_block",
    "format_value",
    "open_dataset",
    "parse_block",
    "parse_block_name",
    "point_seed",
    "provenance",
    "run_block",
    "validate_config",
    "write_atomic",
]
