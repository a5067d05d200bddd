"""The command line on real stores (click's test runner)."""

import json

from click.testing import CliRunner
from synth import named, points_of, sharp_section, synthetic_block, write_blocks

from sweeplab.cli import main
from sweeplab.sweep import aggregate
from sweeplab.sweep.blockstore import write_block


def test_info_lists_failed_points_of_an_aggregate_and_of_a_block(tmp_path, blocks_dir):
    section = sharp_section()
    blocks = write_blocks(blocks_dir, section)
    name = named(blocks, depth=3, dio=1, family="gaussian", seed=0)
    failed = synthetic_block("sharpness", section, points_of(blocks[name]), failed=[0, 1])
    write_block(failed, blocks_dir / f"{name}.zarr.zip")
    out = tmp_path / "sharpness.zarr"
    aggregate("sharpness", section, blocks_dir, out)
    for path in (out, blocks_dir / f"{name}.zarr.zip"):
        result = CliRunner().invoke(main, ["info", str(path)])
        assert result.exit_code == 0, result.output
        assert "failed points: 2" in result.output
        assert "RuntimeError: point 0 failed" in result.output
    assert "n_blocks: 24" in CliRunner().invoke(main, ["info", str(out)]).output
    block_info = CliRunner().invoke(main, ["info", str(blocks_dir / f"{name}.zarr.zip")]).output
    assert "dims: point=2" in block_info and f"block: {name}" in block_info


def test_aggregate_command_names_a_damaged_block(tmp_path, blocks_dir):
    section = sharp_section()
    write_blocks(blocks_dir, section)
    victim = sorted(blocks_dir.glob("*.zarr.zip"))[0]
    victim.write_bytes(b"not a zip")
    args = ["aggregate", "sharpness", "--settings", json.dumps(section), "--blocks-dir",
            str(blocks_dir), "--out", str(tmp_path / "agg.zarr")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert victim.name in result.output and "re-run `snakemake`" in result.output
    assert not (tmp_path / "agg.zarr").exists()
