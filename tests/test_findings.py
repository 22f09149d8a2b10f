"""The findings stage: per-dataset contrasts pooled across datasets, tested by seeded simulation.

The pooling maths itself is tested against metafor's published output in tests/test_meta_analysis.py; here the
table around it: orientation of gap changes, verdict classes, the claims export and the command line.
"""

import math

import numpy as np
import pandas as pd
import pytest
from dpfair.errors import ConfigError
from dpfair.findings import findings_table, leaderboard_claims
from dpfair.findings.terminal import format_findings
from dpfair.pipeline.benchmark import validate_config
from dpfair.pipeline.cli import main
from scipy import stats
from tiny_grid import REPO

EPSILONS = (1.0, 10.0)


def _info(k, modality="tabular", n_train=None):
    n_train = n_train if n_train is not None else [1000] * k
    return pd.DataFrame({"dataset": [f"d{i}" for i in range(k)], "modality": modality, "n_train": n_train})


def _contrast(estimate, se, df=9):
    t = stats.t.ppf(0.975, df)
    return {"se": se, "df": df, "ci_low": estimate - t * se, "ci_high": estimate + t * se,
            "p_value": 2 * stats.t.sf(abs(estimate / se), df), "n_seeds": df + 1}  # fmt: skip


def _auroc_changes(changes, se, *, epsilon=10.0):
    rows = []
    for i, (change, s) in enumerate(zip(changes, se)):
        rows.append({"dataset": f"d{i}", "model": "mlp", "method": "dpsgd", "metric": "auroc", "epsilon": epsilon,
                     "change": change, "arm_value": 0.8 + change, "reference_value": 0.8,
                     "verdict_class": "inconclusive", **_contrast(change, s)})  # fmt: skip
    return pd.DataFrame(rows)


def _gap_changes(baseline, arm, se, *, epsilon=10.0):
    """Two-group rows: gap = comparison (B) − reference (A); each group's own change split evenly."""
    rows = []
    for i, (b, a, s) in enumerate(zip(baseline, arm, se)):
        change = a - b
        rows.append({"dataset": f"d{i}", "model": "mlp", "method": "dpsgd", "metric": "auroc", "attribute": "sex",
                     "epsilon": epsilon, "estimand": "signed", "baseline_value": b, "arm_value": a,
                     "gap_change": change, "mde": 2.8 * s, "reference_group": "A", "comparison_group": "B",
                     "reference_change": -change / 2, "comparison_change": change / 2,
                     "verdict_class": "inconclusive", "verdict": "", **_contrast(change, s)})  # fmt: skip
    return pd.DataFrame(rows)


def _table(auroc, gaps, info, *, validation=None, **kw):
    """findings_table over datasets d0..d(k-1); ``validation``: each dataset's validation gap B − A at ε = ∞."""
    k = len(info)
    if validation is None:  # the validation split agrees with the test rows' ε = ∞ gap (no noise of its own)
        validation = gaps.drop_duplicates("dataset").set_index("dataset")["baseline_value"].reindex(info["dataset"])
    aurocs = {(f"d{i}", "mlp", "dpsgd", "sex"): {"A": 0.8, "B": 0.8 + float(v)} for i, v in enumerate(validation)}
    return findings_table(auroc_changes=auroc, gap_changes=gaps, info=info, models={f"d{i}": "mlp" for i in range(k)},
                          attributes={f"d{i}": "sex" for i in range(k)}, validation=aurocs, **kw)  # fmt: skip


def _pooled(table, finding, scope="pooled: tabular"):
    rows = table[(table["finding"] == finding) & (table["scope"] == scope)]
    assert len(rows) == 1, table[["finding", "scope"]]
    return rows.iloc[0]


def _gap_benchmark(rng, g0, g1, *, s, beta=1.5, rho=0.8, s_val=None):
    """One benchmark of k datasets: the test rows' gap at ε = ∞ (g0 + e0) and at ε (g1 + e1), whose errors share
    the test rows (correlation rho) and are beta times larger under DP; the validation gap has its own noise."""
    z0, z1 = rng.normal(size=(2, len(s)))
    e0, e1 = s * z0, beta * s * (rho * z0 + math.sqrt(1 - rho**2) * z1)
    se = s * math.sqrt(1 + beta**2 - 2 * beta * rho)
    validation = g0 + (s if s_val is None else s_val) * rng.normal(size=len(s))
    return g0 + e0, g1 + e1, se, validation


def _verdicts(rng, reps, g0, g1, s, **kw):
    """Pooled finding-3 classes over ``reps`` benchmarks, oriented by validation and (wrongly) by the test rows."""
    counts = {"validation": {}, "test rows": {}}
    k = len(s)
    for _ in range(reps):
        baseline, arm, se, validation = _gap_benchmark(rng, g0, g1, s=s, **kw)
        gaps = _gap_changes(baseline, arm, se)
        # the AUROC rows at an ε no finding reads keep the simulation to finding 3's pooling
        auroc = _auroc_changes(np.zeros(k), se, epsilon=3.0)
        for how, val in (("validation", validation), ("test rows", baseline)):
            cls = _pooled(_table(auroc, gaps, _info(k), validation=val), 3)["verdict_class"]
            counts[how][cls] = counts[how].get(cls, 0) + 1 / reps
    return counts


def test_random_groups_read_neither_widening_nor_narrowing_when_oriented_on_validation():
    """Seven datasets whose groups are random (no gap at ε = ∞ or ε). Oriented by the test rows' own ε = ∞ gap,
    the pooled change follows that gap's noise with the opposite sign, towards narrowing (measured: 11% false
    "narrows" here); oriented on the validation split, whose rows are disjoint from the test rows, it does not."""
    s = np.full(7, 0.02)
    counts = _verdicts(np.random.default_rng(24), 100, np.zeros(7), np.zeros(7), s, beta=1.0, rho=0.0)
    good, bad = counts["validation"], counts["test rows"]
    assert good.get("widens", 0) <= 0.05 and good.get("narrows", 0) <= 0.05, good
    assert bad.get("narrows", 0) > 0.06, bad  # the check can fail: the wrong orientation does


def test_a_small_gap_that_widens_is_detected_whichever_group_is_named_first():
    """Every dataset's gap goes from 0.01 to 0.05 at ε (half of them name the better-off group second)."""
    rng = np.random.default_rng(3)
    s = np.full(7, 0.004)
    sign = np.where(np.arange(7) % 2 == 0, -1.0, 1.0)
    counts = _verdicts(rng, 60, sign * 0.01, sign * 0.05, s, beta=1.0, rho=0.5, s_val=0.004)
    assert counts["validation"].get("widens", 0) >= 0.8, counts["validation"]
    table = _table(_auroc_changes(np.zeros(2), [0.01] * 2), _gap_changes([-0.05, 0.05], [-0.09, 0.09], [0.01] * 2),
                   _info(2))  # fmt: skip
    rows = table[(table["finding"] == 3) & (table["kind"] == "dataset")].set_index("dataset")
    assert rows.loc["d0", "estimate"] == pytest.approx(0.04) and rows.loc["d1", "estimate"] == pytest.approx(0.04)
    # d0's gap B − A is negative: A is better off, so A's change is the better-off group's
    assert rows.loc["d0", "better_group"] == "A" and rows.loc["d0", "better_change"] == pytest.approx(0.02)
    assert rows.loc["d0", "ci_low"] < rows.loc["d0", "estimate"] < rows.loc["d0", "ci_high"]


def test_a_declared_better_off_group_replaces_the_validation_split():
    gaps = _gap_changes([0.05], [0.09], [0.01])
    table = _table(_auroc_changes([0.0], [0.01]), gaps, _info(1), validation=[0.05], better_off={"d0": "A"})
    row = table[table["finding"] == 3].iloc[0]
    assert row["better_group"] == "A" and row["oriented_by"] == "declared" and row["estimate"] == pytest.approx(-0.04)


def test_one_seed_contrasts_neither_get_a_verdict_nor_enter_the_pooling():
    auroc = _auroc_changes([-0.01, -0.012, 0.0], [0.004, 0.004, 0.001])
    auroc.loc[2, ["n_seeds", "verdict_class"]] = [1, "one model"]
    table = _table(auroc, _gap_changes([0.0] * 3, [0.0] * 3, [0.01] * 3), _info(3))
    one = table[table["finding"] == 1]
    assert "d2" not in set(one["scope"]) and _pooled(table, 1)["datasets"] == "d0;d1"


@pytest.mark.parametrize(("true_change", "expected"), [(0.0, "non-inferior"), (-0.08, "inferior")])
def test_finding_one_reads_non_inferiority_against_its_margin(true_change, expected):
    rng = np.random.default_rng(1)
    se = np.full(7, 0.005)
    changes = true_change + rng.normal(0, 0.005, 7)
    table = _table(_auroc_changes(changes, se), _gap_changes(np.zeros(7), np.zeros(7), se), _info(7), margin=0.02)
    assert _pooled(table, 1)["verdict_class"] == expected


def test_finding_one_and_two_pool_imaging_and_tabular_apart_and_together():
    se = np.full(5, 0.01)
    info = pd.DataFrame({"dataset": ["d0", "d1", "d2", "d3", "d4"],
                         "modality": ["image", "image", "tabular", "tabular", "tabular"],
                         "n_train": [3000, 4000, 500, 800, 600]})  # fmt: skip
    auroc = pd.concat([_auroc_changes([-0.01, -0.015, -0.1, -0.11, -0.12], se, epsilon=e) for e in EPSILONS])
    gaps = pd.concat([_gap_changes(np.zeros(5), np.zeros(5), se, epsilon=e) for e in EPSILONS])
    table = _table(auroc, gaps, info)
    scopes = set(table.loc[table["finding"] == 1, "scope"])
    assert {"pooled: imaging", "pooled: tabular", "pooled: all"} <= scopes
    imaging, tabular = _pooled(table, 1, "pooled: imaging"), _pooled(table, 1, "pooled: tabular")
    assert imaging["estimate"] == pytest.approx(-0.0125, abs=1e-6) and tabular["estimate"] == pytest.approx(
        -0.11, abs=1e-6
    )
    # two datasets: the HKSJ interval has 1 df and stays wide; three agreeing ones settle the cost
    assert imaging["df"] == 1 and imaging["ci_high"] - imaging["ci_low"] > 0.05
    assert _pooled(table, 2, "pooled: tabular")["verdict_class"] == "costs beyond the margin"
    assert imaging["datasets"] == "d0;d1" and imaging["k"] == 2


def test_finding_two_regresses_the_cost_on_dataset_size():
    rng = np.random.default_rng(7)
    n_train = np.array([400, 900, 1600, 2100, 4500, 7000, 9000])
    se = np.full(7, 0.01)
    changes = -0.3 + 0.03 * np.log(n_train) + rng.normal(0, 0.01, 7)  # smaller datasets lose more
    table = _table(_auroc_changes(changes, se, epsilon=1.0), _gap_changes(np.zeros(7), np.zeros(7), se, epsilon=1.0),
                   _info(7, n_train=list(n_train)))  # fmt: skip
    slope = table[table["scope"] == "meta-regression on log n_train"].iloc[0]
    assert slope["verdict_class"] == "smaller datasets lose more"
    assert slope["ci_low"] < 0.03 < slope["ci_high"]
    flat = _table(_auroc_changes(rng.normal(-0.05, 0.01, 7), se, epsilon=1.0),
                  _gap_changes(np.zeros(7), np.zeros(7), se, epsilon=1.0), _info(7, n_train=list(n_train)))  # fmt: skip
    assert (
        flat.loc[flat["scope"] == "meta-regression on log n_train", "verdict_class"].iloc[0]
        != "larger datasets lose more"
    )


def test_a_tau_squared_attribute_is_refused_with_the_key_to_change():
    gaps = _gap_changes([0.0], [0.0], [0.01]).assign(estimand="tau2")
    with pytest.raises(
        Exception,
        match=r"d0's primary attribute 'sex' has a tau2 gap change.*findings.gap_attribute|primary.attributes",
    ):
        _table(_auroc_changes([0.0], [0.01]), gaps, _info(1))


def test_the_tuned_arm_is_read_where_a_dataset_has_one():
    se = [0.01, 0.01]
    fixed = _auroc_changes([-0.2, -0.2], se)
    tuned = _auroc_changes([-0.01, -0.01], se).assign(method="dpsgd-tuned").iloc[:1]
    table = _table(pd.concat([fixed, tuned]), _gap_changes([0, 0], [0, 0], se), _info(2))
    rows = table[(table["finding"] == 1) & (table["kind"] == "dataset")].set_index("dataset")
    assert rows.loc["d0", "method"] == "dpsgd-tuned" and rows.loc["d0", "estimate"] == pytest.approx(-0.01)
    assert rows.loc["d1", "method"] == "dpsgd" and rows.loc["d1", "estimate"] == pytest.approx(-0.2)


def test_claims_take_every_private_cell_in_the_leaderboards_shape():
    rng = np.random.default_rng(0)
    rows = [{"dataset": d, "model": "cnn", "method": m, "epsilon": e, "seed": s, "attribute": "none",
             "auroc": rng.uniform(0.6, 0.9), "delta": 1e-5, "accountant": "prv", "epsilon_spent": min(e, 99)}
            for d in ("a", "b") for m in ("dpsgd", "dpsgd-tuned") for e in (1.0, 10.0, math.inf) for s in (0, 1, 2)]  # fmt: skip
    metrics = pd.DataFrame(rows)
    reports = leaderboard_claims(metrics, benchmark="t")
    assert [r["dataset"] for r in reports] == ["a", "b"]
    claims = reports[0]["claims"]
    assert len(claims) == 4 and all(c["epsilon"] in (1.0, 10.0) for c in claims)  # no ε = ∞ cell is a claim
    assert set(claims[0]) == {"public_data", "model", "epsilon", "delta", "private_accuracy", "dp_accountant", "notes"}
    cell = metrics[(metrics["dataset"] == "a") & (metrics["method"] == "dpsgd") & (metrics["epsilon"] == 1.0)]
    first = next(c for c in claims if c["model"] == "cnn (dpsgd)" and c["epsilon"] == 1.0)
    assert (
        first["private_accuracy"] == f"{100 * cell['auroc'].mean():.2f}% AUC" and first["dp_accountant"] == "Torch PRV"
    )


def test_the_command_line_prints_the_findings_and_names_a_missing_table(tmp_path, capsys):
    se = np.full(3, 0.01)
    table = _table(_auroc_changes([-0.01, 0.0, -0.02], se), _gap_changes([0.02] * 3, [0.03] * 3, se), _info(3))
    (tmp_path / "summary").mkdir()
    table.to_csv(tmp_path / "summary/findings.csv", index=False)
    assert main(["findings", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out == format_findings(pd.read_csv(tmp_path / "summary/findings.csv")) + "\n"
    assert "Finding 1:" in out and "Finding 3:" in out and "pooled: tabular" in out
    assert main(["findings", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "findings.yaml" in err and err.count("\n") == 1


def _config(**findings):
    return {"datasets_dir": str(REPO / "datasets"), "datasets": {"diabetes": {}, "synthetic_lesions": {}},
            "models": ["mlp", "cnn", "resnet18"], "epsilons": [10, "inf"], "seeds": [0],
            "findings": {"enabled": True, **findings}}  # fmt: skip


def test_a_dataset_with_two_models_needs_findings_models():
    with pytest.raises(
        ConfigError, match=r"findings.models: synthetic_lesions runs models \['cnn', 'resnet18'\]; name the one"
    ):
        validate_config(_config())
    benchmark = validate_config(_config(models={"synthetic_lesions": "resnet18"}))
    assert benchmark.findings()["models"] == {"diabetes": "mlp", "synthetic_lesions": "resnet18"}
    with pytest.raises(ConfigError, match="findings.models.diabetes is 'cnn', not one of the models it runs"):
        validate_config(_config(models={"diabetes": "cnn", "synthetic_lesions": "cnn"}))


def test_the_datasets_a_verdict_would_need_are_enough_when_replicated():
    """The sentence's "about N datasets like these" is checked by pooling N datasets with the same spread."""
    table = _table(_auroc_changes([-0.010, 0.000], [0.004] * 2), _gap_changes([0.0] * 2, [0.0] * 2, [0.01] * 2),
                   _info(2))  # fmt: skip
    row = _pooled(table, 1)
    assert row["verdict_class"] == "inconclusive" and row["k"] == 2
    needed = int(row["verdict"].split("(about ")[1].split(" datasets")[0])
    assert 2 < needed <= 6
    replicated = [-0.010, 0.000] * (needed // 2) + [-0.005] * (needed % 2)
    again = _table(_auroc_changes(replicated, [0.004] * needed), _gap_changes([0.0] * needed, [0.0] * needed,
                   [0.01] * needed), _info(needed))  # fmt: skip
    assert _pooled(again, 1)["verdict_class"] == "non-inferior"


def test_pooled_rows_carry_a_prediction_interval_and_a_modality_contrast():
    se = np.full(6, 0.004)
    changes = [-0.004, -0.006, -0.03, 0.01, -0.035, 0.012]  # tabular sets scatter widely around a small mean
    info = pd.DataFrame({"dataset": [f"d{i}" for i in range(6)], "modality": ["image"] * 2 + ["tabular"] * 4,
                         "n_train": [3000, 4000, 500, 800, 600, 900]})  # fmt: skip
    table = _table(_auroc_changes(changes, se), _gap_changes([0.0] * 6, [0.0] * 6, se), info)
    tabular = _pooled(table, 1)
    assert tabular["pi_low"] < tabular["ci_low"] < tabular["ci_high"] < tabular["pi_high"]
    assert "prediction interval" in tabular["verdict"]
    modality = table[(table["finding"] == 1) & (table["scope"] == "imaging − tabular")].iloc[0]
    assert modality["kind"] == "moderator" and modality["k"] == 6
    imaging = _pooled(table, 1, "pooled: imaging")
    assert modality["estimate"] == pytest.approx(imaging["estimate"] - tabular["estimate"], abs=0.01)


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(-0.015, -0.002, "costs within the margin"), (-0.03, -0.002, "costs"), (-0.05, -0.03, "costs beyond the margin"),
     (-0.01, 0.012, "equivalent"), (-0.03, 0.01, "inconclusive"), (0.001, 0.01, "gains")],
)  # fmt: skip
def test_a_cost_inside_the_margin_is_not_read_as_costing_a_lot(low, high, expected):
    from dpfair.findings.verdicts import cost

    assert cost(low, high, 0.02) == expected
