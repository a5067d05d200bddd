import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sweeplab

REPO = Path(__file__).resolve().parents[1]

# Layers that are extras, never core dependencies (pyproject.toml [project.optional-dependencies]).
NOT_CORE = ("dask", "distributed", "xarray", "zarr", "matplotlib", "snakemake", "click")

# Runs in the core-only venv: a small dmf and mcvd computation, then which extras' modules exist.
CORE_SCRIPT = textwrap.dedent(
    """
    import importlib.util
    import json
    import sys

    import numpy as np

    from sweeplab import dmf, mcvd

    ws, M = dmf.gaussian_minimizer((2, 4, 3), np.random.default_rng(0))
    exact = dmf.sharpness(ws)
    dense = dmf.sharpness_numerical(ws, M, method="dense")

    g = mcvd.Geometry(tx=(0, 0, 10), rx=(10, 0, 0), radius=5, D=79.4)
    F = mcvd.absorbed_fraction(g, [0.5], model="exact")
    r = mcvd.simulate(g, t_end=0.5, dt=1e-3, n_molecules=4000, seed=1)
    F_sim, se = mcvd.cumulative_fraction(r)

    print(json.dumps({
        "sharpness": [float(exact), float(dense)],
        "F_exact": float(np.ravel(F)[-1]),
        "F_sim": [float(np.ravel(F_sim)[-1]), float(np.ravel(se)[-1])],
        "importable": sorted(m for m in sys.argv[1:] if importlib.util.find_spec(m)),
        "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:])),
    }))
    """
)


def test_version_is_pep440():
    assert re.fullmatch(r"\d+\.\d+\.\d+", sweeplab.__version__)


@pytest.mark.slow
def test_core_install_runs_the_science_without_the_extras(tmp_path):
    """``pip install <repo>`` (no extras) in a fresh venv: dmf and mcvd work, no extra is there."""
    venv = tmp_path / "core"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True, timeout=600)
    subprocess.run([*pip, "install", str(REPO)], check=True, timeout=1200)

    # from tmp_path, so that src/ of the checkout is not what gets imported
    proc = subprocess.run(
        [python, "-c", CORE_SCRIPT, *NOT_CORE],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["importable"] == [], f"core install pulled in extras: {out['importable']}"
    assert out["loaded"] == []
    exact, dense = out["sharpness"]
    assert dense == pytest.approx(exact, rel=1e-8)
    F_sim, se = out["F_sim"]
    assert 0 < out["F_exact"] < 1
    assert abs(F_sim - out["F_exact"]) < 5 * se + 0.02

    installed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert re.search(r"^sweeplab==", installed, re.MULTILINE), installed


def test_public_functions_named_like_their_submodules_stay_functions():
    """``sweep.aggregate``, ``dmf.escape`` and ``dmf.sharpness`` are functions defined in
    same-named submodules; importing those submodules first (as a test module or the CLI may)
    must not rebind the package's names to the modules (it did for ``sweep.aggregate``)."""
    code = (
        "import sweeplab.sweep.aggregate, sweeplab.dmf.escape, sweeplab.dmf.sharpness\n"
        "from sweeplab import dmf, sweep\n"
        "from sweeplab.sweep import aggregate\n"
        "for f in (sweep.aggregate, aggregate, dmf.escape, dmf.sharpness):\n"
        "    assert callable(f) and type(f).__name__ == 'function', f\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
