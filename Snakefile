# sweeplab: the workflow lives in workflow/ (see README.md).
include: "workflow/Snakefile"


# Snakemake takes the default target from the main Snakefile only (an include cannot set it).
rule default:
    input:
        rules.all.input,
    default_target: True
    localrule: True
