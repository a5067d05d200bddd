# Aggregate blocks into one dataset per experiment, then figures from the aggregated stores.


rule aggregate:
    input:
        lambda wildcards: block_paths(wildcards.experiment),
    output:
        directory(f"{RESULTS}/{{experiment}}.zarr"),
    params:
        settings=lambda wildcards: shlex.quote(json.dumps(config[wildcards.experiment])),
    log:
        f"{RESULTS}/logs/aggregate/{{experiment}}.log",
    wildcard_constraints:
        experiment="sharpness|escape|channel",
    shell:
        "sweeplab aggregate {wildcards.experiment} {input:q} --settings {params.settings}"
        " --out {output:q} 2> {log:q}"


def figure_experiment(wildcards):
    for experiment, names in FIGURES.items():
        if wildcards.name in names:
            return f"{RESULTS}/{experiment}.zarr"
    raise ValueError(f"unknown figure {wildcards.name!r}")


rule figure:
    input:
        figure_experiment,
    output:
        png=report(
            f"{RESULTS}/figures/{{name}}.png",
            caption="../report/figure.rst",
            category="Figures",
        ),
        svg=f"{RESULTS}/figures/{{name}}.svg",
    log:
        f"{RESULTS}/logs/figures/{{name}}.log",
    shell:
        "sweeplab figures --results {RESULTS:q} --out {RESULTS:q}/figures {wildcards.name}"
        " > /dev/null 2> {log:q}"
