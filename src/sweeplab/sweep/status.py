"""Progress of a sweep: the grid's points done, failed and pending, and what is left to run.

:func:`sweep_status` reads a config as Snakemake would (the schema's defaults applied, then the
same validation), plans every selected experiment against the block files on disk (the ledger
is reloaded on every call, so blocks count as soon as they land) and returns plain dataclasses
that the ``sweeplab status`` command formats. Nothing is planned to disk: no plan file is
written (the ledger's own cache, ``.ledger.npz``, is refreshed as on any ledger load).

The estimates are the planner's: each pending point's ``point_cost`` (seconds on one core)
scaled by the calibration measured on the blocks on disk, summed into CPU-hours; the memory of
a block is its estimated peak (``Experiment.block_memory``). The Slurm jobs are those
``snakemake --workflow-profile <profile>`` would submit: the profile's ``config`` overrides
(``block_seconds``, ``block_mem_mb``) repack the pending points, and its ``group-components``
entry ``<experiment>_blocks=N`` runs N block jobs per Slurm job.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .blockstore import read_block
from .experiments import Experiment, get, validate_config
from .identity import KEY_BYTES, hex_keys, raw_keys
from .ledger import Ledger
from .planner import DEFAULT_BLOCK_SECONDS, DONE, FAILED, PENDING, Plan, pack, plan

__all__ = [
    "DEFAULT_PROFILE",
    "ExperimentStatus",
    "FailedPoint",
    "SlurmEstimate",
    "UnknownAxisError",
    "load_config",
    "read_profile",
    "sweep_status",
]

logger = logging.getLogger(__name__)

#: the workflow profile whose Slurm jobs are counted, relative to the working directory (or to
#: the repository holding the config: ``<config dir>/..``)
DEFAULT_PROFILE = Path("profiles") / "slurm"


class UnknownAxisError(ValueError):
    """An axis to group by that no selected experiment has (the message names the allowed)."""


@dataclass(frozen=True)
class FailedPoint:
    """A grid point whose record is a failure: its parameters, error and block file."""

    key: str
    params: dict[str, Any]
    error: str
    block: str


@dataclass(frozen=True)
class SlurmEstimate:
    """Slurm jobs of the pending blocks under a workflow profile."""

    profile: str
    block_seconds: float
    blocks: int
    group_components: int
    jobs: int


@dataclass
class ExperimentStatus:
    """State of one experiment's grid and the work left.

    Attributes
    ----------
    done, failed, pending : int
        Grid points with a successful record, with only failed records (kept as failed), and
        to compute (no record; or failed, when ``retry_failed`` is set).
    failed_retried : int
        Failed grid points counted as pending because the config sets ``retry_failed``.
    blocks : int
        Blocks still to run (the plan's block count at ``block_seconds``).
    cpu_hours : float
        Sum of the planned blocks' calibrated single-core estimates, in hours.
    peak_block_memory : float
        Largest estimated peak memory of a planned block (bytes; 0 without blocks).
    outside_done, outside_failed : int
        Points held on disk that are not in the current grid (by the status of their holder).
    by : dict, optional
        ``axes`` (names), ``values`` (one list per axis) and ``done``/``failed``/``pending``
        counts of each combination of those axes' values (``--by``).

    """

    experiment: str
    points: int
    done: int
    failed: int
    pending: int
    retry_failed: bool
    failed_retried: int
    blocks: int
    block_seconds: float
    cpu_hours: float
    peak_block_memory: float
    calibration: float
    threads: int
    block_files: int
    outside_done: int
    outside_failed: int
    slurm: SlurmEstimate | None = None
    by: dict[str, Any] | None = None
    failures: list[FailedPoint] = field(default_factory=list)

    @property
    def outside(self) -> int:
        """Points on disk outside the current grid."""
        return self.outside_done + self.outside_failed

    def to_dict(self) -> dict[str, Any]:
        """Return a plain JSON-ready dict (integers for every count)."""
        out = asdict(self)
        out["outside"] = self.outside
        return out


#: the libyaml loader where available (same results as ``yaml.SafeLoader``, ~10x faster)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(eq=False)
class _OnceLedger(Ledger):
    """A ledger that computes its holders once (the plan's lookup and the status both ask)."""

    def holders(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (once computed) unique keys, their holding records and ok counts."""
        cached = self.__dict__.get("_holders")
        if cached is None:
            cached = self.__dict__["_holders"] = super().holders()
        return cached

    @classmethod
    def of(cls, ledger: Ledger) -> _OnceLedger:
        """Return ``ledger`` (its arrays shared) as a :class:`_OnceLedger`."""
        return cls(**{f.name: getattr(ledger, f.name) for f in fields(Ledger)})


# --- config and profile ----------------------------------------------------------------------
def _default_validator() -> Any:
    """Return a JSON-schema validator that fills in ``default`` values, as Snakemake does."""
    import jsonschema
    from jsonschema import validators

    from .configcheck import load_schema

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Any, instance: Any, schema: Any) -> Any:
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, Mapping) and "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, properties, instance, schema)

    return validators.extend(base, {"properties": set_defaults})(load_schema())


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a workflow config as Snakemake does (schema defaults filled in).

    Raises
    ------
    ValueError
        One line naming the file and what is wrong (unreadable, not YAML, invalid).

    """
    import jsonschema

    p = Path(path)
    try:
        config = yaml.load(p.read_text(encoding="utf-8"), Loader=_LOADER)
    except OSError as exc:
        raise ValueError(f"config {p}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"config {p}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(config, dict):
        raise ValueError(f"config {p}: must be a mapping of keys, not {type(config).__name__}")
    error = jsonschema.exceptions.best_match(_default_validator().iter_errors(config))
    if error is not None:
        where = ".".join(str(k) for k in error.absolute_path) or "config"
        raise ValueError(f"config {p}: {where}: {' '.join(error.message.split())}")
    try:
        validate_config(config)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"config {p}: {' '.join(str(exc).split())}") from None
    return config


def _entries(value: Any) -> dict[str, Any]:
    """Return a profile list of ``key=value`` strings (or a mapping) as a dict of values."""
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    out: dict[str, Any] = {}
    for item in value or ():
        key, sep, text = str(item).partition("=")
        if sep:
            out[key.strip()] = yaml.safe_load(text)
    return out


def read_profile(profile: str | os.PathLike[str]) -> tuple[dict[str, int], dict[str, Any]]:
    """Return a workflow profile's ``group-components`` and ``config`` overrides.

    Raises
    ------
    ValueError
        Naming the profile file if it cannot be read.

    """
    path = Path(profile) / "config.yaml"
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER) or {}
        if not isinstance(doc, Mapping):
            raise ValueError("not a mapping")
        groups = {k: int(v) for k, v in _entries(doc.get("group-components")).items()}
        overrides = _entries(doc.get("config"))
    except (OSError, ValueError, TypeError, yaml.YAMLError) as exc:
        raise ValueError(f"profile {path}: cannot be read ({' '.join(str(exc).split())})") from None
    return groups, overrides


def default_profile(configfile: str | os.PathLike[str]) -> Path | None:
    """Return ``profiles/slurm`` of the working directory or of the config's repository."""
    if (DEFAULT_PROFILE / "config.yaml").is_file():
        return DEFAULT_PROFILE
    repo = Path(configfile).resolve().parent.parent
    if (repo / DEFAULT_PROFILE / "config.yaml").is_file():
        return repo / DEFAULT_PROFILE
    return None


# --- status ----------------------------------------------------------------------------------
def resolve_axes(exp: Experiment, names: Sequence[str]) -> list[str]:
    """Return the axis names of ``names`` (name, dimension or config key; else ``KeyError``)."""
    alias = {}
    for a in exp.axes:
        alias.update({a.key: a.name, a.dimension: a.name, a.name: a.name})
    out = []
    for n in names:
        if n not in alias:
            raise KeyError(n)
        if alias[n] not in out:
            out.append(alias[n])
    return out


def axis_names(experiments: Sequence[str]) -> list[str]:
    """Return the axes ``--by`` accepts for ``experiments`` (names, in registry order)."""
    out: list[str] = []
    for name in experiments:
        out += [a.name for a in get(name).axes if a.name not in out]
    return out


def _group_counts(p: Plan, axes: Sequence[str]) -> dict[str, Any]:
    """Count done, failed and pending points per combination of ``axes``' values (numpy)."""
    names = list(p.grid.coords)
    shape = p.grid.shape
    pos = [names.index(a) for a in axes]
    sub_shape = tuple(shape[i] for i in pos)
    n_groups = math.prod(sub_shape)
    if len(p.state):
        idx = np.unravel_index(np.arange(len(p.state), dtype=np.int64), shape)
        group = np.ravel_multi_index(tuple(idx[i] for i in pos), sub_shape)
        counts = np.bincount(group * 3 + p.state, minlength=3 * n_groups).reshape(-1, 3)
    else:
        counts = np.zeros((n_groups, 3), dtype=np.int64)
    combos = np.unravel_index(np.arange(n_groups), sub_shape)
    values = [p.grid.coords[a][c].tolist() for a, c in zip(axes, combos, strict=True)]
    return {
        "axes": list(axes),
        "values": values,
        "done": counts[:, DONE].tolist(),
        "failed": counts[:, FAILED].tolist(),
        "pending": counts[:, PENDING].tolist(),
    }


def _failures(p: Plan) -> list[FailedPoint]:
    """List the grid points held by a failed record, with the errors read from their blocks."""
    led = p.ledger
    flat = np.flatnonzero((p.record >= 0) & (p.n_ok == 0))
    if not len(flat):
        return []
    rec = p.record[flat]
    blocks = led.block[rec]
    out = []
    cols = p.grid.columns(flat)
    keys = hex_keys(p.grid.keys[flat])
    for b in np.unique(blocks):
        path = led.path(int(b))
        data = read_block(path, p.experiment.name)
        raw = raw_keys(data.arrays["key"]).tobytes()  # (tolist strips trailing zero bytes)
        rows = {raw[i : i + KEY_BYTES]: i // KEY_BYTES for i in range(0, len(raw), KEY_BYTES)}
        errors = data.arrays["error"]
        for j in np.flatnonzero(blocks == b):
            row = rows.get(p.grid.keys[flat[j] : flat[j] + 1].tobytes())
            params = {n: (v[j].item() if isinstance(v[j], np.generic) else v[j])
                      for n, v in cols.items()}  # fmt: skip
            error = str(errors[row]) if row is not None else ""
            out.append(FailedPoint(str(keys[j]), params, error, path.name))
    order = {k: i for i, k in enumerate(keys.tolist())}
    out.sort(key=lambda f: order[f.key])  # grid order
    return out


def _slurm(exp: Experiment, p: Plan, profile: Path, config: Mapping[str, Any],
           block_seconds: float) -> SlurmEstimate:  # fmt: skip
    groups, overrides = read_profile(profile)
    seconds = float(overrides.get("block_seconds", block_seconds))
    mem = overrides.get("block_mem_mb", config.get("block_mem_mb"))
    n_blocks = len(p.blocks)
    if seconds != block_seconds or mem != config.get("block_mem_mb"):
        pending = np.flatnonzero(p.state == PENDING)  # the same points, packed as the profile says
        bound = (mem if mem is not None else exp.mem_mb) * 2.0**20
        n_blocks = len(pack(p, pending, seconds, bound)) if len(pending) else 0
    per_job = max(1, int(groups.get(f"{exp.name}_blocks", 1)))
    return SlurmEstimate(str(profile), seconds, n_blocks, per_job, -(-n_blocks // per_job))


def experiment_status(
    experiment: str,
    config: Mapping[str, Any],
    blocks_dir: str | os.PathLike[str],
    *,
    by: Sequence[str] = (),
    failed: bool = False,
    profile: str | os.PathLike[str] | None = None,
) -> ExperimentStatus:
    """Return the status of one experiment of a validated ``config`` against its blocks.

    Parameters
    ----------
    experiment : str
        A registered experiment with a section in ``config``.
    config : mapping
        The validated workflow config (:func:`load_config`).
    blocks_dir : path
        The experiment's block directory (``results/blocks/<experiment>``).
    by : sequence of str
        Axes to group the counts by (names of this experiment's axes).
    failed : bool
        Also list the failed grid points with their error messages (reads their blocks).
    profile : path, optional
        Workflow profile directory whose Slurm jobs are estimated.

    """
    exp = get(experiment)
    section = config[experiment]
    block_seconds = float(config.get("block_seconds", DEFAULT_BLOCK_SECONDS))
    retry = bool(config.get("retry_failed", False))
    ledger = _OnceLedger.of(Ledger.load(blocks_dir, experiment))
    p = plan(experiment, section, blocks_dir, block_seconds=block_seconds,
             block_mem_mb=config.get("block_mem_mb"), retry_failed=retry,
             ledger=ledger)  # fmt: skip
    counts = p.counts()
    # distinct keys on disk minus those of the grid (each grid key is distinct)
    _, _, n_ok = ledger.holders()
    n_out_ok = int(np.count_nonzero(n_ok > 0)) - int(np.count_nonzero(p.n_ok > 0))
    n_out = len(n_ok) - int(np.count_nonzero(p.record >= 0))
    status = ExperimentStatus(
        experiment=experiment,
        points=len(p.state),
        done=counts["done"],
        failed=counts["failed"],
        pending=counts["pending"],
        retry_failed=retry,
        failed_retried=int(np.count_nonzero((p.state == PENDING) & (p.record >= 0))),
        blocks=len(p.blocks),
        block_seconds=block_seconds,
        cpu_hours=float(sum(b.seconds for b in p.blocks)) / 3600.0,
        peak_block_memory=float(max((b.memory for b in p.blocks), default=0.0)),
        calibration=float(p.calibration),
        threads=int(exp.threads),
        block_files=len(ledger.names),
        outside_done=n_out_ok,
        outside_failed=n_out - n_out_ok,
    )
    if profile is not None:
        status.slurm = _slurm(exp, p, Path(profile), config, block_seconds)
    if by:
        status.by = _group_counts(p, resolve_axes(exp, by))
    if failed:
        status.failures = _failures(p)
    return status


def sweep_status(
    configfile: str | os.PathLike[str],
    results: str | os.PathLike[str] = "results",
    *,
    by: Sequence[str] = (),
    failed: bool = False,
    profile: str | os.PathLike[str] | None = None,
) -> list[ExperimentStatus]:
    """Return the status of every experiment the config selects (``results/blocks/<name>``).

    ``by`` names axes to group the counts by; an experiment without one of them gets no table.
    ``profile`` (a workflow profile directory) adds the Slurm job estimate.

    Raises
    ------
    ValueError
        One line: a bad config or profile, an axis no selected experiment has.
    CorruptBlockError
        Naming a block file whose point table cannot be read.

    """
    config = load_config(configfile)
    selected = list(config["experiments"])
    if by:
        allowed = axis_names(selected)
        unknown = [a for a in by if not any(_has_axis(get(e), a) for e in selected)]
        if unknown:
            raise UnknownAxisError(f"unknown axis {unknown[0]!r}; allowed: {', '.join(allowed)}")
    out = []
    for name in selected:
        exp = get(name)
        has_all = all(_has_axis(exp, a) for a in by)  # else no table for this experiment
        out.append(experiment_status(
            name, config, Path(results) / "blocks" / name, by=by if has_all else (),
            failed=failed, profile=profile,
        ))  # fmt: skip
    return out


def _has_axis(exp: Experiment, name: str) -> bool:
    try:
        resolve_axes(exp, [name])
    except KeyError:
        return False
    return True
