"""Membership-inference audit: metrics against hand-computed values, and a canary on real training."""

import math

import numpy as np
import pytest
import torch
from dpfair.audit import (
    audit_membership,
    balanced_member_sample,
    check_privacy_bound,
    clopper_pearson,
    dp_max_auroc,
    loss_scores,
    membership_by_group,
    operating_points,
    tpr_at_fpr,
)
from dpfair.training.config import TrainConfig
from dpfair.training.loop import predict, train
from scipy.stats import beta, norm

# --- attack scores and sampling ----------------------------------------------------------------------


def test_loss_scores_are_minus_bce():
    s = loss_scores(probs=[0.8, 0.8, 0.25], labels=[1, 0, 0])
    assert s == pytest.approx([math.log(0.8), math.log(0.2), math.log(0.75)])


def test_saturated_probabilities_give_finite_scores():
    s = loss_scores(probs=np.array([1.0, 1.0, 0.0], dtype=np.float32), labels=[1, 0, 0])
    assert np.all(np.isfinite(s)) and s[0] == pytest.approx(0.0) and s[2] == pytest.approx(0.0) and s[1] < -30


def test_loss_scores_refuse_logits_and_bad_labels():
    with pytest.raises(ValueError, match="probabilities"):
        loss_scores(probs=[2.3, -1.0], labels=[1, 0])
    with pytest.raises(ValueError, match="0 or 1"):
        loss_scores(probs=[0.3, 0.4], labels=[1, 2])


def test_balanced_sample_subsamples_the_larger_side_reproducibly():
    m, n = balanced_member_sample(n_members=50, n_nonmembers=20, seed=3)
    assert len(m) == len(n) == 20 and n.tolist() == list(range(20))
    assert len(set(m.tolist())) == 20 and m.max() < 50 and np.all(np.diff(m) > 0)
    again, _ = balanced_member_sample(n_members=50, n_nonmembers=20, seed=3)
    other, _ = balanced_member_sample(n_members=50, n_nonmembers=20, seed=4)
    assert again.tolist() == m.tolist() and other.tolist() != m.tolist()
    m, n = balanced_member_sample(n_members=7, n_nonmembers=7, seed=0)
    assert m.tolist() == n.tolist() == list(range(7))


# --- attack metrics ----------------------------------------------------------------------------------


def test_auroc_by_hand():
    # all labels 1, so score = log p. Pairs (member, non-member): 0.9 beats 0.5 and 0.2; 0.3 beats only 0.2 -> 3/4
    summary, _ = audit_membership(
        member_probs=[0.9, 0.3],
        member_labels=[1, 1],
        nonmember_probs=[0.5, 0.2],
        nonmember_labels=[1, 1],
        epsilon=1.0,
        delta=1e-5,
    )
    assert summary["mia_auroc"] == pytest.approx(0.75)
    assert summary["n_members"] == summary["n_nonmembers"] == 2


def test_tpr_at_fpr_with_ties_by_hand():
    # members 3, 2, 2, 1; non-members 2, 0, 0, 0. Thresholds >=3: (FPR, TPR) = (0, 1/4); >=2: the tie brings
    # two members and one non-member in together -> (1/4, 3/4); >=1: (1/4, 1); >=0: (1, 1).
    m, s = [1, 1, 1, 1, 0, 0, 0, 0], [3, 2, 2, 1, 2, 0, 0, 0]
    assert tpr_at_fpr(membership=m, scores=s, target_fpr=0.0) == 0.25
    assert tpr_at_fpr(membership=m, scores=s, target_fpr=0.24) == 0.25  # no interpolation towards (1/4, 3/4)
    assert tpr_at_fpr(membership=m, scores=s, target_fpr=0.25) == 1.0
    # every score tied: only (0, 0) and (1, 1) exist
    assert tpr_at_fpr(membership=[1, 0], scores=[5, 5], target_fpr=0.5) == 0.0


def test_tpr_at_low_fpr_is_empty_when_the_tail_holds_too_few_held_out_rows():
    rng = np.random.default_rng(0)
    for n_out, defined in ((999, False), (1000, True)):  # floor(0.01 · n) = 9 vs 10 non-members in the tail
        m = np.r_[np.ones(500, int), np.zeros(n_out, int)]
        value = tpr_at_fpr(membership=m, scores=rng.normal(size=len(m)), target_fpr=0.01, min_tail=10)
        assert math.isnan(value) != defined
    summary, _ = audit_membership(
        member_probs=rng.uniform(size=900),
        member_labels=rng.integers(0, 2, 900),
        nonmember_probs=rng.uniform(size=900),
        nonmember_labels=rng.integers(0, 2, 900),
        epsilon=1.0,
        delta=1e-5,
    )
    assert math.isnan(summary["mia_tpr_at_1pct_fpr"]) and math.isnan(summary["mia_tpr_at_0p1pct_fpr"])  # 9 and 0 rows


def test_tpr_at_fpr_matches_brute_force_over_thresholds():
    rng = np.random.default_rng(1)
    m = np.r_[np.ones(300, int), np.zeros(300, int)]
    s = np.round(m * 0.7 + rng.normal(size=600), 1)  # rounding makes many ties
    for target in (0.001, 0.01, 0.05, 0.1, 0.3):
        best = 0.0
        for t in np.unique(s):
            tpr, fpr = np.mean(s[m == 1] >= t), np.mean(s[m == 0] >= t)
            if fpr <= target:
                best = max(best, tpr)
        assert tpr_at_fpr(membership=m, scores=s, target_fpr=target) == pytest.approx(best)


def test_operating_points_on_both_sides():
    # members 4, 3, 2, 1; non-members 3.5, 1.5, 0, 0. (tp, fp) at thresholds 4, 3.5, 3, 2, 1.5, 1, 0:
    # (1, 0), (1, 1), (2, 1), (3, 1), (3, 2), (4, 2), (4, 4)
    m, s = [1, 1, 1, 1, 0, 0, 0, 0], [4, 3, 2, 1, 3.5, 1.5, 0, 0]
    pts = operating_points(membership=m, scores=s, fpr_targets=[0.0, 0.25]).set_index(["side", "target"])
    assert pts.loc[("fpr", 0.0), ["threshold", "tp", "fp"]].tolist() == [4, 1, 0]
    assert pts.loc[("fpr", 0.25), ["threshold", "tp", "fp"]].tolist() == [2, 3, 1]  # highest TPR with FP <= 1
    assert pts.loc[("fnr", 0.0), ["threshold", "tp", "fp"]].tolist() == [1, 4, 2]  # lowest FPR with FN = 0
    assert pts.loc[("fnr", 0.25), ["threshold", "tp", "fp"]].tolist() == [2, 3, 1]  # lowest FPR with FN <= 1


# --- Clopper–Pearson and the (ε, δ) bound ----------------------------------------------------------------


def test_clopper_pearson_known_values():
    low, high = clopper_pearson(successes=5, trials=10)  # textbook: (0.1871, 0.8129)
    assert (low, high) == pytest.approx((0.187086, 0.812914), abs=1e-6)
    low, high = clopper_pearson(successes=1, trials=10)  # textbook: (0.0025, 0.4450)
    assert (low, high) == pytest.approx((0.002529, 0.445016), abs=1e-6)
    # the closed forms at the edges: upper for 0/n and lower for n/n are 1 − α^(1/n) and α^(1/n)
    assert clopper_pearson(successes=0, trials=10, alternative="upper") == pytest.approx((0.0, 1 - 0.05**0.1))
    assert clopper_pearson(successes=10, trials=10, alternative="lower") == pytest.approx((0.05**0.1, 1.0))
    assert clopper_pearson(successes=0, trials=10) == pytest.approx((0.0, 1 - 0.025**0.1))


def test_bound_violated_by_hand():
    # one point, so Bonferroni splits 5% over two one-sided intervals: α = 0.025 each
    check = check_privacy_bound(tp=[90], fp=[0], n_members=100, n_nonmembers=100, epsilon=1.0, delta=1e-5)
    tpr_low, fpr_high = beta.ppf(0.025, 90, 11), 1 - 0.025 ** (1 / 100)
    assert check.points.loc[0, ["tpr_low", "fpr_high"]].tolist() == pytest.approx([tpr_low, fpr_high])
    assert tpr_low > math.e * fpr_high + 1e-5 and check.violated
    assert check.epsilon_empirical == pytest.approx(math.log((tpr_low - 1e-5) / fpr_high))
    # the same counts do not refute a claim above that ε lower bound (≈ 3.12), nor ε = ∞
    assert not check_privacy_bound(tp=[90], fp=[0], n_members=100, n_nonmembers=100, epsilon=3.2, delta=1e-5).violated
    inf = check_privacy_bound(tp=[90], fp=[0], n_members=100, n_nonmembers=100, epsilon=math.inf, delta=1e-5)
    assert not inf.violated and inf.epsilon_empirical == pytest.approx(check.epsilon_empirical)


def test_bound_not_violated_by_hand():
    # 30/100 vs 10/100: TPR_lo ≈ 0.20 < e · FPR_hi ≈ e · 0.18; and 1 − FPR_hi ≈ 0.82 < e · (1 − TPR_lo) ≈ 2.2
    check = check_privacy_bound(tp=[30], fp=[10], n_members=100, n_nonmembers=100, epsilon=1.0, delta=1e-5)
    assert not check.violated
    assert 0 <= check.epsilon_empirical < 1.0


def test_bound_violated_on_the_mirrored_side():
    # every member caught at FPR 1/2: "score below the threshold" proves non-membership
    check = check_privacy_bound(tp=[100], fp=[50], n_members=100, n_nonmembers=100, epsilon=1.0, delta=1e-5)
    row = check.points.loc[0]
    assert row.tpr_low <= math.e * row.fpr_high  # the TPR side holds...
    assert 1 - row.fpr_high > math.e * (1 - row.tpr_low) + 1e-5  # ...the mirrored one does not
    assert check.violated and check.epsilon_empirical > 1.0


def test_delta_and_bonferroni_make_the_check_more_lenient():
    one = check_privacy_bound(tp=[90], fp=[0], n_members=100, n_nonmembers=100, epsilon=1.0, delta=1e-5)
    four = check_privacy_bound(tp=[90] * 4, fp=[0] * 4, n_members=100, n_nonmembers=100, epsilon=1.0, delta=1e-5)
    assert four.epsilon_empirical < one.epsilon_empirical
    assert not check_privacy_bound(tp=[90], fp=[0], n_members=100, n_nonmembers=100, epsilon=1.0, delta=0.9).violated


def test_dp_max_auroc():
    assert dp_max_auroc(epsilon=0.0, delta=0.0) == pytest.approx(0.5)
    assert dp_max_auroc(epsilon=1.0, delta=0.0) == pytest.approx(math.e / (1 + math.e))
    assert (
        dp_max_auroc(epsilon=1.0, delta=0.0)
        < dp_max_auroc(epsilon=1.0, delta=1e-3)
        < dp_max_auroc(epsilon=2.0, delta=1e-3)
    )
    # numerically integrated trade-off curve
    x = np.linspace(0, 1, 200_001)
    e, d = math.exp(0.7), 0.02
    curve = np.minimum.reduce([np.ones_like(x), e * x + d, 1 - (1 - d - x) / e])
    assert dp_max_auroc(epsilon=0.7, delta=0.02) == pytest.approx(np.trapezoid(curve, x), abs=1e-9)


# --- per-group output ----------------------------------------------------------------------------------


def test_per_group_table_shape_and_one_class_group():
    rng = np.random.default_rng(0)
    y_in, y_out = rng.integers(0, 2, 60), rng.integers(0, 2, 60)
    p_in, p_out = rng.uniform(size=60), rng.uniform(size=60)
    g_in = np.array(["a"] * 30 + ["b"] * 25 + ["members_only"] * 5)
    g_out = np.array(["a"] * 35 + ["b"] * 25)
    summary, by_group = audit_membership(
        member_probs=p_in,
        member_labels=y_in,
        nonmember_probs=p_out,
        nonmember_labels=y_out,
        epsilon=1.0,
        delta=1e-5,
        member_groups=g_in,
        nonmember_groups=g_out,
    )
    assert by_group.columns.tolist() == ["group", "n_members", "n_nonmembers", "mia_auroc"]
    table = by_group.set_index("group")
    assert table.index.tolist() == ["a", "b", "members_only"]
    assert table["n_members"].tolist() == [30, 25, 5] and table["n_nonmembers"].tolist() == [35, 25, 0]
    assert math.isnan(table.loc["members_only", "mia_auroc"])
    assert table[["mia_auroc"]].iloc[:2].notna().all().all()
    # group AUROC is the AUROC of the group's rows
    scores_a = np.r_[loss_scores(probs=p_in[:30], labels=y_in[:30]), loss_scores(probs=p_out[:35], labels=y_out[:35])]
    direct = membership_by_group(membership=np.r_[np.ones(30), np.zeros(35)], scores=scores_a, groups=["a"] * 65)
    assert table.loc["a", "mia_auroc"] == pytest.approx(direct["mia_auroc"].iloc[0])
    assert set(summary) == {
        "mia_auroc",
        "mia_tpr_at_1pct_fpr",
        "mia_tpr_at_0p1pct_fpr",
        "mia_bound_violated",
        "mia_epsilon_empirical",
        "n_members",
        "n_nonmembers",
    }


def test_no_groups_gives_an_empty_table_and_groups_must_come_in_pairs():
    kwargs = dict(
        member_probs=[0.9, 0.2],
        member_labels=[1, 0],
        nonmember_probs=[0.6, 0.5],
        nonmember_labels=[1, 0],
        epsilon=1.0,
        delta=1e-5,
    )
    _, by_group = audit_membership(**kwargs)
    assert by_group.empty and by_group.columns.tolist() == ["group", "n_members", "n_nonmembers", "mia_auroc"]
    with pytest.raises(ValueError, match="together"):
        audit_membership(**kwargs, member_groups=["a", "b"])
    with pytest.raises(ValueError, match="entries"):
        audit_membership(**kwargs, member_groups=["a", "b"], nonmember_groups=["a"])


def test_unequal_sides_are_balanced_in_the_audit():
    rng = np.random.default_rng(0)
    summary, by_group = audit_membership(
        member_probs=rng.uniform(size=40),
        member_labels=rng.integers(0, 2, 40),
        nonmember_probs=rng.uniform(size=300),
        nonmember_labels=rng.integers(0, 2, 300),
        epsilon=1.0,
        delta=1e-5,
        member_groups=np.zeros(40),
        nonmember_groups=np.zeros(300),
    )
    assert summary["n_members"] == summary["n_nonmembers"] == 40
    assert by_group[["n_members", "n_nonmembers"]].iloc[0].tolist() == [40, 40]


# --- canary: a memorising non-private model is caught, a DP one is not ----------------------------------

N = 200  # members, and as many held-out non-members
DELTA = 1e-5
CANARY_CONFIG = TrainConfig(epochs=20, batch_size=50, lr=1e-2)


@pytest.fixture(scope="module")
def canary_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2 * N, 50, generator=g)
    y = torch.randint(0, 2, (2 * N,), generator=g).float()  # random labels: only memorising fits them
    return x[:N], y[:N], x[N:], y[N:]


def _train_and_audit(canary_data, *, train_epsilon, claimed_epsilon):
    x_in, y_in, x_out, y_out = canary_data
    result = train(
        model_name="mlp",
        modality="tabular",
        x_train=x_in,
        y_train=y_in,
        epsilon=train_epsilon,
        delta=DELTA,
        config=CANARY_CONFIG,
        seed=0,
    )
    summary, _ = audit_membership(
        member_probs=predict(result.model, x_in),
        member_labels=y_in.numpy(),
        nonmember_probs=predict(result.model, x_out),
        nonmember_labels=y_out.numpy(),
        epsilon=claimed_epsilon,
        delta=DELTA,
    )
    return result, summary


def test_canary_overfit_model_claimed_private_is_flagged(canary_data):
    result, summary = _train_and_audit(canary_data, train_epsilon=math.inf, claimed_epsilon=1.0)
    assert result.record["final_train_loss"] < 0.05  # it memorised the random labels (ε = ∞ reports its training loss)
    assert summary["mia_auroc"] > 0.75
    assert summary["mia_bound_violated"] is True
    assert summary["mia_epsilon_empirical"] > 2.0
    # the same model claimed non-private is not "violating" anything
    _, honest = _train_and_audit(canary_data, train_epsilon=math.inf, claimed_epsilon=math.inf)
    assert honest["mia_bound_violated"] is False


def test_canary_dp_model_passes(canary_data):
    result, summary = _train_and_audit(canary_data, train_epsilon=1.0, claimed_epsilon=1.0)
    assert summary["mia_bound_violated"] is False
    assert summary["mia_epsilon_empirical"] <= 1.0
    # Tolerance around 0.5: sampling noise plus the leakage ε = 1 itself allows. With no leakage the AUROC of
    # 200 vs 200 has SD sqrt((n1 + n0 + 1) / (12 n1 n0)) ≈ 0.029; random labels on 50 random features are
    # near DP-SGD's worst case, so the attack can also reach what the accountant permits: in the Gaussian-DP
    # approximation of DP-SGD (μ = q·sqrt(T·(e^{1/σ²} − 1))), AUROC ≤ Φ(μ/√2) ≈ 0.57 here.
    sd_null = math.sqrt((2 * N + 1) / (12 * N * N))
    record = result.record
    mu = record["sample_rate"] * math.sqrt(record["steps"] * math.expm1(1 / record["noise_multiplier"] ** 2))
    tolerance = (norm.cdf(mu / math.sqrt(2)) - 0.5) + 3 * sd_null
    assert 0.1 < tolerance < 0.2
    assert abs(summary["mia_auroc"] - 0.5) < tolerance
    assert summary["mia_auroc"] <= dp_max_auroc(epsilon=1.0, delta=DELTA)
