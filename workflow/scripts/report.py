"""Rule script: plots and the self-contained HTML report."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

from dpfair.errors import DpfairError  # noqa: E402
from dpfair.pipeline.outcome import run_status, status_line  # noqa: E402
from dpfair.report.page import render_report  # noqa: E402

status = run_status(snakemake.params.runs)
if not status["complete"]:
    # Snakemake reran what it would, yet a run is not of the current definition (a rerun trigger switched off,
    # a module edited mid-run): the summary tables hold it, so fail and let onerror render the current runs only
    raise DpfairError(status_line(status, snakemake.output.html))
render_report(
    metrics=snakemake.input.metrics,
    subgroups=snakemake.input.subgroups,
    dataset_meta=snakemake.input.meta,
    benchmark=snakemake.params.benchmark,
    output=snakemake.output.html,
    privacy_cards=snakemake.input.cards,
    gaps=snakemake.input.gaps,
    gap_changes=snakemake.input.gap_changes,
    auroc_changes=snakemake.input.auroc_changes,
    reliability=snakemake.input.reliability,
    compute_cost=snakemake.input.compute_cost,
    compute_ratios=snakemake.input.compute_ratios,
    # empty when the config switches the speed benchmark off
    speed=snakemake.input.speed[0] if snakemake.input.speed else None,
    method_comparison=snakemake.input.get("method_comparison"),
    method_comparison_groups=snakemake.input.get("method_comparison_groups"),
    audit=snakemake.input.audit,
    audit_roc=snakemake.input.audit_roc,
    synthesis_fidelity=snakemake.input.synthesis_fidelity[0] if snakemake.input.synthesis_fidelity else None,
    findings=snakemake.input.findings[0] if snakemake.input.findings else None,
    definition=dict(snakemake.params.definition),
    status=status,
)
