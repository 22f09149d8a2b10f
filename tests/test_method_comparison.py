"""Method comparison (each mitigation minus dpsgd at the same ε): interval coverage by seeded simulation,
and the table, verdicts and per-group moves on runs with a planted effect scored by the real fairness code."""

import json

import numpy as np
import pandas as pd
import pytest
from dpfair.fairness import evaluate_fairness
from dpfair.tables.method_comparison import COLUMNS, GROUP_COLUMNS, compare_methods, paired_difference, report_rows


def test_interval_covers_a_zero_difference_at_about_the_level():
    # Two arms with the same truth: seed effects shared per seed plus arm noise, and a shared test-set draw
    rng = np.random.default_rng(0)
    n_boot, covered, trials = 300, 0, 300
    for _ in range(trials):
        seeds = rng.normal(0, 0.02, 3)
        test = rng.normal(0, 0.01, n_boot)
        arms = []
        for _arm in range(2):
            point = 0.8 + seeds + rng.normal(0, 0.01, 3)
            reps = point[:, None] + test[None, :] + rng.normal(0, 0.003, (3, n_boot))
            arms.append(pd.DataFrame(np.c_[point, reps], columns=["point", *range(n_boot)]))
        _, low, high, paired = paired_difference(arms[0], arms[1], rng=rng)
        assert paired
        covered += low <= 0 <= high
    assert 0.88 <= covered / trials <= 0.995, covered / trials


def _runs(tmp_path, *, effect: float):
    """dpsgd and dpsgd_f at ε = 1, 3 seeds each, one test set; dpsgd_f lifts group B's scores of positives."""
    rng = np.random.default_rng(1)
    n = 1200
    site = np.where(rng.uniform(size=n) < 0.4, "B", "A")
    label = (rng.uniform(size=n) < 0.4).astype(int)
    split = np.where(np.arange(n) < 400, "val", "test")
    records, scores, gaps, reps = [], [], [], []
    for method in ("dpsgd", "dpsgd_f"):
        for seed in range(3):
            noise = np.where(site == "B", 1.6, 0.8)  # site B is noisier: a planted gap
            lift = effect * (method == "dpsgd_f") * (site == "B") * label
            score = 1 / (1 + np.exp(-(1.2 * label + lift + rng.normal(0, noise, n) + rng.normal(0, 0.05))))
            folder = tmp_path / method / f"seed-{seed}"
            folder.mkdir(parents=True)
            table = pd.DataFrame({"split": split, "label": label, "site": site, "score": score})
            table.to_csv(folder / "scores.csv", index=False)
            (folder / "run.json").write_text(
                json.dumps({"dataset": "d", "model": "cnn", "method": method, "epsilon": 1.0, "seed": seed})
            )
            records.append(folder / "run.json")
            scores.append(folder / "scores.csv")
            report = evaluate_fairness(scores=table, attributes=["site"], min_group_size=30, n_boot=200, seed=0)
            keys = {"dataset": "d", "model": "cnn", "method": method, "epsilon": 1.0, "seed": seed}
            gaps.append(report.gaps.assign(**keys))
            reps.append(report.gap_replicates.assign(**keys))
    return records, scores, pd.concat(gaps), pd.concat(reps)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {effect: _runs(tmp_path_factory.mktemp(f"effect{effect}"), effect=effect) for effect in (0.8, 0.0)}


@pytest.mark.parametrize("effect", [0.8, 0.0])
def test_comparison_finds_a_planted_narrowing_and_says_who_gained(runs, effect):
    records, scores, gaps, reps = runs[effect]
    table, groups = compare_methods(
        records=records, scores=scores, gaps=gaps, replicates=reps, attributes={"d": "site"}, n_boot=200
    )
    assert list(table.columns) == COLUMNS and list(groups.columns) == GROUP_COLUMNS
    row = table.iloc[0]
    assert (row["method"], row["epsilon"], row["attribute"], row["n_seeds"], row["paired_by_seed"]) == (
        "dpsgd_f",
        1.0,
        "site",
        3,
        True,
    )
    # the compared gap is the excess gap: raw gap minus each run's own permutation null
    excess = (row["method_gap"] - row["method_null_gap"]) - (row["baseline_gap"] - row["baseline_null_gap"])
    assert row["gap_diff"] == pytest.approx(excess)
    assert row["raw_gap_diff"] == pytest.approx(row["method_gap"] - row["baseline_gap"])
    assert row["method_null_gap"] > 0 and row["baseline_null_gap"] > 0
    b = groups.set_index("group").loc["B"]
    if effect:
        assert row["gap_diff_ci_high"] < 0 and "narrowed the excess site AUROC gap" in row["verdict"]
        assert b["verdict"] == "gained" and b["auroc_diff_ci_low"] > 0
        assert "B gained" in report_rows(table, groups)[0]["groups_text"]
    else:
        assert row["gap_diff_ci_low"] < 0 < row["gap_diff_ci_high"]
        assert "did not change" in row["verdict"] and b["verdict"] == "no change detected"


def test_no_mitigation_gives_empty_tables(runs):
    records, scores, gaps, reps = runs[0.0]
    table, groups = compare_methods(records=records, scores=scores, gaps=gaps, replicates=reps, attributes={})
    assert table.empty and list(table.columns) == COLUMNS and groups.empty
