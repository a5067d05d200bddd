"""Bad input gets one clear line naming the key and the allowed range, and nothing is written.

Hardening issue items 9 (non-finite numbers), 10 (memory guards), 11 (CLI errors), 12 (block
names) and 13 (run-block with invalid settings).
"""

import copy
import json

import pytest
from click.testing import CliRunner

from sweeplab.cli import main
from sweeplab.sweep import validate_config
from sweeplab.sweep.experiments import MAX_BLOCK_NAME, REGISTRY

NAN, INF = float("nan"), float("inf")

SHARP = {
    "depth": [3], "width": [4], "d_io": [2], "family": ["balanced"], "seeds": 2,
    "seeds_per_block": 2, "gauge_spread": 0.5, "lanczos_tol": 1e-12, "dense_max_params": 500,
}  # fmt: skip
ESC = {
    "depth": [4], "width": [1], "c": [0.9, 1.2], "radius": [1e-9], "seeds": 1,
    "seeds_per_block": 1, "escape_radius": 1e-3, "max_steps": 100, "loss_tol": 1e-20,
}  # fmt: skip
CHAN = {
    "geometry": {"paper": {"tx": [0, 0, 10], "rx": [10, 0, 0], "radius": 5}},
    "wall": True, "D": [79.4], "dt": [1e-3], "correction": ["bridge"], "seed": [0],
    "n_molecules": 2000, "t_end": 0.5, "bin_width": 0.05, "batch_size": 1000,
}  # fmt: skip
SECTIONS = {"sharpness": SHARP, "escape": ESC, "channel": CHAN}

SHARP_BLOCK = "depth~3_width~4_dio~2_family~balanced_seeds~0-1"
CHAN_BLOCK = "geometry~paper_D~79.4_dt~0.001_correction~bridge_seed~0"


def config(experiment, **changes):
    section = copy.deepcopy(SECTIONS[experiment])
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".", 1)
            section[outer][inner] = value
        else:
            section[key] = value
    return {"experiments": [experiment], experiment: section}


def test_the_base_configs_are_valid():
    for experiment in SECTIONS:
        validate_config(config(experiment))


# --- item 9: NaN and infinities are refused at validation, naming the key -------------------
@pytest.mark.parametrize(
    ("experiment", "key", "value", "message"),
    [
        ("escape", "escape_radius", NAN, r"escape\.escape_radius = nan; allowed: a finite num"),
        ("escape", "loss_tol", INF, r"escape\.loss_tol = inf; allowed: a finite number"),
        ("escape", "c", [NAN], r"escape\.c\[0\] = nan; allowed: a finite number > 0"),
        ("escape", "radius", [INF], r"escape\.radius\[0\] = inf; allowed: a finite number"),
        ("sharpness", "lanczos_tol", NAN, r"sharpness\.lanczos_tol = nan; allowed"),
        ("sharpness", "gauge_spread", -INF, r"sharpness\.gauge_spread = -inf; allowed"),
        ("channel", "dt", [NAN], r"channel\.dt\[0\] = nan; allowed: a finite number > 0"),
        ("channel", "t_end", INF, r"channel\.t_end = inf; allowed: a finite number > 0"),
        ("channel", "geometry.paper", {"tx": [0, 0, 10], "rx": [10, 0, 0], "radius": NAN},
         r"channel\.geometry\.paper\.radius = nan; allowed: a finite number"),
    ],
)  # fmt: skip
def test_non_finite_numbers_are_refused_naming_the_key(experiment, key, value, message):
    with pytest.raises(ValueError, match=message):
        validate_config(config(experiment, **{key: value}))


# --- item 10: points that cannot fit the job's memory are refused before running ------------
def test_a_point_too_big_for_the_job_memory_is_refused_with_estimate_and_limit():
    with pytest.raises(
        ValueError,
        match=r"width~100000.*needs about .* GiB .*N = 1\d{10} param.*"
        r"allowed: at most 1\.95 GiB per point \(mem_mb = 4000",
    ):
        validate_config(config("sharpness", width=[100000]))  # fmt: skip
    with pytest.raises(ValueError, match=r"needs about .* GiB \(1000000000 batches .*allowed"):
        validate_config(config("channel", n_molecules=1e12))
    with pytest.raises(ValueError, match=r"escape block .*width~300.*needs about"):
        validate_config(config("escape", width=[300]))


def test_memory_estimates_bound_the_measured_peak():
    """The estimates are upper bounds of tracemalloc's peak for a point (not a timing test)."""
    import tracemalloc

    from sweeplab.sweep.experiments.sharpness import sharpness_point

    exp = REGISTRY["sharpness"]
    section = dict(SHARP, width=[40], d_io=[12], dense_max_params=4000)
    block = exp.blocks(section)[0]
    settings = exp.block_settings(section, block)
    need, _ = exp.point_memory(block, settings)
    tracemalloc.start()
    try:
        sharpness_point(3, 40, 12, "balanced", 0, settings)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < need < 10 * peak


# --- item 12: block names -----------------------------------------------------------------
def test_geometry_names_are_fully_matched_and_block_names_bounded():
    bad = {"paper\n": CHAN["geometry"]["paper"]}
    with pytest.raises(ValueError, match=r"'paper\\n'.*allowed: letters, digits"):
        validate_config(config("channel", geometry=bad))
    long = {"g" * 300: CHAN["geometry"]["paper"]}
    with pytest.raises(
        ValueError, match=rf"has 3\d\d characters; allowed: at most {MAX_BLOCK_NAME}"
    ):
        validate_config(config("channel", geometry=long))


def invoke(*args, env=None):
    result = CliRunner().invoke(main, list(args), env=env)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    return result


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("depth~3.0_width~4_dio~2_family~balanced_seeds~0-1",
         r"depth~3\.0 is not canonical; expected depth~3"),
        ("depth~3_width~4_dio~2_family~balanced_seeds~3-1", r"'3-1' must be 'lo-hi'"),
        ("depth~3_width~4_dio~2_family~balanced_seeds~0", r"'0' must be 'lo-hi'"),
        ("depth~3_width~4_dio~2_family~bogus_seeds~0-1", r"'bogus' is not one of"),
        ("depth~03_width~4_dio~2_family~balanced_seeds~0-1", r"not canonical; expected 'depth~3"),
    ],
)  # fmt: skip
def test_run_block_refuses_bad_block_names_and_writes_nothing(tmp_path, block, message):
    out = tmp_path / "b.zarr.zip"
    result = invoke("run-block", "sharpness", block, "--settings",
                    json.dumps({k: SHARP[k] for k in ("gauge_spread", "lanczos_tol",
                                                      "dense_max_params")}),
                    "--out", str(out))  # fmt: skip
    assert result.exit_code == 2, result.output
    assert pytest.importorskip("re").search(message, result.output.replace("\n", " "))
    assert list(tmp_path.iterdir()) == []


# --- item 13: run-block with invalid settings is a usage error, nothing written -------------
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("{}", r"'gauge_spread' is a required property"),
        ('{"gauge_spread": -1, "lanczos_tol": 1e-12, "dense_max_params": 5}', r"gauge_spread"),
        ('{"gauge_spread": NaN, "lanczos_tol": 1e-12, "dense_max_params": 5}',
         r"sharpness\.gauge_spread = nan; allowed"),
        ("{bad", r"--settings: not valid JSON"),
        ("[1]", r"--settings: must be a JSON object"),
    ],
)  # fmt: skip
def test_run_block_with_invalid_settings_exits_2_and_writes_nothing(tmp_path, settings, message):
    out = tmp_path / "b.zarr.zip"
    result = invoke("run-block", "sharpness", SHARP_BLOCK, "--settings", settings,
                    "--out", str(out))  # fmt: skip
    assert result.exit_code == 2, result.output
    assert pytest.importorskip("re").search(message, result.output), result.output
    assert list(tmp_path.iterdir()) == []


def test_run_block_refuses_a_channel_point_too_big_for_memory(tmp_path):
    settings = {k: v for k, v in CHAN.items() if k not in ("D", "dt", "correction", "seed")}
    settings["n_molecules"] = 1e12
    result = invoke("run-block", "channel", CHAN_BLOCK, "--settings", json.dumps(settings),
                    "--out", str(tmp_path / "b.zarr.zip"))  # fmt: skip
    assert result.exit_code == 2 and "needs about" in result.output
    assert list(tmp_path.iterdir()) == []


# --- item 11: one line through click for every CLI error ------------------------------------
def test_bad_dask_environment_is_a_usage_error(tmp_path):
    settings = json.dumps({k: SHARP[k] for k in ("gauge_spread", "lanczos_tol",
                                                 "dense_max_params")})  # fmt: skip
    result = invoke("run-block", "sharpness", SHARP_BLOCK, "--settings", settings, "--out",
                    str(tmp_path / "b.zarr.zip"), env={"SWEEPLAB_DASK": "{bad"})  # fmt: skip
    assert result.exit_code == 2 and "--dask: not valid JSON" in result.output
    assert list(tmp_path.iterdir()) == []


def test_info_on_a_file_that_is_not_a_store(tmp_path):
    path = tmp_path / "passwd"
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    result = invoke("info", str(path))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        line for line in result.output.strip().splitlines() if line.startswith("Error:")
    ]
    assert str(path) in result.output and "not a readable zarr store" in result.output


def test_aggregate_with_no_blocks_names_them_and_writes_nothing(tmp_path):
    (tmp_path / "blocks").mkdir()
    result = invoke("aggregate", "sharpness", "--settings", json.dumps(SHARP), "--blocks-dir",
                    str(tmp_path / "blocks"), "--out", str(tmp_path / "agg.zarr"))  # fmt: skip
    assert result.exit_code == 1
    assert "sharpness: 1 of 1 block(s) missing" in result.output
    assert SHARP_BLOCK in result.output and "snakemake" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks"]


def test_aggregate_with_invalid_settings_is_a_usage_error(tmp_path):
    result = invoke("aggregate", "channel", "--settings", "{}", "--blocks-dir", str(tmp_path),
                    "--out", str(tmp_path / "agg.zarr"))  # fmt: skip
    assert result.exit_code == 2 and "'geometry' is a required property" in result.output
    assert list(tmp_path.iterdir()) == []


def test_unknown_figure_is_a_usage_error(tmp_path):
    result = invoke("figures", "--out", str(tmp_path / "figs"), "bogus")
    assert result.exit_code == 2 and "'bogus' is not one of" in result.output
    assert not (tmp_path / "figs").exists()
