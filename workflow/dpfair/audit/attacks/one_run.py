"""The one-run canary audit (Steinke, Nasr & Jagielski, NeurIPS 2023): a certified ε lower bound.

The canary run is built for the relation the run's mechanism claims (:func:`dpfair.audit.one_run.canary_design`):
``membership`` canaries (each held-out canary trained on or not by a fair coin: add or remove one record or
patient) or ``label`` canaries (every canary trained on, its training label its own or the flipped one by a
fair coin: replace one label, what label-only DP protects). Either way a canary's bit changes one
neighbour of the claimed relation, so the paper's theorem certifies a bound on the claimed ε; the attack is
the same (guess "bit 1" for the canaries most confident in the flipped label).
"""

from __future__ import annotations

import math

from dpfair.audit.attacks.common import group_frame
from dpfair.audit.bounds import clopper_pearson
from dpfair.audit.groups import auroc_by_group, auroc_with_interval
from dpfair.audit.one_run import canary_design, one_run_audit
from dpfair.audit.registry import AttackResult, AuditContext, register_attack

#: What each canary design's bit decides, for the rows' ``note``.
DESIGN_NOTES = {
    "membership": "membership canaries: each included with probability 1/2 (add or remove one {unit})",
    "label": "label canaries: each trained on with its own or the flipped label, by a fair coin (replace one label)",
}


@register_attack(
    "one_run",
    label="one-run canaries",
    needs={"canaries"},
    units={"record", "patient", "label"},
    description="one-run canary audit (Steinke et al. 2023), certified bound",
)
def one_run_attack(ctx: AuditContext) -> AttackResult:
    """The certified ε lower bound from guessing the canaries' bits, with the canaries' AUROC; rows note the design."""
    canaries = ctx.canaries
    design = str(canaries["design"].iloc[0]) if "design" in canaries and len(canaries) else "membership"
    expected = canary_design(unit=ctx.unit, relation=ctx.relation)
    if design != expected:  # a bound from the wrong design would certify a relation the run does not claim
        raise ValueError(
            f"canaries.csv holds {design} canaries but a {ctx.unit}-level run under {ctx.relation} needs {expected} "
            "canaries; retrain its audit models (audit_train)"
        )
    note = DESIGN_NOTES[design].format(unit="patient" if ctx.unit == "patient" else "record")
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
        {"metric": "epsilon_lower_bound", "value": result.epsilon_lower_bound, "n": result.m, "note": note},
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
