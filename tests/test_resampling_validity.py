"""Seeded simulations of the resampling's validity: conditional permutation nulls (PPV within predicted-positive
strata, ECE within calibration bins), small classes flagged, and patient-level (cluster) resampling.

Rejection rates are of the permutation test at nominal 0.05, each over R simulated test sets: binomial SE
√(0.05 · 0.95 / R), 0.0069 at R = 1000 and 0.0049 at R = 2000, so a bound of 0.06 is 1.4 to 2 SE above
the nominal level; "the old scheme is higher" is asserted by at least three SE of the difference.
Coverage is of 95% percentile intervals over 1000 test sets: SE 0.0069 at 0.95, so 0.93 is three SE below.
The simulations go through the product's kernels (:func:`permutation_blocks`, :func:`weight_blocks`,
:func:`weighted_metrics`, :func:`~dpfair.fairness.gaps.spread`) with the strata evaluate_fairness uses
(:func:`permutation_strata`); the fast tests pin evaluate_fairness to exactly these kernels and streams.
"""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from dpfair.fairness import evaluate_fairness
from dpfair.fairness._inputs import stream
from dpfair.fairness.bootstrap import (
    concat_blocks,
    permutation_blocks,
    permuted_groups,
    stratified_bootstrap_weights,
    weight_blocks,
    weighted_metrics,
)
from dpfair.fairness.gaps import spread
from dpfair.fairness.metrics_registry import get_metric, is_label_conditional, metric_names, register_metric
from dpfair.fairness.subgroups import permutation_strata
from scipy.stats import norm
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def one_blas_thread():
    """The kernels are many small matrix products: on a shared machine BLAS threads only contend."""
    with threadpool_limits(1):
        yield


def se(rate: float, reps: int) -> float:
    return math.sqrt(rate * (1 - rate) / reps)


def permutation_p(y, s, g, metric, kind, *, threshold=0.5, n_bins=10, n_perm=199, stream_seed=(0, 0), clusters=None):
    """p-value of the max − min gap of ``metric`` over the groups coded ``g >= 0``, as evaluate_fairness
    computes it: permutations within ``kind`` strata, the registry's kernel, (1 + #{null ≥ gap}) / (1 + n)."""
    codes = np.asarray(g)
    kept = [k for k in np.unique(codes) if k >= 0]
    point = [
        weighted_metrics(
            y_true=y[codes == k], score=s[codes == k], threshold=threshold, n_bins=n_bins, metrics=(metric,)
        )[metric][0]
        for k in kept
    ]
    gap = spread(np.array([point]))["gap"][0]
    strata = permutation_strata(kind, y=y, s=s, threshold=threshold, n_bins=n_bins)
    blocks = []
    for p in permutation_blocks(
        groups=codes, strata=strata, n_perm=n_perm, stream=list(stream_seed), clusters=clusters
    ):
        blocks.append(
            np.column_stack(
                [
                    weighted_metrics(
                        y_true=y,
                        score=s,
                        weights=(p == k).astype(float),
                        threshold=threshold,
                        n_bins=n_bins,
                        metrics=(metric,),
                    )[metric]
                    for k in kept
                ]
            )
        )
    null = spread(np.vstack(blocks))["gap"]
    null = null[~np.isnan(null)]
    return float((1 + np.sum(null >= gap - 1e-12)) / (1 + len(null)))


def rejection_rates(simulate, metric, schemes, *, reps, seed):
    """Share of ``reps`` simulated test sets whose permutation p-value is <= 0.05, per scheme.

    ``schemes`` maps a name to (strata kind, whether whole patients are permuted).
    """
    rng = np.random.default_rng(seed)
    rejected = dict.fromkeys(schemes, 0)
    for rep in range(reps):
        y, s, g, patient = simulate(rng)
        for name, (kind, by_patient) in schemes.items():
            clusters = patient if by_patient else None
            rejected[name] += permutation_p(y, s, g, metric, kind, stream_seed=(rep, 1), clusters=clusters) <= 0.05
    return {k: v / reps for k, v in rejected.items()}


# --------------------------------------------------------------------------- 1. conditional permutation nulls


def equal_ppv(rng, sizes=(300, 300), selection=(0.40, 0.08), ppv=0.6, rest_prevalence=(0.1, 0.3)):
    """Weak null of PPV: both groups' PPV is 0.6, their selection rates 0.40 and 0.08 (and NPVs differ)."""
    y, s, g = [], [], []
    for k, (n, rate, rest) in enumerate(zip(sizes, selection, rest_prevalence)):
        predicted = rng.random(n) < rate
        y.append(np.where(predicted, rng.random(n) < ppv, rng.random(n) < rest).astype(int))
        s.append(np.where(predicted, rng.uniform(0.5, 1, n), rng.uniform(0, 0.5, n)))
        g.append(np.full(n, k))
    return np.concatenate(y), np.concatenate(s), np.concatenate(g), None


def calibrated(rng, n=300):
    """Weak null of ECE: y ~ Bernoulli(score) in both groups, scores Beta(5, 5) in one and Beta(2, 8) in the other."""
    s = np.r_[rng.beta(5, 5, n), rng.beta(2, 8, n)]
    return (rng.random(2 * n) < s).astype(int), s, np.repeat([0, 1], n), None


def test_registry_declares_each_metrics_permutation_strata():
    strata = {m: get_metric(m).permutation_strata for m in metric_names()}
    assert strata == {
        "auroc": "label",
        "auprc": "none",
        "tpr": "label",
        "fpr": "label",
        "ppv": "predicted",
        "balanced_accuracy": "label",
        "selection_rate": "none",
        "ece": "score_bin",
    }
    # the bootstrap strata are unchanged: permute_within moves only the null
    assert [m for m in metric_names() if get_metric(m).stratify == "label"] == [
        "auroc",
        "tpr",
        "fpr",
        "balanced_accuracy",
    ]
    with pytest.raises(ValueError, match="permute_within"):
        register_metric(dataclasses.replace(get_metric("ppv"), permute_within="group"), force=True)
    with pytest.raises(ValueError, match="threshold"):
        register_metric(dataclasses.replace(get_metric("ece"), permute_within="predicted"), force=True)
    assert get_metric("ppv").permute_within == "predicted"  # the failed registrations left the entry alone


def test_evaluate_fairness_draws_each_null_within_its_strata_from_its_stream():
    """evaluate_fairness's p-values are exactly those of the kernels above with the stream ``site|null|<kind>``:
    PPV within predicted strata, ECE within bins, AUROC within labels and selection rate freely (the last
    two on the streams they always had, so their nulls did not move)."""
    rng = np.random.default_rng(21)
    n = 400
    y, s, g, _ = equal_ppv(rng, sizes=(250, 150))
    frame = pd.DataFrame({"row": np.arange(n), "label": y, "score": s, "site": np.where(g == 0, "A", "B")})
    report = evaluate_fairness(scores=frame, attributes=["site"], threshold=0.5, n_boot=20, n_perm=99, seed=7)
    gaps = report.gaps.set_index("metric")
    for metric in ("ppv", "ece", "auroc", "selection_rate"):
        kind = get_metric(metric).permutation_strata
        expected = permutation_p(y, s, g, metric, kind, n_perm=99, stream_seed=stream(7, f"site|null|{kind}"))
        assert gaps.loc[metric, "p_value"] == expected, metric
    # the strata: PPV keeps each group's predicted positives, ECE each group's score histogram
    for kind, kept in (("predicted", s >= 0.5), ("score_bin", np.floor(s * 10).clip(0, 9))):
        p = permuted_groups(groups=g, strata=permutation_strata(kind, y=y, s=s, threshold=0.5, n_bins=10), n_perm=5)
        for value in np.unique(kept):
            assert ((p == 1) & (kept == value)).sum(axis=1).tolist() == [((g == 1) & (kept == value)).sum()] * 5


@pytest.mark.slow
def test_ppv_null_within_predicted_strata_holds_its_size_under_the_weak_null():
    """Equal PPV, selection rates 0.40 vs 0.08, 1000 test sets (SE 0.0069): measured 0.033 within
    predicted-positive strata, 0.140 with the free permutation the PPV null used to be."""
    reps = 1000
    rates = rejection_rates(
        equal_ppv, "ppv", {"predicted": ("predicted", False), "none": ("none", False)}, reps=reps, seed=1
    )
    assert rates["predicted"] <= 0.06, rates
    assert rates["none"] - rates["predicted"] > 3 * math.hypot(se(rates["none"], reps), se(0.05, reps)), rates


@pytest.mark.slow
def test_ece_null_within_score_bins_holds_its_size_under_the_weak_null():
    """Calibrated in both groups, Beta(5, 5) vs Beta(2, 8) scores, 1000 test sets (SE 0.0069): measured
    0.053 within score bins, 0.118 free (the free permutation mixes the groups' score histograms, and so
    their binning bias). Within-bin permutation is approximately, not exactly, valid: groups' scores also
    differ within a bin; over other designs it measured 0.048 to 0.065 (600 test sets, SE 0.009)."""
    reps = 1000
    rates = rejection_rates(
        calibrated, "ece", {"score_bin": ("score_bin", False), "none": ("none", False)}, reps=reps, seed=2
    )
    assert rates["score_bin"] <= 0.06, rates
    assert rates["none"] - rates["score_bin"] > 3 * math.hypot(se(rates["none"], reps), se(0.05, reps)), rates


# --------------------------------------------------------------------------- 2. small classes


def small_class_frame():
    """Groups A and B large; C passes min_group_size (60 rows) but has 8 negatives."""
    rng = np.random.default_rng(22)
    sizes, negatives = {"A": 300, "B": 200, "C": 60}, {"A": 150, "B": 100, "C": 8}
    y = np.concatenate([np.r_[np.zeros(negatives[k], int), np.ones(n - negatives[k], int)] for k, n in sizes.items()])
    site = np.repeat(list(sizes), list(sizes.values()))
    s = norm.cdf(1.2 * y + rng.normal(size=len(y)) - 0.6)
    return pd.DataFrame({"row": np.arange(len(y)), "label": y, "score": s, "site": site})


def test_small_class_group_is_flagged_for_label_conditional_metrics_only():
    frame = small_class_frame()
    options = {"attributes": ["site"], "threshold": 0.5, "n_boot": 50, "n_perm": 99, "seed": 3}
    report = evaluate_fairness(scores=frame, **options)
    flags = report.groups.set_index(["group", "metric"])["flagged"]
    for m in metric_names():
        assert not flags[("A", m)] and not flags[("B", m)]
        assert flags[("C", m)] == is_label_conditional(m), m  # AUROC, TPR, FPR, balanced accuracy
    assert flags[("C", "auroc")] and not flags[("C", "selection_rate")]
    gaps = report.gaps.set_index("metric")
    assert gaps.loc["auroc", "n_groups"] == 2 and gaps.loc["selection_rate", "n_groups"] == 3
    assert gaps.loc["equalized_odds", "n_groups"] == 2
    # C is left out of the AUROC gap and of its null: exactly the AUROC row of the data without C
    without = evaluate_fairness(scores=frame[frame["site"] != "C"], **options).gaps.set_index("metric")
    for column in ("gap", "null_gap", "p_value", "signed_gap"):
        assert gaps.loc["auroc", column] == pytest.approx(without.loc["auroc", column]), column
    # the groups keep their values and intervals; min_class_size=0 switches the flag off
    assert not math.isnan(report.groups.set_index(["group", "metric"]).loc[("C", "auroc"), "ci_low"])
    off = evaluate_fairness(scores=frame, min_class_size=0, **options)
    assert not off.groups["flagged"].any() and off.gaps.set_index("metric").loc["auroc", "n_groups"] == 3


# --------------------------------------------------------------------------- 3. patients (clusters)


def patients(rng, n_patients=(150, 150), rows=4, icc=0.6, separation=(1.2, 1.2), prevalence=0.4):
    """Several rows per patient: latent = d · y + u_patient + e, Var u = icc, Var e = 1 − icc, label per patient.

    Positives and negatives are always different patients, so a group's AUROC is exactly Φ(d / √2).
    """
    g = np.repeat(np.arange(len(n_patients)), np.array(n_patients) * rows)
    patient = np.repeat(np.arange(sum(n_patients)), rows)
    y = (rng.random(sum(n_patients)) < prevalence).astype(int)[patient]
    u = rng.normal(0, math.sqrt(icc), sum(n_patients))[patient]
    d = np.asarray(separation)[g]
    s = norm.cdf(d * y + u + rng.normal(0, math.sqrt(1 - icc), len(g)) - d / 2)
    return y, s, g, patient


def test_kernels_with_one_row_per_patient_are_the_row_kernels():
    rng = np.random.default_rng(23)
    n = 300
    strata = pd.DataFrame({"g": rng.choice(list("abc"), n), "y": rng.integers(0, 2, n)})
    singletons = [f"p{i}" for i in rng.permutation(n)]  # any ids: clusters are numbered in row order
    for s in (strata, strata["g"], strata["y"].to_numpy(), None):
        if s is not None:
            assert np.array_equal(
                stratified_bootstrap_weights(strata=s, n_boot=30, seed=[1, 2]),
                stratified_bootstrap_weights(strata=s, n_boot=30, seed=[1, 2], clusters=singletons),
            )
        codes = rng.integers(-1, 3, n)
        assert np.array_equal(
            permuted_groups(groups=codes, strata=s, n_perm=30, seed=4),
            permuted_groups(groups=codes, strata=s, n_perm=30, seed=4, clusters=singletons),
        )


def test_cluster_kernels_move_whole_patients_within_patient_strata():
    # patients: a, b (group 0, negative), c (group 0, mixed labels), d, e (group 1), f in both groups
    patient = np.array(list("aabbccddeeff"))
    group = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1])
    label = np.array([0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1])
    w = stratified_bootstrap_weights(
        strata=pd.DataFrame({"g": group, "y": label}), n_boot=400, seed=0, clusters=patient
    )
    for first in range(0, 12, 2):
        assert np.array_equal(w[:, first], w[:, first + 1])  # a patient is drawn whole
    # cells of patients: {a, b} (group 0, negative), {c} (0, mixed), {d} (1, positive), {e} (1, negative), {f}
    assert (w[:, [0, 2]].sum(axis=1) == 2).all() and w[:, 0].std() > 0
    assert (w[:, [4, 6, 8, 10]] == 1).all()
    p = permuted_groups(groups=group, strata=None, n_perm=400, seed=0, clusters=patient)
    for first in range(0, 10, 2):
        assert np.array_equal(p[:, first], p[:, first + 1])
    assert (p[:, 10:] == group[10:]).all()  # f, in two groups, keeps its rows' groups
    assert ((p[:, :10:2] == 1).sum(axis=1) == 2).all()  # two of the five single-group patients are in group 1


def test_evaluate_fairness_resamples_patients_and_pairs_runs():
    """No patient ids, or one row per patient: bit-identical to before. Several rows per patient: other
    resamples, identical for two runs on the test set (rows in another order in the file)."""
    rng = np.random.default_rng(24)
    y, s, g, patient = patients(rng, n_patients=(60, 40), rows=3)
    frame = pd.DataFrame({"row": np.arange(len(y)), "label": y, "score": s, "site": np.where(g == 0, "A", "B")})
    options = {"attributes": ["site"], "threshold": 0.5, "n_boot": 60, "n_perm": 60, "seed": 5}
    rows = evaluate_fairness(scores=frame, **options)
    single = evaluate_fairness(scores=frame.assign(patient_id=[f"x{i}" for i in range(len(y))]), **options)
    clustered = frame.assign(patient_id=[f"p{i}" for i in patient])
    by_patient = evaluate_fairness(scores=clustered, **options)
    shuffled = evaluate_fairness(scores=clustered.sample(frac=1, random_state=1), **options)
    ignored = evaluate_fairness(scores=clustered, clusters=None, **options)
    for other in (single, ignored):
        for table in ("overall", "groups", "gaps", "gap_replicates"):
            pd.testing.assert_frame_equal(getattr(rows, table), getattr(other, table))
    for table in ("overall", "groups", "gaps", "gap_replicates"):
        pd.testing.assert_frame_equal(getattr(by_patient, table), getattr(shuffled, table))
    assert not by_patient.gap_replicates["gap"].equals(rows.gap_replicates["gap"])
    pd.testing.assert_series_equal(by_patient.groups["value"], rows.groups["value"])  # point estimates stay


@pytest.mark.slow
def test_patient_bootstrap_covers_a_groups_auroc_where_the_row_bootstrap_does_not():
    """4 rows per patient, 250 patients per group, ICC 0.6, 1000 test sets: SE 0.0069 at 0.95, so the bound
    0.93 is three SE below it. Measured: 0.951 with patients resampled, 0.780 with rows resampled (at 600
    test sets, other seeds: 0.940 and 0.948; with 150 patients per group 0.932 and 0.942, the percentile
    interval on fewer clusters)."""
    rng = np.random.default_rng(25)
    reps, truth = 1000, norm.cdf(1.2 / math.sqrt(2))
    hits = {"patients": 0, "rows": 0}
    for rep in range(reps):
        y, s, g, patient = patients(rng, n_patients=(250, 250), separation=(1.2, 1.6))
        strata, mask = pd.DataFrame({"group": g, "label": y}), g == 0
        for kind, clusters in (("patients", patient), ("rows", None)):
            replicates = concat_blocks(
                weighted_metrics(y_true=y[mask], score=s[mask], weights=w[:, mask], metrics=("auroc",))
                for w in weight_blocks(strata=strata, n_boot=400, stream=[rep, 1], clusters=clusters)
            )["auroc"]
            low, high = np.quantile(replicates, [0.025, 0.975])
            hits[kind] += low <= truth <= high
    coverage = {k: v / reps for k, v in hits.items()}
    assert coverage["patients"] >= 0.95 - 3 * se(0.95, reps), coverage
    assert coverage["rows"] < 0.95 - 3 * se(0.95, reps), coverage


@pytest.mark.slow
@pytest.mark.parametrize(("metric", "reps"), [("selection_rate", 2000), ("auroc", 1000)])
def test_patient_permutation_holds_its_size_where_the_row_permutation_does_not(metric, reps):
    """No disparity, 4 rows per patient, 150 patients per group, ICC 0.6; SE 0.0049 (2000 test sets) or
    0.0069 (1000). Measured: selection rate 0.046 with patients permuted vs 0.207 with rows, AUROC 0.050
    vs 0.222."""
    kind = get_metric(metric).permutation_strata
    rates = rejection_rates(patients, metric, {"patients": (kind, True), "rows": (kind, False)}, reps=reps, seed=26)
    assert rates["patients"] <= 0.06, rates
    assert rates["rows"] - rates["patients"] > 3 * math.hypot(se(rates["rows"], reps), se(0.05, reps)), rates
