"""One benchmark run as files: train a cell and write its outputs; evaluate those outputs.

The rule scripts call these; tests call them directly with temporary paths.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd
import torch

from dpfair.data.prepare import PreparedDataset
from dpfair.metrics import evaluate_scores
from dpfair.models import resolve_device
from dpfair.privacy import format_epsilon, parse_epsilon
from dpfair.privacy_card import build_privacy_card
from dpfair.config import TrainConfig
from dpfair.training import predict, train

log = logging.getLogger(__name__)

#: Column order of results/summary/metrics.csv (the output contract in the README).
METRIC_COLUMNS = [
    "dataset", "model", "epsilon", "seed", "attribute",
    "auroc", "auroc_ci_low", "auroc_ci_high", "worst_group_auroc", "auroc_gap", "n_groups_in_gap",
    "epsilon_spent", "delta", "noise_multiplier", "max_grad_norm", "sample_rate", "expected_batch_size",
    "sampling", "epochs", "steps", "accountant", "n_train", "n_test", "train_seconds", "privacy_unit", "device",
    "epsilon_rdp", "epsilon_prv", "epsilon_pld",
]
SUBGROUP_COLUMNS = ["dataset", "model", "epsilon", "seed", "attribute", "group", "n", "n_positive", "auroc", "flagged"]


def train_run(
    *,
    prepared: PreparedDataset,
    model_name: str,
    epsilon: str | float,
    seed: int,
    config: TrainConfig | dict,
    device: str = "auto",
    model_path: str | Path,
    scores_path: str | Path,
    record_path: str | Path,
    card_path: str | Path,
) -> dict:
    """Train one run on the prepared training split; save weights, scores, the run record and its privacy card.

    Scores cover every row (training rows too: the membership-inference audit compares them with the
    held-out rows). The privacy card is checked before anything is written, so a run whose settings
    contradict its accounting leaves no outputs.
    """
    eps = parse_epsilon(epsilon)
    config = config if isinstance(config, TrainConfig) else TrainConfig(**config)
    torch_device = resolve_device(device)
    x_train, y_train = prepared.part("train")
    x_val, y_val = prepared.part("val")
    log.info(
        "train %s / %s at epsilon=%s seed=%d on %s: n_train=%d, %s",
        prepared.meta["name"], model_name, format_epsilon(eps), seed, torch_device, len(y_train), config,
    )
    result = train(
        model_name=model_name, modality=prepared.meta["modality"], x_train=x_train, y_train=y_train,
        epsilon=eps, delta=prepared.meta["delta"], config=config, seed=seed, device=torch_device,
        x_val=x_val, y_val=y_val,
    )
    scores = prepared.samples.drop(columns=["patient_id"], errors="ignore").assign(
        score=predict(result.model, prepared.x, device=torch_device)
    )
    record = {
        "dataset": prepared.meta["name"],
        "model": model_name,
        **result.record,
        "privacy_unit": prepared.meta["privacy_unit"],
        "preprocessing": prepared.meta["preprocessing"],
    }
    card = build_privacy_card(record, prepared.meta)
    record.update({k: card[k] for k in ("epsilon_rdp", "epsilon_prv", "epsilon_pld")}, history=result.history)
    log.info("privacy card: %s", {k: v for k, v in card.items() if k != "independent_accountants"})
    Path(card_path).write_text(json.dumps(card, indent=2, default=_json_float))
    torch.save(result.model.state_dict(), model_path)
    scores.to_csv(scores_path, index=False)
    Path(record_path).write_text(json.dumps(record, indent=2, default=_json_float))
    return record


def evaluate_run(
    *,
    scores: str | Path,
    record: str | Path,
    meta: str | Path,
    settings: dict,
    metrics_out: str | Path,
    subgroups_out: str | Path,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate one run's test scores and write its rows of the summary tables."""
    run = json.loads(Path(record).read_text())
    info = json.loads(Path(meta).read_text())
    attributes = info["card"]["sensitive_attributes"]
    table = pd.read_csv(scores, dtype={a: str for a in attributes}, keep_default_na=False)
    test = table[table["split"] == "test"]
    metrics, groups = evaluate_scores(
        test,
        attributes=attributes,
        min_group_size=settings.get("min_group_size", info.get("min_group_size", 30)),
        n_boot=settings.get("n_bootstrap", 1000),
        level=settings.get("ci_level", 0.95),
        seed=int(run["seed"]),
    )
    keys = {"dataset": run["dataset"], "model": run["model"], "epsilon": float(run["epsilon"]), "seed": run["seed"]}
    metrics = metrics.assign(**keys, n_test=len(test), **{k: run[k] for k in METRIC_COLUMNS if k in run and k not in keys})
    groups = groups.assign(**keys)
    metrics[METRIC_COLUMNS].to_csv(metrics_out, index=False)
    groups[SUBGROUP_COLUMNS].to_csv(subgroups_out, index=False)
    return metrics[METRIC_COLUMNS], groups[SUBGROUP_COLUMNS]


def _json_float(value):
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
