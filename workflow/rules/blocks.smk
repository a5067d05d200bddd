# One rule per registered experiment: a job per block, whose parameters are its path
# (results/blocks/<experiment>/<key>~<value>_....zarr.zip, see README "Extending a grid").
# Threads, memory and runtime come from the experiment module; on a cluster, block jobs of one
# experiment form the group "<experiment>_blocks" (profiles/slurm sets how many per Slurm job).
for _exp in REGISTRY.values():

    rule:
        name:
            f"{_exp.name}_block"
        output:
            f"{RESULTS}/blocks/{_exp.name}/{{block}}.zarr.zip",
        log:
            f"{RESULTS}/logs/{_exp.name}/{{block}}.log",
        wildcard_constraints:
            block=r"[^/]+",
        group:
            f"{_exp.name}_blocks"
        conda:
            "../envs/sweeplab.yaml"
        threads: _exp.threads
        resources:
            mem_mb=_exp.mem_mb,
            runtime=_exp.runtime,
        params:
            experiment=_exp.name,
            settings=block_params(_exp.name),
        shell:
            "sweeplab run-block {params.experiment} {wildcards.block:q} --settings {params.settings}"
            " --threads {threads} --out {output:q} 2> {log:q}"
