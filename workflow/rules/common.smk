# Helpers shared by the experiment rules.


def block_paths(experiment):
    """Block stores of one experiment, as the config's grids ask for them."""
    return [
        f"{RESULTS}/blocks/{experiment}/{block.name}.zarr"
        for block in blocks_for(experiment, config)
    ]


def block_settings(experiment, wildcards):
    """Shell-quoted JSON of the settings a block depends on (params: a change re-runs it)."""
    settings = dict(config[experiment])
    if experiment == "channel":
        name = dict(kv.split("~", 1) for kv in wildcards.block.split("_"))["geometry"]
        settings["geometry"] = {name: settings["geometry"][name]}
    return shlex.quote(json.dumps(settings, sort_keys=True))
