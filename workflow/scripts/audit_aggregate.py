"""Rule script: stack every audited cell's tables into results/summary/audit.csv and audit_roc.csv."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

from dpfair.audit.stage import stack_audit_tables  # noqa: E402

stack_audit_tables(
    tables=snakemake.input.tables,
    rocs=snakemake.input.rocs,
    outputs={"table": snakemake.output.table, "roc": snakemake.output.roc},
)
