# sweeplab: the workflow lives in workflow/ (see README.md).
include: "workflow/Snakefile"


# Snakemake takes the default target from the main Snakefile only (an include cannot set it).
rule default:
    default_target: True
    input:
        rules.all.input,
    localrule: True
