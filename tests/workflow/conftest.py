"""Fixtures of the workflow tests."""

import pytest
from wfutil import snakemake, write_config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny sweep, run once per module through the real CLI."""
    workdir = tmp_path_factory.mktemp("sweep")
    write_config(workdir)
    snakemake(workdir)
    return workdir
