"""Fairness metrics against hand-computed values, the validation-only threshold, bootstrap coverage, gap changes."""

import inspect
import math

import fairlearn.metrics
import numpy as np
import pandas as pd
import pytest
from dpfair.fairness import (
    FAIRNESS_ALIASES,
    GAP_COLUMNS,
    GROUP_COLUMNS,
    RELIABILITY_COLUMNS,
    DerivedGap,
    choose_threshold,
    evaluate_fairness,
    expected_calibration_error,
    gap_metric_names,
    get_gap,
    metric_names,
    reliability_table,
    stratified_bootstrap_weights,
    weighted_metrics,
)
from dpfair.fairness.metrics_registry import headline_metrics, reference_functions
from fairlearn.metrics import MetricFrame
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

# Three groups at threshold 0.5, min_group_size 5 (worked out in the comments below):
#   a (n=6, two classes), b (n=5, all positive: one class), c (n=2, flagged).
HAND = pd.DataFrame(
    {
        "label": [0, 0, 0, 1, 1, 1] + [1, 1, 1, 1, 1] + [0, 1],
        "score": [0.1, 0.4, 0.6, 0.35, 0.7, 0.9] + [0.2, 0.6, 0.8, 0.9, 0.55] + [0.3, 0.2],
        "site": ["a"] * 6 + ["b"] * 5 + ["c"] * 2,
    }
)
EXPECTED = {
    # a: pred [0,0,1,0,1,1] -> TP 2, FP 1 of P 3, N 3. AUROC: 0.35 beats 1 negative, 0.7 and 0.9 beat 3 -> 7/9.
    # AP: ranking + + - - + -: 1/3·1 + 1/3·1 + 1/3·3/5 = 13/15. ECE: every score alone in its bin:
    # (0.1 + 0.4 + 0.6 + 0.65 + 0.3 + 0.1) / 6.
    "a": {
        "auroc": 7 / 9,
        "auprc": 13 / 15,
        "tpr": 2 / 3,
        "fpr": 1 / 3,
        "ppv": 2 / 3,
        "balanced_accuracy": 2 / 3,
        "selection_rate": 0.5,
        "ece": 2.15 / 6,
    },
    # b: one class. pred [0,1,1,1,1]; ECE (0.8 + 0.4 + 0.2 + 0.1 + 0.45) / 5.
    "b": {
        "auroc": math.nan,
        "auprc": math.nan,
        "tpr": 0.8,
        "fpr": math.nan,
        "ppv": 1.0,
        "balanced_accuracy": math.nan,
        "selection_rate": 0.8,
        "ece": 1.95 / 5,
    },
    # c: pred [0,0]; the positive scores below the negative: AUROC 0, AP 1/2; ECE (0.3 + 0.8) / 2.
    "c": {
        "auroc": 0.0,
        "auprc": 0.5,
        "tpr": 0.0,
        "fpr": 0.0,
        "ppv": math.nan,
        "balanced_accuracy": 0.5,
        "selection_rate": 0.0,
        "ece": 0.55,
    },
}


def hand_report(**kwargs):
    # groups of a handful of rows: the small-class flag (tests/test_resampling_validity.py) is off here
    options = {"threshold": 0.5, "min_group_size": 5, "min_class_size": 0, "n_boot": 200, **kwargs}
    return evaluate_fairness(scores=HAND, attributes=["site"], **options)


def test_group_metrics_by_hand_with_one_class_and_flagged_groups():
    report = hand_report()
    assert list(report.groups.columns) == GROUP_COLUMNS
    groups = report.groups.set_index(["group", "metric"])
    for group, metrics in EXPECTED.items():
        for metric, value in metrics.items():
            got = groups.loc[(group, metric), "value"]
            assert math.isnan(got) if math.isnan(value) else got == pytest.approx(value), (group, metric, got)
    sizes = report.groups.drop_duplicates("group").set_index("group")
    assert sizes["n"].to_dict() == {"a": 6, "b": 5, "c": 2}
    assert sizes["n_positive"].to_dict() == {"a": 3, "b": 5, "c": 1}
    assert sizes["flagged"].to_dict() == {"a": False, "b": False, "c": True}
    # an undefined metric has no interval either
    assert groups.loc[("b", "auroc"), ["ci_low", "ci_high"]].isna().all()


def test_gaps_exclude_flagged_and_undefined_groups():
    gaps = hand_report().gaps
    assert list(gaps.columns) == GAP_COLUMNS
    gaps = gaps.set_index("metric")
    # AUROC: b undefined, c flagged -> a alone: no gap to speak of (NaN, not 0), worst group = a's value
    assert math.isnan(gaps.loc["auroc", "gap"]) and math.isnan(gaps.loc["auroc", "ratio"])
    assert gaps.loc["auroc", ["worst_group", "n_groups"]].tolist() == pytest.approx([7 / 9, 1])
    # TPR (equal opportunity): a 2/3, b 0.8; c (0.0) is flagged and must not widen the gap to 0.8
    assert gaps.loc["tpr", "gap"] == pytest.approx(0.8 - 2 / 3)
    assert gaps.loc["tpr", "ratio"] == pytest.approx((2 / 3) / 0.8)
    assert gaps.loc["tpr", "worst_group"] == pytest.approx(2 / 3)
    assert math.isnan(gaps.loc["fpr", "gap"]) and gaps.loc["fpr", "n_groups"] == 1
    assert gaps.loc["ppv", "gap"] == pytest.approx(1 / 3)
    assert gaps.loc["selection_rate", "gap"] == pytest.approx(0.3)  # demographic parity
    assert math.isnan(gaps.loc["selection_rate", "worst_group"])
    assert gaps.loc["ece", "gap"] == pytest.approx(1.95 / 5 - 2.15 / 6)
    assert gaps.loc["ece", "worst_group"] == pytest.approx(1.95 / 5)  # lower is better: worst = max
    # equalized odds = max(TPR gap, FPR gap), each over its own usable groups
    assert gaps.loc["equalized_odds", "gap"] == pytest.approx(0.8 - 2 / 3)
    assert gaps.loc["equalized_odds", "n_groups"] == 2
    # nothing usable at all -> NaN, not an error
    everything_flagged = hand_report(min_group_size=100).gaps.set_index("metric")
    assert everything_flagged["gap"].isna().all() and (everything_flagged["n_groups"] == 0).all()


@pytest.fixture(scope="module")
def three_groups():
    """Three large groups at threshold 0.5: every metric defined in every group, none flagged."""
    rng = np.random.default_rng(5)
    n = 600
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame(
        {"label": y, "group": rng.choice(["x", "y", "z"], n), "score": rng.uniform(size=n) * 0.5 + 0.4 * y}
    )
    report = evaluate_fairness(scores=frame, attributes=["group"], threshold=0.5, n_boot=100, min_group_size=10)
    return frame, report


@pytest.mark.parametrize("metric", gap_metric_names())
def test_differences_match_fairlearn_when_no_group_is_excluded(metric, three_groups):
    """Every gap is fairlearn's between-groups difference of the registry's reference, and the named
    fairlearn functions (equal opportunity, equalized odds, demographic parity) agree where they exist."""
    frame, report = three_groups
    gap = report.gaps.set_index("metric").loc[metric, "gap"]
    entry = get_gap(metric)
    names = entry.parts if isinstance(entry, DerivedGap) else (metric,)
    by_group = MetricFrame(
        metrics=reference_functions(threshold=0.5, n_bins=10, names=names),
        y_true=frame["label"],
        y_pred=frame["score"],
        sensitive_features=frame["group"],
    )
    assert gap == pytest.approx(by_group.difference(method="between_groups").max())
    pred = (frame["score"] >= 0.5).astype(int)
    for alias in (a for a, m in FAIRNESS_ALIASES.items() if m == metric):
        assert gap == pytest.approx(
            getattr(fairlearn.metrics, alias)(frame["label"], pred, sensitive_features=frame["group"])
        )


def test_overall_metrics_and_calibration_by_hand():
    report = hand_report()
    overall = report.overall.set_index("metric")["value"]
    assert overall["threshold"] == 0.5 and report.threshold_method == "given"
    assert overall["auroc"] == pytest.approx(roc_auc_score(HAND["label"], HAND["score"]))
    assert overall["auprc"] == pytest.approx(average_precision_score(HAND["label"], HAND["score"]))
    assert overall["tpr"] == pytest.approx(6 / 9)  # 2 + 4 + 0 of 3 + 5 + 1 positives
    # two scores sharing a bin: |mean score − rate| weighted by the bin's share
    assert expected_calibration_error(y_true=[0, 1, 1, 1], score=[0.2, 0.2, 0.8, 0.8]) == pytest.approx(
        0.5 * 0.3 + 0.5 * 0.2
    )
    assert expected_calibration_error(y_true=[1, 0], score=[1.0, 0.0]) == 0.0  # 1.0 falls in the last bin
    assert expected_calibration_error(y_true=[1, 1], score=[0.05, 0.15], n_bins=1) == pytest.approx(0.9)


def test_reliability_table():
    table = reliability_table(y_true=[0, 1, 1, 1, 0], score=[0.05, 0.15, 0.12, 0.95, 1.0], n_bins=10)
    assert len(table) == 10 and table["count"].sum() == 5
    row = table.set_index("bin").loc[1]
    assert (row["bin_low"], row["bin_high"], row["count"]) == (pytest.approx(0.1), pytest.approx(0.2), 2)
    assert row["mean_predicted"] == pytest.approx(0.135) and row["observed_frequency"] == 1.0
    last = table.set_index("bin").loc[9]
    assert last["count"] == 2 and last["observed_frequency"] == 0.5
    assert table.set_index("bin").loc[5, ["mean_predicted", "observed_frequency"]].isna().all()
    report = hand_report()
    assert list(report.reliability.columns) == RELIABILITY_COLUMNS
    per_group = report.reliability.groupby(["attribute", "group"])["count"].sum().to_dict()
    assert per_group == {("overall", "overall"): 13, ("site", "a"): 6, ("site", "b"): 5, ("site", "c"): 2}


def test_empty_intersection_does_not_appear():
    frame = pd.DataFrame(
        {
            "label": [0, 1, 0, 1, 0, 1, 1, 0],
            "score": [0.2, 0.8, 0.3, 0.6, 0.4, 0.9, 0.7, 0.1],
            "sex": ["f", "f", "f", "f", "m", "m", "m", "m"],
            "age": ["young", "young", "old", "old", "young", "young", "young", "young"],  # no (m, old)
        }
    )
    report = evaluate_fairness(
        scores=frame,
        attributes=["sex", "age"],
        intersections=[("sex", "age")],
        threshold=0.5,
        min_group_size=3,
        min_class_size=0,
        n_boot=50,
    )
    cross = report.groups[report.groups["attribute"] == "sex:age"].drop_duplicates("group").set_index("group")
    assert cross["n"].to_dict() == {"f:old": 2, "f:young": 2, "m:young": 4}
    assert cross["flagged"].to_dict() == {"f:old": True, "f:young": True, "m:young": False}
    gaps = report.gaps.set_index(["attribute", "metric"])
    assert gaps.loc[("sex:age", "auroc"), "n_groups"] == 1
    # every attribute's gaps, and the whole test set's headline metrics (attribute "overall")
    assert set(report.gap_replicates["attribute"]) == {"sex", "age", "sex:age", "overall"}


def test_choose_threshold_by_hand():
    positives = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    y = [1] * 10 + [0] * 3
    s = positives + [0.05, 0.5, 0.85]
    # 9 of 10 positives must be at or above the threshold: the 9th highest positive score
    assert choose_threshold(y_val=y, score_val=s, target_sensitivity=0.9) == 0.2
    assert choose_threshold(y_val=y, score_val=s, target_sensitivity=0.85) == 0.2
    assert choose_threshold(y_val=y, score_val=s, target_sensitivity=1.0) == 0.1
    assert choose_threshold(y_val=y, score_val=s, target_sensitivity=0.5) == 0.6
    # k = ceil(0.9 * 30) must be 27, not 28, despite 0.9 * 30 = 27.000000000000004
    many = np.arange(30) / 30
    assert choose_threshold(y_val=np.ones(30), score_val=many, target_sensitivity=0.9) == pytest.approx(3 / 30)
    # Youden: J at each threshold of [0 0 1 1 1 1] / [.1 .6 .3 .5 .7 .9]: .9->.25 .7->.5 .6->0 .5->.25 .3->.5
    assert choose_threshold(y_val=[0, 0, 1, 1, 1, 1], score_val=[0.1, 0.6, 0.3, 0.5, 0.7, 0.9], method="youden") == 0.7
    with pytest.raises(ValueError):
        choose_threshold(y_val=[0, 0], score_val=[0.1, 0.2])
    with pytest.raises(ValueError):
        choose_threshold(y_val=[0, 1], score_val=[0.1, 0.2], method="f1")


def test_threshold_comes_from_validation_rows_only():
    assert set(inspect.signature(choose_threshold).parameters) == {"y_val", "score_val", "method", "target_sensitivity"}
    rng = np.random.default_rng(3)
    n = 400
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame(
        {
            "row": np.arange(n),
            "split": np.where(np.arange(n) < 150, "val", "test"),
            "label": y,
            "site": rng.choice(["A", "B"], n),
            "score": np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1),
        }
    )
    val = frame[frame["split"] == "val"]
    for method in ("sensitivity", "youden"):
        expected = choose_threshold(y_val=val["label"], score_val=val["score"], method=method)
        altered = frame.copy()
        test = altered["split"] == "test"
        altered.loc[test, "score"] = rng.permutation(altered.loc[test, "score"].to_numpy()) ** 3
        altered.loc[test, "label"] = 1 - altered.loc[test, "label"]
        thresholds = {
            evaluate_fairness(scores=f, attributes=["site"], threshold_method=method, n_boot=20).threshold
            for f in (frame, altered)
        }
        assert thresholds == {expected}
    # but changing validation scores does move it
    moved = frame.assign(score=np.where(frame["split"] == "val", frame["score"] ** 2, frame["score"]))
    assert evaluate_fairness(scores=moved, attributes=["site"], n_boot=20).threshold != expected
    with pytest.raises(ValueError, match="threshold"):
        evaluate_fairness(scores=frame.drop(columns="split"), attributes=["site"])


def tied_resamples():
    rng = np.random.default_rng(0)
    n = 120
    y = rng.integers(0, 2, n)
    s = np.round(np.clip(0.2 * y + rng.uniform(0, 0.8, n), 0, 1), 1)  # rounding creates ties
    weights = stratified_bootstrap_weights(strata=pd.DataFrame({"g": rng.integers(0, 3, n), "y": y}), n_boot=5, seed=7)
    return y, s, weights


def test_weighted_kernel_matches_sklearn_on_each_resample():
    y, s, weights = tied_resamples()
    reps = weighted_metrics(y_true=y, score=s, weights=weights, threshold=0.5)
    for b in range(len(weights)):
        idx = np.repeat(np.arange(len(y)), weights[b].astype(int))  # the resample as rows
        assert reps["auroc"][b] == pytest.approx(roc_auc_score(y[idx], s[idx]))
        assert reps["auprc"][b] == pytest.approx(average_precision_score(y[idx], s[idx]))
        assert reps["ece"][b] == pytest.approx(expected_calibration_error(y_true=y[idx], score=s[idx]))


@pytest.mark.parametrize("metric", metric_names())
def test_kernel_on_case_weights_equals_the_reference_on_the_resampled_rows(metric):
    """Contract of every registered metric: a resample as case weights gives the reference's value on its rows."""
    y, s, weights = tied_resamples()
    reps = weighted_metrics(y_true=y, score=s, weights=weights, threshold=0.5, metrics=(metric,))[metric]
    reference = reference_functions(threshold=0.5, n_bins=10, names=(metric,))[metric]
    for b in range(len(weights)):
        idx = np.repeat(np.arange(len(y)), weights[b].astype(int))
        assert reps[b] == pytest.approx(reference(y[idx], s[idx]), nan_ok=True)
        assert reps[b] == pytest.approx(
            weighted_metrics(y_true=y[idx], score=s[idx], threshold=0.5, metrics=(metric,))[metric][0]
        )


@pytest.mark.parametrize("metric", metric_names())
def test_point_estimates_through_metricframe_equal_the_bootstrap_kernel(metric):
    rng = np.random.default_rng(1)
    n = 300
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame(
        {"label": y, "site": rng.choice(["A", "B", "C"], n), "score": np.round(rng.uniform(size=n) * 0.6 + 0.3 * y, 2)}
    )
    report = evaluate_fairness(scores=frame, attributes=["site"], threshold=0.45, n_boot=50, min_group_size=10)
    groups = report.groups[report.groups["metric"] == metric].set_index("group")["value"]
    assert len(groups) == 3
    for group, value in groups.items():
        part = frame[frame["site"] == group]
        assert value == pytest.approx(
            weighted_metrics(y_true=part["label"], score=part["score"], threshold=0.45, metrics=(metric,))[metric][0]
        )


def test_stratified_weights_keep_cell_counts_and_pair_across_runs():
    strata = pd.DataFrame({"group": list("aabbbbc"), "label": [0, 1, 0, 0, 1, 1, 1]})
    weights = stratified_bootstrap_weights(strata=strata, n_boot=300, seed=4)
    for cols in ([0], [1], [2, 3], [4, 5], [6]):
        assert (weights[:, cols].sum(axis=1) == len(cols)).all()
    assert weights[:, [2, 3]].std() > 0  # cells of two rows do get resampled
    assert np.array_equal(weights, stratified_bootstrap_weights(strata=strata, n_boot=300, seed=4))
    # two runs on one test set (rows in another order in the file): identical resamples, so identical
    # replicates when the scores are the same, and paired replicates when they are not
    rng = np.random.default_rng(2)
    n = 200
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame(
        {"row": np.arange(n), "label": y, "site": rng.choice(["A", "B"], n), "score": rng.uniform(size=n)}
    )
    first = evaluate_fairness(scores=frame, attributes=["site"], threshold=0.5, n_boot=100, seed=9)
    shuffled = evaluate_fairness(
        scores=frame.sample(frac=1, random_state=0), attributes=["site"], threshold=0.5, n_boot=100, seed=9
    )
    pd.testing.assert_frame_equal(first.gap_replicates, shuffled.gap_replicates)


def test_planted_gap_is_found():
    rng = np.random.default_rng(4)
    n = 1200
    y = rng.integers(0, 2, n)
    site = rng.choice(["A", "B"], n, p=[0.6, 0.4])
    separation = np.where(site == "A", 2.0, 0.5)  # site B: lower AUROC by construction
    score = 1 / (1 + np.exp(-(separation * (2 * y - 1) + rng.normal(0, 1, n))))
    frame = pd.DataFrame(
        {
            "row": np.arange(n),
            "split": np.where(np.arange(n) < 400, "val", "test"),
            "label": y,
            "site": site,
            "score": score,
        }
    )
    report = evaluate_fairness(scores=frame, attributes=["site"])
    auroc = report.gaps.set_index("metric").loc["auroc"]
    assert auroc["ci_low"] > 0.1 and auroc["p_value"] < 0.01 and auroc["null_gap"] < 0.1
    assert auroc["reference_group"] == "A" and auroc["signed_ci_high"] < -0.1  # B − A, A being larger
    groups = report.groups.set_index(["group", "metric"])
    assert auroc["worst_group"] == groups.loc[("B", "auroc"), "value"]
    reps = report.gap_replicates
    assert len(reps[reps["group"] == ""]) == len(report.gaps) * 1000
    # per-group rows (both sites) and the whole test set's rows for each headline metric, 1000 replicates each
    assert len(reps[reps["group"] != ""]) == 3 * len(headline_metrics()) * 1000


def binormal(rng, n_pos, n_neg, d):
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    latent = np.r_[rng.normal(d, 1, n_pos), rng.normal(0, 1, n_neg)]
    return y, norm.cdf(latent - d / 2)  # a monotone map into (0, 1) leaves AUROC and TPR unchanged


def test_bootstrap_intervals_cover_at_the_nominal_rate():
    """200 data sets from binormal models with known truth; 95% intervals should cover ~95% of the time."""
    rng = np.random.default_rng(2024)
    repetitions, n_boot = 200, 1000
    d_a, d_b, cut = 1.6, 0.8, 0.5  # group a AUROC Φ(1.6/√2), group b Φ(0.8/√2)
    true_auc = {"a": norm.cdf(d_a / math.sqrt(2)), "b": norm.cdf(d_b / math.sqrt(2))}
    true_gap = true_auc["a"] - true_auc["b"]
    true_tpr_a = norm.cdf(d_a / 2)  # score >= 0.5 iff latent >= d/2, and positives have latent ~ N(d, 1)
    hits = {"auroc": 0, "auroc_gap": 0, "tpr": 0}
    for rep in range(repetitions):
        ya, sa = binormal(rng, 80, 120, d_a)
        yb, sb = binormal(rng, 60, 90, d_b)
        y, g = np.r_[ya, yb], np.r_[np.zeros(200, int), np.ones(150, int)]
        weights = stratified_bootstrap_weights(strata=pd.DataFrame({"g": g, "y": y}), n_boot=n_boot, seed=rep)
        a = weighted_metrics(y_true=ya, score=sa, weights=weights[:, g == 0], threshold=cut, metrics=("auroc", "tpr"))
        b = weighted_metrics(y_true=yb, score=sb, weights=weights[:, g == 1], metrics=("auroc",))
        for key, reps, truth in (
            ("auroc", a["auroc"], true_auc["a"]),
            ("auroc_gap", a["auroc"] - b["auroc"], true_gap),  # a's AUROC stays the larger: max − min = a − b
            ("tpr", a["tpr"], true_tpr_a),
        ):
            low, high = np.quantile(reps, [0.025, 0.975])
            hits[key] += low <= truth <= high
    tolerance = 3 * math.sqrt(0.95 * 0.05 / repetitions)  # three binomial standard errors, about 0.046
    for key, count in hits.items():
        assert abs(count / repetitions - 0.95) <= tolerance, (key, count / repetitions)
