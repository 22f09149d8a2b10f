"""RMIA (Zarifzadeh et al., ICML 2024) with reference models trained like the run on random population halves."""

from __future__ import annotations

import numpy as np

from dpfair.audit.attacks.common import HELD_OUT, membership_attack_rows, split_members
from dpfair.audit.registry import AttackResult, AuditContext, register_attack
from dpfair.audit.rmia import rmia_scores


@register_attack(
    "rmia",
    label="RMIA",
    needs={"reference_models"},
    description="RMIA (Zarifzadeh et al. 2024) against reference models",
)
def rmia_attack(ctx: AuditContext) -> AttackResult:
    """Training rows against held-out rows, scored by RMIA's pairwise likelihood ratio against the reference models."""
    table = ctx.table
    if "logit" not in table.columns:
        raise ValueError("rmia needs the run's logits (a 'logit' column in scores.csv); retrain the run")
    refs = ctx.references.set_index("row").loc[table.index]
    logit_cols = [c for c in refs.columns if c.startswith("logit_")]
    scores = rmia_scores(
        target_logits=table["logit"].to_numpy(),
        reference_logits=refs[logit_cols].to_numpy().T,
        labels=table["label"].to_numpy(),
        population=table["split"].isin(HELD_OUT).to_numpy(),
        gamma=float(ctx.settings.get("rmia_gamma", 1.0)),
    )
    members, nonmembers = split_members(table)
    by_row = dict(zip(table.index, scores))
    return membership_attack_rows(
        ctx,
        member_scores=np.array([by_row[i] for i in members.index]),
        nonmember_scores=np.array([by_row[i] for i in nonmembers.index]),
        members=members,
        nonmembers=nonmembers,
    )
