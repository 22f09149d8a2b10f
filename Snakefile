# dpfair: privacy-utility-fairness benchmark of DP-SGD on medical data.
#   snakemake --cores 2                                         # the default benchmark
#   snakemake --cores 2 --configfile benchmarks/<name>.yaml     # another one
from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/audit.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/speed.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        get_final_output(),
    default_target: True
