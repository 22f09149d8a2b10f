# dpfair: privacy-utility-fairness benchmark of DP-SGD on medical data.
#   snakemake --cores 2                                         # the default benchmark
#   snakemake --cores 2 --configfile benchmarks/<name>.yaml     # another one
from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/synthesis.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/audit.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/speed.smk"
include: "workflow/rules/findings.smk"
include: "workflow/rules/report.smk"


# Light rules run in the submitting process, never as cluster jobs.
localrules:
    all,
    aggregate,
    aggregate_audit,
    compare_methods,
    findings,
    report,


rule all:
    default_target: True
    input:
        get_final_output(),


# A failing cell leaves the others (--keep-going) but stops the aggregate rule, which needs every run: render
# the report from the runs that finished, with what failed and why at the top, instead of leaving an older one.
onerror:
    report_what_exists()
