# One rule per registered experiment: a job per planned block, named by a hash of its points'
# keys (results/blocks/<experiment>/<block>.zarr.zip); its points are in its plan file.
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
            block=BLOCK_NAME,
        group:
            f"{_exp.name}_blocks"
        conda:
            "../envs/sweeplab.yaml"
        threads: _exp.threads
        resources:
            mem_mb=_exp.mem_mb,
            runtime=_exp.runtime,
        params:
            plan=f"{RESULTS}/plans/{_exp.name}/{{block}}.json",
        shell:
            "sweeplab run-block {params.plan:q} --threads {threads} --out {output:q} 2> {log:q}"
