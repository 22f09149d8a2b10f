"""Failure modes tried as a new user would, on the real Snakefile: each reproduces the problem and checks the fix."""

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

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2"]

BROKEN = """
from dpfair.data import DatasetCard, register_dataset

CARD = DatasetCard(name="broken", modality="image", task="t", outcome="o", sensitive_attributes=("site",),
                   license="l", citation="c", homepage="https://example.org", source="s")


@register_dataset(CARD)
def load():
    raise OSError("scanner archive unreadable")
"""


def grid(datasets_dir: Path, *names: str, **changes) -> dict:
    config = {
        "name": "failures",
        "datasets_dir": str(datasets_dir),
        "datasets": {
            n: {"params": {"n_samples": 300, "image_size": 16}} if n == "synthetic_lesions" else None for n in names
        },
        "models": ["cnn"],
        "epsilons": [1, "inf"],
        "seeds": [0],
        "training": {"epochs": 1, "batch_size": 64},
        "evaluation": {"n_bootstrap": 100, "min_group_size": 10},
        "speed": {"enabled": False},
    }
    config.update(changes)
    return config


def snakemake(workdir: Path, config: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    path = workdir / "benchmark.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO / "workflow")}
    result = subprocess.run(
        [*SNAKEMAKE, "-d", str(workdir), "--configfile", str(path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=cwd or workdir,
    )
    result.out = result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory):
    """A good dataset beside one whose loader raises; an older benchmark's report is in place."""
    root = tmp_path_factory.mktemp("failures")
    datasets = root / "datasets"
    datasets.mkdir()
    good = (REPO / "datasets/synthetic_lesions.py").read_text()
    homepage = [line for line in good.splitlines() if "homepage=" in line][0]
    (datasets / "synthetic_lesions.py").write_text(good.replace(homepage, '    homepage="javascript:alert(1)",'))
    (datasets / "broken.py").write_text(BROKEN)
    work = root / "work"
    work.mkdir()
    earlier = snakemake(work, grid(datasets, "synthetic_lesions", name="earlier-benchmark", epsilons=[1]))
    assert earlier.returncode == 0, earlier.out[-3000:]
    assert "earlier-benchmark" in (work / "report/index.html").read_text()
    result = snakemake(work, grid(datasets, "synthetic_lesions", "broken"))
    return work, datasets, result


@pytest.mark.integration
def test_a_failing_dataset_leaves_the_other_and_the_report_says_what_failed(broken_run):
    work, _, result = broken_run
    assert result.returncode != 0  # the run failed, and says so
    assert "2 of 4 runs finished" in result.out
    html = (work / "report/index.html").read_text()
    assert "earlier-benchmark" not in html  # the previous benchmark's page is gone
    assert "Benchmark failures: INCOMPLETE, 2 of 4 runs finished" in html
    assert "broken/cnn/dpsgd/eps-1/seed-0" in html and "OSError: scanner archive unreadable" in html
    assert "results/logs/prepare_dataset/broken.log" in html
    # the failed preparation is named itself, in the banner and on the terminal, not only through its runs
    assert "<li><code>prepare: broken</code>: " in html and "failed: prepare: broken (" in result.out
    metrics = pd.read_csv(work / "results/summary/metrics.csv")
    assert set(metrics["dataset"]) == {"synthetic_lesions"} and len(metrics) == 2
    # a dataset card's homepage is a link only when it is an http(s) URL
    assert 'href="javascript' not in html and "javascript:alert(1)" in html


@pytest.mark.integration
def test_fixing_the_failure_redoes_only_what_failed(broken_run):
    work, datasets, _ = broken_run
    result = snakemake(work, grid(datasets, "synthetic_lesions", "broken"), "-n")
    assert "train" in result.out and "synthetic_lesions" not in " ".join(
        line for line in result.out.splitlines() if line.strip().startswith("wildcards:")
    )
    # the partial report and summary are dated out of date, so the rerun remakes them (and whatever they
    # need that a failure left unmade) instead of printing "Nothing to be done"
    assert (work / "report/index.html").stat().st_mtime == 0 == (work / "results/summary/metrics.csv").stat().st_mtime
    assert re.search(r"^(local)?rule report:", result.out, re.M) and re.search(
        r"^(local)?rule aggregate:", result.out, re.M
    ), result.out[-3000:]


@pytest.mark.integration
def test_a_refused_delta_deletes_nothing_and_forces_no_retraining(broken_run):
    work, datasets, _ = broken_run
    prepared = sorted((work / "results/prepared/synthetic_lesions").iterdir())
    runs = sorted((work / "results/runs").rglob("*.pt"))
    before = {p: p.stat().st_mtime_ns for p in prepared + runs}
    refused = snakemake(work, grid(datasets, "synthetic_lesions", privacy={"delta": 0.5}))
    assert refused.returncode != 0
    assert (
        "privacy.delta = 0.5 but this dataset has n_train" in refused.out
        and "nothing was run or deleted" in refused.out
    )
    assert {p: p.stat().st_mtime_ns for p in before if p.exists()} == before
    again = snakemake(work, grid(datasets, "synthetic_lesions"), "-n")
    assert again.returncode == 0, again.out[-3000:]
    for rule in ("prepare_dataset", "train", "evaluate"):
        assert f"rule {rule}:" not in again.out and f"\n{rule} " not in again.out, again.out[-3000:]


@pytest.mark.integration
def test_cuda_without_a_gpu_is_refused_before_any_job(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = snakemake(tmp_path, grid(REPO / "datasets", "synthetic_lesions", device="cuda"))
    assert result.returncode != 0 and "device: 'cuda' but this machine has no CUDA GPU" in result.out
    assert not (tmp_path / "results").exists()


@pytest.mark.integration
def test_the_workflow_runs_from_another_directory(tmp_path):
    """-s/-d from elsewhere: datasets/ and the default benchmark are found from the workflow's folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}
    env.pop("DPFAIR_DATASETS_DIR", None)
    result = subprocess.run(
        [*SNAKEMAKE, "-d", str(elsewhere), "-n"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train" in result.stdout and "report" in result.stdout


@pytest.mark.integration
def test_resuming_after_kill_9_is_the_same_command(tmp_path):
    """make run's guard (dpfair.pipeline.runlock) clears the lock a killed run leaves; a live run's lock is kept."""
    config = grid(REPO / "datasets", "synthetic_lesions", epsilons=["inf"])
    (tmp_path / "benchmark.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO / "workflow")}
    command = [sys.executable, "-m", "dpfair.pipeline.runlock", "--", *SNAKEMAKE, "--configfile", "benchmark.yaml"]
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    locks = tmp_path / ".snakemake/locks"
    deadline = time.monotonic() + 120
    while not (locks.is_dir() and any(locks.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert locks.is_dir() and any(locks.iterdir()), "snakemake never locked the folder"
    # while it runs, a second make run is refused (it would corrupt the first)
    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 75 and "another `make run` is running" in second.stderr
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert any(locks.iterdir())  # the stale lock a killed run leaves
    plain = subprocess.run(
        SNAKEMAKE + ["--configfile", "benchmark.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "LockException" in plain.stdout + plain.stderr  # what a bare rerun says
    resumed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "removing the lock an interrupted run left behind" in resumed.stderr
    assert (tmp_path / "report/index.html").exists()
