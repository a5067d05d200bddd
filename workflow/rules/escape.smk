# One job per escape block; the block's parameters are its path (see README "Extending a grid").


rule escape_block:
    output:
        directory(f"{RESULTS}/blocks/escape/{{block}}.zarr"),
    params:
        settings=block_params("escape"),
    log:
        f"{RESULTS}/logs/escape/{{block}}.log",
    threads: 2
    shell:
        "sweeplab run-block escape {wildcards.block:q} --settings {params.settings}"
        " --threads {threads} --out {output:q} 2> {log:q}"
