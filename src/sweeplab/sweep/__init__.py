"""The sweep layer: grids -> points -> packed blocks -> Dask tasks -> labelled xarray -> zarr.

The only layer that knows how a grid point becomes a task and a result becomes a labelled array.
Experiments are declared in :mod:`sweeplab.sweep.experiments` (the registry); points are
identified by content keys (:mod:`.identity`), indexed by the ledger (:mod:`.ledger`) and packed
into blocks by the planner (:mod:`.planner`).

The names below are imported on first use, so ``sweeplab status`` (planning and the ledger)
loads neither Dask nor xarray nor zarr.
"""

from __future__ import annotations

from .._lazy import lazy_names

_WHERE = {
    "aggregate": "aggregate",
    "CorruptBlockError": "blockstore",
    "open_block": "blockstore",
    "read_block": "blockstore",
    "write_block": "blockstore",
    "format_value": "canonical",
    "point_seed": "canonical",
    "EXPERIMENTS": "experiments",
    "REGISTRY": "experiments",
    "Points": "experiments",
    "validate_config": "experiments",
    "export_dataset": "export",
    "grid_points": "identity",
    "Ledger": "ledger",
    "plan": "planner",
    "compute_points": "runner",
    "run_plan": "runner",
    "open_dataset": "store",
    "provenance": "store",
    "write_atomic": "store",
}

__all__ = sorted(_WHERE)

lazy_names(__name__, _WHERE)
