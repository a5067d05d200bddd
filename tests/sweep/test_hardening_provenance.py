"""Hardening issue, W1b and W2: settings other than the blocks', and provenance on every write.

W1b: ``aggregate`` with settings other than those the blocks were computed with must not
accept the blocks (a point's key hashes its settings: none of them is in a block), and writes
nothing. W2: an incremental update or extend rewrites the root attributes (the provenance,
``config`` among them), not only the chunks and the manifest.
"""

import shutil

import pytest
import zarr
from synth import SETTINGS, named, points_of, sharp_section, synthetic_block, write_blocks

from sweeplab.sweep import aggregate
from sweeplab.sweep.aggregate import MissingPointsError
from sweeplab.sweep.blockstore import write_block

SECTION = sharp_section(depth=(2, 3), family=("balanced",), seeds=4)


@pytest.fixture
def results(tmp_path):
    write_blocks(tmp_path / "blocks", SECTION)
    return tmp_path


def attrs(store):
    return dict(zarr.open_group(store, mode="r").attrs)


def test_blocks_of_other_settings_are_not_aggregated_and_nothing_is_written(results):
    other = {**SECTION, "dense_max_params": 500}
    assert SETTINGS["dense_max_params"] != 500
    with pytest.raises(MissingPointsError, match="16 of 16 point"):
        aggregate("sharpness", other, results / "blocks", results / "s.zarr")
    assert not (results / "s.zarr").exists()
    # and an aggregate of the blocks' own settings is left as it was
    aggregate("sharpness", SECTION, results / "blocks", results / "s.zarr", attrs={"config": "A"})
    before = sorted(p.name for p in (results / "s.zarr").rglob("*"))
    with pytest.raises(MissingPointsError):
        aggregate("sharpness", other, results / "blocks", results / "s.zarr")
    assert sorted(p.name for p in (results / "s.zarr").rglob("*")) == before
    assert attrs(results / "s.zarr")["config"] == "A"


def test_update_and_extend_rewrite_the_provenance(results):
    store, blocks = results / "s.zarr", results / "blocks"
    assert aggregate("sharpness", SECTION, blocks, store, attrs={"config": "A"}).mode == "rebuild"
    assert attrs(store)["config"] == "A"
    every = write_blocks(blocks, SECTION)
    name = named(every, depth=3, dio=2, seed=2)
    write_block(synthetic_block("sharpness", SECTION, points_of(every[name]), offset=1.0),
                blocks / f"{name}.zarr.zip")  # fmt: skip
    assert aggregate("sharpness", SECTION, blocks, store, attrs={"config": "B"}).mode == "update"
    assert attrs(store)["config"] == "B" and attrs(store)["experiment"] == "sharpness"
    wider = {**SECTION, "depth": [2, 3, 4]}
    write_blocks(blocks, wider)
    assert aggregate("sharpness", wider, blocks, store, attrs={"config": "C"}).mode == "extend"
    assert attrs(store)["config"] == "C"
    shutil.rmtree(store)
