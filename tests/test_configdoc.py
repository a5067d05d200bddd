"""config/README.md is generated from the config schema, which documents every key."""

import copy
import re
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from sweeplab import configdoc
from sweeplab.sweep.experiments import EXPERIMENTS, REGISTRY, validate_config
from sweeplab.sweep.experiments.channel import DEFAULT_SYMBOL_TIME

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / configdoc.SCHEMA
README = REPO / configdoc.OUTPUT
SCHEMA = configdoc.load_schema(SCHEMA_PATH)
TINY = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
#: Axis.units (CF text) -> how the schema descriptions write them
UNITS = {"um^2/s": "[µm²/s]", "s": "[s]", "um": "[µm]", "um/s": "[µm/s]"}


def test_config_readme_is_up_to_date():
    expected = configdoc.render(SCHEMA)
    current = README.read_text(encoding="utf-8") if README.exists() else ""
    assert current == expected, (
        f"{configdoc.OUTPUT} is out of date with {configdoc.SCHEMA}: regenerate it with "
        f"`{configdoc.REGENERATE}` (from the repository root) and commit the result"
    )


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    out = tmp_path / "README.md"
    args = ["--schema", str(SCHEMA_PATH), "--out", str(out)]
    assert configdoc.main([*args, "--check"]) == 1
    assert configdoc.REGENERATE in capsys.readouterr().err
    assert configdoc.main(args) == 0
    assert configdoc.main([*args, "--check"]) == 0
    assert out.read_text(encoding="utf-8") == README.read_text(encoding="utf-8")


def _subschemas(node, path):
    """Every (path, schema) of a property, an additionalProperties entry or a definition."""
    for key, child in node.get("properties", {}).items():
        yield f"{path}.{key}", child
        yield from _subschemas(child, f"{path}.{key}")
    entry = node.get("additionalProperties")
    if isinstance(entry, dict):
        yield f"{path}.<name>", entry
        yield from _subschemas(entry, f"{path}.<name>")


def test_every_property_and_definition_has_a_description():
    assert SCHEMA.get("description")
    found = list(_subschemas(SCHEMA, "config"))
    found += [(f"definitions.{k}", v) for k, v in SCHEMA["definitions"].items()]
    assert len(found) > 40
    missing = [path for path, node in found if not str(node.get("description", "")).strip()]
    assert not missing, f"schema entries without a description: {missing}"


def test_descriptions_name_grid_axes_and_their_units():
    for name, exp in REGISTRY.items():
        props = SCHEMA["properties"][name]["properties"]
        for axis in exp.axes:
            text = " ".join(props[axis.key]["description"].split())
            assert text.startswith("Grid axis"), (name, axis.key)
            if axis.units != "1":
                assert UNITS[axis.units] in text, (name, axis.key, axis.units)
        grid = {a.key for a in exp.axes}
        for key, node in props.items():  # and nothing else claims to be one
            assert node["description"].startswith("Grid axis") == (key in grid), (name, key)


def test_documented_absent_values_match_the_code():
    channel = SCHEMA["properties"]["channel"]["properties"]
    assert channel["symbol_time"]["x-default"] == list(DEFAULT_SYMBOL_TIME)
    # documentation-only defaults must never be written into the config by Snakemake's validate
    assert "default" not in channel["symbol_time"]


def test_table_rows_cover_the_schema():
    rows = configdoc.rows(SCHEMA)
    keys = {(r.section, r.key) for r in rows}
    for name in EXPERIMENTS:
        assert (name, "") in keys
        for key in SCHEMA["properties"][name]["properties"]:
            assert (name, key) in keys
    assert ("channel", "geometry.<name>.slab_width") in keys
    sym = next(r for r in rows if r.key == "symbol_time")
    assert (sym.type, sym.default) == ("list of number", "`[0.1]`")
    assert "each > 0" in sym.allowed and "[s]" in sym.description
    tol = next(r for r in rows if r.section == "sharpness" and r.key == "lanczos_tol")
    assert tol.allowed == "> 0, ≤ 0.001"
    section = next(r for r in rows if (r.section, r.key) == ("channel", ""))
    assert section.default == "*required* if `experiments` selects `channel`"
    # a pipe in a description must not split the Markdown table row
    table = configdoc.table(rows)
    assert all(len(re.findall(r"(?<!\\)\|", line)) == 7 for line in table.splitlines())


def _errors(config):
    return [e.message for e in Draft202012Validator(SCHEMA).iter_errors(config)]


def test_a_section_is_required_only_when_selected():
    clauses = {
        c["if"]["properties"]["experiments"]["contains"]["const"]: c for c in SCHEMA["allOf"]
    }
    assert set(clauses) == set(EXPERIMENTS)
    for name, clause in clauses.items():
        assert clause["then"] == {"required": [name]}
    assert SCHEMA["required"] == ["experiments"]
    for name in EXPERIMENTS:
        one = {"experiments": [name], name: copy.deepcopy(TINY[name])}
        assert _errors(one) == []
        validate_config(one)
        others = [e for e in EXPERIMENTS if e != name]
        refused = {"experiments": [name, *others], name: TINY[name]}
        assert sorted(_errors(refused)) == sorted(f"{e!r} is a required property" for e in others)
    # an unselected section that is present is still checked
    bad = {**copy.deepcopy(TINY), "experiments": ["escape"]}
    bad["channel"]["n_molecules"] = 0
    assert _errors(bad) == ["0 is less than the minimum of 1"]


def test_readme_examples_are_valid_configs():
    text = README.read_text(encoding="utf-8")
    examples = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    assert examples
    for example in examples:
        config = yaml.safe_load(example)
        assert _errors(config) == [], example
        validate_config(config)


@pytest.mark.parametrize(
    "path", ["config/config.yaml", "config/paper.yaml", ".test/config/config.yaml"]
)
def test_shipped_configs_are_valid(path):
    config = yaml.safe_load((REPO / path).read_text())
    assert _errors(config) == []
    validate_config(config)
