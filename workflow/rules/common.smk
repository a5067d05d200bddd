# Helpers shared by the rules: the plan of each experiment (computed once per Snakemake run).
from functools import cache

from sweeplab.sweep.planner import plan as _plan


@cache
def PLAN(experiment):
    """Done, failed and pending points of the experiment's grid; pending ones packed in blocks.

    Planned blocks get their plan files (results/plans/<experiment>/<block>.json) here, so a
    block job never plans: it reads its own file.
    """
    if experiment not in config:  # sections of unselected experiments are optional
        raise ValueError(
            f"results of {experiment!r} were requested but the config has no {experiment!r} "
            f"section (add it, and {experiment!r} to experiments)"
        )
    p = _plan(
        experiment,
        config[experiment],
        f"{RESULTS}/blocks/{experiment}",
        block_seconds=config.get("block_seconds", 60),
        block_mem_mb=config.get("block_mem_mb"),
        retry_failed=bool(config.get("retry_failed", False)),
    )
    p.write_plan_files(f"{RESULTS}/plans/{experiment}")
    return p


def planned_blocks(experiment):
    """Block files planned for the experiment's pending points."""
    return [
        f"{RESULTS}/blocks/{experiment}/{b.name}.zarr.zip"
        for b in PLAN(experiment).blocks
    ]


def grid_blocks(experiment):
    """Block files holding the grid's points: those on disk and those planned for pending ones.

    Once the planned blocks exist, the set stays the same, so the aggregate is up to date; a
    merge, a retry or a deleted block changes it.
    """
    p = PLAN(experiment)
    names = sorted({*p.holder_blocks, *(b.name for b in p.blocks)})
    return [f"{RESULTS}/blocks/{experiment}/{name}.zarr.zip" for name in names]


def aggregate_state(experiment):
    """What the aggregate depends on (a change re-runs it): the plan's fingerprint.

    A deleted store is rebuilt: its stamp goes too, so the aggregate job is due again.
    """
    if not Path(f"{RESULTS}/{experiment}.zarr/{MANIFEST}").exists():
        Path(f"{RESULTS}/.aggregated/{experiment}").unlink(missing_ok=True)
    return PLAN(experiment).fingerprint
