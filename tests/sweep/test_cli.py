"""The command line on real stores (click's test runner)."""

from click.testing import CliRunner
from synth import sharp_section, synthetic_block, write_blocks

from sweeplab.cli import main
from sweeplab.sweep import aggregate
from sweeplab.sweep.blockstore import write_block
from sweeplab.sweep.experiments import REGISTRY


def test_info_lists_failed_points_of_an_aggregate_and_of_a_block(tmp_path, blocks_dir):
    section = sharp_section()
    write_blocks(blocks_dir, section)
    name = "depth~3_width~4_dio~1_family~gaussian_seeds~0-1"
    block = REGISTRY["sharpness"].parse_block(name)
    write_block(synthetic_block(block, failed=[0, 1]), blocks_dir / f"{name}.zarr.zip")
    out = tmp_path / "sharpness.zarr"
    aggregate("sharpness", section, blocks_dir, out)
    for path in (out, blocks_dir / f"{name}.zarr.zip"):
        result = CliRunner().invoke(main, ["info", str(path)])
        assert result.exit_code == 0, result.output
        assert "failed points: 2" in result.output
        assert "RuntimeError: point 0 failed" in result.output
    assert "n_blocks: 24" in CliRunner().invoke(main, ["info", str(out)]).output


def test_aggregate_command_names_a_damaged_block(tmp_path, blocks_dir):
    import json

    section = sharp_section()
    write_blocks(blocks_dir, section)
    victim = next(blocks_dir.iterdir())
    victim.write_bytes(b"not a zip")
    args = ["aggregate", "sharpness", "--settings", json.dumps(section), "--blocks-dir",
            str(blocks_dir), "--out", str(tmp_path / "agg.zarr")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert victim.name in result.output and "snakemake --force" in result.output
    assert not (tmp_path / "agg.zarr").exists()
