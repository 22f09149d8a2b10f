"""Summary tables in the form the mechanisms, fairness-statistics and audit work write them, for report tests.

Two datasets, three methods, ε ∈ {1, 10, inf}, three seeds. Numbers are drawn from a seeded generator
around planted values (a 0.15 AUROC cost at ε = 1, about 0.01 at ε = 10 on ``tabular``, a headline gap
change on one row) so tests can check the report says what the tables say.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

METHODS = ("dpsgd", "dpsgd_patient", "label_rr")
EPSILONS = (1.0, 10.0, math.inf)
SEEDS = (0, 1, 2)
DATASETS = {
    "imaging": ("cnn", ["site"], 3),
    "tabular": ("mlp", ["sex", "age_group"], 1),
}  # model, attributes, rows/patient
#: Planted AUROC at ε = ∞ and cost per ε (dataset -> ε -> cost).
BASE = {"imaging": 0.86, "tabular": 0.76}
COST = {"imaging": {1.0: -0.15, 10.0: -0.12}, "tabular": {1.0: -0.06, 10.0: -0.01}}
#: The one headline change that is significant after multiplicity control.
WIDENS = ("tabular", "mlp", "dpsgd", "age_group", "auroc", 1.0)


def eps_dir(eps: float) -> str:
    return "inf" if math.isinf(eps) else f"{eps:g}"


def write_fixture(root: Path, *, with_new_columns: bool = True) -> dict:
    """Write the summary tables, dataset.json files and privacy cards under ``root``; return render_report's kwargs."""
    rng = np.random.default_rng(7)
    metrics, subgroups, gaps, changes, audit, cards, metas = [], [], [], [], [], [], []
    for dataset, (model, attributes, k) in DATASETS.items():
        meta = {
            "name": dataset,
            "card": {
                "task": f"{dataset} task",
                "outcome": "o",
                "source": "s",
                "homepage": "https://example.org",
                "license": "CC0",
                "citation": "c",
            },
            "n": {"train": 2000, "val": 500, "test": 500},
            "prevalence": {"train": 0.3, "val": 0.3, "test": 0.3},
            "split": "by patient",
            "privacy_unit": "record",
            "delta": 1e-5,
            "preprocessing": "none",
            "warnings": [],
            "max_records_per_patient": k,
            "group_sizes": {a: {"train": {}, "val": {}, "test": {"g1": 300, "g2": 192, "g3": 8}} for a in attributes},
        }
        path = root / f"{dataset}.json"
        path.write_text(json.dumps(meta))
        metas.append(path)
        for method in METHODS:
            for eps in EPSILONS:
                mean = BASE[dataset] + (0 if math.isinf(eps) else COST[dataset][eps])
                for seed in SEEDS:
                    auroc = mean + rng.normal(0, 0.004)
                    run = {
                        "dataset": dataset,
                        "model": model,
                        "method": method,
                        "epsilon": eps,
                        "seed": seed,
                        "privacy_unit": "patient" if method == "dpsgd_patient" else "record",
                        "n_units": 2000 // k,
                    }
                    private = math.isfinite(eps)
                    privacy = {
                        "epsilon_spent": eps * 0.995 if private else math.inf,
                        "epsilon_prv": eps * 0.995 if private else math.inf,
                        "epsilon_pld": eps * 0.985 if private else math.inf,
                        "epsilon_rdp": eps * 1.1 if private else math.inf,
                        "delta": 1e-5,
                        "noise_multiplier": (1.2 / eps if private else 0.0),
                        "max_grad_norm": 1.0 if private else math.nan,
                        "sample_rate": 0.032,
                        "expected_batch_size": 64.0,
                        "sampling": "poisson",
                        "epochs": 2,
                        "steps": 62,
                        "accountant": "prv" if private else "none",
                        "n_train": 2000,
                        "train_seconds": 1.0,
                    }
                    mia = {
                        "mia_auroc": 0.5 + (0.04 if not private else 0.005) + rng.normal(0, 0.002),
                        "mia_tpr_at_1pct_fpr": 0.011,
                        "mia_tpr_at_0p1pct_fpr": 0.001,
                        "mia_bound_violated": False,
                        "mia_epsilon_empirical": 0.1,
                    }
                    tuning = (
                        {"tuning_trials": 8, "epsilon_per_trial": eps / 8 if private else math.inf}
                        if with_new_columns
                        else {}
                    )
                    for attr in attributes:
                        gap = (
                            0.05
                            + (0.04 if (dataset, model, method, attr, "auroc", eps) == WIDENS else 0)
                            + rng.normal(0, 0.003)
                        )
                        metrics.append(
                            {
                                **run,
                                "attribute": attr,
                                "auroc": auroc,
                                "auroc_ci_low": auroc - 0.03,
                                "auroc_ci_high": auroc + 0.03,
                                "auroc_gap": gap,
                                "auroc_gap_ci_low": gap - 0.02,
                                "auroc_gap_ci_high": gap + 0.02,
                                "worst_group_auroc": auroc - gap / 2,
                                **privacy,
                                **mia,
                                **tuning,
                            }
                        )
                        for metric, value in (("auroc", gap), ("tpr", 0.08 + rng.normal(0, 0.01))):
                            gaps.append(
                                {
                                    **run,
                                    "attribute": attr,
                                    "metric": metric,
                                    "gap": value,
                                    "ci_low": value - 0.02,
                                    "ci_high": value + 0.02,
                                    "null_gap": 0.01,
                                    "p_value": 0.3,
                                    "n_groups": 2,
                                }
                            )
                        for group, n in (("g1", 300), ("g2", 192), ("g3", 8)):
                            subgroups.append(
                                {
                                    **run,
                                    "attribute": attr,
                                    "group": group,
                                    "n": n,
                                    "n_positive": n // 3,
                                    "auroc": auroc + rng.normal(0, 0.02),
                                    "flagged": n < 10,
                                }
                            )
                    for attack, metric, value in (
                        ("loss", "auroc", mia["mia_auroc"]),
                        ("rmia", "auroc", mia["mia_auroc"] + 0.01),
                        ("one_run", "epsilon_lower_bound", min(eps, 0.4) if private else 2.5),
                    ):
                        audit.append(
                            {
                                **{k: run[k] for k in ("dataset", "model", "method", "epsilon", "seed")},
                                "attack": attack,
                                "metric": metric,
                                "value": value,
                                "ci_low": value - 0.01,
                                "ci_high": value + 0.01,
                                "n": 1000,
                                "attribute": "",
                                "group": "",
                            }
                        )
                    folder = root / "results/runs" / dataset / model / method / f"eps-{eps_dir(eps)}" / f"seed-{seed}"
                    folder.mkdir(parents=True)
                    card = {
                        **privacy,
                        "method": method,
                        "target_epsilon": eps if private else "inf",
                        "unit": run["privacy_unit"],
                        "n_units": run["n_units"],
                        "privacy_unit": run["privacy_unit"],
                        "accountant_implementation": "opacus 1.6.0" if private else "none (non-private)",
                        "clipping": "flat per-sample clipping"
                        if method != "dpsgd_patient"
                        else "per-patient clipping of summed gradients",
                        "guarantee_covers": f"the model's parameters with respect to one {run['privacy_unit']}",
                        "hyperparameter_selection": "8 trials, each at ε/8 (repeat-and-select)",
                        "ledger": {
                            "type": "SelfComposedDpEvent",
                            "count": 62,
                            "event": {
                                "type": "PoissonSampledDpEvent",
                                "sampling_probability": 0.032,
                                "event": {"type": "GaussianDpEvent", "noise_multiplier": privacy["noise_multiplier"]},
                            },
                        }
                        if private
                        else None,
                    }
                    if k > 1 and run["privacy_unit"] == "record" and private:
                        card["group_privacy"] = {
                            "k": k,
                            "epsilon": k * eps,
                            "delta": k * math.exp((k - 1) * eps) * 1e-5,
                            "meaningful": False,
                        }
                    (folder / "privacy_card.json").write_text(json.dumps(card))
                    cards.append(folder / "privacy_card.json")
    for dataset, (model, attributes, _) in DATASETS.items():
        for method in METHODS:
            for attr in attributes:
                for metric in ("auroc", "tpr", "fpr"):
                    for eps in EPSILONS[:-1]:
                        key = (dataset, model, method, attr, metric, eps)
                        significant = key == WIDENS
                        change = 0.04 if significant else rng.normal(0, 0.005)
                        verdict = (
                            f"DP at ε = {eps:g} widens the {attr} gap in AUROC by 0.04 [0.02, 0.06]"
                            if significant
                            else f"DP at ε = {eps:g}: no change detected in the {attr} gap"
                        )
                        changes.append(
                            {
                                "dataset": dataset,
                                "model": model,
                                "method": method,
                                "attribute": attr,
                                "metric": metric,
                                "epsilon": eps,
                                "gap_change": change,
                                "ci_low": change - 0.02,
                                "ci_high": change + 0.02,
                                "verdict": verdict,
                                "p_value": 0.001 if significant else 0.4,
                                "p_adjusted": 0.01 if significant else 0.9,
                                "family": "headline" if metric in ("auroc", "tpr") else "exploratory",
                            }
                        )
    tables = {"metrics": metrics, "subgroups": subgroups, "gaps": gaps, "gap_changes": changes, "audit": audit}
    out = {}
    for name, rows in tables.items():
        frame = pd.DataFrame(rows)
        if not with_new_columns:  # today's tables: DP-SGD only, no method, p-values or tuning columns
            frame = frame[frame["method"] == "dpsgd"].drop(
                columns=[
                    c
                    for c in ("method", "p_value", "p_adjusted", "family", "tuning_trials", "epsilon_per_trial")
                    if c in frame.columns
                ]
            )
            if name == "metrics":
                frame = frame.rename(columns={"mia_epsilon_empirical": "mia_epsilon_lower_bound"})
        frame.to_csv(root / f"{name}.csv", index=False)
        out[name] = root / f"{name}.csv"
    benchmark = {
        "name": "fixture",
        "description": "",
        "epsilons": [1, 10, "inf"],
        "seeds": list(SEEDS),
        "models": ["cnn", "mlp"],
        "evaluation": {"min_group_size": 10, "ci_level": 0.95},
    }
    if not with_new_columns:
        cards = [c for c in cards if "/dpsgd/" in c.as_posix()]
    return {
        "metrics": out["metrics"],
        "subgroups": out["subgroups"],
        "gaps": out["gaps"],
        "gap_changes": out["gap_changes"],
        "audit": out["audit"],
        "dataset_meta": metas,
        "privacy_cards": cards,
        "benchmark": benchmark,
        "definition": {**benchmark, "datasets_dir": str(root)},
    }
