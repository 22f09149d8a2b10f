"""Rule script: train what one audited run's attacks need (reference models, a canary run) with the run's own mechanism.

The counts come from the audit plan (``dpfair.audit.plan.AuditPlan.training_settings``): 0 for a need no
configured attack has, which trains nothing for it.
"""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

import torch  # noqa: E402
from dpfair.audit.train_models import train_audit_models  # noqa: E402
from dpfair.audit.training_adapter import run_delta, run_settings  # noqa: E402
from dpfair.data.prepare import load_prepared  # noqa: E402
from dpfair.models import resolve_device  # noqa: E402

torch.set_num_threads(snakemake.threads)
prepared = load_prepared(data=snakemake.input.data, samples=snakemake.input.samples, meta=snakemake.input.meta)
w, p = snakemake.wildcards, snakemake.params.settings
train_audit_models(
    prepared=prepared,
    settings=run_settings(
        model=w.model,
        modality=prepared.meta["modality"],
        epsilon=w.epsilon,
        delta=run_delta(prepared, w.method),
        training=p["training"],
        device=str(resolve_device(snakemake.params.device)),
        method=w.method,
    ),
    seed=int(w.seed),
    n_reference=p["n_reference"],
    n_canaries=p["n_canaries"],
    outputs={name: snakemake.output[name] for name in ("references", "canaries", "record")},
)
