"""Rows shared by the membership attacks: members (training rows) against held-out rows, overall and per group."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dpfair.audit.bounds import clopper_pearson
from dpfair.audit.groups import auroc_by_group, auroc_with_interval
from dpfair.audit.membership import attack_metrics, balanced_member_sample, max_count, roc_counts
from dpfair.audit.registry import AttackResult, AuditContext

HELD_OUT = ("val", "test")
#: FPR grid of the report's low-FPR ROC curves (log-spaced, 1e-3 to 1).
ROC_GRID = np.logspace(-3, 0, 31)


def group_frame(table: pd.DataFrame, attributes: list[str]) -> pd.DataFrame:
    """One column per attribute (an intersection 'a:b' joins its parts' values with ':')."""
    return pd.DataFrame(
        {
            a: table[a.split(":")].astype(str).agg(":".join, axis=1) if ":" in a else table[a].astype(str)
            for a in attributes
        },
        index=table.index,
    )


def roc_points(membership, scores) -> pd.DataFrame:
    """Highest TPR at each FPR of :data:`ROC_GRID` that the non-members can resolve (≥ 1 false positive allowed)."""
    _, tp, fp, n_m, n_n = roc_counts(membership, scores)
    rows = [
        {"fpr": float(g), "tpr": float(tp[fp <= max_count(g, n_n)].max() / n_m), "n_nonmembers": n_n}
        for g in ROC_GRID
        if max_count(g, n_n) >= 1
    ]
    return pd.DataFrame(rows, columns=["fpr", "tpr", "n_nonmembers"])


def membership_attack_rows(
    ctx: AuditContext,
    *,
    member_scores: np.ndarray,
    nonmember_scores: np.ndarray,
    members: pd.DataFrame,
    nonmembers: pd.DataFrame,
) -> AttackResult:
    """Balanced members vs non-members: AUROC, TPR at 1% / 0.1% FPR, the (ε, δ) check, per-group AUROC, ROC."""
    seed = int(ctx.keys["seed"])
    level = float(ctx.settings.get("confidence", 0.95))
    n_boot = int(ctx.settings.get("n_bootstrap", 200))
    m_idx, n_idx = balanced_member_sample(n_members=len(member_scores), n_nonmembers=len(nonmember_scores), seed=seed)
    n = len(m_idx)
    membership = np.r_[np.ones(n, dtype=int), np.zeros(n, dtype=int)]
    scores = np.r_[member_scores[m_idx], nonmember_scores[n_idx]]
    summary = attack_metrics(
        membership=membership, scores=scores, epsilon=ctx.epsilon, delta=ctx.delta, confidence=level
    )
    auc, low, high = auroc_with_interval(membership=membership, scores=scores, n_boot=n_boot, level=level, seed=seed)
    rows = [{"metric": "auroc", "value": auc, "ci_low": low, "ci_high": high, "n": 2 * n}]
    for metric in ("tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr"):
        value = summary[f"mia_{metric}"]
        if np.isnan(value):
            rows.append({"metric": metric, "value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": n})
        else:
            lo, hi = clopper_pearson(successes=round(value * n), trials=n, confidence=level)
            rows.append({"metric": metric, "value": value, "ci_low": float(lo), "ci_high": float(hi), "n": n})
    rows.append({"metric": "bound_violated", "value": float(summary["mia_bound_violated"]), "n": 2 * n})
    rows.append({"metric": "epsilon_empirical", "value": summary["mia_epsilon_empirical"], "n": 2 * n})
    if ctx.attributes:
        groups = pd.concat(
            [group_frame(members, ctx.attributes).iloc[m_idx], group_frame(nonmembers, ctx.attributes).iloc[n_idx]],
            ignore_index=True,
        )
        by_group = auroc_by_group(
            membership=membership, scores=scores, groups=groups, n_boot=n_boot, level=level, seed=seed
        )
        rows += [{"metric": "auroc", **r} for r in by_group.to_dict("records")]
    return AttackResult(rows=rows, roc=roc_points(membership, scores))


def split_members(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows (members) and held-out rows (non-members) of a run's scores table."""
    return table[table["split"] == "train"], table[table["split"].isin(HELD_OUT)]
