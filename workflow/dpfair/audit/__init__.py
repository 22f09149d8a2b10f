"""Privacy audit: membership-inference attacks on trained models and a certified one-run canary audit.

Modules: ``bounds`` (Clopper–Pearson, the (ε, δ) hypothesis-test check), ``membership`` (ROC helpers, the
loss-threshold scores), ``rmia`` (reference-model scores), ``one_run`` (Steinke et al.'s certified bound),
``groups`` (per-subgroup attack success with intervals), ``registry`` (attacks by name, with their labels
and what each needs trained), ``attacks`` (one module per attack, found by the registry), ``plan`` (what the
audit stage schedules, from the configured attacks' needs), ``train_models`` and ``training_adapter`` (the
one place that trains models for the audit) and ``stage`` (one cell's audit as files).
"""

from dpfair.audit.bounds import DEFAULT_CONFIDENCE, BoundCheck, check_privacy_bound, clopper_pearson, dp_max_auroc
from dpfair.audit.membership import (
    DEFAULT_FPR_TARGETS,
    MIN_TAIL,
    attack_metrics,
    audit_membership,
    balanced_member_sample,
    loss_scores,
    loss_scores_from_logits,
    membership_by_group,
    operating_points,
    tpr_at_fpr,
)
from dpfair.audit.one_run import OneRunResult, epsilon_one_run, one_run_audit, one_run_p_value

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_FPR_TARGETS",
    "MIN_TAIL",
    "BoundCheck",
    "OneRunResult",
    "attack_metrics",
    "audit_membership",
    "balanced_member_sample",
    "check_privacy_bound",
    "clopper_pearson",
    "dp_max_auroc",
    "epsilon_one_run",
    "loss_scores",
    "loss_scores_from_logits",
    "membership_by_group",
    "one_run_audit",
    "one_run_p_value",
    "operating_points",
    "tpr_at_fpr",
]
