"""Gap changes across ε: the estimand, the variance over seeds that share a test set, the declared family
and the three-way verdict.

The simulations score k seeds per arm on one test set through the product's kernels and gap code
(:func:`test_gap_statistics.evaluate`): each seed's model has its own separation per group (training
variation) and errors correlated with the other seeds' on the same rows (ρ), so the seeds' test errors are
correlated as they are in a real grid. The true signed AUROC gap change is known in closed form:
E_seed Φ(d_s/√2) = Φ(d/√(2 + σ²)) for a separation d_s ~ N(d, σ²).
"""

import math

import numpy as np
import pandas as pd
import pytest
from dpfair.fairness import GAP_CHANGE_COLUMNS, gap_changes
from dpfair.fairness.contrasts import interval_of, seed_contrast
from dpfair.fairness.gap_changes import PrimaryFamily, holm, margin_for
from dpfair.fairness.gaps import dersimonian_laird_tau2
from scipy import stats
from scipy.optimize import brentq
from test_gap_statistics import binormal_test_set, evaluate

SEED_SD = 0.12  # per-group separation SD across seeds: an AUROC SD of about 0.02 between seeds
RHO = 0.6  # correlation of two seeds' latent errors on the same test row


def simulate(rng, rep, *, k, separations, sizes=(600, 400), prevalence=(0.4, 0.4), n_boot=200, method="dpsgd"):
    """Estimates and replicates of one dataset (``r<rep>``): per ε in ``separations`` k seeds on one test set."""
    n = sum(sizes)
    shared = rng.normal(size=n)
    est, reps = [], []
    for eps, separation in separations.items():
        for seed in range(k):
            d = np.asarray(separation) + SEED_SD * rng.normal(size=len(separation))
            noise = RHO * shared + math.sqrt(1 - RHO**2) * rng.normal(size=n)
            y, g, s = binormal_test_set(rng, sizes, prevalence, d, noise=noise)
            rows, gap_reps = evaluate(y, s, g, n_boot=n_boot, seed=rep)  # one bootstrap seed: replicates pair
            row = rows.loc["auroc"]
            keys = {"dataset": f"r{rep}", "model": "m", "method": method, "epsilon": eps, "seed": seed}
            keys.update(attribute="site", metric="auroc")
            est.append({**keys, **{c: row[c] for c in ("gap", "null_gap", "signed_gap", "tau2", "n_groups")}})
            est[-1].update(reference_group=row["reference_group"], comparison_group=row["comparison_group"])
            reps.append(pd.DataFrame({**keys, "group": np.nan, "replicate": np.arange(n_boot), **gap_reps["auroc"]}))
    return pd.DataFrame(est), pd.concat(reps, ignore_index=True)


def true_auroc(d: float) -> float:
    return float(stats.norm.cdf(d / math.sqrt(2 + SEED_SD**2)))


def true_signed(separation) -> float:
    return true_auroc(separation[1]) - true_auroc(separation[0])  # g1 − g0; g0 (larger) is the reference


def run(k: int, separations: dict, reps: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tables = [simulate(rng, rep, k=k, separations=separations, n_boot=100) for rep in range(reps)]
    est = pd.concat([t[0] for t in tables], ignore_index=True)
    rep = pd.concat([t[1] for t in tables], ignore_index=True)
    return gap_changes(estimates=est, replicates=rep)


BASE = (1.6, 1.2)  # AUROC 0.86 vs 0.79: the comparison group is below the reference at ε = ∞


@pytest.mark.slow
@pytest.mark.parametrize("k", [3, 10])
def test_size_and_coverage_at_three_and_ten_seeds(k):
    """Size at a zero change and coverage at a real one; 400 replications each: binomial SE 0.011 at 0.95.

    The old interval (bootstrap variance added to the seed spread, i.e. test noise counted twice)
    covered far above 0.95 with too little power; this one must sit near 0.95 from both sides.
    """
    reps = 400
    null = run(k, {math.inf: BASE, 1.0: BASE}, reps, seed=20 + k)
    assert (null["estimand"] == "signed").all() and (null["family"] == "primary").all()
    size = (null["p_value"] < 0.05).mean()
    assert size <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps), size
    assert not null["verdict_class"].isin(["widens", "narrows"]).mean() > 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)
    dp = (1.2, 0.7)  # both groups fall, the comparison group further: the gap widens
    moved = run(k, {math.inf: BASE, 1.0: dp}, reps, seed=40 + k)
    truth = true_signed(dp) - true_signed(BASE)
    assert truth < -0.04
    covered = ((moved["ci_low"] <= truth) & (truth <= moved["ci_high"])).mean()
    assert 0.93 <= covered <= 0.975, covered
    assert abs(moved["gap_change"].mean() - truth) < 3 * moved["gap_change"].std() / math.sqrt(reps)  # unbiased


@pytest.mark.slow
def test_power_at_the_designs_minimum_detectable_change():
    """A widening planted at the MDE the rows report is detected with ≈ 80% power (300 replications, SE 0.023)."""
    k, reps = 10, 300
    null = run(k, {math.inf: BASE, 1.0: BASE}, 60, seed=61)
    mde = float(null["mde"].median())  # the MDE the rows report (the contrast's own MDE at their se, df)
    target = true_signed(BASE) - mde  # further below the reference: a widening of exactly the MDE
    d1 = brentq(lambda d: true_auroc(d) - true_auroc(BASE[0]) - target, 0.0, 3.0)
    planted = run(k, {math.inf: BASE, 1.0: (BASE[0], d1)}, reps, seed=62)
    power = (planted["verdict_class"] == "widens").mean()
    assert power >= 0.8 - 3 * math.sqrt(0.8 * 0.2 / reps), (mde, power)


@pytest.mark.slow
def test_a_planted_widening_of_a_tenth_reads_widens_with_the_default_design():
    """The default design's primary test (10 seeds, synthetic_lesions' site split of its test rows)."""
    k, reps = 10, 40
    sizes = (1080, 720)  # about 1,800 test rows, site A 60%
    base = (1.55, 0.9)  # a planted site gap near 0.15 at ε = ∞
    target = true_signed(base) - 0.10
    d1 = brentq(lambda d: true_auroc(d) - true_auroc(1.3) - target, 0.0, 3.0)
    rng = np.random.default_rng(70)
    tables = [
        simulate(rng, rep, k=k, sizes=sizes, separations={math.inf: base, 1.0: (1.3, d1), 10.0: base})
        for rep in range(reps)
    ]
    changes = gap_changes(
        estimates=pd.concat([t[0] for t in tables]), replicates=pd.concat([t[1] for t in tables])
    ).set_index("epsilon")
    assert (changes.loc[1.0, "verdict_class"] == "widens").mean() >= 0.95
    assert not changes.loc[10.0, "verdict_class"].isin(["widens", "narrows"]).mean() > 0.1


# ---- fast checks of the table itself -------------------------------------------------------------------


def table_with(
    changes: dict, *, seeds=range(5), n_rep=400, test_sd=0.01, seed_sd=0.005, base=-0.05, method="dpsgd", offsets=None
):
    """Signed-gap estimates and replicates: ε = ∞ plus each ε in ``changes``, the test resample shared.

    ``offsets``: per ε, each seed's deviation from the ε = ∞ seed (instead of independent seed noise).
    """
    rng = np.random.default_rng(0)
    shared = rng.normal(0, test_sd, n_rep)
    est, reps = [], []
    base_noise = seed_sd * rng.normal(size=len(seeds))
    for eps, change in {math.inf: 0.0, **changes}.items():
        noise = base_noise if math.isinf(eps) else seed_sd * rng.normal(size=len(seeds))
        if offsets and eps in offsets:
            noise = base_noise + np.asarray(offsets[eps])
        for s, e in zip(seeds, noise):
            signed = base + change + e
            keys = {"dataset": "d", "model": "mlp", "method": method, "epsilon": eps, "seed": s}
            keys.update(attribute="sex", metric="auroc")
            est.append(
                {**keys, "gap": abs(signed), "null_gap": 0.01, "signed_gap": signed, "tau2": np.nan, "n_groups": 2}
            )
            est[-1].update(reference_group="female", comparison_group="male")
            reps.append(
                pd.DataFrame(
                    {
                        **keys,
                        "group": np.nan,
                        "replicate": np.arange(n_rep),
                        "signed_gap": signed + shared + rng.normal(0, test_sd / 3, n_rep),
                        "gap": abs(signed) + shared,
                        "tau2": np.nan,
                    }
                )
            )
    return pd.DataFrame(est), pd.concat(reps, ignore_index=True)


def test_the_three_way_verdict_and_its_sentences():
    est, reps = table_with(
        {1.0: -0.08, 3.0: 0.04, 10.0: 0.0}, test_sd=0.01, offsets={10.0: [0.01, -0.01, 0.01, -0.01, 0.0]}
    )
    table = gap_changes(estimates=est, replicates=reps, margin=0.03)
    assert list(table.columns) == ["dataset", "model", "method", *GAP_CHANGE_COLUMNS[2:]]
    rows = table.set_index("epsilon")
    assert rows.loc[1.0, "verdict_class"] == "widens"  # −0.05 → −0.13: further from 0
    assert rows.loc[1.0, "verdict"].startswith("DP at ε = 1 widens the sex gap in AUROC (male − female): −0.08 [")
    assert rows.loc[3.0, "verdict_class"] == "narrows"  # −0.05 → −0.01
    assert rows.loc[10.0, "verdict_class"] == "equivalent"
    assert rows.loc[10.0, "verdict"].startswith("DP at ε = 10 leaves the sex gap in AUROC (male − female) equivalent")
    assert not rows["verdict"].str.contains("no change").any()
    est, reps = table_with({1.0: 0.01}, seed_sd=0.03)
    row = gap_changes(estimates=est, replicates=reps).iloc[0]
    assert row["verdict_class"] == "inconclusive" and row["mde"] > 0.03
    assert row["verdict"].endswith(f"inconclusive: would detect a change of ≥ {row['mde']:.2f} at 80% power")


def test_the_interval_is_seed_spread_plus_shared_test_covariance():
    """se² = S²/k + c̄ computed here by hand from the tables' own inputs; interval, p and ratio from the contrast."""
    est, reps = table_with({1.0: 0.02}, seeds=range(6), test_sd=0.01, seed_sd=0.02)
    row = gap_changes(estimates=est, replicates=reps).iloc[0]
    point = est.pivot_table(index="seed", columns="epsilon", values="signed_gap")
    d = point[1.0] - point[math.inf]
    wide = reps.pivot_table(index=["epsilon", "seed"], columns="replicate", values="signed_gap")
    diff = wide.loc[1.0].to_numpy() - wide.loc[math.inf].to_numpy()
    cov = np.cov(diff)
    c_bar = (cov.sum() - np.trace(cov)) / (6 * 5)
    se = math.sqrt(d.var(ddof=1) / 6 + max(c_bar, 0.0))  # c̄ floored at 0
    assert row["se"] == pytest.approx(se) and row["gap_change"] == pytest.approx(d.mean())
    assert row["var_test"] == pytest.approx(np.trace(cov) / 6) and row["cov_test"] == pytest.approx(c_bar)
    # the test itself (df rule, interval, p) is the contrast's: the row is what seed_contrast gives
    contrast = seed_contrast(
        point[1.0].to_numpy(), point[math.inf].to_numpy(), wide.loc[1.0].to_numpy(), wide.loc[math.inf].to_numpy(),
        paired=True,
    )  # fmt: skip
    assert row["df"] == contrast.df and row["ratio"] == pytest.approx(contrast.ratio)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(contrast.interval(0.95))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        interval_of(row["gap_change"], row["se"], row["df"], row["ratio"], level=0.95)
    )
    assert row["p_value"] == pytest.approx(contrast.p_value)
    assert row["p_equivalence"] == pytest.approx(contrast.equivalence_p(0.03))


def test_one_seed_gives_no_verdict():
    est, reps = table_with({1.0: -0.2}, seeds=[0], test_sd=0.01)
    row = gap_changes(estimates=est, replicates=reps).iloc[0]
    assert row["verdict_class"] == "one model" and math.isnan(row["p_value"])
    assert "one trained model per arm, no verdict" in row["verdict"]


def test_the_primary_family_is_declared_and_does_not_grow():
    """Adding exploratory arms (another method, another metric) leaves the primary rows' adjusted p alone."""
    est, reps = table_with({1.0: -0.03, 3.0: -0.02})
    alone = gap_changes(estimates=est, replicates=reps)
    other_est, other_reps = table_with({1.0: -0.03, 3.0: -0.02}, method="dpsgd_f")
    tpr_est, tpr_reps = est.assign(metric="tpr"), reps.assign(metric="tpr")
    grown = gap_changes(
        estimates=pd.concat([est, other_est, tpr_est]), replicates=pd.concat([reps, other_reps, tpr_reps])
    )
    primary = grown[grown["family"] == "primary"]
    assert len(primary) == 2 and (primary["method"] == "dpsgd").all() and (primary["metric"] == "auroc").all()
    np.testing.assert_allclose(primary["p_adjusted"], alone["p_adjusted"])
    exploratory = grown[grown["family"] == "exploratory"]
    assert exploratory["p_adjusted"].isna().all() and exploratory["verdict"].str.startswith("exploratory: ").all()
    # the family is what the benchmark declares: name another method and it is the primary one
    declared = gap_changes(
        estimates=pd.concat([est, other_est]),
        replicates=pd.concat([reps, other_reps]),
        primary={"d": PrimaryFamily(method="dpsgd_f")},
    )
    assert set(declared.loc[declared["family"] == "primary", "method"]) == {"dpsgd_f"}
    # Holm over the family: the larger p is multiplied by 1, the smaller by 2 (then made monotone)
    p = alone.sort_values("p_value")["p_value"].to_numpy()
    np.testing.assert_allclose(np.sort(alone["p_adjusted"]), np.maximum.accumulate(np.minimum(1, p * [2, 1])))


def test_three_groups_use_tau2_and_derived_gaps_stay_exploratory():
    est, reps = table_with({1.0: 0.0})
    rng = np.random.default_rng(3)
    three = est.assign(signed_gap=np.nan, tau2=0.001 + rng.normal(0, 1e-4, len(est)), n_groups=3, reference_group="")
    shared = rng.normal(0, 1e-4, reps["replicate"].nunique())
    three_reps = reps.merge(three[["epsilon", "seed", "tau2"]], on=["epsilon", "seed"], suffixes=("_old", ""))
    three_reps = three_reps.assign(signed_gap=np.nan, tau2=three_reps["tau2"] + shared[three_reps["replicate"]])
    row = gap_changes(estimates=three, replicates=three_reps).iloc[0]
    assert row["estimand"] == "tau2" and row["family"] == "primary"
    assert row["verdict_class"] == "equivalent" and "spread τ² of AUROC" in row["verdict"]
    derived = est.assign(metric="equalized_odds", signed_gap=np.nan)
    row = gap_changes(estimates=derived, replicates=reps.assign(metric="equalized_odds")).iloc[0]
    assert row["estimand"] == "excess" and row["family"] == "exploratory"


def test_group_changes_sit_beside_a_two_group_row():
    """Levelling down: both groups fall while the gap stays; the rows say so."""
    est, reps = table_with({1.0: 0.0})
    groups = pd.concat(
        [
            est[["dataset", "model", "method", "epsilon", "seed", "attribute"]].assign(
                group=g, auroc=np.where(np.isinf(est["epsilon"]), v, v - 0.1)
            )
            for g, v in (("female", 0.85), ("male", 0.80))
        ]
    )
    row = gap_changes(estimates=est, replicates=reps, groups=groups).iloc[0]
    assert row["reference_change"] == pytest.approx(-0.1) and row["comparison_change"] == pytest.approx(-0.1)


def test_gap_change_needs_a_baseline_and_replicates():
    est, reps = table_with({1.0: 0.04})
    assert gap_changes(estimates=est[~np.isinf(est["epsilon"])], replicates=reps).empty
    with pytest.raises(ValueError, match="seeds"):
        gap_changes(estimates=est, replicates=reps[reps["seed"] != 2])
    with pytest.raises(ValueError, match="more than one row"):
        gap_changes(estimates=pd.concat([est, est.iloc[:1]]), replicates=reps)
    nan_run = est.assign(signed_gap=np.where(est["seed"] == 0, np.nan, est["signed_gap"]), gap=np.nan)
    row = gap_changes(estimates=nan_run, replicates=reps).iloc[0]
    assert row["verdict_class"] == "undefined" and row["verdict"].endswith(": no estimate: a run has no value")


# ---- margins, equivalence family, negligible changes, reversals, group sets -------------------------------


def tau2_tables(est, reps, values, *, n_groups=3):
    """``table_with``'s runs turned into τ² rows: per run its τ² ``values`` (aligned with ``est``), the
    replicates the run's τ² plus a tiny resample noise shared by every run (so the difference cancels it)."""
    three = est.assign(signed_gap=np.nan, tau2=np.asarray(values, dtype=float), n_groups=n_groups, reference_group="")
    three = three.assign(comparison_group="")
    shared = np.random.default_rng(9).normal(0, 1e-6, reps["replicate"].nunique())
    merged = reps.merge(three[["epsilon", "seed", "tau2"]], on=["epsilon", "seed"], suffixes=("_old", ""))
    merged = merged.assign(signed_gap=np.nan, tau2=merged["tau2"] + shared[merged["replicate"]])
    return three, merged.drop(columns="tau2_old")


def test_the_tau2_margin_is_half_the_squared_gap_margin():
    """DL τ² of two groups whose values differ by δ (tiny within-group variances) is δ²/2: margin_for says so."""
    for delta in (0.03, 0.1):
        tau2 = dersimonian_laird_tau2(np.array([[0.8, 0.8 + delta]]), np.array([1e-12, 1e-12]))[0]
        assert tau2 == pytest.approx(delta**2 / 2, rel=1e-6)
        assert margin_for("tau2", delta) == pytest.approx(tau2, rel=1e-6) and margin_for("signed", delta) == delta
    # a τ² change whose 90% interval lies inside ±margin² = 0.0009 but not inside ±margin²/2 = 0.00045
    est, reps = table_with({1.0: 0.0}, seed_sd=0.0)
    offsets = np.array([0.0007, -0.0007, 0.0007, -0.0007, 0.0])
    values = 0.001 + np.where(np.isinf(est["epsilon"]), 0.0, offsets[est["seed"]])
    row = gap_changes(estimates=tau2_tables(est, reps, values)[0], replicates=tau2_tables(est, reps, values)[1]).iloc[0]
    assert row["estimand"] == "tau2"
    low, high = interval_of(row["gap_change"], row["se"], row["df"], row["ratio"], level=0.9)
    assert -0.0009 < low and high < 0.0009 and not (-0.00045 < low and high < 0.00045), (low, high)
    assert row["verdict_class"] == "inconclusive" and not row["within_margin"]
    assert row["p_equivalence"] > 0.05
    # a wider gap margin whose half square covers the interval reads equivalent, and says ±margin²/2
    est_t, reps_t = tau2_tables(est, reps, values)
    wide = gap_changes(estimates=est_t, replicates=reps_t, margin=0.045).iloc[0]
    assert wide["verdict_class"] == "equivalent" and "equivalent within ±0.00101" in wide["verdict"]


def test_equivalence_reads_the_holm_adjusted_tost_over_the_primary_family():
    """Two primary rows with the same TOST p between α/2 and α: each alone equivalent, Holm-adjusted not."""
    offsets = [0.028, -0.028, 0.028, -0.028, 0.0]
    est, reps = table_with({1.0: 0.0, 3.0: 0.0}, seed_sd=0.0, offsets={1.0: offsets, 3.0: offsets})
    table = gap_changes(estimates=est, replicates=reps, margin=0.03)
    assert (table["family"] == "primary").all()
    p = table["p_equivalence"].to_numpy()
    assert np.all((0.025 < p) & (p < 0.05)), p
    np.testing.assert_allclose(table["p_equivalence_adjusted"], holm(p))
    assert (table["p_equivalence_adjusted"] >= 0.05).all() and set(table["verdict_class"]) == {"inconclusive"}
    # the same rows alone in their family (one of them exploratory) are equivalent on their own TOST p
    single = gap_changes(estimates=est, replicates=reps, margin=0.03, primary={"d": PrimaryFamily(metric="tpr")})
    assert (single["family"] == "exploratory").all() and single["p_equivalence_adjusted"].isna().all()
    assert set(single["verdict_class"]) == {"equivalent"}


def test_a_detected_change_inside_the_margin_is_called_negligible():
    est, reps = table_with({1.0: -0.01, 3.0: -0.08}, seed_sd=0.0005, test_sd=0.001)
    rows = gap_changes(estimates=est, replicates=reps, margin=0.03).set_index("epsilon")
    small, large = rows.loc[1.0], rows.loc[3.0]
    assert small["verdict_class"] == large["verdict_class"] == "widens"
    assert bool(small["within_margin"]) and not bool(large["within_margin"])
    assert small["verdict"].endswith(", detected but within ±0.03 (practically negligible)")
    assert "negligible" not in large["verdict"]


def test_a_signed_gap_that_changes_sign_reverses():
    """−0.05 (female ahead) → +0.05 (male ahead), both ends nonzero: reverses; → 0: narrows."""
    est, reps = table_with({1.0: 0.10, 3.0: 0.05}, seed_sd=0.002, test_sd=0.002)
    rows = gap_changes(estimates=est, replicates=reps).set_index("epsilon")
    flipped, closed = rows.loc[1.0], rows.loc[3.0]
    assert flipped["verdict_class"] == "reverses"
    assert flipped["p_baseline_gap"] < 0.05 and flipped["p_arm_gap"] < 0.05
    assert flipped["baseline_value"] < 0 < flipped["arm_value"]
    assert "the gap reversed sign, from female ahead to male ahead" in flipped["verdict"]
    assert closed["verdict_class"] == "narrows" and closed["p_arm_gap"] > 0.05  # ends at 0: no reversal
    # a lower-is-better metric: the group with the lower value is ahead
    fpr = gap_changes(estimates=est.assign(metric="fpr"), replicates=reps.assign(metric="fpr")).set_index("epsilon")
    assert "from male ahead to female ahead" in fpr.loc[1.0, "verdict"]


def test_rows_whose_runs_have_other_groups_are_undefined_with_a_reason():
    est, reps = table_with({1.0: -0.08, 3.0: -0.08})
    swapped = (est["epsilon"] == 1.0) & (est["seed"] == 2)
    est.loc[swapped, ["reference_group", "comparison_group"]] = ["male", "female"]
    rows = gap_changes(estimates=est, replicates=reps).set_index("epsilon")
    bad, fine = rows.loc[1.0], rows.loc[3.0]
    assert bad["verdict_class"] == "undefined" and math.isnan(bad["gap_change"]) and bad["estimand"] == "signed"
    assert bad["reason"] == (
        "groups differ across runs: reference female, comparison male in 9 runs, "
        "reference male, comparison female in 1 run"
    )
    assert bad["verdict"].endswith(f": {bad['reason']}") and "no verdict" in bad["verdict"]
    assert fine["verdict_class"] == "widens" and fine["reason"] == ""
    # τ² rows: one run with a fourth usable group
    est, reps = table_with({1.0: 0.0})
    values = 0.001 + np.random.default_rng(2).normal(0, 1e-4, len(est))
    three, three_reps = tau2_tables(est, reps, values)
    three.loc[(three["epsilon"] == 1.0) & (three["seed"] == 0), "n_groups"] = 4
    row = gap_changes(estimates=three, replicates=three_reps).iloc[0]
    assert row["verdict_class"] == "undefined" and row["estimand"] == "tau2"
    assert row["reason"] == "groups differ across runs: 3 usable groups in 9 runs, 4 usable groups in 1 run"
    # without n_groups: a run with a signed gap has two groups, one with τ² only more (no silent τ²)
    mixed = three.drop(columns="n_groups")
    mixed.loc[mixed["seed"] == 0, "signed_gap"] = -0.05
    row = gap_changes(estimates=mixed, replicates=three_reps).iloc[0]
    assert row["verdict_class"] == "undefined" and "2 usable groups in 2 runs" in row["reason"]


def test_tau2_rows_without_group_counts_read_the_groups_table():
    est, reps = table_with({1.0: 0.0})
    values = 0.001 + np.random.default_rng(2).normal(0, 1e-4, len(est))
    three, three_reps = tau2_tables(est, reps, values)
    three = three.drop(columns="n_groups")
    runs = three[["dataset", "model", "method", "epsilon", "seed", "attribute"]]
    groups = pd.concat([runs.assign(group=g, auroc=0.8, flagged=False) for g in ("A", "B", "C")], ignore_index=True)
    row = gap_changes(estimates=three, replicates=three_reps, groups=groups).iloc[0]
    assert row["estimand"] == "tau2" and row["reason"] == "" and row["verdict_class"] != "undefined"
    lost = groups.assign(auroc=np.where((groups["group"] == "C") & (groups["seed"] == 4), np.nan, groups["auroc"]))
    row = gap_changes(estimates=three, replicates=three_reps, groups=lost).iloc[0]
    assert row["verdict_class"] == "undefined"
    assert row["reason"] == "groups differ across runs: {A, B, C} in 8 runs, {A, B} in 2 runs"


def test_a_value_missing_in_some_runs_over_the_same_groups_falls_back_to_the_excess_gap():
    """Same three groups in every run, τ² missing in one run (a rate with no value there): the row is read
    on the excess max − min every run has, not left undefined; a row with no estimate at all says why."""
    est, reps = table_with({1.0: 0.0})
    values = 0.001 + np.random.default_rng(2).normal(0, 1e-4, len(est))
    three, three_reps = tau2_tables(est, reps, values)
    missing = (three["epsilon"] == 1.0) & (three["seed"] == 0)
    three.loc[missing, "tau2"] = np.nan
    row = gap_changes(estimates=three, replicates=three_reps).iloc[0]
    assert row["estimand"] == "excess" and row["verdict_class"] != "undefined" and math.isfinite(row["gap_change"])
    three.loc[missing, ["tau2", "gap"]] = np.nan  # nothing to describe that run by
    row = gap_changes(estimates=three, replicates=three_reps).iloc[0]
    assert row["verdict_class"] == "undefined" and row["reason"] == "no estimate: a run has no value"
