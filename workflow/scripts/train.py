"""Rule script: train the runs of one job (every ε and seed of a (dataset, model, method), or a part) and score their rows."""

from dpfair.logs import log_to_file

log_to_file(snakemake.log[0])

import torch  # noqa: E402
from dpfair.data.prepare import load_prepared  # noqa: E402
from dpfair.pipeline.runner import train_runs  # noqa: E402
from dpfair.synthesis.release import release_files  # noqa: E402
from dpfair.training.mechanisms import get_mechanism  # noqa: E402
from dpfair.training.tuning.names import split_method  # noqa: E402

torch.set_num_threads(snakemake.threads)
prepared = load_prepared(data=snakemake.input.data, samples=snakemake.input.samples, meta=snakemake.input.meta)
seeds = snakemake.params.seeds
epsilons = snakemake.params.epsilons
method = snakemake.wildcards.method
# a synthesis method's finite-ε runs train on their releases (the rule's synthetic inputs, at these paths)
synthetic = None
if get_mechanism(split_method(method)[0]).synthesizes:
    synthetic = [
        None if e == "inf" else release_files(dataset=snakemake.wildcards.dataset, method=method, epsilon=e, seed=s)
        for e, s in zip(epsilons, seeds)
    ]
train_runs(
    seeds=seeds,
    epsilons=epsilons,
    synthetic=synthetic,
    outputs=[
        {k: snakemake.output[f"{k}_{i}"] for k in ("model", "scores", "record", "card")} for i in range(len(seeds))
    ],
    park=snakemake.params.park,
    # a kept run of a failed job is taken back only while the prepared dataset is the one it was trained on
    inputs=[snakemake.input.data, snakemake.input.samples, snakemake.input.meta, *snakemake.input.public_weights],
    prepared=prepared,
    model_name=snakemake.wildcards.model,
    method=method,
    config=snakemake.params.training,
    device=snakemake.params.device,
    # where the workflow found the dataset module, so run.json's definition hash is the workflow's (read from
    # config, not added to params: a new param would retrain every finished run)
    datasets_dir=snakemake.config["datasets_dir"],
)
