"""profiles/slurm against a real scheduler: a loopback single-node SLURM started inside the test.

Runs where SLURM's Debian packages are installed and the test is root (``.ci/run`` installs them); skips
with the reason elsewhere, except in CI (``CI`` or ``DPFAIR_CI`` set), where a missing cluster is a failure.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from slurm_cluster import loopback_slurm, missing_reason

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny-slurm",
    "datasets_dir": str(REPO / "datasets"),
    "datasets": {"synthetic_lesions": {"params": {"n_samples": 300, "image_size": 16}}},
    "models": ["cnn"],
    "epsilons": [1, "inf"],
    "seeds": [0],
    "training": {"epochs": 1, "batch_size": 64},
    "evaluation": {"n_bootstrap": 100, "min_group_size": 10},
    "speed": {"enabled": False},
}

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = missing_reason()
    if reason:
        if os.environ.get("CI") or os.environ.get("DPFAIR_CI"):
            pytest.fail(f"loopback SLURM cannot run in CI: {reason}")
        pytest.skip(f"loopback SLURM: {reason}")
    with loopback_slurm(tmp_path_factory.mktemp("slurm")) as partition:
        yield partition


def site_profile(folder: Path, partition: str) -> Path:
    """profiles/slurm with its CHANGEME values filled in for the loopback cluster, as a user would."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    text = yaml.safe_dump(profile)
    assert "CHANGEME" in text  # the shipped profile makes the user fill these in
    profile["default-resources"].pop("slurm_account")
    profile["slurm-no-account"] = True  # the loopback cluster has no accounts
    profile["default-resources"].update(slurm_partition=partition, mem_mb=500)
    for rule in ("train", "train_private", "speed"):
        # the node has 2 CPUs and 4 GB; a real site keeps the shipped sizes
        profile["set-resources"][rule].update(slurm_partition=partition, cpus_per_gpu=1, mem_mb=1000)
        profile["set-threads"][rule] = 1
    # no accounting database: poll squeue; MinJobAge (3600 s) >= 3 x this first wait
    profile["slurm-status-command"] = "squeue"
    profile["slurm-init-seconds-before-status-checks"] = 3
    assert "CHANGEME" not in yaml.safe_dump(profile)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def run_snakemake(args: list[str], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Snakemake ignores SIGTERM while it polls: on timeout, SIGKILL its process group and scancel."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO / "workflow")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        subprocess.run(["scancel", "--full", "--partition", "debug"], timeout=10)
        pytest.fail(f"snakemake on SLURM did not finish in {timeout:.0f} s:\n{out[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def test_tiny_grid_runs_through_the_scheduler(cluster, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "benchmark.yaml").write_text(yaml.safe_dump(TINY))
    profile = site_profile(tmp_path / "profiles" / "slurm_loopback", cluster)
    started = time.monotonic()
    result = run_snakemake(
        [
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(work),
            "--configfile",
            str(work / "benchmark.yaml"),
            "--workflow-profile",
            str(profile),
        ],
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    print(f"loopback SLURM grid: {time.monotonic() - started:.0f} s")

    metrics = pd.read_csv(work / "results/summary/metrics.csv")
    assert sorted(metrics["epsilon"].astype(str)) == ["1.0", "inf"]
    html = (work / "report/index.html").read_text()
    assert "tiny-slurm" in html and "2 of 2 runs" in html

    # every heavy job went through sbatch; the light ones ran in the submitting process
    shown = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, timeout=10).stdout
    jobs = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in shown.strip().splitlines()]
    assert jobs and all(job["JobState"] == "COMPLETED" for job in jobs), shown
    comments = " ".join(job.get("Comment", "") for job in jobs)
    for rule, count in (("prepare_dataset", 1), ("train", 1), ("evaluate", 1)):  # one job for both ε
        assert len(re.findall(rf"rule_{rule}(?=_wildcards_|\s|$)", comments)) == count, (rule, shown)
    for rule in ("aggregate", "aggregate_audit", "compare_methods", "report"):
        assert not re.search(rf"rule_{rule}(?=_wildcards_|\s|$)", comments), (rule, shown)
    # train jobs asked the scheduler for a GPU (profiles/slurm's gpu: 1 -> sbatch --gpus=1) and were scheduled
    # on the node's GRES (without an accounting database SLURM does not list gres in a job's TRES)
    train = [job for job in jobs if job.get("Comment", "").startswith("rule_train")]
    assert train and all(job.get("TresPerJob") == "gres:gpu:1" for job in train), shown
    others = [job for job in jobs if not job.get("Comment", "").startswith("rule_train")]
    assert not any("gpu" in job.get("TresPerJob", "") for job in others), shown
    # SLURM wrote each job's output where the plugin asked (it deletes the logs of successful jobs afterwards)
    assert all(job["StdOut"].startswith(str(work / ".snakemake/slurm_logs/rule_train/")) for job in train), shown
