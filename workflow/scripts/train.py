"""Rule script: train one (dataset, model, method, epsilon, seed) run and score its validation and test rows."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

import torch  # noqa: E402
from dpfair.data.prepare import load_prepared  # noqa: E402
from dpfair.pipeline.runner import train_run  # noqa: E402

torch.set_num_threads(snakemake.threads)
prepared = load_prepared(data=snakemake.input.data, samples=snakemake.input.samples, meta=snakemake.input.meta)
train_run(
    prepared=prepared,
    model_name=snakemake.wildcards.model,
    method=snakemake.wildcards.method,
    epsilon=snakemake.wildcards.epsilon,
    seed=int(snakemake.wildcards.seed),
    config=snakemake.params.training,
    device=snakemake.params.device,
    # where the workflow found the dataset module, so run.json's definition hash is the workflow's (read from
    # config, not added to params: a new param would retrain every finished run)
    datasets_dir=snakemake.config["datasets_dir"],
    model_path=snakemake.output.model,
    scores_path=snakemake.output.scores,
    record_path=snakemake.output.record,
    card_path=snakemake.output.card,
)
