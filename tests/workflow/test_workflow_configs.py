"""End-to-end without the shared tiny run: config checks, one-experiment configs, `.test/`,
an external scheduler, a killed run (each test runs the real snakemake CLI in its own directory)."""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml
from wfutil import BIN, REPO, TINY, lint_findings, planned_jobs, snakemake, write_config

from sweeplab import dmf
from sweeplab.sweep import open_block, open_dataset, plan
from sweeplab.sweep.experiments import (
    EXPERIMENTS,
    sharpness_minimizer,
    validate_config,
)

BAD_CONFIGS = [
    ({"escape": {"stepsize": 3}}, "stepsize"),
    ({"escape": {"max_steps": "many"}}, "many"),
    (
        {"channel": {"geometry": {"x": {"tx": [0, 0, 10], "rx": [4, 0, 0], "radius": 5}}}},
        "channel.geometry.x",
    ),
    ({"sharpness": {"depth": []}}, "[]"),
    ({"sharpness": {"seeds_per_block": 2}}, "seeds_per_block"),
]


@pytest.mark.parametrize(("override", "needle"), BAD_CONFIGS)
def test_bad_config_is_refused_in_one_line_by_the_snakefiles_checks(tmp_path, override, needle):
    """The checks the Snakefile runs (schema, then the registry's), in process, every case."""
    from sweeplab.sweep.configcheck import check_schema

    cfg = yaml.safe_load(write_config(tmp_path, **override).read_text())
    with pytest.raises(ValueError) as info:
        check_schema(cfg)
        validate_config(cfg)
    text = str(info.value)
    assert needle in text and "\n" not in text, text


def test_bad_config_stops_before_any_job(tmp_path):
    """Through snakemake: a schema error and a registry (geometry) error; the other cases take
    the schema's path (previous test)."""
    for i, (override, needle) in enumerate([BAD_CONFIGS[0], BAD_CONFIGS[2]]):
        wd = tmp_path / f"c{i}"
        wd.mkdir()
        write_config(wd, **override)
        proc = snakemake(wd, "-n", check=False)
        assert proc.returncode != 0
        out = proc.stdout + proc.stderr
        assert needle in out, (override, proc.stderr[-2000:])
        assert not (wd / "results").exists()
        # one line naming the key and the value (not jsonschema's report through validate())
        assert "Failed validating" not in out and "On instance" not in out, out[-2000:]
        (line,) = [x for x in out.splitlines() if needle in x]
        assert "invalid config:" in line, line


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_one_experiment_config_needs_only_its_section(tmp_path, experiment):
    tiny = yaml.safe_load(TINY.read_text())
    cfg = {"experiments": [experiment], experiment: tiny[experiment]}  # no other section, no dask
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    validate_config(cfg)
    jobs = planned_jobs(snakemake(tmp_path, "-n"))
    blocks = plan(experiment, tiny[experiment], tmp_path / "results" / "blocks" / experiment)
    assert len(blocks.blocks) >= 1
    assert jobs == {
        f"{experiment}_block": len(blocks.blocks),
        "aggregate": 1,
        f"figures_{experiment}": 1,  # one job draws all the experiment's figures
        "default": 1,
    }
    lint = snakemake(tmp_path, "--lint", check=False)  # as clean as with every experiment
    assert lint_findings(lint) <= {"* Specify a conda environment or container for each rule.:"}


def test_selected_experiment_without_its_section_is_refused(tmp_path):
    tiny = yaml.safe_load(TINY.read_text())
    cfg = {"experiments": ["escape", "channel"], "escape": tiny["escape"]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "'channel' is a required property" in proc.stdout + proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "results").exists()
    with pytest.raises(ValueError, match=r"experiments selects 'channel' but the config has no"):
        validate_config(cfg)


def test_dot_test_directory_runs_the_workflow_snakefile(tmp_path):
    """As the workflow catalogue's CI: `snakemake -s workflow/Snakefile --directory .test`."""
    work = tmp_path / ".test"
    shutil.copytree(REPO / ".test", work, ignore=shutil.ignore_patterns("results", ".snakemake"))
    proc = snakemake(work, "-n", configfile=False, snakefile=REPO / "workflow" / "Snakefile")
    plan = planned_jobs(proc)
    assert plan.pop("all") == 1 and plan.pop("aggregate") == len(EXPERIMENTS)
    assert set(plan) == {f"{e}_block" for e in EXPERIMENTS} | {f"figures_{e}" for e in EXPERIMENTS}
    assert "results/blocks/channel/" in proc.stdout + proc.stderr


def test_documented_retry_failed_flag_is_accepted(tmp_path):
    write_config(tmp_path)
    snakemake(tmp_path, "-n", "--config", "retry_failed=true")


def test_external_scheduler(tmp_path):
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    sched = subprocess.Popen(
        [
            str(BIN / "dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(sched_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    worker = None
    try:
        for _ in range(200):
            if sched_file.exists() and sched_file.stat().st_size > 0:
                break
            time.sleep(0.1)
        worker = subprocess.Popen(
            [
                str(BIN / "dask"),
                "worker",
                "--scheduler-file",
                str(sched_file),
                "--nthreads",
                "1",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        section = {**yaml.safe_load(TINY.read_text())["sharpness"], "family": ["gaussian"]}
        (path,) = plan("sharpness", section, tmp_path / "blocks").write_plan_files(
            tmp_path / "plans"
        )
        out = tmp_path / "blocks" / f"{path.stem}.zarr.zip"
        proc = subprocess.run(
            [str(BIN / "sweeplab"), "run-block", str(path), "--out", str(out)],
            env={**env, "DASK_SCHEDULER_ADDRESS": address},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert f"connecting to Dask scheduler at {address}" in proc.stderr
        ds = open_block(out)
        assert ds.seed.values.tolist() == [0, 1] and (ds.family == "gaussian").all()
        for i, seed in enumerate(ds.seed.values.tolist()):
            ws, _ = sharpness_minimizer(3, 4, 2, "gaussian", seed, 0.5)
            assert float(ds.exact[i]) == dmf.sharpness(ws)
    finally:
        for p in (worker, sched):
            if p is not None:
                p.send_signal(signal.SIGINT)
        for p in (worker, sched):
            if p is not None:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()


@pytest.mark.slow
def test_killed_run_resumes_without_half_written_stores(tmp_path):
    write_config(
        tmp_path,
        channel={"n_molecules": 60000, "dt": [1e-4, 1e-3], "correction": ["bridge", "none"]},
    )
    cmd_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [
            str(BIN / "snakemake"),
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(tmp_path),
            "--configfile",
            str(tmp_path / "config.yaml"),
            "--cores",
            "2",
        ],
        env=cmd_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    blocks = tmp_path / "results" / "blocks"
    deadline = time.time() + 300
    while time.time() < deadline:
        done = list(blocks.glob("*/*.zarr.zip")) if blocks.exists() else []
        if len(done) >= 2:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # a crash: no clean-up handlers run
    proc.wait()
    for store in blocks.glob("*/*.zarr.zip"):  # every visible store is complete
        ds = open_block(store)
        assert "status" in ds
    snakemake(tmp_path, "--unlock")
    snakemake(tmp_path)
    ch = open_dataset(tmp_path / "results" / "channel.zarr").load()
    assert int(ch.status.sum()) == 0 and ch.fraction_sim.notnull().all()
    assert not list(blocks.glob("*/.*.tmp-*"))
    assert not list((tmp_path / "results").glob(".*.tmp-*"))


def test_a_configfile_replaces_the_default_config_and_does_not_merge_into_it(tmp_path):
    """`--configfile other.yaml` plans other.yaml's grid only: no named geometry of the default
    `config/config.yaml` joins it (Snakemake merges a workflow's `configfile:` with the command
    line's files recursively, so the Snakefile loads the default only without --configfile)."""
    tiny = yaml.safe_load(TINY.read_text())
    tiny = {"experiments": ["channel"], "channel": tiny["channel"]}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(tiny))
    channel = dict(tiny["channel"])
    (name, spec), *_ = channel["geometry"].items()
    channel["geometry"] = {"only": spec}
    assert "only" not in tiny["channel"]["geometry"] and name in tiny["channel"]["geometry"]
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"experiments": ["channel"], "channel": channel}))
    snakemake(tmp_path, "-n", config=other)
    plans = list((tmp_path / "results" / "plans" / "channel").glob("*.json"))
    assert plans
    names = {g for p in plans for g in json.loads(p.read_text())["entries"]["geometry"]}
    assert names == {"only"}
    # without --configfile the default is read, and --config applies on top of it
    shutil.rmtree(tmp_path / "results")
    proc = snakemake(tmp_path, "-n", "--config", "retry_failed=true", configfile=False)
    jobs = planned_jobs(proc)
    assert jobs["channel_block"] >= 1 and "aggregate" in jobs
