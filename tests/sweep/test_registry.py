"""Everything that names experiments is derived from, or checked against, the registry."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from sweeplab import cli, plots
from sweeplab.sweep.experiments import EXPERIMENTS, REGISTRY

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_schema_enum_and_sections_match_the_registry():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["experiments"]["items"]["enum"] == list(EXPERIMENTS)
    top = {"experiments", "dask", "block_seconds", "block_mem_mb", "retry_failed"}
    assert {k for k in schema["properties"] if k not in top} == set(REGISTRY)
    for name, exp in REGISTRY.items():
        section = schema["properties"][name]
        for axis in exp.axes:  # every axis is a required key, or documents its default
            if axis.default is None:
                assert axis.key in section["required"], (name, axis.key)
            else:
                assert axis.key not in section["required"], (name, axis.key)
                assert section["properties"][axis.key]["x-default"] == list(axis.default)
            if axis.kind == "count":  # a count of values (seeds), no longer chunked per block
                assert section["properties"][axis.key]["type"] == "integer", (name, axis.key)
        assert "seeds_per_block" not in section["properties"], name
        assert section["additionalProperties"] is False, name


def test_cli_choices_match_the_registry():
    param = next(p for p in cli.main.commands["aggregate"].params if p.name == "experiment")
    assert list(param.type.choices) == list(EXPERIMENTS)
    # run-block names no experiment: its plan file does (checked against the registry there)
    params = [p.name for p in cli.main.commands["run-block"].params]
    assert "experiment" not in params and params[0] == "plan"
    # figure names are checked when the command runs (matplotlib is imported only then)
    result = CliRunner().invoke(cli.main, ["figures", "--out", "/nonexistent/x", "bogus"])
    assert result.exit_code == 2
    listed = result.output.split("is not one of", 1)[1]
    assert {f.name for e in REGISTRY.values() for f in e.figures} == set(
        re.findall(r"'(\w+)'", listed)
    )


def test_snakefile_rules_come_from_the_registry(tmp_path):
    (tmp_path / "config.yaml").write_text((REPO / ".test" / "config" / "config.yaml").read_text())
    proc = subprocess.run(
        [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--configfile", str(tmp_path / "config.yaml"), "--list-rules"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rules = set(proc.stdout.split())
    expected = {f"{e}_block" for e in EXPERIMENTS} | {f"figures_{e}" for e in EXPERIMENTS}
    assert expected | {"aggregate", "all", "default"} == rules


def test_slurm_profile_groups_every_block_rule():
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    groups = {item.split("=")[0] for item in profile["group-components"]}
    assert groups == {f"{e}_blocks" for e in EXPERIMENTS}
    # per-rule resources come from the experiment modules, not from the profile
    assert "set-resources" not in profile and "set-threads" not in profile
    mem_limit = int(profile["resources"][0].split("=")[1])
    for exp in REGISTRY.values():
        assert exp.threads <= profile["cores"] and exp.mem_mb <= mem_limit, exp.name


def test_plots_match_the_registry_and_read_only_stores():
    declared = {f.name: e.name for e in REGISTRY.values() for f in e.figures}
    assert {name: exp for name, (exp, _) in plots.FIGURES.items()} == declared
    for path in (REPO / "src" / "sweeplab" / "plots").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            assert not any("sweep" in n.split(".") for n in names), (path.name, names)


def test_every_variable_is_labelled():
    for exp in REGISTRY.values():
        dims = {a.dimension for a in exp.axes} | set(exp.point_dims)
        for name, var in exp.variables.items():
            assert var.units and var.long_name, (exp.name, name)
            assert set(var.dims) <= dims, (exp.name, name)
            if var.dtype == "int8":
                assert var.flags, (exp.name, name)
        assert {"status", "error"} <= set(exp.variables)
