"""Seed groups: one train/evaluate job per cell gives the same results as one job per seed.

``execution.seeds_per_job`` only decides how many seeds one process runs (dpfair.jobs); every run is computed
as in a job of its own, so the summary tables of the two ways must agree, timing aside, bit for bit (the conv
strategy pinned: its timed pick depends on the machine's load in either way).
"""

import copy
import json
import re
import sys
from pathlib import Path

import pytest
from dpfair.errors import ConfigError
from dpfair.jobs import SeedGroup, group_label, label_seeds, seed_groups
from dpfair.pipeline import runner
from dpfair.pipeline.benchmark import validate_config
from tiny_grid import REPO, TINY, snakemake

sys.path.insert(0, str(REPO / "tools"))
import diff_summaries  # noqa: E402

GRID = {
    **copy.deepcopy(TINY),
    "datasets": {
        # every kind of train job: record- and patient-level DP-SGD, a mitigation, and a tuned arm (trials)
        "synthetic_lesions": {
            "params": {"n_samples": 400, "image_size": 16, "images_per_patient": 3},
            "methods": ["dpsgd", "dpsgd_patient", "dpsgd_f"],
            "mitigation": {"attribute": "site"},
            "tuning": {
                "enabled": True,
                "trials": 2,
                "search_space": {"epochs": [1], "expected_batch_size": [64], "lr": [0.001, 0.003]},
            },
        },
        "support2": None,
    },
    "models": ["cnn", "mlp"],
    "seeds": [0, 1],
    "evaluation": {"n_bootstrap": 100, "min_group_size": 10, "min_class_size": 5},
    "audit": {"attacks": ["loss", "one_run"], "canaries": 100, "n_bootstrap": 50},
    "speed": {"enabled": False},
}


def test_groups_cover_each_seed_once_and_name_their_rules():
    seeds = [0, 1, 2, 5]
    for per_job, sizes in (("all", [4]), (2, [2, 2]), (3, [3, 1]), (7, [4])):
        groups = seed_groups(seeds, per_job)
        assert [len(g.seeds) for g in groups] == sizes and [s for g in groups for s in g.seeds] == seeds
        # each seed's job label names exactly its group's seeds: the cost table reads them back
        assert all(label_seeds(group_label(s, groups)) == list(g.seeds) for g in groups for s in g.seeds)
    assert [label_seeds(group_label(s, seed_groups(seeds, 1))) for s in seeds] == [[s] for s in seeds]
    assert [g.rule_name("train") for g in seed_groups([0, 1, 2, 5], 3)] == ["train_seeds_0_1_2", "train_seeds_5"]
    assert [g.rule_name("train") for g in seed_groups([0, 1, 2], "all")] == ["train"]
    assert seed_groups([0, 1, 2], 1) == [SeedGroup(None)] and seed_groups([0, 1], 9)[0].rule_name("x") == "x"
    with pytest.raises(ValueError, match="not a job label"):
        label_seeds("seeds-")


@pytest.mark.parametrize("value", [0, -1, "some", 1.5])
def test_bad_seeds_per_job_is_one_error_naming_the_key(value):
    config = copy.deepcopy(GRID)
    config["execution"] = {"seeds_per_job": value}
    with pytest.raises(ConfigError, match=r"execution\.seeds_per_job"):
        validate_config(config)


def test_a_failing_seed_keeps_the_finished_ones_for_the_rerun(tmp_path, monkeypatch):
    """Snakemake deletes a failed job's outputs: the seeds that finished are kept and taken back, not retrained."""
    trained = []

    def fake_train_run(*, seed, model_path, scores_path, record_path, card_path, **run):
        if seed in fail:
            raise RuntimeError(f"seed {seed} diverged")
        trained.append(seed)
        for path in (model_path, scores_path, card_path):
            Path(path).write_text(f"seed {seed}")
        Path(record_path).write_text(json.dumps({"seed": seed}))
        return {"seed": seed}

    # the run itself is faked (a failure on demand); what decides a take-back, the stamp, is the real one
    monkeypatch.setattr(runner, "train_run", fake_train_run)
    monkeypatch.setattr(runner, "trained_definition", lambda prepared, **run: f"definition of seed {run['seed']}")
    data = tmp_path / "data.pt"
    data.write_text("prepared rows")
    outputs = [{k: str(tmp_path / f"seed-{s}-{k}") for k in ("model", "scores", "record", "card")} for s in (0, 1, 2)]
    park = tmp_path / "results/partial/train/cell"
    job = dict(prepared=None, config={"epochs": 1}, model_name="mlp", epsilon="1", inputs=[data], park=park)

    def snakemake_deletes_the_outputs():
        for paths in outputs:
            for path in paths.values():
                Path(path).unlink(missing_ok=True)

    fail = {1}
    with pytest.raises(RuntimeError, match=r"seeds \[1\] of 3 failed.*seed 1: RuntimeError: seed 1 diverged"):
        runner.train_runs(seeds=[0, 1, 2], outputs=outputs, **job)
    assert trained == [0, 2]  # the seed after the failing one was trained too
    assert sorted(p.name for p in park.iterdir()) == ["seed-0", "seed-2"]
    snakemake_deletes_the_outputs()

    fail, trained = set(), []
    records = runner.train_runs(seeds=[0, 1, 2], outputs=outputs, **job)
    assert trained == [1] and [r["seed"] for r in records] == [0, 1, 2]
    assert Path(outputs[0]["model"]).read_text() == "seed 0"
    assert not (tmp_path / "results/partial/train").exists()  # a job that succeeds leaves nothing kept

    # a kept run is retrained when what it was made from changed: the dataset prepared again, other settings
    for change in ("input", "settings"):
        fail = {1}
        with pytest.raises(RuntimeError):
            runner.train_runs(seeds=[0, 1], outputs=outputs[:2], **job)
        snakemake_deletes_the_outputs()
        fail, trained = set(), []
        if change == "input":
            data.write_text("prepared again, another split")
            again = job
        else:
            again = {**job, "config": {"epochs": 2}}
        runner.train_runs(seeds=[0, 1], outputs=outputs[:2], **again)
        assert trained == [0, 1], change

    # a job keeps only its own seeds' runs: another job's kept run of the same cell survives its success
    for path in outputs[2].values():
        Path(path).write_text("another job's run")
    runner._keep(outputs[2], park / "seed-2", stamp="another job's")
    runner.train_runs(seeds=[0], outputs=outputs[:1], **job)
    assert (park / "seed-2" / "stamp.json").read_text() == "another job's"
    # a truncated record is not a finished run: retrained, not taken back or failed on forever
    snakemake_deletes_the_outputs()
    (park / "seed-2" / "record").write_text('{"seed": ')
    (park / "seed-2" / "stamp.json").write_text(runner._stamp(seed=2, **{k: v for k, v in job.items() if k != "park"}))
    trained = []
    runner.train_runs(seeds=[2], outputs=[outputs[2]], **job)
    assert trained == [2] and not park.exists()


@pytest.mark.integration
def test_chunked_jobs_get_rules_named_for_their_seeds(tmp_path):
    config = {**copy.deepcopy(GRID), "seeds": [0, 1, 2], "execution": {"seeds_per_job": 2}}
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout + result.stderr
    # 9 cells (synthetic_lesions: dpsgd, dpsgd_patient, dpsgd-tuned at both ε, dpsgd_f at ε = 1; support2: dpsgd at
    # both), each cut into seeds (0, 1) and (2); the audit trains reference seed 0 of the 7 untuned cells
    for rule, count in (("train_seeds_0_1", 9), ("train_seeds_2", 9), ("evaluate_seeds_0_1", 9), ("audit_train", 7)):
        assert re.search(rf"^{rule}\s+{count}$", out, re.M), f"{rule} x{count} missing from the dry run:\n{out[-3000:]}"


@pytest.mark.integration
def test_per_cell_and_per_seed_jobs_give_identical_summaries(tmp_path, monkeypatch):
    monkeypatch.setenv("DPFAIR_CONV_STRATEGY", "grouped")  # the timed pick follows the machine's load
    folders = {}
    for per_job in ("all", 1):
        folder = tmp_path / f"per-job-{per_job}"
        folder.mkdir()
        result = snakemake(folder, {**copy.deepcopy(GRID), "execution": {"seeds_per_job": per_job}})
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        folders[per_job] = folder
    lines = diff_summaries.compare(folders[1], folders["all"])
    assert lines and not [line for line in lines if line.startswith("DIFF")], "\n".join(lines)
    assert any(line.startswith("metrics.csv: identical") for line in lines)
    # one train job per cell against one per seed, and the cost table says which runs each covered
    cell = "results/benchmarks/train/support2/mlp/dpsgd/eps-1"
    assert sorted(p.name for p in (folders["all"] / cell).iterdir()) == ["seeds-0-1.tsv"]
    assert sorted(p.name for p in (folders[1] / cell).iterdir()) == ["seed-0.tsv", "seed-1.tsv"]
    for folder, jobs in ((folders["all"], 1), (folders[1], 2)):
        cost = (folder / "results/summary/compute_cost.csv").read_text().splitlines()
        header = cost[0].split(",")
        row = next(r.split(",") for r in cost[1:] if r.startswith("support2,mlp,dpsgd,1.0"))
        assert (row[header.index("n_seeds")], row[header.index("n_jobs")]) == ("2", str(jobs))
