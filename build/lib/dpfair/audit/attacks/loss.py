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


@register_attack("loss", needs="scores", description="loss threshold (Yeom et al. 2018) on the run's own scores")
def loss_attack(ctx: AuditContext) -> AttackResult:
    members, nonmembers = split_members(ctx.table)
    return membership_attack_rows(ctx, member_scores=run_loss_scores(members), nonmember_scores=run_loss_scores(nonmembers),
                                  members=members, nonmembers=nonmembers)
