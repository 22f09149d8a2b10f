"""Empirical membership-inference audit of a trained binary classifier, checked against its (ε, δ) claim.

The attack is the per-example loss-threshold attack (Yeom et al. 2018): an example's score is minus its
binary cross-entropy under the model, ``y·log p + (1−y)·log(1−p)``, and a higher score means "member".
Members are training rows; non-members are held-out rows the model never saw, subsampled with
:func:`balanced_member_sample` so that both sides have the same size.

Definitions used throughout:

* **ROC points** come from ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``, so every distinct
  score is a threshold (dropping collinear points could remove the point a target needs). Tied scores
  enter together; there is no interpolation between points.
* **TPR at FPR = t** is the highest TPR among ROC points whose false-positive *count* is at most
  ``floor(t · n_nonmembers)`` (FPR ≤ t). The point (0, 0) always qualifies, so the value is defined.
* **The (ε, δ) bound.** Any test of "member" against "non-member" on an (ε, δ)-DP mechanism obeys
  ``TPR ≤ e^ε·FPR + δ`` and ``1 − FPR ≤ e^ε·(1 − TPR) + δ``. We check it at a small fixed set of
  operating points: for each target ``t`` in ``fpr_targets`` the point chosen as for "TPR at FPR = t", and
  its mirror, the point with the lowest FPR whose false-negative rate is at most ``t`` (this side catches
  attacks that are sure of *non*-membership). Each chosen threshold is set by one side's scores alone, so
  (for continuous scores) the other side's count at it is binomial, and the side that set it has exactly
  the coverage Clopper–Pearson gives an order statistic: the intervals stay valid despite the selection.
* **Intervals.** One-sided Clopper–Pearson bounds (``scipy.stats.beta``): a lower bound on TPR and an
  upper bound on FPR at every point, with a Bonferroni split of ``1 − confidence`` over all of them
  (``2 × n_points`` intervals; 16 with the four default targets), so that all hold at once with
  probability ≥ ``confidence`` (0.95 by default).
* **Violation and the empirical ε.** The bound is violated iff at some point
  ``TPR_lo > e^ε·FPR_hi + δ`` or ``1 − FPR_hi > e^ε·(1 − TPR_lo) + δ``. The empirical ε lower bound is
  ``max(0, max over points of log((TPR_lo − δ)/FPR_hi) and log((1 − FPR_hi − δ)/(1 − TPR_lo)))``; so the
  bound is violated exactly when this exceeds the claimed ε. With ``ε = inf`` nothing is violated.

Caveats. The audit uses one trained model and many examples, so it leans on members being a random
subset of the same population as non-members (as a random train/test split gives); with a shifted
held-out set the attack measures the shift, not the model. It is a lower bound: a weak attack finding
nothing proves nothing, and the loss attack is far from the strongest. Probabilities from a float32
sigmoid saturate at 0 or 1 once |logit| ≳ 17; they are clipped to ``[1e-15, 1 − 1e-15]``, and the
resulting ties only make the audit more conservative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from scipy.stats import beta
from sklearn.metrics import roc_curve

from dpfair.metrics import safe_auroc

#: FPR (and, mirrored, FNR) targets at which the (ε, δ) bound is checked.
DEFAULT_FPR_TARGETS: tuple[float, ...] = (0.001, 0.01, 0.05, 0.1)
#: Family-wise confidence of all the Clopper–Pearson bounds of one audit together.
DEFAULT_CONFIDENCE = 0.95
#: Probabilities are clipped to [PROB_FLOOR, 1 − PROB_FLOOR] so that every score is finite.
PROB_FLOOR = 1e-15
GROUP_COLUMNS = ["group", "n_members", "n_nonmembers", "mia_auroc"]
POINT_COLUMNS = ["side", "target", "threshold", "tp", "fp", "n_members", "n_nonmembers"]


def loss_scores(*, probs, labels) -> np.ndarray:
    """Loss-attack scores: minus the binary cross-entropy of the true label (higher = more likely a member).

    Example:
        >>> loss_scores(probs=[0.9, 0.9, 0.5], labels=[1, 0, 1]).round(4)
        array([-0.1054, -2.3026, -0.6931])
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"probs and labels must be 1-D and of one length, got shapes {p.shape} and {y.shape}")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("probs must be probabilities in [0, 1] (pass predict()'s output, not logits)")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 or 1")
    p = np.clip(p, PROB_FLOOR, 1 - PROB_FLOOR)
    return y * np.log(p) + (1 - y) * np.log1p(-p)


def balanced_member_sample(*, n_members: int, n_nonmembers: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of equally many members and non-members: the larger side is subsampled without replacement.

    The smaller side is kept whole and in order; the larger side's draw is sorted and depends only on
    ``seed`` and the two sizes.

    Example:
        >>> members, nonmembers = balanced_member_sample(n_members=3, n_nonmembers=10, seed=0)
        >>> members.tolist(), len(nonmembers), len(set(nonmembers.tolist())), int(nonmembers.max()) < 10
        ([0, 1, 2], 3, 3, True)
    """
    if n_members < 1 or n_nonmembers < 1:
        raise ValueError(f"need at least one member and one non-member, got {n_members} and {n_nonmembers}")
    n = min(n_members, n_nonmembers)
    rng = np.random.default_rng(seed)

    def draw(size: int) -> np.ndarray:
        return np.arange(size) if size == n else np.sort(rng.choice(size, size=n, replace=False))

    return draw(n_members), draw(n_nonmembers)


def _roc_counts(membership, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Thresholds, true- and false-positive counts of every ROC point (from (0, 0) on), and the two sizes."""
    membership = np.asarray(membership).astype(int)
    n_members, n_nonmembers = int(membership.sum()), int((membership == 0).sum())
    if n_members == 0 or n_nonmembers == 0:
        raise ValueError(f"need members and non-members, got {n_members} and {n_nonmembers}")
    fpr, tpr, thresholds = roc_curve(membership, np.asarray(scores, dtype=np.float64), drop_intermediate=False)
    return thresholds, np.rint(tpr * n_members).astype(int), np.rint(fpr * n_nonmembers).astype(int), n_members, n_nonmembers


def _max_count(rate: float, n: int) -> int:
    """The largest count whose rate count/n is at most ``rate`` (tolerant of float error in rate·n)."""
    return int(math.floor(rate * n + 1e-9))


def tpr_at_fpr(*, membership, scores, target_fpr: float) -> float:
    """The highest TPR among ROC points with FPR ≤ ``target_fpr`` (no interpolation; ties enter together).

    Example:
        >>> # members score 3, 2, 2, 1; non-members 2, 0, 0, 0. The tie at 2 takes one member-scored 2 with
        >>> # it, so the points are (FPR, TPR) = (0, 1/4), (1/4, 3/4), (1/4, 1), (1, 1).
        >>> m, s = [1, 1, 1, 1, 0, 0, 0, 0], [3, 2, 2, 1, 2, 0, 0, 0]
        >>> tpr_at_fpr(membership=m, scores=s, target_fpr=0.2), tpr_at_fpr(membership=m, scores=s, target_fpr=0.25)
        (0.25, 1.0)
    """
    _, tp, fp, n_members, n_nonmembers = _roc_counts(membership, scores)
    return float(tp[fp <= _max_count(target_fpr, n_nonmembers)].max() / n_members)


def operating_points(*, membership, scores, fpr_targets=DEFAULT_FPR_TARGETS) -> pd.DataFrame:
    """The ROC points at which the (ε, δ) bound is checked, with their counts.

    For each target ``t``: on side ``"fpr"`` the point with the highest TPR whose FPR ≤ ``t``; on side
    ``"fnr"`` the point with the lowest FPR whose FNR = 1 − TPR ≤ ``t`` (ties broken towards the better
    other rate). ``threshold`` is the score at or above which an example is called a member.

    Example:
        >>> m, s = [1, 1, 1, 1, 0, 0, 0, 0], [3, 2, 2, 1, 2, 0, 0, 0]
        >>> operating_points(membership=m, scores=s, fpr_targets=[0.25])[["side", "threshold", "tp", "fp"]]
          side  threshold  tp  fp
        0  fpr        1.0   4   1
        1  fnr        1.0   4   1
    """
    thresholds, tp, fp, n_members, n_nonmembers = _roc_counts(membership, scores)
    rows = []
    for target in fpr_targets:
        if not 0 <= target < 1:
            raise ValueError(f"targets must lie in [0, 1), got {target}")
        ok = np.flatnonzero(fp <= _max_count(target, n_nonmembers))
        fpr_pick = ok[np.lexsort((fp[ok], -tp[ok]))[0]]  # highest tp, then lowest fp
        ok = np.flatnonzero(n_members - tp <= _max_count(target, n_members))
        fnr_pick = ok[np.lexsort((-tp[ok], fp[ok]))[0]]  # lowest fp, then highest tp
        for side, i in (("fpr", fpr_pick), ("fnr", fnr_pick)):
            rows.append({"side": side, "target": float(target), "threshold": float(thresholds[i]),
                         "tp": int(tp[i]), "fp": int(fp[i]), "n_members": n_members, "n_nonmembers": n_nonmembers})
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def clopper_pearson(*, successes, trials, confidence: float = DEFAULT_CONFIDENCE, alternative: str = "two-sided"):
    """Exact (Clopper–Pearson) binomial interval ``(low, high)``; arrays are broadcast.

    ``alternative="lower"`` gives a one-sided lower bound at ``confidence`` (``high`` is 1),
    ``"upper"`` a one-sided upper bound (``low`` is 0).

    Example:
        >>> [round(float(b), 4) for b in clopper_pearson(successes=5, trials=10)]
        [0.1871, 0.8129]
        >>> round(float(clopper_pearson(successes=0, trials=10, alternative="upper")[1]), 4)  # 1 − 0.05^(1/10)
        0.2589
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("need 0 <= successes <= trials")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if alternative not in ("two-sided", "lower", "upper"):
        raise ValueError(f"alternative must be 'two-sided', 'lower' or 'upper', got {alternative!r}")
    alpha = (1 - confidence) / 2 if alternative == "two-sided" else 1 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k == 0, 0.0, beta.ppf(alpha, k, n - k + 1))
        high = np.where(k == n, 1.0, beta.ppf(1 - alpha, k + 1, n - k))
    if alternative == "lower":
        high = np.ones_like(low)
    elif alternative == "upper":
        low = np.zeros_like(high)
    return low, high


@dataclass
class BoundCheck:
    """Outcome of :func:`check_privacy_bound`: ``points`` has one row per operating point."""

    violated: bool
    epsilon_lower_bound: float
    confidence: float
    points: pd.DataFrame


def check_privacy_bound(
    *, tp, fp, n_members, n_nonmembers, epsilon: float, delta: float, confidence: float = DEFAULT_CONFIDENCE
) -> BoundCheck:
    """Check measured (TPR, FPR) counts against ``TPR ≤ e^ε·FPR + δ`` and ``1 − FPR ≤ e^ε·(1 − TPR) + δ``.

    Each point gets a one-sided Clopper–Pearson lower bound on TPR and upper bound on FPR, at a Bonferroni
    level ``(1 − confidence) / (2 · n_points)`` each. The bound is violated iff some point has
    ``TPR_lo > e^ε·FPR_hi + δ`` or ``1 − FPR_hi > e^ε·(1 − TPR_lo) + δ``; ``epsilon_lower_bound`` is the
    largest ε that the points rule out (0 if none), ``max log((TPR_lo − δ)/FPR_hi)`` over both directions.

    Example:
        >>> # 90 of 100 members flagged at 0 of 100 non-members: TPR_lo ≈ 0.824, FPR_hi ≈ 0.036
        >>> check = check_privacy_bound(tp=[90], fp=[0], n_members=100, n_nonmembers=100, epsilon=1.0, delta=1e-5)
        >>> check.violated, round(check.epsilon_lower_bound, 2)
        (True, 3.12)
        >>> check_privacy_bound(tp=[90], fp=[0], n_members=100, n_nonmembers=100, epsilon=3.5, delta=1e-5).violated
        False
    """
    tp, fp = np.atleast_1d(np.asarray(tp, dtype=int)), np.atleast_1d(np.asarray(fp, dtype=int))
    n_m = np.broadcast_to(np.asarray(n_members, dtype=int), tp.shape)
    n_n = np.broadcast_to(np.asarray(n_nonmembers, dtype=int), fp.shape)
    if tp.shape != fp.shape or len(tp) == 0:
        raise ValueError("tp and fp must be non-empty and of one length")
    if not 0 <= delta < 1 or epsilon < 0 or math.isnan(epsilon):
        raise ValueError(f"need epsilon >= 0 and 0 <= delta < 1, got epsilon={epsilon}, delta={delta}")
    level = 1 - (1 - confidence) / (2 * len(tp))
    tpr_low, _ = clopper_pearson(successes=tp, trials=n_m, confidence=level, alternative="lower")
    _, fpr_high = clopper_pearson(successes=fp, trials=n_n, confidence=level, alternative="upper")
    with np.errstate(divide="ignore", invalid="ignore"):
        # FPR_hi > 0 and TPR_lo < 1 always, so only a non-positive numerator needs care (it rules out nothing)
        eps_tpr = np.where(tpr_low > delta, np.log(np.maximum(tpr_low - delta, 1e-300) / fpr_high), -np.inf)
        tnr_low, fnr_high = 1 - fpr_high, 1 - tpr_low
        eps_tnr = np.where(tnr_low > delta, np.log(np.maximum(tnr_low - delta, 1e-300) / fnr_high), -np.inf)
    if math.isinf(epsilon):
        violated = np.zeros(len(tp), dtype=bool)
    else:
        e = math.exp(min(epsilon, 700.0))
        violated = (tpr_low > e * fpr_high + delta) | (tnr_low > e * fnr_high + delta)
    points = pd.DataFrame({
        "tp": tp, "fp": fp, "n_members": n_m, "n_nonmembers": n_n, "tpr": tp / n_m, "fpr": fp / n_n,
        "tpr_low": tpr_low, "fpr_high": fpr_high, "epsilon_lower": np.maximum(np.maximum(eps_tpr, eps_tnr), 0.0),
        "violated": violated,
    })
    return BoundCheck(
        violated=bool(violated.any()), epsilon_lower_bound=float(points["epsilon_lower"].max()),
        confidence=confidence, points=points,
    )


def dp_max_auroc(*, epsilon: float, delta: float) -> float:
    """The largest attack AUROC any test can reach against an (ε, δ)-DP mechanism.

    It is the area under ``min(1, e^ε·x + δ, 1 − e^−ε·(1 − δ − x))`` over FPR ``x`` in [0, 1], the
    trade-off curve (ε, δ)-DP allows; for δ = 0 it is e^ε / (1 + e^ε). Useful as a ceiling next to a
    measured AUROC.

    Example:
        >>> round(dp_max_auroc(epsilon=0.0, delta=0.0), 4), round(dp_max_auroc(epsilon=1.0, delta=0.0), 4)
        (0.5, 0.7311)
        >>> dp_max_auroc(epsilon=float("inf"), delta=1e-5)
        1.0
    """
    if math.isinf(epsilon):
        return 1.0
    e = math.exp(epsilon)

    def ceiling(x):
        return np.minimum.reduce([np.ones_like(x), e * x + delta, 1 - (1 - delta - x) / e])

    # the curve is piecewise linear, so the trapezoid rule over its kinks is exact
    kinks = [0.0, 1.0, (1 - delta) / e, 1 - delta, (1 - delta) * (1 - 1 / e) / (e - 1 / e) if e > 1 else 0.0]
    x = np.unique(np.clip(kinks, 0.0, 1.0))
    y = ceiling(x)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))


def _n_members(y_true, y_pred) -> int:
    return int(np.sum(np.asarray(y_true) == 1))


def _n_nonmembers(y_true, y_pred) -> int:
    return int(np.sum(np.asarray(y_true) == 0))


def membership_by_group(*, membership, scores, groups) -> pd.DataFrame:
    """Per-group attack AUROC (NaN for a group holding only members or only non-members), via MetricFrame.

    Example:
        >>> membership_by_group(membership=[1, 1, 0, 0, 1], scores=[0.9, 0.2, 0.1, 0.5, 0.3],
        ...                     groups=["a", "a", "a", "a", "b"])
          group  n_members  n_nonmembers  mia_auroc
        0     a          2             2       0.75
        1     b          1             0        NaN
    """
    membership = np.asarray(membership).astype(int)
    groups = pd.Series(np.asarray(groups).astype(str), name="group")
    if len(groups) != len(membership):
        raise ValueError(f"groups has {len(groups)} entries for {len(membership)} examples")
    frame = MetricFrame(
        metrics={"n_members": _n_members, "n_nonmembers": _n_nonmembers, "mia_auroc": safe_auroc},
        y_true=membership, y_pred=np.asarray(scores, dtype=np.float64), sensitive_features=groups,
    )
    table = frame.by_group.reset_index()
    table["n_members"] = table["n_members"].astype(int)
    table["n_nonmembers"] = table["n_nonmembers"].astype(int)
    table["mia_auroc"] = table["mia_auroc"].astype(float)
    return table[GROUP_COLUMNS]


def audit_membership(
    *,
    member_probs,
    member_labels,
    nonmember_probs,
    nonmember_labels,
    epsilon: float,
    delta: float,
    member_groups=None,
    nonmember_groups=None,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
    fpr_targets=DEFAULT_FPR_TARGETS,
) -> tuple[dict, pd.DataFrame]:
    """Run the loss-threshold membership attack and check it against the model's (ε, δ) claim.

    ``member_*`` are the training rows' predicted probabilities of label 1 and their labels,
    ``nonmember_*`` the same for held-out rows; the larger side is subsampled (``seed``) to the size of the
    smaller. Groups, if given, are per-row subgroup labels aligned with the probabilities.

    Returns ``summary`` with ``mia_auroc``, ``mia_tpr_at_1pct_fpr``, ``mia_tpr_at_0p1pct_fpr``,
    ``mia_bound_violated``, ``mia_epsilon_lower_bound``, ``n_members``, ``n_nonmembers``, and ``by_group``
    with columns ``group, n_members, n_nonmembers, mia_auroc`` (empty without groups). See the module
    docstring for the definitions.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y_in, y_out = rng.integers(0, 2, 500), rng.integers(0, 2, 800)
        >>> p_in = np.where(y_in == 1, 0.999, 0.001)  # memorised: the training labels, confidently
        >>> p_out = rng.uniform(0, 1, 800)            # held-out rows: no idea
        >>> summary, by_group = audit_membership(member_probs=p_in, member_labels=y_in, nonmember_probs=p_out,
        ...     nonmember_labels=y_out, epsilon=1.0, delta=1e-5, member_groups=y_in, nonmember_groups=y_out)
        >>> summary["n_members"], summary["n_nonmembers"], summary["mia_auroc"] > 0.99, summary["mia_bound_violated"]
        (500, 500, True, True)
        >>> by_group.columns.tolist(), len(by_group)
        (['group', 'n_members', 'n_nonmembers', 'mia_auroc'], 2)
    """
    member_scores = loss_scores(probs=member_probs, labels=member_labels)
    nonmember_scores = loss_scores(probs=nonmember_probs, labels=nonmember_labels)
    if (member_groups is None) != (nonmember_groups is None):
        raise ValueError("pass member_groups and nonmember_groups together, or neither")
    member_idx, nonmember_idx = balanced_member_sample(
        n_members=len(member_scores), n_nonmembers=len(nonmember_scores), seed=seed
    )
    n = len(member_idx)
    membership = np.r_[np.ones(n, dtype=int), np.zeros(n, dtype=int)]
    scores = np.r_[member_scores[member_idx], nonmember_scores[nonmember_idx]]

    points = operating_points(membership=membership, scores=scores, fpr_targets=fpr_targets)
    check = check_privacy_bound(
        tp=points["tp"], fp=points["fp"], n_members=n, n_nonmembers=n, epsilon=float(epsilon), delta=float(delta),
        confidence=confidence,
    )
    summary = {
        "mia_auroc": safe_auroc(membership, scores),
        "mia_tpr_at_1pct_fpr": tpr_at_fpr(membership=membership, scores=scores, target_fpr=0.01),
        "mia_tpr_at_0p1pct_fpr": tpr_at_fpr(membership=membership, scores=scores, target_fpr=0.001),
        "mia_bound_violated": check.violated,
        "mia_epsilon_lower_bound": check.epsilon_lower_bound,
        "n_members": n,
        "n_nonmembers": n,
    }

    if member_groups is None:
        return summary, pd.DataFrame(columns=GROUP_COLUMNS)
    member_groups, nonmember_groups = np.asarray(member_groups), np.asarray(nonmember_groups)
    for name, g, s in (("member", member_groups, member_scores), ("nonmember", nonmember_groups, nonmember_scores)):
        if len(g) != len(s):
            raise ValueError(f"{name}_groups has {len(g)} entries for {len(s)} {name} rows")
    groups = np.r_[member_groups[member_idx].astype(str), nonmember_groups[nonmember_idx].astype(str)]
    return summary, membership_by_group(membership=membership, scores=scores, groups=groups)
