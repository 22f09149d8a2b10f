"""One benchmark run as files: train a cell and write its outputs; evaluate those outputs.

The rule scripts call these; tests call them directly with temporary paths.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dpfair.audit.training_adapter import predict_logits
from dpfair.pipeline.benchmark import TrainConfig
from dpfair.data.prepare import PreparedDataset
from dpfair.fairness import evaluate_fairness, metric_names
from dpfair.jsonio import write_json
from dpfair.metrics import NO_ATTRIBUTE
from dpfair.training.mechanisms import TrainingData, get_mechanism
from dpfair.models import resolve_device
from dpfair.privacy.params import format_epsilon, parse_epsilon, resolve_delta
from dpfair.privacy.card import build_privacy_card
from dpfair.training.loop import predict, train
from dpfair.training.tuning.names import split_method
from dpfair.training.tuning.procedure import tune_and_train

log = logging.getLogger(__name__)

#: Column order of results/summary/metrics.csv (the output contract in the README).
METRIC_COLUMNS = [
    "dataset", "model", "method", "epsilon", "seed", "attribute",
    "auroc", "auroc_ci_low", "auroc_ci_high", "worst_group_auroc", "auroc_gap", "n_groups_in_gap",
    "auroc_null_gap", "auroc_gap_p_value",
    "epsilon_spent", "delta", "noise_multiplier", "max_grad_norm", "sample_rate", "expected_batch_size",
    # recipe: what produced the row (chosen by tuning for a tuned arm; tuning_trials 0 for a fixed recipe)
    "tuning_trials", "epsilon_per_trial", "lr", "optimizer", "lr_schedule", "ema_decay", "select_best", "best_epoch",
    "class_weight", "clip_policy", "augmult",
    "sampling", "epochs", "steps", "accountant", "n_train", "n_test", "train_seconds", "privacy_unit", "n_units", "device",
    "epsilon_rdp", "epsilon_prv", "epsilon_pld",
    "mia_auroc", "mia_tpr_at_1pct_fpr", "mia_tpr_at_0p1pct_fpr", "mia_bound_violated", "mia_epsilon_empirical",
    "auroc_gap_ci_low", "auroc_gap_ci_high", "worst_group_auroc_ci_low", "worst_group_auroc_ci_high", "auroc_ratio",
    "auprc", "auprc_ci_low", "auprc_ci_high", "auprc_gap", "auprc_gap_ci_low", "auprc_gap_ci_high",
    "ece", "ece_ci_low", "ece_ci_high", "ece_gap", "ece_gap_ci_low", "ece_gap_ci_high",
    "threshold", "tpr", "tpr_ci_low", "tpr_ci_high", "fpr", "fpr_ci_low", "fpr_ci_high",
    "ppv", "ppv_ci_low", "ppv_ci_high", "balanced_accuracy", "balanced_accuracy_ci_low", "balanced_accuracy_ci_high",
    "eod", "eod_ci_low", "eod_ci_high", "eqodds_diff", "eqodds_diff_ci_low", "eqodds_diff_ci_high",
    "dpd", "dpd_ci_low", "dpd_ci_high",
]
SUBGROUP_COLUMNS = ["dataset", "model", "method", "epsilon", "seed", "attribute", "group", "n", "n_positive", "auroc"]


def train_run(
    *,
    prepared: PreparedDataset,
    model_name: str,
    epsilon: str | float,
    seed: int,
    config: TrainConfig | dict,
    method: str = "dpsgd",
    device: str = "auto",
    tuning: dict | None = None,
    model_path: str | Path,
    scores_path: str | Path,
    record_path: str | Path,
    card_path: str | Path,
) -> dict:
    """Train one run on the prepared training split; save weights, scores, the run record and its privacy card.

    Scores (probability and logit) cover every row (training rows too: the audit's attacks compare them
    with the held-out rows). The privacy card is checked before anything is written, so a run whose settings
    contradict its accounting leaves no outputs.
    """
    eps = parse_epsilon(epsilon)
    if isinstance(config, dict) and "tuning" in config:  # a tuned arm's rule params carry its tuning block
        config = dict(config)
        tuning = {**config.pop("tuning"), **(tuning or {})}
    config = config if isinstance(config, TrainConfig) else TrainConfig(**config)
    torch_device = resolve_device(device)
    x_train, y_train = prepared.part("train")
    x_val, y_val = prepared.part("val")
    train_rows = prepared.samples["split"] == "train"
    patient_id = prepared.samples.loc[train_rows, "patient_id"].to_numpy() if "patient_id" in prepared.samples else None
    base_method, tuned = split_method(method)
    mechanism = get_mechanism(base_method)
    # δ 'auto' follows the mechanism's unit count (patients for dpsgd_patient); a number must be below 1/n_units
    n_units = mechanism.n_units(TrainingData(x=x_train, y=y_train, patient_id=patient_id))
    delta = resolve_delta(prepared.meta.get("delta_setting", prepared.meta["delta"]), n_units,
                          where=f"datasets.{prepared.meta['name']}.delta ({method}: {n_units} {mechanism.unit}s)")
    log.info(
        "train %s / %s / %s at epsilon=%s seed=%d on %s: n_train=%d, n_units=%d, delta=%g, %s",
        prepared.meta["name"], model_name, method, format_epsilon(eps), seed, torch_device, len(y_train), n_units,
        delta, config,
    )
    common = dict(
        model_name=model_name, modality=prepared.meta["modality"], x_train=x_train, y_train=y_train,
        epsilon=eps, delta=delta, config=config, seed=seed, device=torch_device,
        x_val=x_val, y_val=y_val, method=method, patient_id=patient_id,
        groups=_train_groups(prepared, train_rows) if getattr(mechanism, "uses_groups", False) else None,
    )
    # a tuned arm runs all its trials here, in one job (imports and calibration paid once); the test
    # split is never passed to it
    result = tune_and_train(**common, tuning=tuning or {}) if tuned else train(**common)
    scores = prepared.samples.assign(
        score=predict(result.model, prepared.x, device=torch_device),
        logit=predict_logits(result.model, prepared.x, device=torch_device),  # the audit's attacks read logits
    )
    record = {
        "dataset": prepared.meta["name"],
        "model": model_name,
        **result.record,
        "preprocessing": prepared.meta["preprocessing"],
    }
    card = build_privacy_card(record, prepared.meta)
    record.update({k: card[k] for k in ("epsilon_rdp", "epsilon_prv", "epsilon_pld")}, history=result.history)
    log.info("privacy card: %s", {k: v for k, v in card.items() if k != "independent_accountants"})
    write_json(card_path, card)
    torch.save(result.model.state_dict(), model_path)
    scores.to_csv(scores_path, index=False)
    write_json(record_path, record)
    return record


def evaluate_run(
    *,
    scores: str | Path,
    record: str | Path,
    meta: str | Path,
    settings: dict,
    outputs: dict[str, str | Path],
) -> dict[str, pd.DataFrame]:
    """Evaluate one run and write its rows of the summary tables.

    Fairness and utility on the test rows at a threshold chosen on the validation rows
    (:func:`dpfair.fairness.evaluate_fairness`). The membership-inference attacks are the audit stage's
    (:mod:`dpfair.audit.stage`); the aggregate joins the loss attack's ``mia_*`` columns in.

    ``outputs`` maps ``metrics``, ``subgroups``, ``gaps``, ``replicates`` and ``reliability`` to paths.
    """
    run = json.loads(Path(record).read_text())
    info = json.loads(Path(meta).read_text())
    attributes = list(info["card"]["sensitive_attributes"])
    table = pd.read_csv(scores, dtype={**{a: str for a in attributes}, "patient_id": str}, keep_default_na=False)
    held_out = table[table["split"].isin(["val", "test"])]
    intersections = [tuple(i) for i in settings.get("intersections", []) if all(a in attributes for a in i)]
    report = evaluate_fairness(
        scores=held_out,
        attributes=attributes,
        intersections=intersections,
        min_group_size=settings.get("min_group_size", info.get("min_group_size", 30)),
        threshold_method=settings.get("threshold_method", "sensitivity"),
        target_sensitivity=settings.get("target_sensitivity", 0.9),
        n_bins=settings.get("calibration_bins", 10),
        n_boot=settings.get("n_bootstrap", 1000),
        n_perm=settings.get("n_permutations", settings.get("n_bootstrap", 1000)),
        level=settings.get("ci_level", 0.95),
        seed=settings.get("bootstrap_seed", 0),  # one seed for all runs: replicates pair across ε
    )
    keys = {"dataset": run["dataset"], "model": run["model"], "method": run.get("method", "dpsgd"),
            "epsilon": float(run["epsilon"]), "seed": run["seed"]}
    metric_rows = _metric_rows(report)
    metrics = pd.DataFrame(metric_rows).assign(
        **keys, n_test=int((table["split"] == "test").sum()),
        **{k: run[k] for k in METRIC_COLUMNS if k in run and k not in keys},
    )
    metrics = metrics[[c for c in METRIC_COLUMNS if c in metrics.columns]]
    subgroups = _subgroup_rows(report.groups).assign(**keys)
    subgroups = subgroups[[*SUBGROUP_COLUMNS, *(c for c in subgroups.columns if c not in SUBGROUP_COLUMNS)]]
    gaps = report.gaps.assign(**keys)
    replicates = report.gap_replicates.assign(**keys)
    reliability = report.reliability.assign(**keys)
    tables = {"metrics": metrics, "subgroups": subgroups, "gaps": gaps, "replicates": replicates, "reliability": reliability}
    for name, frame in tables.items():
        frame.to_csv(outputs[name], index=False)
    return tables


def _train_groups(prepared: PreparedDataset, train_rows: pd.Series) -> pd.DataFrame:
    """The training rows' sensitive attributes, for a mechanism that declares ``uses_groups`` (DPSGD-F)."""
    attributes = [a for a in prepared.meta["card"]["sensitive_attributes"] if a in prepared.samples.columns]
    return prepared.samples.loc[train_rows, attributes].reset_index(drop=True)


#: metrics.csv names for the gaps of evaluate_fairness (equal opportunity = TPR gap, demographic parity =
#: selection-rate gap, equalized odds = max of TPR and FPR gaps).
GAP_NAMES = {"auroc": "auroc_gap", "auprc": "auprc_gap", "tpr": "eod", "equalized_odds": "eqodds_diff",
             "selection_rate": "dpd", "ece": "ece_gap"}


def _metric_rows(report) -> list[dict]:
    overall = {}
    for r in report.overall.to_dict("records"):
        if r["metric"] in ("auroc", "auprc", "ece", "tpr", "fpr", "ppv", "balanced_accuracy"):
            overall.update({r["metric"]: r["value"], f"{r['metric']}_ci_low": r["ci_low"], f"{r['metric']}_ci_high": r["ci_high"]})
    overall["threshold"] = report.threshold
    rows = []
    for attr, gaps in report.gaps.groupby("attribute", sort=False):
        row = {"attribute": attr, **overall}
        for g in gaps.to_dict("records"):
            if g["metric"] == "auroc":
                row.update(worst_group_auroc=g["worst_group"], worst_group_auroc_ci_low=g["worst_group_ci_low"],
                           worst_group_auroc_ci_high=g["worst_group_ci_high"], auroc_ratio=g["ratio"],
                           n_groups_in_gap=g["n_groups"], auroc_null_gap=g["null_gap"], auroc_gap_p_value=g["p_value"])
            if g["metric"] in GAP_NAMES:
                name = GAP_NAMES[g["metric"]]
                row.update({name: g["gap"], f"{name}_ci_low": g["ci_low"], f"{name}_ci_high": g["ci_high"]})
        rows.append(row)
    if not rows:  # a dataset without sensitive attributes still reports utility and the audit
        rows.append({"attribute": NO_ATTRIBUTE, **overall, "n_groups_in_gap": 0})
    return rows


def _subgroup_rows(groups: pd.DataFrame) -> pd.DataFrame:
    if groups.empty:
        return pd.DataFrame(columns=["attribute", "group", "n", "n_positive", "flagged", "auroc"])
    keys = ["attribute", "group"]
    sizes = groups[[*keys, "n", "n_positive", "flagged"]].drop_duplicates(keys)
    wide = groups.pivot(index=keys, columns="metric", values=["value", "ci_low", "ci_high"])
    wide.columns = [m if stat == "value" else f"{m}_{stat}" for stat, m in wide.columns]
    metrics = [m for m in metric_names() if m in groups["metric"].unique()]
    wide = wide[[c for m in metrics for c in (m, f"{m}_ci_low", f"{m}_ci_high")]].reset_index()
    return sizes.merge(wide, on=keys, how="left")
