"""The report's audit section: certified bounds per seed (never a maximum), empty TPR where the tail is thin."""

import numpy as np
import pandas as pd
from dpfair.report.audit import audit_section, claim_rows, group_rows


def _rows(eps, seed, attack, metric, value, ci=(np.nan, np.nan), attribute="", group=""):
    return {
        "dataset": "d",
        "model": "mlp",
        "method": "dpsgd",
        "epsilon": eps,
        "seed": seed,
        "attack": attack,
        "metric": metric,
        "value": value,
        "ci_low": ci[0],
        "ci_high": ci[1],
        "n": 100,
        "attribute": attribute,
        "group": group,
    }


AUDIT = pd.DataFrame(
    [
        _rows(1.0, 0, "loss", "auroc", 0.52, (0.48, 0.56)),
        _rows(1.0, 1, "loss", "auroc", 0.54, (0.50, 0.58)),
        _rows(1.0, 0, "loss", "tpr_at_1pct_fpr", np.nan),
        _rows(1.0, 1, "loss", "tpr_at_1pct_fpr", np.nan),
        _rows(1.0, 0, "loss", "epsilon_empirical", 0.2),
        _rows(1.0, 1, "loss", "epsilon_empirical", 0.6),
        _rows(1.0, 0, "loss", "bound_violated", 0.0),
        _rows(1.0, 1, "loss", "bound_violated", 0.0),
        _rows(1.0, 0, "one_run", "epsilon_lower_bound", 0.31),
        _rows(1.0, 1, "one_run", "epsilon_lower_bound", 0.12),
        _rows(1.0, 0, "loss", "auroc", 0.6, (0.5, 0.7), "sex", "F"),
        _rows(float("inf"), 0, "one_run", "epsilon_lower_bound", 2.5),
    ]
)


def test_claims_list_each_seed_bound_and_average_the_empirical_estimate():
    rows = {r["epsilon"]: r for r in claim_rows(AUDIT)}
    assert rows["1"]["certified"] == "0.31 (seed 0), 0.12 (seed 1)" and not rows["1"]["exceeds"]
    loss = rows["1"]["attacks"][0]
    assert loss["eps_empirical"] == "0.4" and loss["tpr1"] == "—" and loss["violated"] == "0 of 2"
    assert loss["auroc"].startswith("0.53 [")
    assert rows["∞"]["certified"] == "2.5 (seed 0)" and not rows["∞"]["exceeds"]  # ∞ claims nothing


def test_a_bound_above_the_claim_is_flagged():
    bad = pd.concat([AUDIT, pd.DataFrame([_rows(1.0, 2, "one_run", "epsilon_lower_bound", 1.4)])], ignore_index=True)
    assert {r["epsilon"]: r for r in claim_rows(bad)}["1"]["exceeds"]


def test_group_rows_and_section():
    rows = group_rows(AUDIT)
    assert rows == [
        {
            "model": "mlp",
            "attack": "loss threshold",
            "attribute": "sex",
            "group": "F",
            "n": 100,
            "cells": ["0.6 [0.5, 0.7]"],
        }
    ]
    assert audit_section(audit=AUDIT.iloc[:0], roc=pd.DataFrame()) is None
    section = audit_section(audit=AUDIT, roc=pd.DataFrame(columns=["seed"]))
    assert section["roc_figure"] is None and section["min_tail"] == 10 and section["group_epsilons"] == ["1"]
