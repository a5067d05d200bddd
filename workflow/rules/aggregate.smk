# Aggregate blocks into one dataset per experiment, then figures from the aggregated stores.


rule aggregate:
    input:
        lambda wildcards: block_paths(wildcards.experiment),
    output:
        # update: Snakemake keeps the store, so only new or changed blocks are read and written
        update(directory(f"{RESULTS}/{{experiment}}.zarr")),
    log:
        f"{RESULTS}/logs/aggregate/{{experiment}}.log",
    wildcard_constraints:
        experiment="|".join(REGISTRY),
    conda:
        "../envs/sweeplab.yaml"
    params:
        settings=lambda wildcards: shlex.quote(json.dumps(config[wildcards.experiment])),
        blocks_dir=lambda wildcards, input: os.path.dirname(input[0]),
    shell:
        "sweeplab aggregate {wildcards.experiment} --settings {params.settings}"
        " --blocks-dir {params.blocks_dir:q} --out {output:q} 2> {log:q}"


# One job per figure (PNG, SVG, PDF), so each gets its own report caption: the FigureSpec
# caption of its experiment module, rendered by report/figure.rst.
for _name, _exp in REGISTRY.items():

    rule:
        name:
            f"figures_{_name}"
        input:
            f"{RESULTS}/{_name}.zarr",
        output:
            png=report(
                f"{RESULTS}/figures/{{figure}}.png",
                caption="../report/figure.rst",
                category="Figures",
                subcategory=_name,
                labels={"figure": "{figure}"},
            ),
            svg=f"{RESULTS}/figures/{{figure}}.svg",
            pdf=f"{RESULTS}/figures/{{figure}}.pdf",
        log:
            f"{RESULTS}/logs/figures/{{figure}}.log",
        wildcard_constraints:
            figure="|".join(FIGURES[_name]),
        localrule: True
        conda:
            "../envs/sweeplab.yaml"
        params:
            caption=lambda wildcards: CAPTIONS[wildcards.figure],
            out=lambda wildcards, output: os.path.dirname(output.png),
        shell:
            "sweeplab figures --dataset {input:q} --out {params.out:q} {wildcards.figure}"
            " > /dev/null 2> {log:q}"
