"""tools/trial_curve.py's summary: changes paired by seed, seeds missing at one K left out of that change."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_spec = importlib.util.spec_from_file_location("trial_curve", Path(__file__).parents[1] / "tools" / "trial_curve.py")
trial_curve = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(trial_curve)


def _runs():
    test = {1: [0.70, 0.60, 0.80, 0.75], 2: [0.72, 0.605, 0.78, np.nan], 4: [0.72, 0.62, 0.785, 0.76]}
    rows = [
        {"epsilon": "1", "k": k, "seed": s, "val_auroc": 0.5 + k / 100 + s / 1000, "test_auroc": a}
        for k, values in test.items()
        for s, a in enumerate(values)
        if not np.isnan(a)
    ]
    rows += [{"epsilon": "inf", "k": k, "seed": 0, "val_auroc": 0.9, "test_auroc": 0.9} for k in (1, 2)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # the order the runs finished in does not matter


def test_changes_are_paired_by_seed_and_skip_a_missing_seed():
    summary = trial_curve.summarise(_runs(), moved=0.01).set_index(["epsilon", "k"])
    first, second, fourth = summary.loc[("1", 1)], summary.loc[("1", 2)], summary.loc[("1", 4)]
    assert np.isnan(first["delta_test"]) and np.isnan(first["delta_test_se"]) and np.isnan(first["moved_share"])
    assert first["test_auroc"] == pytest.approx(0.7125) and first["seeds"] == 4
    # seed 3 has no K = 2 run: the K = 1 -> 2 change pairs seeds 0-2 only (+0.02, +0.005, -0.02)
    assert second["seeds"] == 3 and second["delta_test"] == pytest.approx(0.005 / 3)
    assert second["moved_share"] == pytest.approx(2 / 3)
    assert second["delta_test_se"] == pytest.approx(0.011667, rel=1e-3)  # SD 0.020207 of the three changes, / √3
    # K = 2 -> 4 pairs seeds 0-2 again (0, +0.015, +0.005): only seed 1 moved by more than 0.01
    assert fourth["delta_test"] == pytest.approx(0.02 / 3) and fourth["moved_share"] == pytest.approx(1 / 3)
    assert summary.loc[("inf", 2), "delta_test"] == 0.0
