"""Utility changes (each headline metric at ε against ε = ∞): interval coverage, p-value size and the
three-way verdict by seeded simulation of real AUROC through the product's kernels, and the table itself.

The simulation (:func:`binormal_runs`): one test set per replication; run (arm a, seed s) scores row i as
logit⁻¹(δ_{a,s}·y_i + √ρ·z_i + √ρ_a·z_{a,i} + √(1 − ρ − ρ_a)·e_{a,s,i}), with

* δ_{a,s} = δ_a + t_s + u_{a,s}: the arm's separation, a training effect t_s ~ N(0, σ_t²) that a seed gives
  every arm (paired seeds) and one of its own u_{a,s} ~ N(0, σ_u²);
* z_i ~ N(0, 1) shared by every run on row i and z_{a,i} shared by the runs of arm a (rows that one kind of
  model ranks badly whatever its seed): the scores of different seeds are correlated on the same rows, so
  their test-set errors are too (the between-seed covariance c that se² = S²/k + c̄ adds);
* e_{a,s,i} ~ N(0, 1) the run's own noise.

Given y the score's latent is N(δ_{a,s}·y, 1), so a run's population AUROC is Φ(δ_{a,s}/√2) and the arm's
(its expectation over training) Φ(δ_a/√(2 + σ_t² + σ_u²)): the true change the intervals must cover.
AUROC and its replicates come from :func:`dpfair.fairness.weighted_metrics` on one set of
:func:`dpfair.fairness.stratified_bootstrap_weights` per test set (replicate b pairs across runs, as in
the pipeline).

Binomial standard errors of the rates over R replications: √(p(1 − p)/R); at R = 400 and p = 0.95
(coverage) or p = 0.05 (size) that is 0.0109, so the size bound 0.05 + 3 SE is 0.083 and the coverage
band [0.93, 0.975] is −1.8 to +2.3 SE around 0.95.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from dpfair.fairness import stratified_bootstrap_weights, weighted_metrics
from dpfair.fairness.contrasts import interval_of, seed_contrast
from dpfair.tables import UTILITY_CHANGE_COLUMNS, auroc_changes
from scipy import stats
from scipy.special import expit

DELTA = 1.19  # ε = ∞ separation: population AUROC ≈ 0.80


def true_auroc(separation: float, seed_sd: float, arm_sd: float) -> float:
    """An arm's expected AUROC over training: Φ(δ/√(2 + σ_t² + σ_u²))."""
    return float(stats.norm.cdf(separation / math.sqrt(2 + seed_sd**2 + arm_sd**2)))


def separation_for(change: float, seed_sd: float, arm_sd: float, base: float = DELTA) -> float:
    """The separation whose arm's true AUROC is ``change`` away from the arm with ``base``."""
    target = true_auroc(base, seed_sd, arm_sd) + change
    return float(stats.norm.ppf(target) * math.sqrt(2 + seed_sd**2 + arm_sd**2))


def binormal_runs(
    rng: np.random.Generator,
    *,
    separations: dict,
    n_seeds: int,
    n_rows: int = 1000,
    prevalence: float = 0.3,
    seed_sd: float = 0.1,
    arm_sd: float = 0.1,
    shared_rho: float = 0.6,
    arm_rho: float = 0.0,
    n_boot: int = 200,
) -> dict:
    """Per arm (key of ``separations``): ((k,) AUROC of each seed's run, (k, n_boot) its replicates).

    One test set (``n_rows`` rows, ``prevalence`` positives) and one set of label-stratified resamples for
    every run; see the module docstring for the score model.
    """
    n_pos = round(prevalence * n_rows)
    y = np.r_[np.ones(n_pos, dtype=int), np.zeros(n_rows - n_pos, dtype=int)]
    weights = stratified_bootstrap_weights(strata=y, n_boot=n_boot, seed=int(rng.integers(2**31)))
    shared = rng.normal(size=n_rows)
    training = rng.normal(0, seed_sd, n_seeds)
    own = math.sqrt(1 - shared_rho - arm_rho)
    out = {}
    for arm, delta in separations.items():
        arm_rows = rng.normal(size=n_rows)
        points, reps = np.empty(n_seeds), np.empty((n_seeds, n_boot))
        for s in range(n_seeds):
            latent = (delta + training[s] + rng.normal(0, arm_sd)) * y
            latent = latent + math.sqrt(shared_rho) * shared + math.sqrt(arm_rho) * arm_rows
            score = expit(latent + own * rng.normal(size=n_rows))
            points[s] = weighted_metrics(y_true=y, score=score, metrics=("auroc",))["auroc"][0]
            reps[s] = weighted_metrics(y_true=y, score=score, weights=weights, metrics=("auroc",))["auroc"]
        out[arm] = (points, reps)
    return out


def summary_tables(arms: dict, *, seeds: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics.csv-like estimates, gap_replicates-like rows) of ``{(method, ε): (points, reps)}``.

    Each run has two attribute rows in the estimates (metrics.csv repeats a run per attribute) and a gap
    replicate row beside its overall ones (group NaN, as read back from CSV), which the table must skip.
    """
    estimates, replicates = [], []
    for (method, eps), (points, reps) in arms.items():
        keys = {"dataset": "d", "model": "cnn", "method": method, "epsilon": eps}
        arm_seeds = (seeds or {}).get((method, eps), range(len(points)))
        for seed, value, rep in zip(arm_seeds, points, reps):
            for attribute in ("sex", "site"):
                estimates.append({**keys, "seed": seed, "attribute": attribute, "auroc": value})
            b = len(rep)
            replicates.append(
                pd.DataFrame(
                    {
                        **keys,
                        "seed": seed,
                        "attribute": ["overall"] * b + ["sex"],
                        "metric": "auroc",
                        "group": ["overall"] * b + [np.nan],
                        "replicate": [*range(b), 0],
                        "gap": [np.nan] * b + [0.1],
                        "value": [*rep, np.nan],
                    }
                )
            )
    return pd.DataFrame(estimates), pd.concat(replicates, ignore_index=True)


def changes(arms: dict, **kwargs) -> pd.DataFrame:
    estimates, replicates = summary_tables(arms, seeds=kwargs.pop("seeds", None))
    return auroc_changes(estimates=estimates, replicates=replicates, **kwargs).set_index("epsilon")


#: Seed-dominated: the seeds' spread is mostly training noise (c ≈ 0, the runs' test errors shared only
#: through the rows every model finds hard). Shared-test-noise: each arm ranks some rows badly whatever
#: its seed (arm_rho), so the between-seed covariance c is most of se².
REGIMES = {
    "seed-dominated": {"seed_sd": 0.1, "arm_sd": 0.1, "shared_rho": 0.6, "arm_rho": 0.0},
    "shared-test-noise": {"seed_sd": 0.05, "arm_sd": 0.05, "shared_rho": 0.4, "arm_rho": 0.4},
}
COST = -0.04  # the true AUROC change of the ε = 1 arm


def _simulate(n_seeds: int, regime: str, reps: int):
    """Coverage of the ε = 1 (true change COST) and ε = 10 (no change) rows and the size at ε = 10."""
    settings = REGIMES[regime]
    rng = np.random.default_rng([n_seeds, len(regime)])
    sd = (settings["seed_sd"], settings["arm_sd"])
    separations = {("dpsgd", math.inf): DELTA, ("dpsgd", 1.0): separation_for(COST, *sd), ("dpsgd", 10.0): DELTA}
    truth = {1.0: COST, 10.0: 0.0}
    covered = {1.0: 0, 10.0: 0}
    rejected = 0
    for _ in range(reps):
        table = changes(binormal_runs(rng, separations=separations, n_seeds=n_seeds, **settings))
        for eps, change in truth.items():
            covered[eps] += bool(table.loc[eps, "ci_low"] <= change <= table.loc[eps, "ci_high"])
        rejected += bool(table.loc[10.0, "p_value"] < 0.05)
    return {eps: c / reps for eps, c in covered.items()}, rejected / reps


SLOW_REPS = 400
SIZE_BOUND = 0.05 + 3 * math.sqrt(0.05 * 0.95 / SLOW_REPS)  # 0.083


#: Known failures of dpfair.fairness.contrasts.seed_contrast at k = 3 (R = 400, B = 200; measured before
#: any fix, the fix measured on the same score model in the issue 22 report):
#: * c̄ is an estimate: where its true value is ≈ 0 its bootstrap noise is sometimes negative and as large
#:   as a small S²/k (S² has 2 df), so se² = S²/k + c̄ comes out ≈ 0 or negative (no interval): coverage
#:   0.925 at no change here, 0.88 in the method comparison's regime (flooring c̄ at 0: 0.95–0.96);
#: * where c̄ is most of se² the statistic is nearly normal, but it is referred to t(k − 1): t(2) gives
#:   coverage 1.00 and size 0.00 (a Satterthwaite df se⁴ / ((S²/k)² / (k − 1)): 0.95 / 0.05, but that df
#:   rejects up to 7.5% of true nulls at k = 3 where the seeds' spread dominates: tests/test_contrasts.py).
#:   The committed test maximises over r ≥ r_low (Berger & Boos 1994); at k = 3 r_low is ≈ 0 and it is
#:   t(2): conservative here, so only the lower coverage bound applies to that case.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("n_seeds", "regime"),
    [
        (3, "seed-dominated"),  # c̄ floored at 0 (an unfloored noisy c̄ gave se² ≈ 0: coverage 0.88)
        (10, "seed-dominated"),
        (3, "shared-test-noise"),  # conservative at k = 3 (≈ t(2)): coverage ≥ 0.93 only
        (10, "shared-test-noise"),
    ],
)
def test_interval_covers_the_true_change_and_the_p_value_has_its_size(n_seeds, regime):
    """R = 400 replications, k seeds per arm on one test set of 1000 rows (300 positive), B = 200.

    Coverage of the 95% interval of a true cost of 0.04 and of a true zero change in [0.93, 0.975];
    the share of p < 0.05 at the zero change at most 0.05 + 3 binomial SEs = 0.083. Measured with the
    contrasts as committed: k = 10 seed-dominated 0.940 / 0.948, size 0.053; k = 10 shared-test-noise
    0.975 / 0.968, size 0.033 (t(9) is conservative there too: at the band's edge).
    """
    coverage, size = _simulate(n_seeds, regime, SLOW_REPS)
    upper = 1.0 if (n_seeds, regime) == (3, "shared-test-noise") else 0.975
    assert all(0.93 <= c <= upper for c in coverage.values()), (coverage, size)
    assert size <= SIZE_BOUND, (coverage, size)


def test_equivalent_for_no_change_with_enough_seeds_never_for_twice_the_margin():
    """k = 10 seeds, 2000 test rows, little training noise (σ_t = σ_u = 0.03), 12 replications.

    A true zero change reads "equivalent" within ±0.03 in at least 10 of 12 (the 90% interval is about
    ±0.008 wide here); a true cost of 0.06 (2× the margin) never does, and is found a cost every time.
    """
    rng = np.random.default_rng(7)
    sd = {"seed_sd": 0.03, "arm_sd": 0.03}
    separations = {
        ("dpsgd", math.inf): DELTA,
        ("dpsgd", 3.0): separation_for(-0.06, *sd.values()),
        ("dpsgd", 10.0): DELTA,
    }
    classes = {3.0: [], 10.0: []}
    for _ in range(12):
        table = changes(binormal_runs(rng, separations=separations, n_seeds=10, n_rows=2000, n_boot=100, **sd))
        for eps in classes:
            classes[eps].append(table.loc[eps, "verdict_class"])
    assert classes[10.0].count("equivalent") >= 10, classes
    assert "equivalent" not in classes[3.0] and set(classes[3.0]) == {"costs"}, classes


def test_three_seeds_of_a_small_change_say_inconclusive_with_the_detectable_change():
    rng = np.random.default_rng(3)
    arms = binormal_runs(rng, separations={("dpsgd", math.inf): DELTA, ("dpsgd", 10.0): DELTA}, n_seeds=3)
    row = changes(arms).loc[10.0]
    assert row["verdict_class"] == "inconclusive" and row["df"] >= 2  # k − 1 = 2
    assert row["mde"] > 0.03
    assert row["verdict"].endswith(f"inconclusive: would detect a change of ≥ {row['mde']:.3f} at 80% power")
    assert row["verdict"].startswith("At ε = 10, dpsgd against ε = ∞: ")
    (a, ra), (b, rb) = arms[("dpsgd", 10.0)], arms[("dpsgd", math.inf)]
    assert row["mde"] == pytest.approx(seed_contrast(a, b, ra, rb, paired=True).mde(alpha=0.05, power=0.8))


def test_one_seed_gives_no_verdict():
    rng = np.random.default_rng(4)
    arms = binormal_runs(rng, separations={("dpsgd", math.inf): DELTA, ("dpsgd", 1.0): 0.6}, n_seeds=1)
    row = changes(arms).loc[1.0]
    assert row["verdict_class"] == "one model" and row["n_seeds"] == 1
    assert math.isnan(row["p_value"]) and math.isnan(row["mde"])
    assert "one trained model per arm: no verdict" in row["verdict"]
    # the interval that is left carries one model's test-set noise only
    assert row["ci_low"] < row["change"] < row["ci_high"] and math.isinf(row["df"])


def test_table_columns_costs_sentence_pairing_and_the_dpsgd_reference():
    rng = np.random.default_rng(5)
    arms = binormal_runs(
        rng,
        separations={("dpsgd", math.inf): DELTA, ("dpsgd", 1.0): 0.7, ("dpsgd_f", 1.0): 0.7},
        n_seeds=5,
    )
    estimates, replicates = summary_tables(arms, seeds={("dpsgd_f", 1.0): [10, 11, 12, 13, 14]})
    table = auroc_changes(estimates=estimates, replicates=replicates)
    assert list(table.columns) == UTILITY_CHANGE_COLUMNS
    assert len(table) == 2 and set(table["metric"]) == {"auroc"}  # one row per run, not per attribute
    own, mitigation = (table.set_index("method").loc[m] for m in ("dpsgd", "dpsgd_f"))
    assert own["reference_method"] == "dpsgd" and bool(own["paired_by_seed"])
    assert own["verdict_class"] == "costs" and own["change"] < -0.05
    assert own["change"] == pytest.approx(arms[("dpsgd", 1.0)][0].mean() - arms[("dpsgd", math.inf)][0].mean())
    assert own["ci_low"] < own["change"] < own["ci_high"] < 0
    cost = f"{-own['change']:.3f} AUROC [{-own['ci_high']:.3f}, {-own['ci_low']:.3f}] against ε = ∞"
    assert own["verdict"].startswith(f"At ε = 1, dpsgd costs {cost} (p ")
    # a mitigation without its own ε = ∞ runs is measured against dpsgd's, unpaired (other seeds)
    assert mitigation["reference_method"] == "dpsgd" and not bool(mitigation["paired_by_seed"])
    assert "against dpsgd at ε = ∞" in mitigation["verdict"] and mitigation["verdict_class"] == "costs"


def test_equivalent_sentence_gives_the_tost_interval():
    rng = np.random.default_rng(6)
    sd = {"seed_sd": 0.02, "arm_sd": 0.02}
    arms = binormal_runs(
        rng, separations={("dpsgd", math.inf): DELTA, ("dpsgd", 10.0): DELTA}, n_seeds=10, n_rows=3000, **sd
    )
    row = changes(arms, margin=0.03).loc[10.0]
    assert row["verdict_class"] == "equivalent", row["verdict"]
    lo, hi = interval_of(row["change"], row["se"], row["df"], row["ratio"], level=0.9)
    low, high = (f"{x:.3f}".replace("-", "−") for x in (lo, hi))
    assert row["verdict"] == (
        f"At ε = 10, dpsgd is equivalent to ε = ∞ within ±0.03 AUROC (90% interval [{low}, {high}])"
    )
    assert -0.03 < lo and hi < 0.03 and bool(row["within_margin"])
    # the TOST p the verdict read is the contrast's, on the same inputs
    (a, ra), (b, rb) = arms[("dpsgd", 10.0)], arms[("dpsgd", math.inf)]
    contrast = seed_contrast(a, b, ra, rb, paired=True)
    assert row["p_equivalence"] == pytest.approx(contrast.equivalence_p(0.03)) and row["p_equivalence"] < 0.05
    assert row["ratio"] == pytest.approx(contrast.ratio) and (lo, hi) == pytest.approx(contrast.interval(0.9))
    # the standard error is the seed spread of the per-seed differences plus the floored shared covariance
    cov = np.cov(ra - rb)
    c_bar = (cov.sum() - np.trace(cov)) / (10 * 9)
    assert row["se"] ** 2 == pytest.approx(np.var(a - b, ddof=1) / 10 + max(c_bar, 0.0))


def test_no_replicates_or_no_reference_give_undefined_or_no_rows():
    rng = np.random.default_rng(8)
    arms = binormal_runs(rng, separations={("dpsgd", math.inf): DELTA, ("dpsgd", 1.0): 0.8}, n_seeds=3)
    estimates, replicates = summary_tables(arms)
    row = auroc_changes(estimates=estimates, replicates=replicates.iloc[:0]).iloc[0]
    assert row["verdict_class"] == "undefined" and math.isnan(row["se"]) and math.isfinite(row["change"])
    private = estimates[np.isfinite(estimates["epsilon"])]
    assert auroc_changes(estimates=private, replicates=replicates).empty
    assert list(auroc_changes(estimates=estimates.iloc[:0], replicates=replicates).columns) == UTILITY_CHANGE_COLUMNS


def test_a_cost_inside_the_margin_is_detected_but_called_negligible():
    """A true cost of 0.01 with 10 seeds and little training noise: detected (costs), and within ±0.03."""
    rng = np.random.default_rng(11)
    sd = {"seed_sd": 0.01, "arm_sd": 0.01}
    separations = {("dpsgd", math.inf): DELTA, ("dpsgd", 10.0): separation_for(-0.01, *sd.values())}
    separations[("dpsgd", 1.0)] = separation_for(-0.08, *sd.values())
    arms = binormal_runs(rng, separations=separations, n_seeds=10, n_rows=3000, shared_rho=0.8, **sd)
    rows = changes(arms, margin=0.03)
    small, large = rows.loc[10.0], rows.loc[1.0]
    assert small["verdict_class"] == large["verdict_class"] == "costs", (small["verdict"], large["verdict"])
    assert bool(small["within_margin"]) and not bool(large["within_margin"])
    assert small["verdict"].endswith(", detected but within ±0.03 (practically negligible)")
    assert "negligible" not in large["verdict"]
