"""Fairness and uncertainty for one run's scores, and the change of each gap across the ε grid.

One job per module: :mod:`~dpfair.fairness.threshold` (the operating point, from validation rows),
:mod:`~dpfair.fairness.calibration` (ECE, reliability bins), :mod:`~dpfair.fairness.metrics_registry`
(one definition per metric), :mod:`~dpfair.fairness.bootstrap` (vectorised resampling and permutation
kernels), :mod:`~dpfair.fairness.subgroups` (one run's evaluation), :mod:`~dpfair.fairness.gaps` (gap,
null reference, signed gap, τ) and :mod:`~dpfair.fairness.gap_changes` (gap changes across ε with
multiplicity control).
"""

from dpfair.fairness.bootstrap import BOOTSTRAP_BLOCK, permuted_groups, stratified_bootstrap_weights, weighted_metrics
from dpfair.fairness.calibration import expected_calibration_error, reliability_table
from dpfair.fairness.gap_changes import GAP_CHANGE_COLUMNS, gap_changes, holm
from dpfair.fairness.gaps import EQUALIZED_ODDS, GAP_COLUMNS, dersimonian_laird_tau, q_profile_interval
from dpfair.fairness.metrics_registry import Metric, get_metric, metric_names, register_metric
from dpfair.fairness.subgroups import (
    GROUP_COLUMNS,
    INTERSECTION_SEP,
    OVERALL,
    OVERALL_COLUMNS,
    RELIABILITY_COLUMNS,
    REPLICATE_COLUMNS,
    FairnessReport,
    evaluate_fairness,
)
from dpfair.fairness.threshold import choose_threshold

#: Metrics reported per group, overall and as gaps (the registry's, in registration order).
METRICS = metric_names()
#: Metrics in the gaps table: :data:`METRICS` plus ``equalized_odds``.
GAP_METRICS = (*METRICS, EQUALIZED_ODDS)
#: The usual fairness names and the gaps-table metric whose ``gap`` they are.
FAIRNESS_ALIASES = {
    "equal_opportunity_difference": "tpr",
    "equalized_odds_difference": EQUALIZED_ODDS,
    "demographic_parity_difference": "selection_rate",
}


def metric_label(name: str) -> str:
    """How a gap metric reads in tables and verdicts (``equalized_odds`` -> "equalized odds")."""
    return get_metric(name).label if name in METRICS else name.replace("_", " ")


__all__ = [
    "BOOTSTRAP_BLOCK", "EQUALIZED_ODDS", "FAIRNESS_ALIASES", "GAP_CHANGE_COLUMNS", "GAP_COLUMNS", "GAP_METRICS",
    "GROUP_COLUMNS", "INTERSECTION_SEP", "METRICS", "OVERALL", "OVERALL_COLUMNS", "RELIABILITY_COLUMNS",
    "REPLICATE_COLUMNS", "FairnessReport", "Metric", "choose_threshold", "dersimonian_laird_tau",
    "evaluate_fairness", "expected_calibration_error", "gap_changes", "get_metric", "holm", "metric_label",
    "metric_names", "permuted_groups", "q_profile_interval", "register_metric", "reliability_table",
    "stratified_bootstrap_weights", "weighted_metrics",
]
