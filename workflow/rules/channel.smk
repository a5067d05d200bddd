# One job per channel block; the block's parameters are its path (see README "Extending a grid").


rule channel_block:
    output:
        directory(f"{RESULTS}/blocks/channel/{{block}}.zarr"),
    params:
        settings=block_params("channel"),
    log:
        f"{RESULTS}/logs/channel/{{block}}.log",
    threads: 2
    shell:
        "sweeplab run-block channel {wildcards.block:q} --settings {params.settings}"
        " --threads {threads} --out {output:q} 2> {log:q}"
