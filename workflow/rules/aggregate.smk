# Aggregate blocks into one dataset per experiment, then figures from the aggregated stores.


rule aggregate:
    input:
        lambda wildcards: block_paths(wildcards.experiment),
    output:
        # update: Snakemake keeps the store, so only new or changed blocks are read and written
        update(directory(f"{RESULTS}/{{experiment}}.zarr")),
    params:
        settings=lambda wildcards: shlex.quote(json.dumps(config[wildcards.experiment])),
        blocks_dir=lambda wildcards, input: os.path.dirname(input[0]),
    log:
        f"{RESULTS}/logs/aggregate/{{experiment}}.log",
    wildcard_constraints:
        experiment="|".join(REGISTRY),
    shell:
        "sweeplab aggregate {wildcards.experiment} --settings {params.settings}"
        " --blocks-dir {params.blocks_dir:q} --out {output:q} 2> {log:q}"


# One figures job per experiment (matplotlib start-up is paid once per dataset).
for _name, _exp in REGISTRY.items():

    rule:
        name:
            f"figures_{_name}"
        input:
            f"{RESULTS}/{_name}.zarr",
        output:
            png=[
                report(
                    f"{RESULTS}/figures/{fig.name}.png",
                    caption="../report/figure.rst",
                    category="Figures",
                    subcategory=_name,
                    labels={"figure": fig.name},
                )
                for fig in _exp.figures
            ],
            svg=[f"{RESULTS}/figures/{fig.name}.svg" for fig in _exp.figures],
        params:
            names=" ".join(FIGURES[_name]),
            out=lambda wildcards, output: os.path.dirname(output.svg[0]),
        log:
            f"{RESULTS}/logs/figures/{_name}.log",
        localrule: True
        shell:
            "sweeplab figures --dataset {input:q} --out {params.out:q} {params.names}"
            " > /dev/null 2> {log:q}"
