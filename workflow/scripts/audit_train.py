"""Rule script: train what the attacks of one audited cell's reference seeds need (reference models, a canary run).

One job trains every reference seed of its seed group with the run's own mechanism. The counts come from the
audit plan (``dpfair.audit.plan.AuditPlan.training_settings``): 0 for a need no configured attack has, which
trains nothing for it.
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
settings = run_settings(
    model=w.model,
    modality=prepared.meta["modality"],
    epsilon=w.epsilon,
    delta=run_delta(prepared, w.method),
    training=p["training"],
    device=str(resolve_device(snakemake.params.device)),
    method=w.method,
)
for i, seed in enumerate(snakemake.params.seeds):
    train_audit_models(
        prepared=prepared,
        settings=settings,
        seed=int(seed),
        n_reference=p["n_reference"],
        n_canaries=p["n_canaries"],
        outputs={name: snakemake.output[f"{name}_{i}"] for name in ("references", "canaries", "record")},
    )
