# The privacy audit: what the configured attacks need trained (dpfair.audit.registry.NEEDS: reference models,
# a canary run) per audited cell and reference seed (audit_train), every attack on every run of the cell
# (audit), and the stacked tables (aggregate_audit). Which audit_train jobs exist, and what each trains, is
# the audit plan's (AUDIT in common.smk, from the attacks' needs): no attack with needs, no audit_train job;
# a need no attack has is trained with count 0 (its file header-only). audit_train's file names come from
# NEEDS, as the audit rule's inputs do (common.smk, through dpfair.audit.plan.TRAINED_FILES), so they agree.
# audit_train jobs follow execution.seeds_per_job over the reference seeds, as train jobs over the seeds.
from dpfair.audit.registry import NEEDS as AUDIT_NEEDS  # noqa: E402

AUDIT_TRAINED_FILES = {
    "references": AUDIT_NEEDS["reference_models"].file,
    "canaries": AUDIT_NEEDS["canaries"].file,
    "record": "models.json",
}


for group in AUDIT_SEED_GROUPS:

    rule:
        name:
            group.rule_name("audit_train")
        input:
            data=rules.prepare_dataset.output.data,
            samples=rules.prepare_dataset.output.samples,
            meta=rules.prepare_dataset.output.meta,
        output:
            **group_outputs(group, f"{AUDIT_DIR}/seed-{{seed}}", AUDIT_TRAINED_FILES),
        log:
            job_log("audit_train", group.label),
        benchmark:
            job_benchmark("audit_train", group.label)
        wildcard_constraints:
            method="|".join(AUDIT.methods),
        conda:
            "../../environment.yml"
        threads: 1
        resources:
            gpu=get_train_gpus,
        params:
            settings=get_audit_training_config,
            device=config["device"],
            seeds=group.seeds_of,
        script:
            "../scripts/audit_train.py"


rule audit:
    input:
        unpack(get_audit_run_inputs),
        meta=rules.prepare_dataset.output.meta,
    output:
        table=f"{AUDIT_DIR}/audit.csv",
        roc=f"{AUDIT_DIR}/roc.csv",
    log:
        f"results/logs/audit/{CELL_STEM}.log",
    benchmark:
        "results/benchmarks/audit/{dataset}/{model}/{method}/eps-{epsilon}.tsv"
    wildcard_constraints:
        method="|".join(AUDIT.methods),
    conda:
        "../../environment.yml"
    params:
        settings=get_audit_settings(),
        intersections=config["evaluation"]["intersections"],
    script:
        "../scripts/audit.py"


rule aggregate_audit:
    input:
        tables=get_audit_tables("audit.csv"),
        rocs=get_audit_tables("roc.csv"),
    output:
        table="results/summary/audit.csv",
        roc="results/summary/audit_roc.csv",
    log:
        "results/logs/aggregate_audit.log",
    conda:
        "../../environment.yml"
    script:
        "../scripts/audit_aggregate.py"
