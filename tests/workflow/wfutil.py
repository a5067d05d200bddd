"""Run the real Snakemake CLI on a copy of a config in a temporary directory."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
#: the tiny sweep of all three experiments (also what `snakemake --directory .test` runs)
TINY = REPO / ".test" / "config" / "config.yaml"
BIN = Path(sys.executable).parent


def snakemake(
    workdir: Path,
    *args: str,
    config: Path | None = None,
    configfile: bool = True,
    snakefile: Path = REPO / "Snakefile",
    check: bool = True,
    env: dict | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir`` on ``config`` (default ``workdir/config.yaml``).

    ``configfile=False`` passes no ``--configfile``: the Snakefile's own ``configfile:``
    (``config/config.yaml`` relative to ``workdir``) is used.
    """
    config_args = ["--configfile", str(config or workdir / "config.yaml")] if configfile else []
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(snakefile),
        "-d",
        str(workdir),
        *config_args,
        "--cores",
        "2",
        *args,
    ]
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=workdir
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def lint_findings(proc: subprocess.CompletedProcess) -> set[str]:
    """The findings (``* ...`` lines) of ``snakemake --lint``."""
    return {
        line.strip()
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.strip().startswith("* ")
    }


def write_config(workdir: Path, **overrides: dict) -> Path:
    cfg = yaml.safe_load(TINY.read_text())
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(cfg.get(section), dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of the run directory ``src`` (results, Snakemake's metadata; times kept)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    lines = proc.stdout.splitlines() + proc.stderr.splitlines()
    jobs: dict[str, int] = {}
    in_table = False
    for line in lines:
        if line.startswith("Job stats:"):
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] == "total":
                    break
                jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny sweep, run locally once per session through the real CLI (import into a
    conftest). Tests must not change it: copy it (:func:`copy_run`) to run more on it."""
    workdir = tmp_path_factory.mktemp("sweep")
    write_config(workdir)
    snakemake(workdir)
    return workdir
