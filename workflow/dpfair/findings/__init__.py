"""The review's findings across datasets: per-dataset contrasts pooled by random-effects meta-analysis.

``findings_table`` builds ``results/summary/findings.csv``; ``random_effects`` and ``meta_regression`` are the
pooling maths; ``leaderboard_claims`` exports every private cell in the DP leaderboard's claim shape.
"""

from dpfair.findings.claims import leaderboard_claims
from dpfair.findings.effects import dataset_info
from dpfair.findings.meta import meta_regression, random_effects
from dpfair.findings.table import FINDINGS_COLUMNS, findings_table

__all__ = [
    "FINDINGS_COLUMNS",
    "dataset_info",
    "findings_table",
    "leaderboard_claims",
    "meta_regression",
    "random_effects",
]
