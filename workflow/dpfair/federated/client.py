"""The Flower ``ClientApp``: one site's local epochs of training on its own rows, each round.

A site starts the round from the global weights and runs ``local_epochs`` epochs of dpfair's own DP-SGD step
(``dpsgd``'s trainer: Opacus's Poisson loader and DP optimizer, the configured clipping backend) over its
rows, with the σ the driver calibrated for the whole run (``fed_dpsgd``), or the same loop without
clipping and noise (``fed_dp_site``'s sites and the ε = ∞ FedAvg arm). It replies with its weights and one
metric record: its weight (1: sites weigh equally, as Flower's accounted DP path requires), and what it
ran (steps, the sampling rate its accountant charged, σ), which the driver composes into the site's ledger.

Each (site, round) draws its Poisson batches from a generator of its own, seeded from (run seed, site,
round) and nothing stored: a client that lost its state between rounds (another backend, a restarted
worker) could not replay a round's batches unnoticed. Round 1 of site 0 is seeded by the run's seed itself,
so a one-site federation's first round draws the batches central training draws. The noise of each
(site, round) is a stream of its own too (:mod:`dpfair.training.noise`).
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import replace

import torch

from dpfair.models import build_model
from dpfair.training.config import TrainConfig
from dpfair.training.loop import OPTIMIZERS
from dpfair.training.mechanisms import TrainingData, get_mechanism
from dpfair.training.noise import noise_generator


def site_batch_seed(seed: int, index: int, server_round: int) -> int:
    """The batch seed of site ``index`` in ``server_round``.

    The run's seed for site 0's first round, else an unrelated 62-bit seed of (seed, site, round).

    Example:
        >>> site_batch_seed(7, 0, 1), len({site_batch_seed(7, i, r) for i in range(3) for r in (1, 2, 3)})
        (7, 9)
    """
    if index == 0 and server_round == 1:
        return int(seed)
    text = f"dpfair-site-batches|{int(seed)}|{int(index)}|{int(server_round)}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 2


@functools.lru_cache(maxsize=2)
def load_spec(path: str) -> dict:
    """The run's client spec (site rows, model, settings), read once per worker process."""
    return torch.load(path, weights_only=False)


def local_update(spec: dict, index: int, server_round: int, global_state: dict) -> tuple[dict, dict]:
    """Site ``index``'s local epochs in ``server_round`` from ``global_state``: (new state dict, metrics).

    A plain function of its inputs (the ClientApp below only unpacks Flower's messages), so a test can run a
    site's round without a simulation.
    """
    site = spec["sites"][index]
    config = TrainConfig(**spec["config"])
    sigma = spec["sigma"][site]
    private = sigma is not None
    local = replace(config, epochs=spec["local_epochs"], noise_multiplier=sigma)
    torch.set_num_threads(1)
    model = build_model(spec["model_name"], input_shape=tuple(spec["input_shape"]), modality=spec["modality"])
    model.load_state_dict(global_state)
    optimizer = OPTIMIZERS[config.optimizer](model.parameters(), config.lr)
    generator = torch.Generator().manual_seed(site_batch_seed(spec["seed"], index, server_round))
    noise = None
    if private:
        noise = noise_generator(
            seed=spec["seed"],
            method=spec["method"],
            epsilon=spec["epsilon"],
            key=f"{spec['noise_key']}|site={site}|round={server_round}",
        )
    trainer = get_mechanism("dpsgd").make_trainer(
        model=model,
        optimizer=optimizer,
        data=TrainingData(x=spec["x"][site], y=spec["y"][site], label_prior=spec["label_prior"]),
        config=local,
        epsilon=spec["epsilon"] if private else math.inf,
        delta=spec["delta"],
        generator=generator,
        noise_generator=noise,
    )
    steps = 0
    model.train()
    for _ in range(spec["local_epochs"]):
        for batch in trainer.loader:
            trainer.step(*batch)
            steps += 1
    trainer.close()
    trainer.check(steps)  # Opacus's accountant of this round saw every step, at the charged rate
    metrics = {
        "weight": 1,
        "site": index,
        "round": server_round,
        "steps": steps,
        "sample_rate": float(1.0 / len(trainer.loader)),
        "noise_multiplier": float(trainer.noise_multiplier),
        "nonfinite_units": int(trainer.stats().get("nonfinite_units", 0)),
    }
    state = {k: v.detach().clone() for k, v in trainer.module.state_dict().items()}
    return state, metrics


def make_client_app(spec_path: str):
    """A Flower ``ClientApp`` whose ``train`` handler runs :func:`local_update` for the node's site."""
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def train(msg: Message, context) -> Message:
        spec = load_spec(spec_path)
        index = int(context.node_config["partition-id"])
        server_round = int(msg.content["config"]["server-round"])
        state, metrics = local_update(spec, index, server_round, msg.content["arrays"].to_torch_state_dict())
        content = RecordDict({"arrays": ArrayRecord(state), "metrics": MetricRecord(metrics)})
        return Message(content=content, reply_to=msg)

    return app
