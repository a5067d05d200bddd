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


# One figures job per experiment (matplotlib start-up is paid once per dataset).
for _experiment, _names in FIGURES.items():

    rule:
        name:
            f"figures_{_experiment}"
        input:
            f"{RESULTS}/{_experiment}.zarr",
        output:
            png=[
                report(
                    f"{RESULTS}/figures/{name}.png",
                    caption="../report/figure.rst",
                    category="Figures",
                    subcategory=_experiment,
                )
                for name in _names
            ],
            svg=[f"{RESULTS}/figures/{name}.svg" for name in _names],
        params:
            names=" ".join(_names),
        log:
            f"{RESULTS}/logs/figures/{_experiment}.log",
        shell:
            'sweeplab figures --results "$(dirname {input:q})"'
            ' --out "$(dirname {output.svg[0]:q})" {params.names} > /dev/null 2> {log:q}'
