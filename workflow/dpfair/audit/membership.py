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
* **TPR at low FPR** is left undefined (NaN) when fewer than ``min_tail`` (10) non-members fall in the
  tail, i.e. ``floor(t · n_nonmembers) < 10``: a TPR read off a handful of held-out rows says little.
* **The (ε, δ) check and the empirical ε** (:mod:`dpfair.audit.bounds`) are taken at a small fixed set of
  operating points: for each target ``t`` in ``fpr_targets`` the point chosen as for "TPR at FPR = t", and
  its mirror, the point with the lowest FPR whose false-negative rate is at most ``t`` (this side catches
  attacks that are sure of *non*-membership). Each chosen threshold is set by one side's scores alone, so
  (for continuous scores) the other side's count at it is binomial, and the side that set it has exactly
  the coverage Clopper–Pearson gives an order statistic: the intervals stay valid despite the selection.
  ``mia_epsilon_empirical`` is an estimate for one model, not a certified bound (see ``bounds``); the
  certified bound comes from the one-run canary audit.

Caveats. The audit uses one trained model and many examples, so it leans on members being a random
subset of the same population as non-members (as a random train/test split gives); with a shifted
held-out set the attack measures the shift, not the model. It is a lower bound: a weak attack finding
nothing proves nothing, and the loss attack is far from the strongest. Probabilities from a float32
sigmoid saturate at 0 or 1 once |logit| ≳ 17; they are clipped to ``[1e-15, 1 − 1e-15]``, and the
resulting ties only make the audit more conservative.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from sklearn.metrics import roc_curve

from dpfair.audit.bounds import DEFAULT_CONFIDENCE, check_privacy_bound
from dpfair.metrics import safe_auroc

#: FPR (and, mirrored, FNR) targets at which the (ε, δ) bound is checked.
DEFAULT_FPR_TARGETS: tuple[float, ...] = (0.001, 0.01, 0.05, 0.1)
#: TPR at FPR = t needs at least this many non-members in the tail (floor(t·n)); else it is NaN.
MIN_TAIL = 10
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


def loss_scores_from_logits(*, logits, labels) -> np.ndarray:
    """Loss-attack scores from logits: ``−BCE = −softplus(−logit)`` for label 1, ``−softplus(logit)`` for 0.

    Exact where probabilities saturate (a float32 sigmoid is 1.0 from |logit| ≈ 17 on).

    Example:
        >>> loss_scores_from_logits(logits=[40.0, 40.0], labels=[1, 0]).round(4)
        array([ -0., -40.])
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if z.shape != y.shape or z.ndim != 1:
        raise ValueError(f"logits and labels must be 1-D and of one length, got shapes {z.shape} and {y.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 or 1")
    return -np.logaddexp(0.0, np.where(y == 1, -z, z))


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


def roc_counts(membership, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Thresholds, true- and false-positive counts of every ROC point (from (0, 0) on), and the two sizes."""
    membership = np.asarray(membership).astype(int)
    n_members, n_nonmembers = int(membership.sum()), int((membership == 0).sum())
    if n_members == 0 or n_nonmembers == 0:
        raise ValueError(f"need members and non-members, got {n_members} and {n_nonmembers}")
    fpr, tpr, thresholds = roc_curve(membership, np.asarray(scores, dtype=np.float64), drop_intermediate=False)
    return (
        thresholds,
        np.rint(tpr * n_members).astype(int),
        np.rint(fpr * n_nonmembers).astype(int),
        n_members,
        n_nonmembers,
    )


def max_count(rate: float, n: int) -> int:
    """The largest count whose rate count/n is at most ``rate`` (tolerant of float error in rate·n)."""
    return int(math.floor(rate * n + 1e-9))


def tpr_at_fpr(*, membership, scores, target_fpr: float, min_tail: int = 0) -> float:
    """The highest TPR among ROC points with FPR ≤ ``target_fpr`` (no interpolation; ties enter together).

    NaN when fewer than ``min_tail`` non-members fall in the tail (``floor(target_fpr · n_nonmembers)``).

    Example:
        >>> # members score 3, 2, 2, 1; non-members 2, 0, 0, 0. The tie at 2 takes one member-scored 2 with
        >>> # it, so the points are (FPR, TPR) = (0, 1/4), (1/4, 3/4), (1/4, 1), (1, 1).
        >>> m, s = [1, 1, 1, 1, 0, 0, 0, 0], [3, 2, 2, 1, 2, 0, 0, 0]
        >>> tpr_at_fpr(membership=m, scores=s, target_fpr=0.2), tpr_at_fpr(membership=m, scores=s, target_fpr=0.25)
        (0.25, 1.0)
        >>> tpr_at_fpr(membership=m, scores=s, target_fpr=0.25, min_tail=2)
        nan
    """
    _, tp, fp, n_members, n_nonmembers = roc_counts(membership, scores)
    if max_count(target_fpr, n_nonmembers) < min_tail:
        return math.nan
    return float(tp[fp <= max_count(target_fpr, n_nonmembers)].max() / n_members)


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
    thresholds, tp, fp, n_members, n_nonmembers = roc_counts(membership, scores)
    rows = []
    for target in fpr_targets:
        if not 0 <= target < 1:
            raise ValueError(f"targets must lie in [0, 1), got {target}")
        ok = np.flatnonzero(fp <= max_count(target, n_nonmembers))
        fpr_pick = ok[np.lexsort((fp[ok], -tp[ok]))[0]]  # highest tp, then lowest fp
        ok = np.flatnonzero(n_members - tp <= max_count(target, n_members))
        fnr_pick = ok[np.lexsort((-tp[ok], fp[ok]))[0]]  # lowest fp, then highest tp
        for side, i in (("fpr", fpr_pick), ("fnr", fnr_pick)):
            rows.append(
                {
                    "side": side,
                    "target": float(target),
                    "threshold": float(thresholds[i]),
                    "tp": int(tp[i]),
                    "fp": int(fp[i]),
                    "n_members": n_members,
                    "n_nonmembers": n_nonmembers,
                }
            )
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


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
        y_true=membership,
        y_pred=np.asarray(scores, dtype=np.float64),
        sensitive_features=groups,
    )
    table = frame.by_group.reset_index()
    table["n_members"] = table["n_members"].astype(int)
    table["n_nonmembers"] = table["n_nonmembers"].astype(int)
    table["mia_auroc"] = table["mia_auroc"].astype(float)
    return table[GROUP_COLUMNS]


def attack_metrics(
    *,
    membership,
    scores,
    epsilon: float,
    delta: float,
    confidence: float = DEFAULT_CONFIDENCE,
    fpr_targets=DEFAULT_FPR_TARGETS,
    min_tail: int = MIN_TAIL,
) -> dict:
    """AUROC, TPR at 1% and 0.1% FPR, the (ε, δ) check and the empirical ε of any attack's scores.

    ``membership`` is 1 for members, ``scores`` higher for "member". Keys as :func:`audit_membership`'s summary.

    Example:
        >>> m = np.r_[np.ones(50, int), np.zeros(50, int)]
        >>> out = attack_metrics(membership=m, scores=np.r_[np.arange(50) + 25, np.arange(50)], epsilon=1.0, delta=0.0)
        >>> out["mia_auroc"], out["mia_tpr_at_1pct_fpr"], out["n_members"]  # 0 non-members in a 1% tail: NaN
        (0.875, nan, 50)
    """
    membership = np.asarray(membership).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    n_members, n_nonmembers = int(membership.sum()), int((membership == 0).sum())
    points = operating_points(membership=membership, scores=scores, fpr_targets=fpr_targets)
    check = check_privacy_bound(
        tp=points["tp"],
        fp=points["fp"],
        n_members=n_members,
        n_nonmembers=n_nonmembers,
        epsilon=float(epsilon),
        delta=float(delta),
        confidence=confidence,
    )
    return {
        "mia_auroc": safe_auroc(membership, scores),
        "mia_tpr_at_1pct_fpr": tpr_at_fpr(membership=membership, scores=scores, target_fpr=0.01, min_tail=min_tail),
        "mia_tpr_at_0p1pct_fpr": tpr_at_fpr(membership=membership, scores=scores, target_fpr=0.001, min_tail=min_tail),
        "mia_bound_violated": check.violated,
        "mia_epsilon_empirical": check.epsilon_empirical,
        "n_members": n_members,
        "n_nonmembers": n_nonmembers,
    }


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
    min_tail: int = MIN_TAIL,
) -> tuple[dict, pd.DataFrame]:
    """Run the loss-threshold membership attack and check it against the model's (ε, δ) claim.

    ``member_*`` are the training rows' predicted probabilities of label 1 and their labels,
    ``nonmember_*`` the same for held-out rows; the larger side is subsampled (``seed``) to the size of the
    smaller. Groups, if given, are per-row subgroup labels aligned with the probabilities.

    Returns ``summary`` with ``mia_auroc``, ``mia_tpr_at_1pct_fpr``, ``mia_tpr_at_0p1pct_fpr``,
    ``mia_bound_violated``, ``mia_epsilon_empirical``, ``n_members``, ``n_nonmembers``, and ``by_group``
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
    summary = attack_metrics(
        membership=membership,
        scores=scores,
        epsilon=epsilon,
        delta=delta,
        confidence=confidence,
        fpr_targets=fpr_targets,
        min_tail=min_tail,
    )

    if member_groups is None:
        return summary, pd.DataFrame(columns=GROUP_COLUMNS)
    member_groups, nonmember_groups = np.asarray(member_groups), np.asarray(nonmember_groups)
    for name, g, s in (("member", member_groups, member_scores), ("nonmember", nonmember_groups, nonmember_scores)):
        if len(g) != len(s):
            raise ValueError(f"{name}_groups has {len(g)} entries for {len(s)} {name} rows")
    groups = np.r_[member_groups[member_idx].astype(str), nonmember_groups[nonmember_idx].astype(str)]
    return summary, membership_by_group(membership=membership, scores=scores, groups=groups)
