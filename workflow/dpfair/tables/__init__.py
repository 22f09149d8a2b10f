"""The summary tables: tidy tables stacked per run, their wide views derived, costs, utility changes and comparisons."""

from dpfair.faces import lazy_face

__all__, __getattr__, __dir__ = lazy_face(
    __name__,
    {
        "summarise": "summary",
        "read_summary": "summary",
        "concat_csvs": "summary",
        "NA_VALUES": "summary",
        "metric_columns": "columns",
        "metric_rows": "columns",
        "subgroup_rows": "columns",
        "compute_cost": "compute_cost",
        "cost_tables": "compute_cost",
        "compare_methods": "method_comparison",
        "paired_difference": "method_comparison",
        "difference_contrast": "method_comparison",
        "auroc_changes": "utility_changes",
        "UTILITY_CHANGE_COLUMNS": "utility_changes",
        "mean_interval": "seeds",
        "seed_summary": "seeds",
    },
)
