# Helpers shared by the rules.


def block_paths(experiment):
    """Block stores of one experiment, as the config's grids ask for them."""
    exp = REGISTRY[experiment]
    if experiment not in config:  # sections of unselected experiments are optional
        raise ValueError(
            f"results of {experiment!r} were requested but the config has no {experiment!r} "
            f"section (add it, and {experiment!r} to experiments)"
        )
    return [
        f"{RESULTS}/blocks/{experiment}/{block.name}.zarr.zip"
        for block in exp.blocks(config[experiment])
    ]


def deleted_blocks(experiments):
    """Blocks missing on disk although their experiment's aggregate exists."""
    return [
        path
        for experiment in experiments
        if Path(f"{RESULTS}/{experiment}.zarr").exists()
        for path in block_paths(experiment)
        if not Path(path).exists()
    ]


def block_params(experiment):
    """Shell-quoted JSON of what a block depends on besides its name (a change re-runs it)."""

    def params(wildcards):
        settings = block_settings(experiment, config, wildcards.block)
        return shlex.quote(json.dumps(settings, sort_keys=True))

    return params
