"""The Flower ``ServerApp``: Flower's ``FedAvg`` over every site each round, DP-wrapped for the site level.

``fed_dp_site`` wraps FedAvg in Flower's ``DifferentialPrivacyServerSideFixedClipping`` with Flower's own
``RdpAccountant`` (no amplification: every site every round, which that accountant requires), so the clip,
the noise and the account are Flower's code. Flower draws that noise from NumPy's global generator; the
server seeds it with the run's noise seed before the first round (reproducible, like DP-SGD's default
stream, and unlike any other run's).

The server also scores the global model on the validation split after every round (the run's monitor,
outside the guarantee as in central training) and keeps each round's replies' metric records, from which
the driver builds the ledgers.
"""

from __future__ import annotations

import math
import traceback

import numpy as np
import torch

from dpfair.metrics import safe_auroc
from dpfair.models import build_model
from dpfair.training.loop import bce_loss, predict_both


def make_server_app(*, spec: dict, outcome: dict):
    """A Flower ``ServerApp`` that runs the schedule of ``spec`` and fills ``outcome`` (weights, replies, history).

    ``outcome["error"]`` holds the traceback of anything the server raised: Flower's simulation runs the
    server in a thread and only logs its exceptions, so the driver re-raises it.
    """
    from flwr.app import ArrayRecord, MetricRecord
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

    from dpfair.federated.accounting import flower_accountant

    app = ServerApp()
    n_sites = len(spec["sites"])

    def keep_replies(records, weighting_key: str):
        # one metric record per reply (Flower's accounted DP path requires exactly that): kept per round
        outcome["replies"].append([dict(next(iter(r.metric_records.values()))) for r in records])
        return MetricRecord({"replies": len(records)})

    def monitor(server_round: int, arrays) -> MetricRecord | None:
        if server_round == 0 or spec["x_val"] is None:
            return None
        model = _model(spec, arrays.to_torch_state_dict())
        probs, logits = predict_both(model, spec["x_val"])
        y_val = spec["y_val"].cpu().numpy()
        entry = {"epoch": server_round, "val_auroc": safe_auroc(y_val, probs), "val_loss": bce_loss(logits, y_val)}
        outcome["history"].append(entry)
        return MetricRecord({k: float(v) for k, v in entry.items() if not (isinstance(v, float) and math.isnan(v))})

    @app.main()
    def main(grid, context) -> None:
        try:
            strategy = FedAvg(
                fraction_train=1.0,
                fraction_evaluate=0.0,
                min_train_nodes=n_sites,
                min_available_nodes=n_sites,
                weighted_by_key="weight",
                train_metrics_aggr_fn=keep_replies,
            )
            site_level = spec["site_noise_multiplier"] is not None
            if site_level:
                # all 63 bits of the run's noise seed (NumPy's legacy seeding takes them as two 32-bit words)
                seed = int(spec["server_noise_seed"])
                np.random.seed([seed & 0xFFFFFFFF, seed >> 32])
                strategy = DifferentialPrivacyServerSideFixedClipping(
                    strategy,
                    noise_multiplier=spec["site_noise_multiplier"],
                    clipping_norm=spec["update_clip"],
                    num_sampled_clients=n_sites,
                    accountant=flower_accountant(delta=spec["delta"], n_sites=n_sites),
                )
            initial = _model(spec, spec["initial_state"]).state_dict()
            result = strategy.start(
                grid=grid, initial_arrays=ArrayRecord(initial), num_rounds=spec["rounds"], evaluate_fn=monitor
            )
            outcome["state"] = result.arrays.to_torch_state_dict()
            if site_level:
                spent = strategy.privacy_spent()
                outcome["flower_privacy"] = {
                    "epsilon": float(spent.epsilon),
                    "delta": float(spent.delta),
                    "releases": int(spent.num_releases),
                    "accounting_method": spent.accounting_method,
                }
        except BaseException:  # noqa: BLE001 - handed to the driver, which raises it
            outcome["error"] = traceback.format_exc()

    return app


def _model(spec: dict, state: dict) -> torch.nn.Module:
    model = build_model(spec["model_name"], input_shape=tuple(spec["input_shape"]), modality=spec["modality"])
    model.load_state_dict(state)
    return model
