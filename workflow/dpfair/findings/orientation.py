"""Which group of a two-group attribute is better off without privacy, judged on rows the estimate never uses.

Finding 3 pools gap changes across datasets, so each dataset's change must point the same way: positive when
the group better off at ε = ∞ gains on the other. Judging "better off" by the ε = ∞ gap on the *test* rows would
feed the estimate's own noise into its direction: with a true gap near 0 the orientation then follows that
noise, and the oriented change leans towards narrowing or widening depending on how the two arms' test noise
covary (a statistics review measured false "narrows" in 9% and false "widens" in up to 13% of null benchmarks).
So the direction comes from the **validation split**: each ε = ∞ run's AUROC per group on its validation rows,
averaged over seeds. The validation rows are disjoint from the test rows, so the direction is independent of the
test-set noise; it still shares the seeds' training noise with the estimate, a much smaller term (the
seed-to-seed spread of a gap, not the test sample's). A ``findings.better_off`` declaration per dataset, fixed
before any result, replaces it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

#: Key of the validation AUROCs: (dataset, model, method, attribute) -> {group: mean AUROC over seeds}.
Key = tuple[str, str, str, str]


def validation_aurocs(score_files: Iterable[str | Path], attributes: Mapping[str, str]) -> dict[Key, dict[str, float]]:
    """Per ε = ∞ cell and the dataset's finding-3 attribute, each group's validation AUROC, mean over seeds.

    ``score_files``: runs' ``scores.csv`` under ``results/runs/<dataset>/<model>/<method>/eps-inf/seed-<s>/``;
    files of other ε or of datasets without an attribute are skipped. A group with one class on validation has
    no AUROC and is left out.
    """
    per_seed: dict[Key, dict[str, list[float]]] = {}
    for file in score_files:
        path = Path(file)
        dataset, model, method, eps = path.parts[-6:-2]
        attribute = attributes.get(dataset)
        if eps != "eps-inf" or attribute is None:
            continue
        scores = pd.read_csv(path)
        val = scores[scores["split"] == "val"]
        if attribute not in val:
            continue
        groups = per_seed.setdefault((dataset, model, method, attribute), {})
        for group, rows in val.groupby(attribute, sort=True):
            if rows["label"].nunique() == 2:
                groups.setdefault(str(group), []).append(float(roc_auc_score(rows["label"], rows["score"])))
    return {key: {g: float(np.mean(v)) for g, v in groups.items()} for key, groups in per_seed.items()}


def direction(
    aurocs: Mapping[str, float] | None, *, reference: str, comparison: str, declared: str | None = None
) -> tuple[float, str]:
    """The sign that turns a gap (comparison − reference) into the better-off group's advantage, and its source.

    +1 when ``comparison`` is better off, −1 when ``reference`` is, nan when neither the declaration nor the
    validation split says.
    """
    if declared is not None:
        if declared not in (reference, comparison):
            return math.nan, f"declared better-off group {declared!r} is neither {reference!r} nor {comparison!r}"
        return (1.0 if declared == comparison else -1.0), "declared"
    if not aurocs or reference not in aurocs or comparison not in aurocs:
        return math.nan, "no validation AUROC for both groups"
    gap = aurocs[comparison] - aurocs[reference]
    if gap == 0:
        return math.nan, "the groups tie on validation"
    return (1.0 if gap > 0 else -1.0), "validation"
