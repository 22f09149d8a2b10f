"""A real cohort with groups assigned at random (no disparity can exist): the gaps must say so.

support2 (embedded through survset) with a logistic regression as the non-private model and the same
model with noised coefficients as a less accurate "private" one, three seeds each; two random
attributes (two and four groups) fixed per row, as real attributes are. Before the null reference, every
such run reported a 4-group AUROC gap with an interval excluding 0.
"""

import numpy as np
import pandas as pd
import pytest
from dpfair.data.prepare import prepare_dataset
from dpfair.fairness import evaluate_fairness, gap_changes
from sklearn.linear_model import LogisticRegression


@pytest.mark.slow
def test_random_groups_on_support2_show_no_disparity():
    pytest.importorskip("SurvSet")
    prepared = prepare_dataset(name="support2")
    x, samples = prepared.x.numpy(), prepared.samples
    train = (samples["split"] == "train").to_numpy()
    held_out = samples["split"].isin(["val", "test"]).to_numpy()
    fitted = LogisticRegression(max_iter=2000).fit(x[train], samples.loc[train, "label"])
    gaps, replicates = [], []
    for assignment in range(3):
        rng = np.random.default_rng(100 + assignment)
        groups = {"two": rng.choice(["a", "b"], len(samples)), "four": rng.choice(["a", "b", "c", "d"], len(samples))}
        for eps, noise in ((np.inf, 0.0), (1.0, 0.25)):
            for seed in range(3):
                coef = fitted.coef_[0] + np.random.default_rng(seed).normal(
                    0, noise if noise else 0.02, fitted.coef_.shape[1]
                )
                score = 1 / (1 + np.exp(-(x[held_out] @ coef + fitted.intercept_[0])))
                table = samples[held_out].assign(score=score, **{k: v[held_out] for k, v in groups.items()})
                report = evaluate_fairness(scores=table, attributes=["two", "four"], n_boot=300)
                keys = {"dataset": f"support2-random-{assignment}", "model": "lr", "epsilon": eps, "seed": seed}
                gaps.append(report.gaps.assign(**keys))
                replicates.append(report.gap_replicates.assign(**keys))
    gaps = pd.concat(gaps, ignore_index=True)
    auroc = gaps[gaps["metric"] == "auroc"]
    assert (auroc["p_value"] < 0.05).mean() <= 0.25, auroc[["attribute", "gap", "null_gap", "p_value"]]
    assert (auroc["gap"] > 0).all()  # max − min is positive anyway: the null reference is what tells
    changes = gap_changes(estimates=gaps, replicates=pd.concat(replicates, ignore_index=True))
    primary = changes[changes["family"] == "primary"]  # the default family: AUROC of every single attribute
    assert len(primary) == 3 * 2 and set(primary["estimand"]) == {"signed", "tau2"}
    assert not primary["verdict_class"].isin(["widens", "narrows"]).any(), primary["verdict"]
