"""Canonical formatting of parameter values, block names and per-point seeds.

A block is named by its parameters, ``name~value`` joined by ``_`` in a fixed order, so that the
same parameters always give the same path (``0.1 + 0.2`` and ``0.3`` both print ``0.3``; ``1`` and
``1.0`` both print ``1``) and extending a grid only adds names.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["block_name", "format_value", "parse_block_name", "point_seed", "settings_digest"]

SEP = "_"
KV = "~"
_STRING = re.compile(r"[A-Za-z0-9.+-]+")


def format_value(value: Any) -> str:
    """Return the canonical text of a parameter value (int, float, bool or str).

    Floats are rounded to 12 significant digits, then printed in the shortest form that reads
    back to that number; integral floats print as integers; infinities print as ``inf`` and
    ``-inf`` (the config check refuses them except where the schema allows them). Strings may
    hold only letters, digits, ``.``, ``+`` and ``-`` (no block-name separators ``_``/``~``,
    no ``/``, whitespace or control characters).

    Raises
    ------
    ValueError
        For nan, unsupported types or strings with separator characters.

    """
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isnan(v):
            raise ValueError(f"parameter values must be numbers (finite, or ±inf), got {value!r}")
        if math.isinf(v):  # e.g. an infinite reactivity (an axis whose schema allows it)
            return "inf" if v > 0 else "-inf"
        v = float(f"{v:.12g}")
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        return repr(v)
    if isinstance(value, str):
        if not _STRING.fullmatch(value):  # fullmatch: "$" would accept a trailing newline
            raise ValueError(
                f"string parameter {value!r}: allowed: letters, digits, '.', '+' and '-' only"
            )
        return value
    raise ValueError(f"unsupported parameter value {value!r} of type {type(value).__name__}")


def block_name(params: Mapping[str, Any]) -> str:
    """Return ``k1~v1_k2~v2...`` for the given ordered parameters (keys without ``_``/``~``)."""
    parts = []
    for key, value in params.items():
        if SEP in key or KV in key:
            raise ValueError(f"parameter name {key!r} must not contain '_' or '~'")
        parts.append(f"{key}{KV}{format_value(value)}")
    return SEP.join(parts)


def parse_block_name(name: str) -> dict[str, str]:
    """Invert :func:`block_name` (values stay text).

    Raises
    ------
    ValueError
        If a part is not of the form ``key~value``.

    """
    out: dict[str, str] = {}
    for part in name.split(SEP):
        key, sep, value = part.partition(KV)
        if not sep or not key or not value:
            raise ValueError(f"malformed block name {name!r}: part {part!r} is not key~value")
        out[key] = value
    return out


def settings_digest(settings: Mapping[str, Any]) -> str:
    """Return a short stable hash of a JSON-serialisable mapping (for provenance)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def point_seed(base_seed: int, experiment: str, **params: Any) -> np.random.SeedSequence:
    """Return the seed of one sweep point, derived from its parameters only.

    ``SeedSequence(base_seed, spawn_key=...)`` with the spawn key taken from a SHA-256 hash of the
    experiment name and the canonical ``key~value`` text of the parameters (sorted by key), so a
    point can be recomputed alone, independent of grid order or block composition.

    Parameters
    ----------
    base_seed : int
        The point's seed value (a grid axis, >= 0).
    experiment : str
        Experiment name.
    **params
        The point's other parameters.

    """
    key = experiment + "|" + block_name(dict(sorted(params.items())))
    digest = hashlib.sha256(key.encode()).digest()
    words = tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))
    return np.random.SeedSequence(int(base_seed), spawn_key=words)
