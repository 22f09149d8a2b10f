"""The one-run canary audit (Steinke, Nasr & Jagielski, NeurIPS 2023): a certified ε lower bound."""

from __future__ import annotations

import math

from dpfair.audit.attacks.common import group_frame
from dpfair.audit.bounds import clopper_pearson
from dpfair.audit.groups import auroc_by_group, auroc_with_interval
from dpfair.audit.one_run import one_run_audit
from dpfair.audit.registry import AttackResult, AuditContext, register_attack


@register_attack(
    "one_run",
    label="one-run canaries",
    needs={"canaries"},
    description="one-run canary audit (Steinke et al. 2023), certified bound",
)
def one_run_attack(ctx: AuditContext) -> AttackResult:
    """The certified ε lower bound from guessing which canaries were included, with the canaries' AUROC."""
    canaries = ctx.canaries
    level = float(ctx.settings.get("confidence", 0.95))
    n_boot = int(ctx.settings.get("n_bootstrap", 200))
    seed = int(ctx.keys["seed"])
    scores, included = canaries["score"].to_numpy(), canaries["included"].to_numpy().astype(int)
    result = one_run_audit(
        scores=scores,
        included=included,
        delta=ctx.delta,
        confidence=level,
        seed=seed,
        guess_counts=ctx.settings.get("guess_counts", (10, 20, 50, 100, 200, 500)),
    )
    lo, hi = clopper_pearson(successes=result.n_correct, trials=result.n_guesses, confidence=level)
    auc, a_lo, a_hi = auroc_with_interval(membership=included, scores=scores, n_boot=n_boot, level=level, seed=seed)
    rows = [
        {"metric": "epsilon_lower_bound", "value": result.epsilon_lower_bound, "n": result.m},
        {
            "metric": "guess_precision",
            "value": result.n_correct / result.n_guesses,
            "ci_low": float(lo),
            "ci_high": float(hi),
            "n": result.n_guesses,
        },
        {"metric": "auroc", "value": auc, "ci_low": a_lo, "ci_high": a_hi, "n": result.m},
        {
            "metric": "bound_violated",
            "value": float(math.isfinite(ctx.epsilon) and result.epsilon_lower_bound > ctx.epsilon),
            "n": result.m,
        },
    ]
    if ctx.attributes:
        table = ctx.table.loc[canaries["row"].to_numpy()]
        by_group = auroc_by_group(
            membership=included,
            scores=scores,
            groups=group_frame(table, ctx.attributes).reset_index(drop=True),
            n_boot=n_boot,
            level=level,
            seed=seed,
        )
        rows += [{"metric": "auroc", **r} for r in by_group.to_dict("records")]
    return AttackResult(rows=rows)
