"""Rule script: plots and the self-contained HTML report."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

from dpfair.pipeline.outcome import run_status  # noqa: E402
from dpfair.report.page import render_report  # noqa: E402

render_report(
    metrics=snakemake.input.metrics,
    subgroups=snakemake.input.subgroups,
    dataset_meta=snakemake.input.meta,
    benchmark=snakemake.params.benchmark,
    output=snakemake.output.html,
    privacy_cards=snakemake.input.cards,
    gaps=snakemake.input.gaps,
    gap_changes=snakemake.input.gap_changes,
    reliability=snakemake.input.reliability,
    compute_cost=snakemake.input.compute_cost,
    compute_ratios=snakemake.input.compute_ratios,
    # empty when the config switches the speed benchmark off
    speed=snakemake.input.speed[0] if snakemake.input.speed else None,
    method_comparison=snakemake.input.get("method_comparison"),
    method_comparison_groups=snakemake.input.get("method_comparison_groups"),
    audit=snakemake.input.audit,
    audit_roc=snakemake.input.audit_roc,
    definition=dict(snakemake.params.definition),
    status=run_status(snakemake.params.runs),
)
