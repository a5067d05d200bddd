# One job per escape block; the block's parameters are its path (see README "Extending a grid").


rule escape_block:
    output:
        directory(f"{RESULTS}/blocks/escape/{{block}}.zarr"),
    params:
        settings=lambda wildcards: block_settings("escape", wildcards),
    log:
        f"{RESULTS}/logs/escape/{{block}}.log",
    threads: 2
    shell:
        "sweeplab run-block escape {wildcards.block:q} --settings {params.settings}"
        " --dask {DASK_ARGS} --threads {threads} --out {output:q} 2> {log:q}"
