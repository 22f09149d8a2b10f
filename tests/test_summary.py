"""Summary and report from run outputs, including a grid whose datasets have no sensitive attributes."""

import json

import numpy as np
import pandas as pd
import pytest
from dpfair.pipeline.evaluation import evaluate_run
from dpfair.report.page import render_report
from dpfair.tables.summary import read_summary, summarise

NAMES = ("metrics", "subgroups", "gaps", "replicates", "reliability")


def fake_run(folder, *, epsilon, seed, attributes=()):
    """Files of one finished run, as train_run writes them (scores of every row, run.json)."""
    rng = np.random.default_rng(seed)
    n = 300
    labels = rng.integers(0, 2, n)
    table = pd.DataFrame({"row": np.arange(n), "split": np.repeat(["train", "val", "test"], n // 3), "label": labels})
    for a in attributes:
        table[a] = rng.choice(["g1", "g2"], n)
    table["score"] = 1 / (1 + np.exp(-(labels + rng.normal(0, 1, n))))
    folder.mkdir(parents=True)
    table.to_csv(folder / "scores.csv", index=False)
    private = not np.isinf(epsilon)
    spent = epsilon * 0.99 if private else "inf"
    record = {
        "dataset": "d",
        "model": "m",
        "epsilon": epsilon if private else "inf",
        "seed": seed,
        "delta": 1e-5,
        "epsilon_spent": spent,
        "epsilon_rdp": spent,
        "epsilon_prv": spent,
        "epsilon_pld": spent,
        "noise_multiplier": 1.0 if private else 0.0,
        "max_grad_norm": 1.0 if private else None,
        "sample_rate": 0.1,
        "expected_batch_size": 10.0,
        "sampling": "poisson",
        "epochs": 1,
        "steps": 10,
        "accountant": "prv" if private else "none",
        "n_train": 100,
        "privacy_unit": "record",
        "train_seconds": 0.1,
        "device": "cpu",
    }
    (folder / "run.json").write_text(json.dumps(record))
    return {name: folder / f"{name}.csv" for name in NAMES}


def run_grid(tmp_path, attributes):
    meta = tmp_path / "dataset.json"
    card = {
        "sensitive_attributes": list(attributes),
        "task": "t",
        "outcome": "o",
        "source": "s",
        "homepage": "h",
        "license": "l",
        "citation": "c",
    }
    meta.write_text(
        json.dumps(
            {
                "name": "d",
                "card": card,
                "min_group_size": 10,
                "n": {"train": 100, "val": 100, "test": 100},
                "prevalence": {"train": 0.5, "val": 0.5, "test": 0.5},
                "split": "stratified",
                "privacy_unit": "record",
                "delta": 1e-5,
                "preprocessing": "none",
                "warnings": [],
                "group_sizes": {a: {"train": {}, "val": {}, "test": {"g1": 50, "g2": 50}} for a in attributes},
            }
        )
    )
    outputs = []
    for eps in (1.0, np.inf):
        for seed in (0, 1):
            folder = tmp_path / f"run-{eps}-{seed}"
            out = fake_run(folder, epsilon=eps, seed=seed, attributes=attributes)
            evaluate_run(
                scores=folder / "scores.csv",
                record=folder / "run.json",
                meta=meta,
                settings={"n_bootstrap": 200},
                outputs=out,
            )
            outputs.append(out)
    summary = {
        name: tmp_path / f"summary_{name}.csv"
        for name in ("metrics", "subgroups", "gaps", "gap_changes", "reliability")
    }
    summarise(inputs={name: [o[name] for o in outputs] for name in NAMES}, outputs=summary)
    return summary


def test_grid_without_sensitive_attributes_summarises_and_reports(tmp_path):
    summary = run_grid(tmp_path, attributes=())
    metrics = read_summary(summary["metrics"])
    assert len(metrics) == 4 and set(metrics["attribute"]) == {"none"}
    assert read_summary(summary["gaps"]).empty and read_summary(summary["gap_changes"]).empty
    html = render_report(
        metrics=summary["metrics"],
        subgroups=summary["subgroups"],
        dataset_meta=[tmp_path / "dataset.json"],
        benchmark={
            "name": "t",
            "description": "",
            "epsilons": [1, "inf"],
            "seeds": [0, 1],
            "models": ["m"],
            "evaluation": {"min_group_size": 10, "ci_level": 0.9},
        },
        output=tmp_path / "index.html",
        gap_changes=summary["gap_changes"],
        reliability=summary["reliability"],
    )
    assert "no sensitive attributes, so there are no subgroup metrics" in html
    assert "test AUROC, mean [90% CI]" in html  # the configured level, not a hard-coded 95%


def test_grid_with_attributes_gives_gap_changes_per_finite_epsilon(tmp_path):
    summary = run_grid(tmp_path, attributes=("sex",))
    changes = read_summary(summary["gap_changes"])
    verdicts = changes["verdict"].str.removeprefix("exploratory: ")
    assert set(changes["epsilon"]) == {1.0} and verdicts.str.startswith("DP at ε = 1").all()
    assert (changes["verdict"].str.startswith("exploratory: ") == (changes["family"] == "exploratory")).all()


def test_report_renders_without_the_optional_tables(tmp_path):
    summary = run_grid(tmp_path, attributes=("sex",))
    html = render_report(
        metrics=summary["metrics"],
        subgroups=summary["subgroups"],
        dataset_meta=[tmp_path / "dataset.json"],
        benchmark={
            "name": "t",
            "description": "",
            "epsilons": [1, "inf"],
            "seeds": [0, 1],
            "models": ["m"],
            "evaluation": {"min_group_size": 10, "ci_level": 0.95},
        },
        output=tmp_path / "index.html",
    )
    assert "test AUROC" in html and 'id="speed"' not in html and 'id="compute-cost"' not in html


# ---- the summary's sentences from the verdict tables ----------------------------------------------------


def _gap_rows(classes):
    """gap_changes.csv-like primary rows of dataset d, one per (class, ε)."""
    rows = []
    for eps, (cls, mde) in enumerate(classes, start=1):
        rows.append(
            {
                "dataset": "d",
                "model": "m",
                "method": "dpsgd",
                "attribute": "sex",
                "metric": "auroc",
                "epsilon": float(eps),
                "family": "primary",
                "estimand": "signed",
                "mde": mde,
                "verdict_class": cls,
                "verdict": f"DP at ε = {eps} {cls} the sex gap",
            }
        )
    return pd.DataFrame(rows)


def test_gap_sentence_counts_and_lists_reversals_as_their_own_class():
    from dpfair.report.summary import gap_sentence

    table = _gap_rows([("reverses", 0.02), ("widens", 0.02), ("inconclusive", 0.05), ("inconclusive", 0.04)])
    text = str(gap_sentence("d", table))
    assert "1 widen, 1 reverse sign and 2 inconclusive" in text
    assert 'Reversed: <a class="num" href="#gc-d-m-dpsgd-sex-auroc-1">DP at ε = 1 reverses the sex gap</a>.' in text
    widened = text[: text.index("Reversed")]
    assert "DP at ε = 2 widens the sex gap" in widened and "reverses the sex gap" not in widened
    assert "The inconclusive rows would detect a change of ≥ <a" in text and ">0.04</a>–0.05 at 80% power" in text


def test_equivalence_intervals_are_rebuilt_with_the_rows_ratio():
    from dpfair.fairness.contrasts import interval_of
    from dpfair.report.summary import change_phrase, equivalence_interval

    row = {"change": 0.004, "se": 0.005, "df": 2.0, "ratio": 3.0}
    assert equivalence_interval(row) == pytest.approx(interval_of(0.004, 0.005, 2.0, 3.0, level=0.9))
    older = equivalence_interval({k: v for k, v in row.items() if k != "ratio"})  # no ratio column: r = 0
    assert older == pytest.approx(interval_of(0.004, 0.005, 2.0, 0.0, level=0.9))
    assert older[1] - older[0] > equivalence_interval(row)[1] - equivalence_interval(row)[0]  # r > 0 is narrower
    keys = {"dataset": "d", "model": "m", "method": "dpsgd", "epsilon": 10.0, "ci_low": -0.02, "ci_high": 0.03}
    phrase = str(change_phrase({**keys, **row, "verdict_class": "inconclusive", "mde": 0.05}, power=0.9))
    assert phrase.startswith("is inconclusive: would detect a change of ≥ ") and "0.05</a> at 90% power" in phrase
    cost = {**keys, "change": -0.01, "ci_low": -0.015, "ci_high": -0.005, "margin": 0.03, "verdict_class": "costs"}
    assert "practically negligible" not in str(change_phrase(cost))
    assert str(change_phrase({**cost, "within_margin": "True"})).endswith(
        ", detected but within ±0.03 (practically negligible)"
    )


def test_the_power_caveat_reads_tau2_rows_against_half_the_squared_margin():
    from dpfair.report.summary import caveats

    table = _gap_rows([("inconclusive", 0.0006), ("inconclusive", 0.0004)]).assign(estimand="tau2")
    subgroups = pd.DataFrame(columns=["dataset", "flagged", "n", "attribute", "group", "n_positive"])
    metrics = pd.DataFrame({"dataset": ["d"] * 3, "seed": [0, 1, 2]})
    found = caveats("d", meta={}, metrics=metrics, subgroups=subgroups, cards=[], min_group_size=0, changes=table)
    text = " ".join(str(c) for c in found)
    # margin²/2 = 0.00045: only the first row's MDE is above it (with margin² = 0.0009 neither would be)
    assert "Underpowered: 1 of" in text and "±0.00045 for τ²" in text
