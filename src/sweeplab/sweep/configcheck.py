"""Config validation shared by the workflow and ``sweeplab run-block``: one line per bad value.

The JSON schema (``config.schema.yaml``, shipped in this package; ``workflow/schemas`` links to
it) checks types and ranges; :func:`check_finite` rejects NaN and infinities, which JSON-schema
``minimum``/``maximum`` let through; each experiment's ``validate`` checks the rest (canonical
duplicates, grid size, geometry, memory estimates). A planned block run on its own goes
through the same checks (:func:`validate_section` on the section its plan file stands for), so
a block whose settings are invalid is refused before anything is computed or written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any

import numpy as np
import yaml

from .experiments import get

__all__ = [
    "SCHEMA_RESOURCE",
    "check_finite",
    "check_schema",
    "load_schema",
    "schema_message",
    "validate_section",
]

#: the config schema inside the package (the workflow's ``schemas/config.schema.yaml`` links here)
SCHEMA_RESOURCE = files("sweeplab.sweep") / "config.schema.yaml"


@cache
def load_schema() -> dict[str, Any]:
    """Return the config JSON schema (draft 2020-12) as a dict."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster
    return yaml.load(SCHEMA_RESOURCE.read_text(encoding="utf-8"), Loader=loader)


def _subschema(path: tuple[str, ...]) -> Mapping[str, Any]:
    """Return the schema of the value at ``path`` (local ``$ref`` resolved; ``{}`` if unknown)."""
    root = load_schema()
    node: Mapping[str, Any] = root
    for key in path:
        node = _resolve(root, node)
        if node.get("type") == "array" or "items" in node:
            node = node.get("items", {})
            if isinstance(key, str):
                return {}
            continue
        props = node.get("properties", {})
        if key in props:
            node = props[key]
        elif "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
            node = node["additionalProperties"]
        else:
            return {}
    return _resolve(root, node)


def _resolve(root: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            break
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def _allowed(schema: Mapping[str, Any]) -> str:
    """Return the allowed range of a number, in words, from its schema."""
    parts = []
    for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                    ("exclusiveMaximum", "<")):  # fmt: skip
        if key in schema:
            parts.append(f"{op} {schema[key]}")
    text = "a number" if schema.get("x-allow-inf") else "a finite number"
    text += " " + " and ".join(parts) if parts else ""
    return text + (" (or .inf)" if schema.get("x-allow-inf") else "")


def _dotted(path: tuple[Any, ...]) -> str:
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


def check_finite(config: Any, path: tuple[Any, ...] = ()) -> None:
    """Reject NaN and infinite numbers anywhere in ``config``, naming the key and the range.

    ``+inf`` is let through where the value's schema says ``x-allow-inf: true``.

    Raises
    ------
    ValueError
        ``"<key> = nan; allowed: a finite number > 0"`` for the first non-finite value.

    """
    if isinstance(config, Mapping):
        for key, value in config.items():
            check_finite(value, (*path, key))
    elif isinstance(config, list | tuple):
        for i, value in enumerate(config):
            check_finite(value, (*path, i))
    elif isinstance(config, float | np.floating) and not math.isfinite(float(config)):
        if float(config) == math.inf and _subschema(path).get("x-allow-inf"):
            return  # e.g. channel.reactivity: .inf is the perfectly absorbing receiver
        raise ValueError(
            f"{_dotted(path)} = {float(config)!r}; allowed: {_allowed(_subschema(path))}"
        )


def schema_message(error: Any, prefix: tuple[Any, ...] = ()) -> str:
    """Return a jsonschema ``ValidationError`` as one line: key path, value, what is allowed.

    jsonschema's own ``str(error)`` is a dozen lines (the whole sub-schema, the instance);
    its ``message`` names the value and the rule. An unexpected key gets the allowed keys.
    """
    where = _dotted((*prefix, *error.absolute_path)) or "config"
    message = error.message
    props = error.schema.get("properties") if isinstance(error.schema, Mapping) else None
    if error.validator == "additionalProperties" and isinstance(props, Mapping):
        message += "; allowed keys: " + ", ".join(map(str, props))
    text = " ".join(f"{where}: {message}".split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


_MAX_MESSAGE = 500


def check_schema(
    config: Any, schema: Mapping[str, Any] | None = None, prefix: tuple[Any, ...] = ()
) -> None:
    """Check ``config`` against the JSON schema (default: the whole config schema).

    Parameters
    ----------
    config : object
        The whole config, or the part at ``prefix`` when ``schema`` is a sub-schema.
    schema : mapping, optional
        A (sub-)schema; default :func:`load_schema`.
    prefix : tuple
        Key path of ``config`` in the whole config, for the message.

    Raises
    ------
    ValueError
        One line (:func:`schema_message`) for the most relevant error.

    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema() if schema is None else schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ValueError(schema_message(error, prefix))


def validate_section(experiment: str, section: Mapping[str, Any]) -> None:
    """Validate one experiment's config section: schema, finiteness, the experiment's checks.

    Raises
    ------
    ValueError
        One line naming the key, the bad value and what is allowed.

    """
    check_finite(section, (experiment,))
    check_schema({"experiments": [experiment], experiment: section})
    get(experiment).validate(section)
