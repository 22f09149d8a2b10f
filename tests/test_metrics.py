"""Metrics against hand-computed values, including one-class and small subgroups."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dpfair.metrics import auroc_with_ci, bootstrap_auroc, evaluate_scores, gap_summary, safe_auroc, subgroup_table


def test_auroc_by_hand():
    # pairs (pos, neg): 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes, 0.8>0.4 yes -> 3/4
    assert safe_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half
    assert safe_auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


def test_one_class_auroc_is_nan_not_an_error():
    assert math.isnan(safe_auroc([1, 1, 1], [0.2, 0.3, 0.9]))


def test_vectorised_bootstrap_matches_sklearn_per_resample():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(y * 0.5 + rng.normal(size=200), 1)  # rounding creates ties
    boots = bootstrap_auroc(y, s, n_boot=5, seed=3)
    # replay the same draws by hand
    r = np.random.default_rng(3)
    pos, neg = s[y == 1], s[y == 0]
    p_idx = r.integers(0, len(pos), (5, len(pos)))
    n_idx = r.integers(0, len(neg), (5, len(neg)))
    for b in range(5):
        scores = np.concatenate([pos[p_idx[b]], neg[n_idx[b]]])
        labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        assert boots[b] == pytest.approx(roc_auc_score(labels, scores))


def test_ci_brackets_the_estimate_and_narrows_with_n():
    rng = np.random.default_rng(1)

    def width(n):
        y = rng.integers(0, 2, n)
        auc, lo, hi = auroc_with_ci(y, y + rng.normal(size=n), n_boot=500)
        assert lo <= auc <= hi
        return hi - lo

    assert width(4000) < width(200) / 2


def test_subgroup_table_by_hand_with_one_class_and_small_groups():
    y = np.array([0, 0, 1, 1, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.1, 0.5, 0.6])
    groups = pd.Series(["a", "a", "a", "a", "b", "b", "c", "c", "c"], name="site")
    table = subgroup_table(y, s, groups, min_group_size=3).set_index("group")
    assert table.loc["a", "auroc"] == pytest.approx(0.75)
    assert table.loc["b", "auroc"] == pytest.approx(1.0)
    assert math.isnan(table.loc["c", "auroc"])  # one class
    assert table["n"].to_dict() == {"a": 4, "b": 2, "c": 3}
    assert table["n_positive"].to_dict() == {"a": 2, "b": 1, "c": 3}
    assert table["flagged"].to_dict() == {"a": False, "b": True, "c": False}
    # b is flagged (too small) and c has no AUROC: only a is left, so the gap is 0
    assert gap_summary(table.reset_index()) == {"worst_group_auroc": 0.75, "auroc_gap": 0.0, "n_groups_in_gap": 1}


def test_gap_is_max_minus_min_over_usable_groups():
    table = pd.DataFrame({"group": list("xyz"), "auroc": [0.9, 0.7, 0.8], "flagged": [False, False, False], "n": 50, "n_positive": 10})
    summary = gap_summary(table)
    assert summary["auroc_gap"] == pytest.approx(0.2)
    assert summary["worst_group_auroc"] == pytest.approx(0.7)


def test_evaluate_scores_rows():
    rng = np.random.default_rng(2)
    n = 400
    frame = pd.DataFrame({
        "label": rng.integers(0, 2, n),
        "sex": rng.choice(["female", "male"], n),
        "age_group": rng.choice(["<40", "40-59"], n),
    })
    frame["score"] = frame["label"] + rng.normal(size=n)
    metrics, groups = evaluate_scores(frame, attributes=["sex", "age_group"], n_boot=200)
    assert list(metrics["attribute"]) == ["sex", "age_group"]
    assert metrics["auroc"].nunique() == 1  # overall AUROC repeats on every attribute row
    assert metrics.loc[0, "auroc"] == pytest.approx(roc_auc_score(frame["label"], frame["score"]))
    assert len(groups) == 4 and set(groups["attribute"]) == {"sex", "age_group"}
