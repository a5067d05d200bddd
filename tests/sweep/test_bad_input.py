"""Bad input gets one clear line naming the key and the allowed range, and nothing is written.

Hardening issue items 9 (non-finite numbers), 10 (memory guards), 11 (CLI errors), 12 (names:
geometry names; damaged or edited plan files, which replaced block names as what a block job
is given) and 13 (run-block with invalid settings).
"""

import copy
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from sweeplab.cli import main
from sweeplab.sweep import plan, validate_config
from sweeplab.sweep.experiments import REGISTRY

NAN, INF = float("nan"), float("inf")

SHARP = {
    "depth": [3], "width": [4], "d_io": [2], "family": ["balanced"], "seeds": 2,
    "gauge_spread": 0.5, "lanczos_tol": 1e-12, "dense_max_params": 500,
}  # fmt: skip
ESC = {
    "depth": [4], "width": [1], "c": [0.9, 1.2], "radius": [1e-9], "seeds": 1,
    "escape_radius": 1e-3, "max_steps": 100, "loss_tol": 1e-20,
}  # fmt: skip
CHAN = {
    "geometry": {"paper": {"tx": [0, 0, 10], "rx": [10, 0, 0], "radius": 5}},
    "wall": True, "D": [79.4], "dt": [1e-3], "correction": ["bridge"], "seed": [0],
    "n_molecules": 2000, "t_end": 0.5, "bin_width": 0.05, "batch_size": 1000,
}  # fmt: skip
SECTIONS = {"sharpness": SHARP, "escape": ESC, "channel": CHAN}


def config(experiment, **changes):
    section = copy.deepcopy(SECTIONS[experiment])
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".", 1)
            section[outer][inner] = value
        else:
            section[key] = value
    return {"experiments": [experiment], experiment: section}


def plan_file(tmp_path, experiment="sharpness", section=None, **plan_kw):
    """The plan file of the one block the planner makes of ``section`` (in tmp_path/plans)."""
    section = SECTIONS[experiment] if section is None else section
    p = plan(experiment, section, tmp_path / "blocks" / experiment, **plan_kw)
    (path,) = p.write_plan_files(tmp_path / "plans")
    return path


def test_the_base_configs_are_valid():
    for experiment in SECTIONS:
        validate_config(config(experiment))


def test_seeds_per_block_is_gone_from_the_schema():
    """Blocks are packed by cost now: the old chunking key is refused, naming it."""
    from sweeplab.sweep.configcheck import validate_section

    with pytest.raises(ValueError, match=r"'seeds_per_block' was unexpected"):
        validate_section("sharpness", {**SHARP, "seeds_per_block": 2})


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
        match=r"sharpness point .*width=100000 .*needs about .* GiB "
        r"\(100 N \+ 4 d_io\^4 \(\+ 3 N\^2 dense\) floats\); "
        r"allowed: at most 1\.95 GiB per point \(mem_mb = 4000",
    ):
        validate_config(config("sharpness", width=[100000]))  # fmt: skip
    with pytest.raises(ValueError, match=r"needs about .* GiB \(1000000000 batches .*allowed"):
        validate_config(config("channel", n_molecules=1e12))
    with pytest.raises(ValueError, match=r"escape point .*width=300 .*needs about"):
        validate_config(config("escape", width=[300]))


def test_memory_estimates_bound_the_measured_peak():
    """The estimates are upper bounds of tracemalloc's peak for a point (not a timing test)."""
    import tracemalloc

    from sweeplab.sweep.experiments.sharpness import sharpness_point

    exp = REGISTRY["sharpness"]
    # a dense point of 640 parameters (need/peak about 1.6, as at 2,560 parameters)
    section = dict(SHARP, width=[20], d_io=[6], dense_max_params=4000)
    settings = exp.settings(section)
    columns = {"depth": np.array([3]), "width": np.array([20]), "dio": np.array([6]),
               "family": np.array(["balanced"], dtype=object), "seed": np.array([0])}  # fmt: skip
    need, _ = exp.point_memory(columns, settings)
    sharpness_point(2, 2, 1, "balanced", 0, settings)  # the lazy imports, untraced
    tracemalloc.start()
    try:
        sharpness_point(3, 20, 6, "balanced", 0, settings)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < need[0] < 10 * peak, (peak, need[0])


# --- item 12: geometry names, plan files --------------------------------------------------
def test_geometry_names_are_fully_matched_and_block_names_bounded(tmp_path):
    bad = {"paper\n": CHAN["geometry"]["paper"]}
    with pytest.raises(ValueError, match=r"'paper\\n'.*allowed: letters, digits"):
        validate_config(config("channel", geometry=bad))
    # a block's name is a hash of its points' keys: a long geometry name cannot lengthen it
    long = {"g" * 300: CHAN["geometry"]["paper"]}
    cfg = config("channel", geometry=long)
    validate_config(cfg)
    path = plan_file(tmp_path, "channel", cfg["channel"])
    assert re.fullmatch(r"b[0-9a-f]{24}", path.stem)


def invoke(*args, env=None):
    result = CliRunner().invoke(main, list(args), env=env)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    return result


def one_line_error(result):
    """The output is one ``Error:`` line (click's usage errors add their usage lines)."""
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    if result.exit_code == 1:
        assert lines == errors, result.output
    return " ".join(result.output.split())


def _edit(key, value):
    def edit(content):
        target = content
        *outer, last = key.split(".")
        for part in outer:
            target = target[part]
        target[last] = value

    return edit


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_edit("columns.depth.values", [4]), r"do not hash to its block name .*edited or damaged"),
        (_edit("columns.seed.index", [1, 1]), r"do not hash to its block name"),
        (_edit("settings.gauge_spread", 0.6), r"do not hash to its block name"),
        (_edit("salt", ["b" + "0" * 24]), r"do not hash to its block name"),
        (_edit("block", "b" + "0" * 24), r"do not hash to its block name"),
        (_edit("columns.family.values", ["bogus"]), r"do not hash to its block name"),
        (_edit("columns.depth.values", ["x"]), r"invalid literal for int\(\) .*'x'"),
        (_edit("format", "sweeplab-plan-0"),
         r"format 'sweeplab-plan-0' is not 'sweeplab-plan-1'"),
        (_edit("version", 0), r"planned for sharpness version 0, this sweeplab has version 2"),
        (_edit("experiment", "bogus"), r"unknown experiment 'bogus'"),
        (_edit("columns", None), r"malformed \(TypeError"),
        (_edit("settings", [1]), r"malformed \(TypeError"),
        (lambda c: c.pop("columns"), r"malformed \(KeyError: 'columns'\)"),
        ("truncated", r"cannot be read"),
        ("array", r"malformed \(AttributeError"),
        ("renamed", r"do not hash to its block name"),
        (_edit("columns.seed.index", [0, 5]), r"malformed \(IndexError"),
        (_edit("settings.gauge_spread", NAN), r"plan file .*nan"),
        (_edit("columns.seed.index", [0]), r"plan file .*: malformed"),
    ],
)  # fmt: skip
def test_run_block_refuses_a_damaged_or_edited_plan_file_and_writes_nothing(
    tmp_path, damage, message
):
    path = plan_file(tmp_path)
    content = json.loads(path.read_text())
    out = tmp_path / "blocks" / "sharpness" / f"{path.stem}.zarr.zip"
    if damage == "truncated":
        path.write_text(path.read_text()[:-40])
    elif damage == "array":
        path.write_text("[1]")
    elif damage == "renamed":  # a valid plan under another block's name
        other = path.with_name(f"b{'1' * 24}.json")
        path.rename(other)
        path, out = other, out.with_name(f"{other.stem}.zarr.zip")
    else:
        damage(content)
        path.write_text(json.dumps(content))
    before = path.read_bytes()
    result = invoke("run-block", str(path), "--out", str(out))
    assert result.exit_code == 1, result.output
    text = one_line_error(result)
    assert f"plan file {path}" in text and re.search(message, text), text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plans"]  # no blocks dir either
    assert path.read_bytes() == before


def test_run_block_out_must_be_the_plans_block(tmp_path):
    path = plan_file(tmp_path)
    out = tmp_path / "blocks" / f"b{'2' * 24}.zarr.zip"
    result = invoke("run-block", str(path), "--out", str(out))
    assert result.exit_code == 1
    text = one_line_error(result)
    assert f"must be named {path.stem}.zarr.zip (the plan's block)" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plans"]


# --- item 13: run-block with invalid settings: one line, nothing written --------------------
# The planner does not validate (the workflow validates the config first): a plan made from an
# invalid section is what a block job given invalid settings sees.
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"gauge_spread": None}, r"'gauge_spread' is a required property"),
        ({"gauge_spread": -1}, r"sharpness\.gauge_spread: -1 is less than the minimum of 0"),
        ({"seeds_per_block": 2}, r"'seeds_per_block' was unexpected"),
    ],
)  # fmt: skip
def test_run_block_with_invalid_settings_exits_1_and_writes_nothing(tmp_path, changes, message):
    section = {**SHARP, **changes}
    section = {k: v for k, v in section.items() if v is not None}
    path = plan_file(tmp_path, section=section)
    out = tmp_path / "blocks" / "sharpness" / f"{path.stem}.zarr.zip"
    result = invoke("run-block", str(path), "--out", str(out))
    assert result.exit_code == 1, result.output
    text = one_line_error(result)
    assert re.search(message, text), text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plans"]


def test_a_non_finite_setting_is_refused_before_any_plan_file(tmp_path):
    """The workflow validates the config (naming the key) before it plans; the planner itself
    cannot key a point with a non-finite setting either, so no plan file is written."""
    section = {**SHARP, "gauge_spread": NAN}
    with pytest.raises(ValueError, match=r"sharpness\.gauge_spread = nan; allowed"):
        validate_config({"experiments": ["sharpness"], "sharpness": section})
    with pytest.raises(ValueError, match=r"must be numbers \(finite, or ±inf\), got nan"):
        plan("sharpness", section, tmp_path / "blocks").write_plan_files(tmp_path / "plans")
    assert list(tmp_path.iterdir()) == []


def test_run_block_refuses_a_channel_point_too_big_for_memory(tmp_path):
    section = {**CHAN, "n_molecules": 1e12}
    with pytest.raises(ValueError, match=r"a block holding it alone needs about"):
        plan("channel", section, tmp_path / "none")  # the planner refuses it first
    # planned with a larger block bound, run-block still refuses the point
    path = plan_file(tmp_path, "channel", section, block_mem_mb=1e12)
    out = tmp_path / "blocks" / "channel" / f"{path.stem}.zarr.zip"
    result = invoke("run-block", str(path), "--out", str(out))
    assert result.exit_code == 1
    assert "needs about" in one_line_error(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plans"]


# --- item 11: one line through click for every CLI error ------------------------------------
def test_bad_dask_environment_is_a_usage_error(tmp_path):
    path = plan_file(tmp_path)
    out = tmp_path / "blocks" / f"{path.stem}.zarr.zip"
    result = invoke("run-block", str(path), "--out", str(out), env={"SWEEPLAB_DASK": "{bad"})
    assert result.exit_code == 2 and "--dask: not valid JSON" in result.output
    one_line_error(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plans"]


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
    text = one_line_error(result)
    assert f"sharpness: 2 of 2 point(s) are in no block of {tmp_path / 'blocks'}" in text
    assert "(first: {'depth': 3, 'width': 4, 'dio': 2, 'family': 'balanced', 'seed': 0})" in text
    assert "snakemake" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks"]
    assert list((tmp_path / "blocks").iterdir()) == []


def test_aggregate_with_invalid_settings_is_a_usage_error_in_one_line(tmp_path):
    result = invoke("aggregate", "channel", "--settings", "{}", "--blocks-dir", str(tmp_path),
                    "--out", str(tmp_path / "agg.zarr"))  # fmt: skip
    assert result.exit_code == 2 and "'geometry' is a required property" in result.output
    assert result.output.strip().splitlines() == [
        "Error: Invalid value for --settings: channel: 'geometry' is a required property"
    ]  # issue 22: no usage lines around it
    assert list(tmp_path.iterdir()) == []


# --- issue 22: schema errors are one line naming the key path, the value, what is allowed ---
@pytest.mark.parametrize(
    ("experiment", "changes", "message"),
    [
        ("sharpness", {"gauge_spread": -1},
         "sharpness.gauge_spread: -1 is less than the minimum of 0"),
        ("sharpness", {"family": ["bogus"]},
         "sharpness.family[0]: 'bogus' is not one of ['balanced', 'gauge', 'gaussian', "
         "'equal-norm', 'top-balanced']"),
        ("escape", {"max_steps": "many"}, "escape.max_steps: 'many' is not of type 'integer'"),
        ("sharpness", {"seeds_per_block": 2},
         "sharpness: Additional properties are not allowed ('seeds_per_block' was unexpected); "
         "allowed keys: depth, width, d_io, family, seeds, gauge_spread, lanczos_tol, "
         "dense_max_params"),
    ],
)  # fmt: skip
def test_schema_errors_are_one_line_naming_key_value_and_what_is_allowed(
    experiment, changes, message
):
    from sweeplab.sweep.configcheck import check_schema

    cfg = config(experiment, **changes)
    with pytest.raises(ValueError) as info:
        check_schema(cfg)  # what the workflow needs instead of Snakemake's 12-line message
    assert str(info.value) == message


def test_a_schema_error_stays_one_bounded_line_whatever_the_value():
    from sweeplab.sweep.configcheck import check_schema

    cfg = config("sharpness", depth=[{"a\nb": "x" * 5000}])
    with pytest.raises(ValueError) as info:
        check_schema(cfg)
    text = str(info.value)
    assert text.startswith("sharpness.depth[0]: ") and "\n" not in text and len(text) <= 500


# --- issue 22: run-block refuses a non-canonical name and unknown --dask keys, one line -----
@pytest.mark.parametrize("rename", ["upper", "padded", "suffix"])
def test_run_block_refuses_a_non_canonical_plan_or_out_name(tmp_path, monkeypatch, rename):
    import sweeplab.sweep.runner as runner

    monkeypatch.setattr(runner, "compute_block", lambda *a: pytest.fail("computed"))
    path = plan_file(tmp_path)
    name = {"upper": "B" + path.stem[1:].upper(), "padded": path.stem[0] + "0" + path.stem[1:],
            "suffix": path.stem + "~00-0"}[rename]  # fmt: skip
    other = path.with_name(f"{name}.json")
    other.write_bytes(path.read_bytes())
    blocks = tmp_path / "blocks"
    for plan_path, out in ((other, blocks / f"{name}.zarr.zip"),
                           (path, blocks / f"{name}.zarr.zip")):  # fmt: skip
        result = invoke("run-block", str(plan_path), "--out", str(out))
        text = one_line_error(result)
        assert result.exit_code == 1
        assert "do not hash to its block name" in text or "must be named" in text, text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plans"]


@pytest.mark.parametrize(
    ("dask", "message"),
    [
        ({"adress": "tcp://127.0.0.1:8786"},
         "dask: Additional properties are not allowed ('adress' was unexpected); allowed keys: "
         "address, scheduler_file, timeout, processes"),
        ({"processes": "yes"}, "dask.processes: 'yes' is not of type 'boolean'"),
        ({"timeout": 0}, "dask.timeout: 0 is less than or equal to the minimum of 0"),
    ],
)  # fmt: skip
def test_run_block_refuses_unknown_dask_keys_in_one_line(tmp_path, monkeypatch, dask, message):
    import sweeplab.sweep.runner as runner

    monkeypatch.setattr(runner, "compute_block", lambda *a: pytest.fail("computed"))
    path = plan_file(tmp_path)
    out = tmp_path / "blocks" / f"{path.stem}.zarr.zip"
    for args, env in (
        (["--dask", json.dumps(dask)], None),
        ([], {"SWEEPLAB_DASK": json.dumps(dask)}),
    ):
        result = invoke("run-block", str(path), "--out", str(out), *args, env=env)
        assert result.exit_code == 2
        assert result.output.strip().splitlines() == [f"Error: Invalid value for --dask: {message}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plans"]


def test_unknown_figure_is_a_usage_error(tmp_path):
    result = invoke("figures", "--out", str(tmp_path / "figs"), "bogus")
    assert result.exit_code == 2 and "'bogus' is not one of" in result.output
    assert not (tmp_path / "figs").exists()
