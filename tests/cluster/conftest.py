"""The Slurm tier: one private single-node Slurm for the whole session (see slurmlocal.py)."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))  # wfutil

from slurmlocal import LocalSlurm, missing_binaries
from wfutil import tiny_run  # noqa: F401  (the local reference run)

INSTALL_HINT = "install it with `sudo .ci/install-slurm.sh` (Debian's slurm-wlm and munge)"


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A running private Slurm; ``slurm.env`` (``SLURM_CONF``) points clients at it.

    Skipped where Slurm is not installed or we are not root (slurmd must start job steps as
    their user), unless ``SWEEPLAB_REQUIRE_SLURM=1`` (as in ``make test-slurm``), which turns
    the skip into a failure so CI cannot silently pass without the tier.
    """
    problem = None
    missing = missing_binaries()
    if missing:
        problem = f"Slurm programs not found ({', '.join(missing)}): {INSTALL_HINT}"
    elif os.geteuid() != 0:
        problem = "a private slurmd must run as root"
    if problem:
        if os.environ.get("SWEEPLAB_REQUIRE_SLURM") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    root = tmp_path_factory.mktemp("slurm")
    with LocalSlurm(root) as cluster:
        yield cluster
