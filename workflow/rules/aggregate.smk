# Aggregate blocks into one dataset per experiment, then figures from the aggregated stores.


rule aggregate:
    input:
        lambda wildcards: grid_blocks(wildcards.experiment),
    output:
        # a stamp, not the store: Snakemake would delete (or, with update(), copy) the store
        # before the job; the job updates it incrementally and replaces it atomically
        touch(f"{RESULTS}/.aggregated/{{experiment}}"),
    log:
        f"{RESULTS}/logs/aggregate/{{experiment}}.log",
    wildcard_constraints:
        experiment="|".join(REGISTRY),
    conda:
        "../envs/sweeplab.yaml"
    params:
        state=lambda wildcards: aggregate_state(wildcards.experiment),
        settings=lambda wildcards: shlex.quote(
            canonical_json(config[wildcards.experiment])
        ),
        store=f"{RESULTS}/{{experiment}}.zarr",
        blocks_dir=f"{RESULTS}/blocks/{{experiment}}",
    shell:
        "sweeplab aggregate {wildcards.experiment} --settings {params.settings}"
        " --blocks-dir {params.blocks_dir:q} --out {params.store:q} 2> {log:q}"


# One job per figure (PNG, SVG, PDF), so each gets its own report caption: the FigureSpec
# caption of its experiment module, rendered by report/figure.rst.
for _name, _exp in REGISTRY.items():

    rule:
        name:
            f"figures_{_name}"
        input:
            f"{RESULTS}/.aggregated/{_name}",
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
            store=f"{RESULTS}/{_name}.zarr",
        shell:
            "sweeplab figures --dataset {params.store:q} --out {params.out:q} {wildcards.figure}"
            " > /dev/null 2> {log:q}"
