"""A two-dataset, one-ε slice of benchmarks/findings.yaml through the real Snakefile: generated images and a
real cohort, pooled into findings.csv, the report and the claims."""

import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from tiny_grid import REPO, snakemake

FINDINGS_SLICE = {
    "name": "findings_slice",
    "datasets_dir": str(REPO / "datasets"),
    "datasets": {
        "synthetic_lesions": {"params": {"n_samples": 600, "image_size": 16}, "training": {"epochs": 1}},
        "diabetes": {"training": {"epochs": 3, "batch_size": 32}, "primary": {"attributes": ["sex"]}},
    },
    "models": ["cnn", "mlp"],
    "epsilons": [10, "inf"],
    "seeds": [0, 1],
    "evaluation": {"n_bootstrap": 100, "min_group_size": 30, "membership_inference": False},
    "audit": {"attacks": []},
    "findings": {"enabled": True},
}


@pytest.mark.integration
@pytest.mark.slow
def test_the_findings_slice_pools_two_datasets_end_to_end(tmp_path):
    done = snakemake(tmp_path, FINDINGS_SLICE)
    assert done.returncode == 0, done.stderr[-4000:]
    table = pd.read_csv(tmp_path / "results/summary/findings.csv")
    one = table[table["finding"] == 1].set_index("scope")
    assert {"synthetic_lesions", "diabetes", "pooled: all"} <= set(one.index)
    assert one.loc["synthetic_lesions", "modality"] == "image" and one.loc["diabetes", "modality"] == "tabular"
    assert one.loc["pooled: all", "k"] == 2
    assert set(one.loc["pooled: all", "datasets"].split(";")) == {"synthetic_lesions", "diabetes"}
    changes = pd.read_csv(tmp_path / "results/summary/auroc_changes.csv")
    mine = changes[(changes["metric"] == "auroc") & (changes["dataset"] == "synthetic_lesions")].iloc[0]
    assert one.loc["synthetic_lesions", "estimate"] == pytest.approx(mine["change"])
    # without a declared attribute the images carry no finding 3: only the cohort does, so it has no pooled row
    three = table[table["finding"] == 3]
    assert list(three["scope"]) == ["diabetes"] and three["attribute"].iloc[0] == "sex"
    assert not (table["finding"] == 2).any()  # the slice has no ε = 1
    html = (tmp_path / "report/index.html").read_text()
    assert html.index('id="findings"') < html.index('id="summary"')
    claims = yaml.safe_load((tmp_path / "results/summary/leaderboard_claims.yaml").read_text())
    assert [r["dataset"] for r in claims] == ["diabetes", "synthetic_lesions"]
    assert all(c["epsilon"] == 10.0 and c["private_accuracy"].endswith("% AUC") for r in claims for c in r["claims"])
    printed = subprocess.run(
        [sys.executable, "-m", "dpfair.pipeline.cli", "findings", str(tmp_path / "results")],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO / "workflow")},
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert "Finding 1:" in printed.stdout and "pooled: all" in printed.stdout
