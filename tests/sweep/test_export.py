"""``sweeplab export``: safety of local destinations, zip and directory stores, and S3 (moto)."""

import hashlib
import json
import os
import shutil
import uuid
import zipfile

import pytest
import xarray as xr
import zarr
from click.testing import CliRunner
from synth import sharp_section, write_blocks

from sweeplab.cli import main
from sweeplab.sweep import aggregate, provenance

SECTION = sharp_section(depth=(2, 3), family=("balanced",), seeds=2)


def _make_results(root, offset=0.0):
    """``root/results`` laid out like the workflow's: blocks and the sharpness aggregate."""
    results = root / "results"
    blocks = results / "blocks" / "sharpness"
    blocks.mkdir(parents=True)
    write_blocks(blocks, SECTION, offset=offset)
    attrs = {"title": "sweeplab sharpness sweep", **provenance({"sharpness": SECTION})}
    aggregate("sharpness", SECTION, blocks, results / "sharpness.zarr", attrs=attrs)
    return results


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return _make_results(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="module")
def other_template(tmp_path_factory):
    """Another results directory whose sharpness values differ (offset 10)."""
    return _make_results(tmp_path_factory.mktemp("other"), offset=10.0)


@pytest.fixture
def results(template, tmp_path):
    return shutil.copytree(template, tmp_path / "results")


def _export(*args):
    return CliRunner().invoke(main, ["export", *map(str, args)])


def _snapshot(path):
    """{relative path: content digest} of every file below ``path`` (or of the file itself)."""
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def _refused(result, *words):
    """Exit 1 through click: one ``Error:`` line naming ``words``, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for word in words:
        assert word in lines[0], result.output


def _hidden(directory):
    """Temporaries and aside copies left in ``directory`` (names starting with a dot)."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def _source(results):
    with xr.open_zarr(results / "sharpness.zarr") as ds:
        return ds.load()


def _check_copy(ds, results):
    """``ds`` equals the source modulo the README attribute the export adds."""
    assert "README" in ds.attrs and ds.attrs["sweeplab_version"]
    ds = ds.load()
    del ds.attrs["README"]
    xr.testing.assert_identical(ds, _source(results))


# --- local destinations -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_export_writes_a_consolidated_store_that_plain_xarray_opens(results, tmp_path, kind):
    dest = tmp_path / "shared" / ("sharpness.zarr" if kind == "directory" else "sharpness.zarr.zip")
    result = _export("sharpness", dest, "--results", results)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(dest)
    if kind == "directory":
        meta = json.loads((dest / "zarr.json").read_text())
        ds = xr.open_zarr(dest, consolidated=True)
    else:
        with zipfile.ZipFile(dest) as zf:
            meta = json.loads(zf.read("zarr.json"))
        ds = xr.open_zarr(zarr.storage.ZipStore(dest, mode="r"), consolidated=True)
    assert set(_source(results).variables) <= set(meta["consolidated_metadata"]["metadata"])
    _check_copy(ds, results)
    assert _hidden(dest.parent) == []


INSIDE_OR_AROUND = ["results", "results/sharpness.zarr", "results/shared/s.zarr", "results/blocks",
                    "results/s.zarr.zip", ".", "results/.."]  # fmt: skip


@pytest.mark.parametrize("dest", INSIDE_OR_AROUND)
def test_export_refuses_the_results_directory_its_contents_and_its_parents(
    results, tmp_path, monkeypatch, dest
):
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    _refused(_export("sharpness", dest, "--results", "results"))
    _refused(_export("sharpness", dest, "--results", "results", "--force"))
    assert _snapshot(tmp_path) == before
    assert _hidden(results) == [] and _hidden(tmp_path) == []


def test_export_refuses_a_parent_of_the_results_directory_given_absolute(results, tmp_path):
    before = _snapshot(tmp_path)
    _refused(_export("sharpness", tmp_path, "--results", results, "--force"), "results")
    assert _snapshot(tmp_path) == before


def test_export_dot_elsewhere_is_refused_in_one_line(results, tmp_path, monkeypatch):
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "notes.txt").write_text("mine")
    monkeypatch.chdir(cwd)
    _refused(_export("sharpness", ".", "--results", results), "exists")
    _refused(_export("sharpness", ".", "--results", results, "--force"), "not a sweeplab store")
    assert sorted(p.name for p in cwd.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("name", ["sharpness.zarr", "sharpness.zarr.zip", "notes"])
def test_export_refuses_an_existing_directory(results, tmp_path, name):
    dest = tmp_path / name
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    _refused(_export("sharpness", dest, "--results", results), "exists", "--force")
    _refused(_export("sharpness", dest, "--results", results, "--force"), "not a sweeplab")
    assert _snapshot(dest) == {"keep.txt": hashlib.sha256(b"mine").hexdigest()}
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("name", ["sharpness.zarr", "sharpness.zarr.zip", "notes.txt"])
def test_export_refuses_an_existing_file(results, tmp_path, name):
    dest = tmp_path / name
    dest.write_bytes(b"precious")
    _refused(_export("sharpness", dest, "--results", results), "exists")
    _refused(_export("sharpness", dest, "--results", results, "--force"), "not a sweeplab")
    assert dest.read_bytes() == b"precious"
    assert _hidden(tmp_path) == []


def test_force_refuses_a_zarr_store_without_sweeplab_provenance(results, tmp_path):
    dest = tmp_path / "other.zarr"
    xr.Dataset({"x": ("i", [1.0, 2.0])}, attrs={"title": "not ours"}).to_zarr(
        dest, zarr_format=3, consolidated=False
    )
    before = _snapshot(dest)
    _refused(_export("sharpness", dest, "--results", results, "--force"), "not a sweeplab")
    assert _snapshot(dest) == before


def test_force_refuses_a_sweeplab_store_holding_foreign_files(results, tmp_path):
    dest = tmp_path / "s.zarr"
    assert _export("sharpness", dest, "--results", results).exit_code == 0
    (dest / "analysis.ipynb").write_text("{}")
    before = _snapshot(dest)
    _refused(_export("sharpness", dest, "--results", results, "--force"), "analysis.ipynb")
    assert _snapshot(dest) == before


def test_export_refuses_a_symbolic_link(results, tmp_path):
    target = tmp_path / "elsewhere.zarr"
    assert _export("sharpness", target, "--results", results).exit_code == 0
    link = tmp_path / "link.zarr"
    link.symlink_to(target)
    before = _snapshot(target)
    _refused(_export("sharpness", link, "--results", results, "--force"), "symbolic link")
    assert link.is_symlink() and _snapshot(target) == before


def test_export_refuses_a_destination_below_a_file(results, tmp_path):
    (tmp_path / "afile").write_text("x")
    _refused(_export("sharpness", tmp_path / "afile" / "s.zarr", "--results", results))
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_force_replaces_a_sweeplab_store_atomically(results, other_template, tmp_path, kind):
    dest = tmp_path / ("s.zarr" if kind == "directory" else "s.zarr.zip")
    assert _export("sharpness", dest, "--results", results).exit_code == 0
    result = _export("sharpness", dest, "--results", other_template, "--force")
    assert result.exit_code == 0, result.output
    if kind == "directory":
        ds = xr.open_zarr(dest)
    else:
        ds = xr.open_zarr(zarr.storage.ZipStore(dest, mode="r"))
    _check_copy(ds, other_template)
    assert _hidden(tmp_path) == []


def test_zip_write_failure_leaves_nothing_behind(results, tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "write", broken)
    dest = tmp_path / "s.zarr.zip"
    _refused(_export("sharpness", dest, "--results", results), "No space left")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_failed_forced_zip_replacement_keeps_the_old_zip(results, tmp_path, monkeypatch):
    dest = tmp_path / "s.zarr.zip"
    assert _export("sharpness", dest, "--results", results).exit_code == 0
    before = dest.read_bytes()

    def broken(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "write", broken)
    _refused(_export("sharpness", dest, "--results", results, "--force"), "No space left")
    assert dest.read_bytes() == before
    assert _hidden(tmp_path) == []


def test_missing_dataset_lists_the_available_ones(results):
    (results / "channel.zarr").mkdir()
    (results / "channel.zarr" / "zarr.json").write_text("{}")
    dest = results.parent / "x.zarr"
    _refused(_export("escape", dest, "--results", results), "escape", "channel, sharpness")
    assert not dest.exists()


def test_missing_results_directory_is_one_line(tmp_path):
    _refused(_export("escape", tmp_path / "x.zarr", "--results", tmp_path / "nope"), "nope")


# --- S3 (a real S3-compatible server: moto in server mode on 127.0.0.1) -------------------------

KEY, SECRET = "testing-key", "testing-secret"
# moto's import and server start and the uploads cost about 20 CPU-s: the slow tier
# (`make test-slow`, which CI runs) holds them.
S3_TIER = pytest.mark.slow


@pytest.fixture(scope="module")
def s3_endpoint():
    pytest.importorskip("s3fs", reason="S3 export needs s3fs (pip install s3fs)")
    server_mod = pytest.importorskip(
        "moto.server", reason="the S3 tests need moto in server mode (pip install 'moto[server]')"
    )
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch, tmp_path):
    """A fresh bucket; the environment a user would set (credentials, endpoint) for the CLI."""
    import s3fs

    for var in [v for v in os.environ if v.startswith(("AWS_", "FSSPEC_S3"))]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    options = {"endpoint_url": s3_endpoint, "key": KEY, "secret": SECRET}
    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    bucket = f"sweeplab-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    s3fs.S3FileSystem.clear_instance_cache()  # the CLI must not reuse another test's client
    yield type("S3", (), {"fs": fs, "bucket": bucket, "options": options})
    s3fs.S3FileSystem.clear_instance_cache()


def _keys(s3, prefix):
    s3.fs.invalidate_cache()
    return sorted(k.split("/", 1)[1] for k in s3.fs.find(f"{s3.bucket}/{prefix}"))


def _open_s3(url, options):
    """What a colleague runs: plain xarray with storage_options, no sweeplab, no environment."""
    saved = {v: os.environ.pop(v) for v in list(os.environ) if v.startswith("AWS_")}
    try:
        return xr.open_zarr(url, storage_options=options).load()
    finally:
        os.environ.update(saved)


@S3_TIER
def test_s3_export_round_trips_with_consolidated_metadata(results, s3):
    url = f"s3://{s3.bucket}/shared/sharpness.zarr"
    result = _export("sharpness", url, "--results", results)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == url
    _check_copy(_open_s3(url, s3.options), results)
    meta = json.loads(s3.fs.cat_file(f"{s3.bucket}/shared/sharpness.zarr/zarr.json"))
    assert set(_source(results).variables) <= set(meta["consolidated_metadata"]["metadata"])
    group = zarr.open_consolidated(url, storage_options=s3.options, zarr_format=3)
    assert group.attrs["sweeplab_version"]
    assert all(k.startswith("shared/sharpness.zarr/") for k in _keys(s3, ""))


@S3_TIER
def test_s3_root_metadata_is_written_last(results, s3, monkeypatch):
    import s3fs

    events = []
    original = s3fs.S3FileSystem._put_file

    async def recording(self, lpath, rpath, *args, **kwargs):
        events.append(("start", rpath))
        out = await original(self, lpath, rpath, *args, **kwargs)
        events.append(("end", rpath))
        return out

    monkeypatch.setattr(s3fs.S3FileSystem, "_put_file", recording)
    url = f"s3://{s3.bucket}/s.zarr"
    assert _export("sharpness", url, "--results", results).exit_code == 0
    root = f"{s3.bucket}/s.zarr/zarr.json"
    assert events[-2:] == [("start", root), ("end", root)]
    assert len(events) == 2 * len(_keys(s3, "s.zarr"))


@S3_TIER
def test_s3_failed_upload_removes_what_it_wrote(results, s3, monkeypatch):
    import s3fs

    original = s3fs.S3FileSystem._put_file
    calls = []

    async def flaky(self, lpath, rpath, *args, **kwargs):
        calls.append(rpath)
        if len(calls) == 5:
            raise PermissionError("Access Denied")
        return await original(self, lpath, rpath, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_put_file", flaky)
    _refused(
        _export("sharpness", f"s3://{s3.bucket}/s.zarr", "--results", results), "Access Denied"
    )
    assert _keys(s3, "") == []


@S3_TIER
def test_s3_refuses_a_prefix_holding_objects_even_with_force_unless_sweeplab(results, s3):
    s3.fs.pipe(f"{s3.bucket}/shared/s.zarr/notes.txt", b"precious")
    url = f"s3://{s3.bucket}/shared/s.zarr"
    _refused(_export("sharpness", url, "--results", results), "already holds", "--force")
    _refused(_export("sharpness", url, "--results", results, "--force"), "not a sweeplab")
    assert _keys(s3, "") == ["shared/s.zarr/notes.txt"]
    s3.fs.pipe(f"{s3.bucket}/obj.zarr", b"an object, not a prefix")
    _refused(_export("sharpness", f"s3://{s3.bucket}/obj.zarr", "--results", results, "--force"))
    assert s3.fs.cat_file(f"{s3.bucket}/obj.zarr") == b"an object, not a prefix"


@S3_TIER
def test_s3_force_replaces_a_sweeplab_store(results, other_template, s3):
    url = f"s3://{s3.bucket}/s.zarr"
    assert _export("sharpness", url, "--results", results).exit_code == 0
    first = _keys(s3, "")
    _refused(_export("sharpness", url, "--results", other_template), "already holds")
    result = _export("sharpness", url, "--results", other_template, "--force")
    assert result.exit_code == 0, result.output
    _check_copy(_open_s3(url, s3.options), other_template)
    assert _keys(s3, "") == first  # same layout: no stale objects of the old store


@S3_TIER
def test_s3_force_refuses_a_sweeplab_store_with_foreign_objects(results, s3):
    url = f"s3://{s3.bucket}/s.zarr"
    assert _export("sharpness", url, "--results", results).exit_code == 0
    s3.fs.pipe(f"{s3.bucket}/s.zarr/README.txt", b"mine")
    before = _keys(s3, "")
    _refused(_export("sharpness", url, "--results", results, "--force"), "README.txt")
    assert _keys(s3, "") == before


@S3_TIER
@pytest.mark.parametrize("dest", ["s3://{bucket}", "s3://{bucket}/", "s3://{bucket}/s.zarr.zip",
                                  "s3://no-such-bucket-{bucket}/s.zarr"])  # fmt: skip
def test_s3_bad_destinations_are_one_line(results, s3, dest):
    _refused(_export("sharpness", dest.format(bucket=s3.bucket), "--results", results))
    assert _keys(s3, "") == []


@S3_TIER
def test_s3_without_credentials_is_one_line(results, s3, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata probing
    _refused(_export("sharpness", f"s3://{s3.bucket}/s.zarr", "--results", results), "credentials")
    assert _keys(s3, "") == []


def test_export_does_not_use_the_process_default_dask_scheduler(results, tmp_path):
    """The store is loaded with numpy: a dask default scheduler that never answers (as a
    distributed Client left behind by a closed cluster: a full-suite run hung there) or fails
    is never asked."""
    import dask

    def refuse(*args, **kwargs):
        raise AssertionError("export computed through the dask default scheduler")

    with dask.config.set(scheduler=refuse):
        result = _export("sharpness", tmp_path / "s.zarr", "--results", results)
    assert result.exit_code == 0, result.output
    xr.testing.assert_equal(
        xr.open_zarr(tmp_path / "s.zarr").load(), xr.open_zarr(results / "sharpness.zarr").load()
    )
