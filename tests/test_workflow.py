"""The real Snakefile on a tiny grid: one dataset, one model, ε ∈ {1, inf}, one seed, one epoch."""

import json
import os
import re
import shutil

import pandas as pd
import pytest
from dpfair.fairness import GAP_CHANGE_COLUMNS
from tiny_grid import REPO, TINY, snakemake  # the grid and its runner; the tiny_run fixture is in conftest.py

METRIC_COLUMNS = (
    "dataset model epsilon seed attribute auroc auroc_ci_low auroc_ci_high worst_group_auroc auroc_gap "
    "epsilon_spent delta noise_multiplier max_grad_norm sample_rate epochs steps accountant n_train n_test train_seconds "
    "epsilon_rdp epsilon_prv epsilon_pld sampling privacy_unit"
).split()


@pytest.mark.integration
def test_dry_run_lists_the_grid(tmp_path):
    result = snakemake(tmp_path, TINY, "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout + result.stderr
    for rule, count in (
        ("prepare_dataset", 1),
        ("train", 1),  # one job for both ε of the (dataset, model, method)
        ("evaluate", 1),
        ("aggregate", 1),
        ("speed", 1),
        ("report", 1),
        ("audit_train", 2),
        ("audit", 2),
        ("aggregate_audit", 1),
    ):
        assert re.search(rf"^{rule}\s+{count}$", out, re.M), f"{rule} x{count} missing from the dry run"


@pytest.mark.integration
def test_summary_rows_follow_the_output_contract(tiny_run):
    metrics = pd.read_csv(tiny_run / "results/summary/metrics.csv")
    assert set(METRIC_COLUMNS) <= set(metrics.columns)
    assert len(metrics) == 2  # 2 epsilons x 1 seed x 1 attribute
    raw = (tiny_run / "results/summary/metrics.csv").read_text()
    assert ",inf," in raw  # the non-private row writes epsilon as inf
    private = metrics[metrics["epsilon"] == 1].iloc[0]
    assert 0 < private["epsilon_spent"] <= 1 and private["noise_multiplier"] > 0
    assert private["accountant"] == "prv" and private["delta"] < 1 / private["n_train"]
    assert (
        abs(private["epsilon_pld"] - private["epsilon_prv"]) < 0.05 and private["epsilon_rdp"] > private["epsilon_pld"]
    )
    card = json.loads(
        (tiny_run / "results/runs/synthetic_lesions/cnn/dpsgd/eps-1/seed-0/privacy_card.json").read_text()
    )
    assert card["sampling"] == "poisson" and card["target_epsilon"] == 1
    plain = metrics[metrics["epsilon"] == float("inf")].iloc[0]
    assert plain["noise_multiplier"] == 0 and pd.isna(plain["max_grad_norm"])
    assert plain["steps"] == private["steps"] and plain["sample_rate"] == private["sample_rate"]
    assert (metrics["auroc_ci_low"] <= metrics["auroc"]).all() and (metrics["auroc"] <= metrics["auroc_ci_high"]).all()
    for column in (
        "auprc",
        "ece",
        "eod",
        "eqodds_diff",
        "dpd",
        "threshold",
        "eod_ci_low",
        "eod_ci_high",
        "mia_auroc",
        "mia_tpr_at_1pct_fpr",
        "mia_tpr_at_0p1pct_fpr",
        "mia_bound_violated",
    ):
        assert column in metrics.columns, column
    assert not metrics["mia_bound_violated"].any()
    changes = pd.read_csv(tiny_run / "results/summary/gap_changes.csv")
    assert list(changes.columns) == ["dataset", "model", "method", *GAP_CHANGE_COLUMNS[2:]]
    assert set(changes["epsilon"]) == {1.0} and changes["verdict"].str.contains("DP at ε = 1").all()
    assert set(changes["family"]) == {"primary", "exploratory"}
    assert changes.loc[changes["family"] == "exploratory", "verdict"].str.contains("exploratory").all()
    gaps = pd.read_csv(tiny_run / "results/summary/gaps.csv")
    for column in (
        "gap",
        "ci_low",
        "ci_high",
        "null_gap",
        "p_value",
        "n_groups",
        "signed_gap",
        "signed_ci_low",
        "signed_ci_high",
        "reference_group",
        "spread",
    ):
        assert column in gaps.columns, column
    assert ((gaps["p_value"] > 0) & (gaps["p_value"] <= 1)).all() and (gaps["null_gap"] > 0).all()
    subgroups = pd.read_csv(tiny_run / "results/summary/subgroups.csv")
    assert "mia_auroc" in subgroups.columns and "tpr_ci_low" in subgroups.columns
    assert list(subgroups.columns[:10]) == [
        "dataset",
        "model",
        "method",
        "epsilon",
        "seed",
        "attribute",
        "group",
        "n",
        "n_positive",
        "auroc",
    ]
    assert set(subgroups["group"]) == {"A", "B"} and len(subgroups) == 4
    assert subgroups.groupby("epsilon")["n"].sum().eq(metrics["n_test"].iloc[0]).all()


@pytest.mark.integration
def test_audit_table_follows_the_output_contract(tiny_run):
    audit = pd.read_csv(tiny_run / "results/summary/audit.csv", keep_default_na=False, na_values=[""])
    assert list(audit.columns) == [
        "dataset",
        "model",
        "method",
        "epsilon",
        "seed",
        "attack",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n",
        "attribute",
        "group",
        "note",
    ]
    assert set(audit["attack"]) == {"loss", "rmia", "one_run"} and set(audit["method"]) == {"dpsgd"}
    bounds = audit.query("attack == 'one_run' and metric == 'epsilon_lower_bound'").set_index("epsilon")["value"]
    assert set(bounds.index) == {1.0, float("inf")} and bounds[1.0] <= 1.0
    assert set(audit.dropna(subset=["attribute"])["group"]) == {"A", "B"}
    # 60 held-out rows: no TPR at 1% or 0.1% FPR (fewer than 10 rows in the tail)
    assert audit.query("metric == 'tpr_at_1pct_fpr'")["value"].isna().all()
    metrics = pd.read_csv(tiny_run / "results/summary/metrics.csv")
    loss_auroc = audit.query("attack == 'loss' and metric == 'auroc' and attribute.isna()").set_index("epsilon")[
        "value"
    ]
    assert metrics.set_index("epsilon")["mia_auroc"].to_dict() == pytest.approx(loss_auroc.to_dict())
    assert "mia_epsilon_lower_bound" not in metrics.columns and "mia_epsilon_empirical" in metrics.columns
    assert (tiny_run / "results/summary/audit_roc.csv").exists()


@pytest.mark.integration
def test_report_is_self_contained(tiny_run):
    html = (tiny_run / "report/index.html").read_text()
    assert "synthetic_lesions" in html and "the privacy parameters of every run" in html
    assert "Privacy card" in html and "ε PLD" in html and "What the guarantee covers" in html
    assert "Released outside the guarantee" in html and "has no DP protection" in html
    # trade-off, AUROC cost across datasets, utility, subgroups, gap, reliability, attack ROC
    assert html.count('<img src="data:image/png;base64,') == 7
    assert "Fairness: does DP change the gaps?" in html and "Privacy audit" in html and "certified ε ≥" in html
    # the summary comes first; the methods section has both runs' privacy statements and the definition's hash
    assert (
        html.index('<section id="summary">')
        < html.index('<section id="synthetic_lesions">')
        < html.index('<section id="methods">')
    )
    assert 'id="ps-synthetic_lesions-cnn-dpsgd-1-0"' in html and 'id="ps-synthetic_lesions-cnn-dpsgd-inf-0"' in html
    assert re.search(r'<code class="hash">[0-9a-f]{64}</code>', html) and 'id="tradeoff-synthetic_lesions"' in html
    for needle in ("<script src", "<link ", 'src="http', "@import"):
        assert needle not in html


@pytest.mark.integration
def test_logs_and_benchmark_records_exist(tiny_run):
    # one job for every ε and seed of a (dataset, model, method) (execution.epsilons_per_job and seeds_per_job:
    # all): its log and record sit in a folder named for its ε and are named for its seeds
    log = (tiny_run / "results/logs/train/synthetic_lesions/cnn/dpsgd/eps-1_inf/seeds-0.log").read_text()
    assert "epsilon=1 seed=0" in log and "epsilon=inf seed=0" in log
    assert "epoch 1/1 epsilon" in log and "val_loss" in log
    # a private run releases no training loss, logs included (the ε = ∞ run logs its own)
    private = log[: log.index("epsilon=inf seed=0")]
    assert "train_loss" not in private and "train_loss" in log[len(private) :]
    assert (tiny_run / "results/benchmarks/train/synthetic_lesions/cnn/dpsgd/eps-1_inf/seeds-0.tsv").exists()
    assert (tiny_run / "results/logs/evaluate/synthetic_lesions/cnn/dpsgd/eps-1_inf/seeds-0.log").exists()


@pytest.mark.integration
def test_second_run_does_no_work_and_a_lost_run_is_redone_by_its_job_alone(tiny_run):
    again = snakemake(tiny_run, TINY, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # as if the run had been interrupted before this job finished: its run and everything downstream is missing
    shutil.rmtree(tiny_run / "results/runs/synthetic_lesions/cnn/dpsgd/eps-inf")
    shutil.rmtree(tiny_run / "results/summary")
    (tiny_run / "report/index.html").unlink()
    resumed = snakemake(tiny_run, TINY, "-n")
    out = resumed.stdout + resumed.stderr
    assert re.search(r"^train\s+1$", out, re.M) and "prepare_dataset" not in out


@pytest.mark.integration
def test_editing_a_dataset_module_re_prepares_it(tmp_path):
    modules = tmp_path / "datasets"
    modules.mkdir()
    shutil.copy(REPO / "datasets" / "synthetic_lesions.py", modules)
    config = {**TINY, "datasets_dir": str(modules)}
    prepared = "results/prepared/synthetic_lesions/dataset.json"
    result = snakemake(tmp_path, config, prepared)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Nothing to be done" in (r := snakemake(tmp_path, config, prepared, "-n")).stdout + r.stderr
    module = modules / "synthetic_lesions.py"
    module.write_text(module.read_text() + "\n# edited\n")
    later = (tmp_path / prepared).stat().st_mtime + 5
    os.utime(module, (later, later))
    out = (r := snakemake(tmp_path, config, prepared, "-n")).stdout + r.stderr
    assert re.search(r"^prepare_dataset\s+1$", out, re.M), out[-2000:]


@pytest.mark.integration
def test_bad_config_stops_before_any_job(tmp_path):
    bad = {**TINY, "epsilons": [1, -2]}
    result = snakemake(tmp_path, bad)
    assert result.returncode != 0
    assert "epsilons[1]: epsilon must be > 0" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.integration
def test_compute_cost_comes_from_the_train_jobs_benchmark_records(tiny_run):
    # an earlier test deletes a run and the summaries; finishing the grid again also checks that the
    # benchmark records, inputs of the aggregate rule, are rewritten by the redone train job
    result = snakemake(tiny_run, TINY)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cells = pd.read_csv(tiny_run / "results/summary/compute_cost.csv")
    assert list(cells["epsilon"]) == [1.0, float("inf")] and set(cells["n_seeds"]) == {1}
    assert (cells["job_seconds"] > cells["train_seconds"]).all() and (cells["max_rss_mb_max"] > 0).all()
    assert set(cells["n_jobs"]) == {1} and cells["overhead_share"].between(0, 1).all()
    ratios = pd.read_csv(tiny_run / "results/summary/compute_ratios.csv")
    assert list(ratios["epsilon"]) == [1.0] and ratios["job_seconds_ratio"].notna().all()
    # both ε ran in one job, whose one peak they share: no memory ratio to show
    assert ratios["max_rss_ratio"].isna().all()
    html = (tiny_run / "report/index.html").read_text()
    assert 'id="compute-cost"' in html and "train-loop s" in html and "All train jobs:" in html
    speed = tiny_run / "results/speed.csv"
    assert ('id="speed"' in html) == (speed.exists() and not pd.read_csv(speed).empty)


@pytest.mark.integration
def test_speed_table_covers_each_cell_and_path(tiny_run):
    """Figures are not asserted (they depend on the machine): only what was measured and how it is labelled."""
    speed = pd.read_csv(tiny_run / "results/speed.csv")
    assert list(speed["mode"]) == ["nonprivate", "bookkeeping", "hooks"]
    assert (speed["model"] == "cnn").all() and (speed["input_size"] == "1x16x16").all() and (speed["batch"] == 64).all()
    assert (speed["status"] == "ok").all() and (speed["timed_steps"] == 3).all()
    assert list(speed["is_default"]) == [False, True, False]
    assert speed.loc[speed["mode"] == "nonprivate", ["time_ratio", "memory_ratio"]].eq(1.0).all().all()
    assert (speed["step_seconds_median"] > 0).all() and (speed["device"] == "cpu").all()
    html = (tiny_run / "report/index.html").read_text()
    assert 'id="speed"' in html and "bookkeeping" in html


@pytest.mark.integration
def test_snakemake_provenance_report_sits_beside_ours(tiny_run):
    result = snakemake(tiny_run, TINY, "--report", "provenance.html")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    page = (tiny_run / "provenance.html").read_text()
    assert "dpfair report" in page and "Summary tables" in page


@pytest.mark.integration
def test_complete_report_names_benchmark_and_completeness(tiny_run):
    html = (tiny_run / "report/index.html").read_text()
    assert "Benchmark tiny: complete, 2 of 2 runs." in html and 'id="incomplete"' not in html
