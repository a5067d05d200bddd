"""Issue 22, D1 and C1: what the CLI writes, where, and how it fails on the file system.

D1: ``aggregate --out`` replaces whatever is at its path, so only this experiment's aggregate
(or a new path, or an empty directory) is accepted; the results and blocks directories, their
ancestors and the working directory are refused. C1: a read-only or full file system gives
one ``Error:`` line naming the path and the cause, and leaves nothing behind. Tests run as
root (chmod does not stop root), so the failures are simulated by making the file-system
calls under one directory raise, as the kernel would.
"""

import errno
import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from synth import sharp_section, write_blocks

from sweeplab.cli import main
from sweeplab.sweep import aggregate
from sweeplab.sweep.store import MANIFEST

SECTION = sharp_section(depth=(2,), family=("balanced",), seeds=2)


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    return result


def one_error_line(result) -> str:
    """The whole output is one ``Error:`` line (exit 1); return it."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path below ``root`` with its bytes (None for a directory)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(root.rglob("*"))}  # fmt: skip


@pytest.fixture
def results(tmp_path):
    """``results/`` with the blocks of SECTION under ``blocks/sharpness``."""
    res = tmp_path / "results"
    write_blocks(res / "blocks" / "sharpness", SECTION)
    return res


def aggregate_cmd(results, out, experiment="sharpness", section=SECTION):
    return invoke("aggregate", experiment, "--settings", json.dumps(section),
                  "--blocks-dir", results / "blocks" / experiment, "--out", out)  # fmt: skip


def fail_under(monkeypatch, directory: Path, name: str, err: int = errno.ENOSPC):
    """Make ``os.<name>`` raise OSError(err) for any path inside ``directory``."""
    real = getattr(os, name)
    inside = str(directory) + os.sep

    def fake(path, *args, **kwargs):
        if isinstance(path, str | os.PathLike) and os.fspath(path).startswith(inside):
            raise OSError(err, os.strerror(err), os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, name, fake)


# --- D1: aggregate --out deletes nothing that is not this experiment's aggregate -------------
def test_aggregate_refuses_a_user_file_and_a_user_directory(results, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("precious")
    mine = tmp_path / "analysis"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "fit.py").write_text("x = 1")
    (mine / "zarr.json").write_text("{}")
    for out, why in ((notes, "not a directory"), (mine, "not a sweeplab aggregate")):
        before = tree(tmp_path)
        text = one_error_line(aggregate_cmd(results, out))
        assert f"--out {out} exists" in text and why in text and "refusing" in text, text
        assert tree(tmp_path) == before


def test_aggregate_refuses_results_blocks_and_the_working_directory(results, tmp_path,
                                                                    monkeypatch):  # fmt: skip
    work = tmp_path / "work" / "here"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    blocks = results / "blocks" / "sharpness"
    cases = [
        (results, "contains the blocks directory"),
        (tmp_path, "contains the blocks directory"),
        (results / "blocks", "is the blocks directory"),
        (blocks, "is inside the blocks directory"),
        (blocks / "new.zarr", "is inside the blocks directory"),
        (results / "blocks" / "escape" / "x.zarr", "is inside the blocks directory"),
        (Path("."), "is the working directory"),
        (tmp_path / "work", "contains the working directory"),
    ]
    before = tree(tmp_path)
    for out, why in cases:
        text = one_error_line(aggregate_cmd(results, out))
        assert text.startswith(f"Error: --out {out} ") and why in text, (out, text)
    assert tree(tmp_path) == before


def test_aggregate_out_at_a_block_file_leaves_the_block(results, tmp_path):
    """The block of another experiment's directory, and one of this experiment's."""
    mine = sorted((results / "blocks" / "sharpness").glob("*.zarr.zip"))[0]
    theirs = results / "blocks" / "escape" / mine.name
    theirs.parent.mkdir()
    theirs.write_bytes(mine.read_bytes())
    before = tree(tmp_path)
    for block in (mine, theirs):
        one_error_line(aggregate_cmd(results, block))
    assert tree(tmp_path) == before and mine.is_file() and theirs.is_file()


def test_aggregate_refuses_another_experiments_aggregate_and_a_symbolic_link(results, tmp_path):
    out = results / "sharpness.zarr"
    aggregate("sharpness", SECTION, results / "blocks" / "sharpness", out)
    manifest = json.loads((out / MANIFEST).read_text())
    other = results / "escape.zarr"
    other.mkdir()
    (other / MANIFEST).write_text(json.dumps({**manifest, "experiment": "escape"}))
    link = tmp_path / "link.zarr"
    link.symlink_to(out)
    before = tree(tmp_path)
    text = one_error_line(aggregate_cmd(results, other))
    assert "is the aggregate of 'escape', not of 'sharpness'" in text
    assert "is a symbolic link" in one_error_line(aggregate_cmd(results, link))
    assert tree(tmp_path) == before


def test_aggregate_replaces_its_own_aggregate_and_an_empty_directory(results, tmp_path):
    out = results / "sharpness.zarr"
    for _ in range(2):  # new, then its own aggregate (rebuilt: the manifest is made stale)
        assert aggregate_cmd(results, out).exit_code == 0
        (out / MANIFEST).write_text("{damaged")
    assert aggregate_cmd(results, out).exit_code == 0  # no manifest: the root attribute says
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    assert aggregate_cmd(results, empty).exit_code == 0
    assert (empty / MANIFEST).is_file()


# --- C1: file-system errors are one line, and nothing is left behind ------------------------
def slow_then_failing_put(monkeypatch):
    """zarr's chunk writes: the first fails (disk full) at once, the others land 0.3 s later."""
    import zarr.storage._local as local

    real = local._put
    state = {"failed": False}

    def put(path, value, exclusive=False):
        if path.name != "zarr.json":
            if not state["failed"]:
                state["failed"] = True
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            time.sleep(0.3)
        return real(path, value, exclusive=exclusive)

    monkeypatch.setattr(local, "_put", put)


@pytest.mark.parametrize("failure", ["read-only", "full"])
def test_aggregate_on_a_failing_file_system_is_one_line_and_leaves_nothing(
    results, tmp_path, monkeypatch, failure
):
    where = tmp_path / "out"
    where.mkdir()
    out = where / "sharpness.zarr"
    if failure == "read-only":
        fail_under(monkeypatch, where, "mkdir", errno.EROFS)
    else:
        slow_then_failing_put(monkeypatch)
    text = one_error_line(aggregate_cmd(results, out))
    cause = "Read-only file system" if failure == "read-only" else "No space left on device"
    assert f"cannot update the aggregate {out}: {cause}" in text, text
    time.sleep(0.6)  # the writes zarr had started have all ended
    assert list(where.iterdir()) == []


def test_run_block_checks_the_destination_before_computing(tmp_path, monkeypatch):
    import sweeplab.sweep.runner as runner
    from sweeplab.sweep import plan

    (path,) = plan("sharpness", SECTION, tmp_path / "blocks").write_plan_files(tmp_path / "plans")
    blocks = tmp_path / "blocks"
    blocks.mkdir()
    out = blocks / f"{path.stem}.zarr.zip"
    computed = []
    monkeypatch.setattr(runner, "compute_block", lambda *a: computed.append(a))
    for err in (errno.EROFS, errno.ENOSPC):
        with monkeypatch.context() as m:
            fail_under(m, blocks, "open", err)
            text = one_error_line(invoke("run-block", path, "--out", out))
        assert f"cannot write the block {out}: {os.strerror(err)}" in text, text
        assert not computed
        assert list(blocks.iterdir()) == []


def tiny_figures(monkeypatch):
    """Every figure function draws one line (the real figures are tested in tests/plots)."""
    import matplotlib.pyplot as plt

    from sweeplab.plots import FIGURES

    def tiny(ds):
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.plot([0, 1])
        return fig

    for name, (experiment, _) in list(FIGURES.items()):
        monkeypatch.setitem(FIGURES, name, (experiment, tiny))


def test_figures_into_a_failing_directory_is_one_line_and_keeps_the_old_files(
    results, tmp_path, monkeypatch
):
    from matplotlib.figure import Figure

    tiny_figures(monkeypatch)
    store = results / "sharpness.zarr"
    aggregate("sharpness", SECTION, results / "blocks" / "sharpness", store)
    figs = tmp_path / "figs"
    figs.mkdir()
    (figs / "sharpness_overview.png").write_bytes(b"old figure")
    before = tree(tmp_path)
    with monkeypatch.context() as m:
        fail_under(m, tmp_path, "mkdir", errno.EROFS)
        text = one_error_line(invoke("figures", "--dataset", store, "--out", figs))
    assert f"cannot write the figures in {figs}: Read-only file system" in text, text
    assert tree(tmp_path) == before

    real = Figure.savefig

    def savefig(self, fname, *args, **kwargs):  # the disk fills up while writing the SVG
        if str(fname).endswith(".svg"):
            Path(fname).write_bytes(b"<svg")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fname))
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    text = one_error_line(invoke("figures", "--dataset", store, "--out", figs))
    assert f"cannot write the figures in {figs}: No space left on device" in text, text
    assert tree(tmp_path) == before


def test_info_on_a_damaged_manifest_is_one_line(results):
    out = results / "sharpness.zarr"
    aggregate("sharpness", SECTION, results / "blocks" / "sharpness", out)
    (out / MANIFEST).write_text('{"blocks": ')
    text = one_error_line(invoke("info", out))
    assert f"{out / MANIFEST} is damaged" in text and "--full" in text, text


# --- cosmetic: info on a truncated block; figures of the given datasets only -----------------
def test_info_on_a_truncated_block_says_it_is_not_a_valid_block_file(results, tmp_path):
    block = sorted((results / "blocks" / "sharpness").glob("*.zarr.zip"))[0]
    data = block.read_bytes()
    for cut in (len(data) - 100, len(data) // 2, 10):
        truncated = tmp_path / block.name
        truncated.write_bytes(data[:cut])
        text = one_error_line(invoke("info", truncated))
        assert f"{truncated} is not a valid block file" in text, text
        assert "_zf" not in text


def test_figures_of_a_dataset_without_names_draws_its_experiments_figures(
    results, tmp_path, monkeypatch
):
    from sweeplab.sweep.experiments import REGISTRY

    tiny_figures(monkeypatch)
    store = results / "sharpness.zarr"
    aggregate("sharpness", SECTION, results / "blocks" / "sharpness", store)
    monkeypatch.chdir(tmp_path)  # no results/<other experiment>.zarr here
    result = invoke("figures", "--dataset", store, "--out", tmp_path / "figs")
    assert result.exit_code == 0, result.output
    wanted = sorted(f.name for f in REGISTRY["sharpness"].figures)
    drawn = sorted({Path(line).stem for line in result.output.split()})
    assert drawn == wanted
    assert sorted(p.stem for p in (tmp_path / "figs").iterdir()) == sorted(wanted * 3)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # without --out: results/figures/<experiment>/, where the workflow puts them
    result = invoke("figures", "--dataset", store)
    assert result.exit_code == 0, result.output
    where = tmp_path / "results" / "figures"
    assert sorted(p.relative_to(where).as_posix() for p in where.rglob("*")) == sorted(
        ["sharpness"] + [f"sharpness/{n}.{ext}" for n in wanted for ext in ("png", "svg", "pdf")]
    )


def test_write_atomic_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch):
    """export's directory stores: zarr's writes still running after one failed are awaited."""
    import numpy as np
    import xarray as xr

    from sweeplab.sweep.store import write_atomic

    ds = xr.Dataset({"v": ("x", np.arange(4.0))})
    ds["v"].encoding["chunks"] = (1,)  # four chunks, written concurrently by one zarr call
    slow_then_failing_put(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(ds, tmp_path / "x.zarr")
    time.sleep(0.6)
    assert list(tmp_path.iterdir()) == []
