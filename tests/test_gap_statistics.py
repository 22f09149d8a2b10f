"""Seeded simulations of the gap statistics: interval coverage at a true gap of zero and at a nominal gap,
the permutation p-value's uniformity under no disparity and resampling that fits each metric (the gap
change across ε: tests/test_gap_changes.py). Each coverage check uses 400 replications: a binomial standard error of 0.011
at 0.95, so the three-SE tolerance (0.033) tells 0.95 from the 0.88 that the wrong resampling gives.
"""

import math

import numpy as np
import pandas as pd
import pytest
from dpfair.fairness import dersimonian_laird_tau, holm, q_profile_interval
from dpfair.fairness.bootstrap import (
    concat_blocks,
    permutation_blocks,
    stratified_bootstrap_weights,
    weight_blocks,
    weighted_metrics,
)
from dpfair.fairness.gaps import gap_rows
from scipy.stats import kstest, norm

REPS = 400
TOLERANCE = 3 * math.sqrt(0.95 * 0.05 / REPS)
Q = (0.025, 0.975)


def binormal_test_set(rng, sizes, prevalence, separation, *, noise=None):
    """Labels, groups and scores: positives' latent ~ N(d_g, 1), negatives' N(0, 1); score = Φ(latent − d/2).

    Labels are fixed per group (``sizes[g] * prevalence[g]`` positives); AUROC of group g is Φ(d_g/√2).
    """
    y, g = [], []
    for k, (n, p) in enumerate(zip(sizes, prevalence)):
        n_pos = int(round(n * p))
        y += [1] * n_pos + [0] * (n - n_pos)
        g += [k] * n
    y, g = np.array(y), np.array(g)
    d = np.asarray(separation, dtype=float)[g]
    latent = d * y + (rng.normal(size=len(y)) if noise is None else noise)
    return y, g, norm.cdf(latent - d / 2)


def evaluate(y, s, g, *, metrics=("auroc",), threshold=None, n_boot=250, n_perm=0, seed=0, label_strata=True):
    """One run's gap rows and gap replicates through the product's kernels and gap code."""
    names = [f"g{k}" for k in np.unique(g)]
    masks = {name: g == k for name, k in zip(names, np.unique(g))}
    table = pd.DataFrame(
        {
            m: [
                weighted_metrics(y_true=y[mk], score=s[mk], threshold=threshold, metrics=(m,))[m][0]
                for mk in masks.values()
            ]
            for m in metrics
        },
        index=names,
    ).assign(n=[mk.sum() for mk in masks.values()])
    strata = pd.DataFrame({"g": g, "y": y}) if label_strata else g
    boot = {name: [] for name in names}
    for w in weight_blocks(strata=strata, n_boot=n_boot, stream=[seed, 1]):
        for name, mk in masks.items():
            boot[name].append(
                weighted_metrics(y_true=y[mk], score=s[mk], weights=w[:, mk], threshold=threshold, metrics=metrics)
            )
    boot = {name: concat_blocks(parts) for name, parts in boot.items()}
    perm = {}
    if n_perm:
        codes = np.searchsorted(np.unique(g), g)
        parts = {name: [] for name in names}
        for p in permutation_blocks(groups=codes, strata=y if label_strata else None, n_perm=n_perm, stream=[seed, 2]):
            for k, name in enumerate(names):
                parts[name].append(
                    weighted_metrics(
                        y_true=y, score=s, weights=(p == k).astype(float), threshold=threshold, metrics=metrics
                    )
                )
        perm = {name: concat_blocks(v) for name, v in parts.items()}
    rows, reps = gap_rows(
        attribute="a",
        table=table,
        flagged=pd.Series(False, index=names),
        boot=boot,
        perm=perm,
        q=Q,
        level=0.95,
        metrics=metrics,
    )
    return pd.DataFrame(rows).set_index("metric"), reps


@pytest.mark.parametrize("separation", [(1.2, 1.2), (1.6, 0.8)], ids=["no-gap", "gap-0.15"])
def test_signed_gap_interval_covers_at_zero_and_at_a_nominal_gap(separation):
    rng = np.random.default_rng(11)
    truth = norm.cdf(separation[1] / math.sqrt(2)) - norm.cdf(separation[0] / math.sqrt(2))  # g1 − g0 (g0 is larger)
    hits = 0
    for rep in range(REPS):  # percentile bootstrap of AUROC undercovers in small groups; these are test-set sized
        y, g, s = binormal_test_set(rng, (300, 200), (0.4, 0.4), separation)
        row = evaluate(y, s, g, seed=rep)[0].loc["auroc"]
        assert row["reference_group"] == "g0"
        hits += row["signed_ci_low"] <= truth <= row["signed_ci_high"]
    assert abs(hits / REPS - 0.95) <= TOLERANCE, (separation, hits / REPS)


def test_permutation_p_value_is_uniform_without_disparity_and_tau_covers_zero():
    """Three groups with one true AUROC but different sizes and prevalences; the gap is positive every time."""
    rng = np.random.default_rng(12)
    p_values, gaps, nulls, tau_covers, taus = [], [], [], 0, []
    for rep in range(REPS):
        y, g, s = binormal_test_set(rng, (250, 120, 80), (0.3, 0.5, 0.6), (1.0, 1.0, 1.0))
        rows, _ = evaluate(y, s, g, n_boot=200, n_perm=199, seed=rep)
        row = rows.loc["auroc"]
        (
            p_values.append(row["p_value"]),
            gaps.append(row["gap"]),
            nulls.append(row["null_gap"]),
            taus.append(row["spread"]),
        )
        tau_covers += row["spread_ci_low"] == 0
    p_values = np.array(p_values)
    assert min(gaps) > 0  # max − min is never 0 ...
    assert abs(np.mean(gaps) - np.mean(nulls)) < 0.1 * np.mean(nulls)  # ... but the null reference is its expectation
    assert abs((p_values <= 0.05).mean() - 0.05) <= 3 * math.sqrt(0.05 * 0.95 / REPS)
    assert kstest(p_values, "uniform").pvalue > 0.001
    assert tau_covers / REPS >= 0.95 - TOLERANCE  # the Q-profile interval for τ contains 0
    assert np.mean(taus) < 0.5 * np.mean(nulls)  # τ truncated at 0 is far less biased than max − min


def test_selection_rate_and_dpd_intervals_need_group_only_resampling():
    """Prevalence differs between groups and labels vary between test sets: DPD's variance includes it."""
    rng = np.random.default_rng(13)
    sizes, prevalence, d = (300, 200), (0.3, 0.6), 2.0  # a good model: the label mix drives selection
    selected = {1: norm.cdf(d / 2), 0: 1 - norm.cdf(d / 2)}  # score >= 0.5 iff latent >= d/2
    true_rate = [p * selected[1] + (1 - p) * selected[0] for p in prevalence]
    truth = true_rate[1] - true_rate[0]
    hits = {"group": 0, "group_label": 0}
    rate_hits = 0
    for rep in range(REPS):
        y = np.concatenate([rng.random(n) < p for n, p in zip(sizes, prevalence)]).astype(int)  # labels vary
        g = np.repeat([0, 1], sizes)
        s = norm.cdf(d * y + rng.normal(size=len(y)) - d / 2)
        for kind, label_strata in (("group", False), ("group_label", True)):
            row = evaluate(y, s, g, metrics=("selection_rate",), threshold=0.5, seed=rep, label_strata=label_strata)[
                0
            ].loc["selection_rate"]
            hits[kind] += row["signed_ci_low"] <= truth <= row["signed_ci_high"]
        w = stratified_bootstrap_weights(strata=g, n_boot=250, seed=rep)
        reps = weighted_metrics(
            y_true=y[g == 0], score=s[g == 0], weights=w[:, g == 0], threshold=0.5, metrics=("selection_rate",)
        )
        low, high = np.quantile(reps["selection_rate"], Q)
        rate_hits += low <= true_rate[0] <= high
    assert abs(hits["group"] / REPS - 0.95) <= TOLERANCE, hits
    assert abs(rate_hits / REPS - 0.95) <= TOLERANCE, rate_hits / REPS
    assert hits["group_label"] / REPS < 0.95 - TOLERANCE, hits  # what the old stratification gave


def test_holm_matches_statsmodels_and_ignores_missing():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(0).uniform(0, 0.2, 30)
    np.testing.assert_allclose(holm(p), multitest.multipletests(p, method="holm")[1])
    assert np.isnan(holm([0.01, np.nan])[1]) and holm([0.01, np.nan])[0] == 0.01


def test_tau_and_q_profile_by_hand():
    values, variances = np.array([0.6, 0.7, 0.8, 0.9]), np.full(4, 0.001)
    w = 1 / variances
    q = (w * (values - values.mean()) ** 2).sum()  # 50
    c = w.sum() - (w**2).sum() / w.sum()
    assert dersimonian_laird_tau(values, variances)[0] == pytest.approx(math.sqrt((q - 3) / c))
    low, high = q_profile_interval(values, variances)
    assert 0 < low < dersimonian_laird_tau(values, variances)[0] < high
    assert q_profile_interval(np.full(4, 0.7), variances)[0] == 0.0
