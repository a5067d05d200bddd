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


# One job per experiment draws all its figures (PNG, SVG, PDF) into
# results/figures/<experiment>/: one process start-up and one read of the store, not one per
# figure. The report registers each PNG of the directory (patterns) with its own caption: the
# FigureSpec caption of its experiment module, looked up by report/figure.rst.
for _name, _exp in REGISTRY.items():
    if not FIGURES[_name]:
        continue

    rule:
        name:
            f"figures_{_name}"
        input:
            f"{RESULTS}/.aggregated/{_name}",
        output:
            report(
                directory(f"{RESULTS}/figures/{_name}"),
                patterns=["{figure}.png"],
                caption="../report/figure.rst",
                category="Figures",
                subcategory=_name,
                labels={"figure": "{figure}"},
            ),
        log:
            f"{RESULTS}/logs/figures/{_name}.log",
        localrule: True
        conda:
            "../envs/sweeplab.yaml"
        params:
            captions={name: CAPTIONS[name] for name in FIGURES[_name]},
            store=f"{RESULTS}/{_name}.zarr",
        shell:
            "sweeplab figures --dataset {params.store:q} --out {output:q} > /dev/null 2> {log:q}"
