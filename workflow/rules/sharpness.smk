# One job per sharpness block; the block's parameters are its path (see README "Extending a grid").


rule sharpness_block:
    output:
        directory(f"{RESULTS}/blocks/sharpness/{{block}}.zarr"),
    params:
        settings=block_params("sharpness"),
    log:
        f"{RESULTS}/logs/sharpness/{{block}}.log",
    threads: 2
    shell:
        "sweeplab run-block sharpness {wildcards.block:q} --settings {params.settings}"
        " --threads {threads} --out {output:q} 2> {log:q}"
