"""Fairness and uncertainty for one run's scores, and the change of each gap across the ε grid.

One job per module: :mod:`~dpfair.fairness.threshold` (the operating point, from validation rows),
:mod:`~dpfair.fairness.calibration` (ECE, reliability bins), :mod:`~dpfair.fairness.metrics_registry`
(one definition per metric; the shipped ones in :mod:`~dpfair.fairness.builtin_metrics`), :mod:`~dpfair.fairness.bootstrap` (vectorised resampling and permutation
kernels), :mod:`~dpfair.fairness.subgroups` (one run's evaluation), :mod:`~dpfair.fairness.gaps` (gap,
null reference, signed gap, τ) and :mod:`~dpfair.fairness.gap_changes` (gap changes across ε with
multiplicity control).
"""

# the built-in metrics register first: every other module iterates the registry
from dpfair.fairness import builtin_metrics  # noqa: F401  isort: skip
from dpfair.fairness.bootstrap import BOOTSTRAP_BLOCK, permuted_groups, stratified_bootstrap_weights, weighted_metrics
from dpfair.fairness.calibration import expected_calibration_error, reliability_table
from dpfair.fairness.gap_changes import GAP_CHANGE_COLUMNS, gap_changes, holm
from dpfair.fairness.gaps import GAP_COLUMNS, dersimonian_laird_tau, q_profile_interval
from dpfair.fairness.metrics_registry import (
    EQUALIZED_ODDS,
    DerivedGap,
    Metric,
    derived_gaps,
    gap_label,
    gap_metric_names,
    get_gap,
    get_metric,
    headline_metrics,
    is_headline,
    metric_names,
    register_derived_gap,
    register_metric,
    unregister_metric,
    with_interval,
)
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

#: The usual fairness names and the gaps-table metric whose ``gap`` they are.
FAIRNESS_ALIASES = {
    "equal_opportunity_difference": "tpr",
    "equalized_odds_difference": EQUALIZED_ODDS,
    "demographic_parity_difference": "selection_rate",
}

#: How a gap metric reads in tables and verdicts (``equalized_odds`` -> "equalized odds").
metric_label = gap_label


def __getattr__(name: str):
    # METRICS and GAP_METRICS are read from the registry on each access: a module-level tuple would miss
    # a metric registered after this package was imported (a plug-in, a test's temporary metric).
    if name == "METRICS":  # metrics reported per group, overall and as gaps, in registration order
        return metric_names()
    if name == "GAP_METRICS":  # the gaps table's metrics: METRICS, then the derived gaps (equalized odds)
        return gap_metric_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BOOTSTRAP_BLOCK",
    "EQUALIZED_ODDS",
    "FAIRNESS_ALIASES",
    "GAP_CHANGE_COLUMNS",
    "GAP_COLUMNS",
    "GAP_METRICS",
    "GROUP_COLUMNS",
    "INTERSECTION_SEP",
    "METRICS",
    "OVERALL",
    "OVERALL_COLUMNS",
    "RELIABILITY_COLUMNS",
    "REPLICATE_COLUMNS",
    "DerivedGap",
    "FairnessReport",
    "Metric",
    "choose_threshold",
    "derived_gaps",
    "dersimonian_laird_tau",
    "evaluate_fairness",
    "expected_calibration_error",
    "gap_changes",
    "gap_label",
    "gap_metric_names",
    "get_gap",
    "get_metric",
    "headline_metrics",
    "holm",
    "is_headline",
    "metric_label",
    "metric_names",
    "permuted_groups",
    "q_profile_interval",
    "register_derived_gap",
    "register_metric",
    "reliability_table",
    "stratified_bootstrap_weights",
    "unregister_metric",
    "weighted_metrics",
    "with_interval",
]
