"""The loss-threshold attack (Yeom et al., CSF 2018): minus the binary cross-entropy of the true label."""

from __future__ import annotations

from dpfair.audit.attacks.common import membership_attack_rows, split_members
from dpfair.audit.membership import loss_scores, loss_scores_from_logits
from dpfair.audit.registry import AttackResult, AuditContext, register_attack


def run_loss_scores(frame):
    """Loss scores of a scores table's rows: from logits when the table has them (exact), else probabilities."""
    labels = frame["label"].to_numpy()
    if "logit" in frame.columns:
        return loss_scores_from_logits(logits=frame["logit"].to_numpy(), labels=labels)
    return loss_scores(probs=frame["score"].to_numpy(), labels=labels)


@register_attack(
    "loss", label="loss threshold", description="loss threshold (Yeom et al. 2018) on the run's own scores"
)
def loss_attack(ctx: AuditContext) -> AttackResult:
    """Training rows against held-out rows, scored by minus the loss of the true label (per patient for patient-level runs)."""
    table = ctx.table
    if ctx.unit == "patient" and "patient_id" in table.columns:
        table = per_patient(table)  # the guarantee is per patient: patients are the members
        members, nonmembers = split_members(table)
        return membership_attack_rows(
            ctx,
            member_scores=members["_score"].to_numpy(),
            nonmember_scores=nonmembers["_score"].to_numpy(),
            members=members,
            nonmembers=nonmembers,
        )
    members, nonmembers = split_members(table)
    return membership_attack_rows(
        ctx,
        member_scores=run_loss_scores(members),
        nonmember_scores=run_loss_scores(nonmembers),
        members=members,
        nonmembers=nonmembers,
    )


def per_patient(table):
    """One row per patient (its first row's split and groups), scored by the mean loss score of its rows.

    A patient's rows never straddle splits, so the first row's split is every row's.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"patient_id": ["a", "a", "b"], "split": ["train", "train", "test"],
        ...                   "label": [1, 0, 1], "logit": [0.0, 0.0, 2.0]})
        >>> out = per_patient(t)
        >>> out["patient_id"].tolist(), out["_score"].round(3).tolist()
        (['a', 'b'], [-0.693, -0.127])
    """
    scored = table.assign(_score=run_loss_scores(table))
    grouped = scored.groupby("patient_id", sort=False)
    out = grouped.first()
    out["_score"] = grouped["_score"].mean()
    return out.reset_index()
