# One job per channel block; the block's parameters are its path (see README "Extending a grid").


rule channel_block:
    output:
        directory(f"{RESULTS}/blocks/channel/{{block}}.zarr"),
    params:
        settings=lambda wildcards: block_settings("channel", wildcards),
    log:
        f"{RESULTS}/logs/channel/{{block}}.log",
    threads: 2
    shell:
        "sweeplab run-block channel {wildcards.block:q} --settings {params.settings}"
        " --dask {DASK_ARGS} --threads {threads} --out {output:q} 2> {log:q}"
