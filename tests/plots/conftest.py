"""Fixtures of the figure tests: tiny sweeps run through the sweep API, aggregated once.

Each section is planned (:func:`sweeplab.sweep.plan`), its blocks run from their plan files
with :func:`sweeplab.sweep.run_plan` (one thread, an in-process Dask cluster) and aggregated
into ``<experiment>.zarr`` stores, as the pipeline does. The tests draw them, or edited copies
of them (failed points, non-finite values) for the edge cases.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import pytest
import xarray as xr
import yaml

from sweeplab.sweep import aggregate, open_dataset, plan, provenance, run_plan

REPO = Path(__file__).resolve().parents[2]
#: the tiny config of the workflow tests
TINY_PLACES = (REPO / ".test" / "config" / "config.yaml",)


def tiny_config() -> dict:
    """The tiny config of every experiment, with an in-process Dask cluster."""
    path = next((p for p in TINY_PLACES if p.exists()), TINY_PLACES[0])
    config = yaml.safe_load(path.read_text())
    config["dask"] = {"processes": False}
    return config


def build(experiment: str, section: dict, root: Path) -> Path:
    """Plan ``section``, run every planned block and aggregate them; return the store's path.

    RuntimeWarnings are not errors here (``pyproject.toml`` makes them errors in the tests):
    the stores must hold what the pipeline would write for the config.
    """
    config = {**tiny_config(), experiment: section}
    blocks = root / "blocks" / experiment
    blocks.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("default", RuntimeWarning)
        p = plan(experiment, section, blocks)
        for path in p.write_plan_files(root / "plans" / experiment):
            run_plan(path, blocks / f"{path.stem}.zarr.zip", dask=config["dask"], threads=1)
        store = root / f"{experiment}.zarr"
        aggregate(experiment, section, blocks, store, attrs=provenance({experiment: section}))
    return store


def shared(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], dict[str, str]]
           ) -> dict[str, str]:  # fmt: skip
    """Build ``name`` once per test run, shared by every pytest-xdist worker of the run.

    ``make(root)`` writes into a directory of the run's common temporary directory and
    returns JSON (paths as text); a lock file makes the other workers wait for it and reuse
    it (with ``--dist loadfile`` the figure test files land on both workers, and a session
    fixture is per worker). Tests must not change what it built: copy it first.
    """
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-<n>/, the parent of every worker's popen-gw<i>/
    root = base / f"shared-{name}"
    with open(base / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / "built.json"
        if done.exists():
            return json.loads(done.read_text())
        root.mkdir(parents=True, exist_ok=True)
        result = make(root)
        done.write_text(json.dumps(result))
        return result


@pytest.fixture(scope="session")
def tiny_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Experiment -> aggregated store of the tiny sweep (built once per test run)."""
    config = tiny_config()

    def make(root: Path) -> dict[str, str]:
        return {name: str(build(name, config[name], root)) for name in config["experiments"]}

    return {k: Path(v) for k, v in shared(tmp_path_factory, "tiny", make).items()}


@pytest.fixture(scope="session")
def tiny(tiny_stores: dict[str, Path]) -> dict[str, xr.Dataset]:
    """Experiment -> the loaded tiny dataset (copy it before editing)."""
    return {name: open_dataset(path).load() for name, path in tiny_stores.items()}


@pytest.fixture(scope="session")
def escape_stayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Store of a tiny escape sweep with every ``c`` below 1: every run stays in the ball."""
    section = {**tiny_config()["escape"], "c": [0.5, 0.9]}
    made = shared(tmp_path_factory, "stayed", lambda r: {"s": str(build("escape", section, r))})
    return Path(made["s"])


@pytest.fixture(scope="session")
def channel_empty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Store of a tiny channel run too short for any molecule to reach the receiver.

    Over 5 ms the spread of a molecule is ~0.9 um per axis, the receiver ~9 um away: the
    simulated fractions are all zero (and the exact ones below the 1e-3 floor of relerr_*).
    """
    section = {**tiny_config()["channel"], "n_molecules": 200, "batch_size": 200,
               "t_end": 0.005, "bin_width": 0.001, "symbol_time": [0.001]}  # fmt: skip
    made = shared(tmp_path_factory, "empty", lambda r: {"s": str(build("channel", section, r))})
    return Path(made["s"])


@pytest.fixture(scope="session")
def channel_rich(tmp_path_factory: pytest.TempPathFactory) -> xr.Dataset:
    """The tiny channel run with two more geometries (a smaller gap, a slab), two time steps
    and both corrections: every channel figure has data to draw."""
    geometry = {
        **tiny_config()["channel"]["geometry"],
        "gap1": {"tx": [0, 0, 10], "rx": [6, 0, 0], "radius": 5},
        "slab20": {"tx": [0, 0, 10], "rx": [6, 0, 0], "radius": 5, "slab_width": 20},
    }
    section = {**tiny_config()["channel"], "geometry": geometry, "dt": [1e-3, 2e-3],
               "correction": ["bridge", "none"], "n_molecules": 500, "batch_size": 500}  # fmt: skip
    made = shared(tmp_path_factory, "rich", lambda r: {"s": str(build("channel", section, r))})
    return open_dataset(made["s"]).load()


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every figure a test leaves open."""
    yield
    plt.close("all")
