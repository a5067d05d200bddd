"""Install time and size: a core-only sweeplab venv vs a full one, side by side in one run.

Each variant gets a fresh ``python -m venv`` under a temporary directory; pip itself is upgraded
first (not timed), then ``pip install <repo>[extras]`` is timed and the venv's site-packages
measured with ``du``. By default every install starts from an empty pip cache (``--no-cache-dir``:
downloads included, as on a fresh machine); ``--warm`` uses your pip cache instead.

    .venv/bin/python bench/install_size.py                       # core vs .[test]
    .venv/bin/python bench/install_size.py --full workflow,plots,slurm,s3 --warm

The full variant defaults to ``test`` (everything: workflow, plots, slurm, s3 and the test tools).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if len(found) != 1:
        raise RuntimeError(f"expected one site-packages under {venv}, found {found}")
    return found[0]


def _du_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def _du_human(path: Path) -> str:
    out = subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def measure(python: str, root: Path, label: str, extras: str, warm: bool) -> dict:
    """Create a venv, time ``pip install`` of the repo with ``extras``, measure its size."""
    venv = root / label
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    cache = [] if warm else ["--no-cache-dir"]
    subprocess.run([*pip, "install", "--quiet", *cache, "--upgrade", "pip"], check=True)
    spec = f"{REPO}[{extras}]" if extras else str(REPO)
    t0 = time.perf_counter()
    subprocess.run([*pip, "install", "--quiet", *cache, spec], check=True)
    seconds = time.perf_counter() - t0
    listed = subprocess.run(
        [*pip, "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout.split()
    site = _site_packages(venv)
    return {
        "label": label,
        "spec": f"pip install {'<repo>' + (f'[{extras}]' if extras else '')}",
        "seconds": seconds,
        "site_bytes": _du_bytes(site),
        "site_human": _du_human(site),
        "venv_human": _du_human(venv),
        "dists": len(listed),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", default="test", help="extras of the full variant (default: test)")
    ap.add_argument("--warm", action="store_true", help="use the pip cache (default: cold)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the venvs")
    ap.add_argument("--keep", action="store_true", help="keep the venvs (their path is printed)")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="sweeplab-install-"))
    try:
        rows = [
            measure(args.python, root, "core", "", args.warm),
            measure(args.python, root, "full", args.full, args.warm),
        ]
    finally:
        if args.keep:
            print(f"venvs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    core, full = rows
    print(f"pip cache: {'warm (your pip cache)' if args.warm else 'cold (--no-cache-dir)'}; "
          f"python: {args.python}")  # fmt: skip
    print(f"{'variant':<8} {'install':>9} {'site-packages':>14} {'venv':>7} {'dists':>6}  command")
    for r in rows:
        print(
            f"{r['label']:<8} {r['seconds']:8.1f}s {r['site_human']:>14} {r['venv_human']:>7} "
            f"{r['dists']:>6}  {r['spec']}"
        )
    print(
        f"full / core: install time {full['seconds'] / core['seconds']:.1f}x, "
        f"site-packages {full['site_bytes'] / core['site_bytes']:.1f}x, "
        f"distributions {full['dists'] / core['dists']:.1f}x"
    )


if __name__ == "__main__":
    main()
