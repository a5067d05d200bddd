# Helpers shared by the experiment rules.


def block_paths(experiment):
    """Block stores of one experiment, as the config's grids ask for them."""
    return [
        f"{RESULTS}/blocks/{experiment}/{block.name}.zarr"
        for block in blocks_for(experiment, config)
    ]


def block_params(experiment):
    """Shell-quoted JSON of what a block depends on besides its name (a change re-runs it)."""

    def params(wildcards):
        settings = block_settings(experiment, config, wildcards.block)
        return shlex.quote(json.dumps(settings, sort_keys=True))

    return params
