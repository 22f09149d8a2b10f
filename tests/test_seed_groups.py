"""Job groups: one train/evaluate job for every ε and seed of a (dataset, model, method) gives the same results as one
job per run.

``execution.seeds_per_job`` and ``epsilons_per_job`` only decide how many runs one process runs (dpfair.jobs); every
run is computed as in a job of its own, so the summary tables of the two ways must agree, timing aside, bit for
bit (the conv strategy pinned: its timed pick depends on the machine's load in either way).
"""

import copy
import json
import re
import sys
from pathlib import Path

import pytest
from dpfair.errors import ConfigError
from dpfair.jobs import EpsilonGroup, SeedGroup, epsilon_groups, group_label, label_epsilons, label_seeds, seed_groups
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


def test_epsilon_groups_give_each_run_one_rule():
    grid = validate_config(copy.deepcopy(GRID))
    groups = grid.epsilon_groups()
    # dpsgd_f runs dpsgd's ε = ∞ arm: its finite ε are a group of their own, with a rule of its own
    assert [(g.epsilons, g.name) for g in groups] == [(("1", "inf"), ""), (("1",), "private")]
    assert groups[1].methods == ("dpsgd_f",) and "dpsgd_f" not in groups[0].methods
    assert [j.rule_name("train") for j in grid.job_groups()] == ["train", "train_private"]
    runs = {(r.dataset, r.method, r.epsilon) for r in grid.runs()}
    covered = [
        (d, m, e) for g in groups for d in g.datasets for m in g.methods for e in g.epsilons if (d, m, e) in runs
    ]
    assert sorted(covered) == sorted(runs)  # every run in exactly one group
    assert label_epsilons(groups[0].label) == ["1", "inf"] and label_epsilons("eps-1e-05_inf") == ["1e-05", "inf"]
    # one job per ε: one rule, the ε a wildcard
    per_cell = validate_config({**copy.deepcopy(GRID), "execution": {"epsilons_per_job": 1}})
    assert per_cell.epsilon_groups() == [EpsilonGroup(None)] and EpsilonGroup(None).label == "eps-{epsilon}"
    # a method running other ε on another dataset would match two rules: refused, naming the key
    clash = {("a", "dpsgd"): ["1", "inf"], ("a", "dpsgd_f"): ["1"], ("b", "dpsgd_f"): ["1", "inf"]}
    with pytest.raises(ConfigError, match=r"dpsgd_f runs epsilons .* set execution\.epsilons_per_job: 1"):
        epsilon_groups(clash, "all")


@pytest.mark.parametrize("key, value", [("seeds_per_job", v) for v in (0, -1, "some", 1.5)] + [
    ("epsilons_per_job", v) for v in (0, 2, "some")
])  # fmt: skip
def test_bad_job_size_is_one_error_naming_the_key(key, value):
    config = copy.deepcopy(GRID)
    config["execution"] = {key: value}
    with pytest.raises(ConfigError, match=rf"execution\.{key}"):
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


def test_a_job_of_several_epsilons_trains_each_run_at_its_own_epsilon_and_keeps_each_apart(tmp_path, monkeypatch):
    trained = []

    def fake_train_run(*, seed, epsilon, model_path, scores_path, record_path, card_path, **run):
        if (epsilon, seed) in fail:
            raise RuntimeError(f"epsilon {epsilon} seed {seed} diverged")
        trained.append((epsilon, seed))
        for path in (model_path, scores_path, card_path):
            Path(path).write_text(f"{epsilon} {seed}")
        Path(record_path).write_text(json.dumps({"epsilon": epsilon, "seed": seed}))
        return {"epsilon": epsilon, "seed": seed}

    monkeypatch.setattr(runner, "train_run", fake_train_run)
    monkeypatch.setattr(runner, "trained_definition", lambda prepared, **run: f"{run['epsilon']} {run['seed']}")
    pairs = [("1", 0), ("1", 1), ("inf", 0), ("inf", 1)]
    outputs = [{k: str(tmp_path / f"{e}-{s}-{k}") for k in ("model", "scores", "record", "card")} for e, s in pairs]
    park = tmp_path / "results/partial/train/d/mlp/dpsgd"
    job = dict(prepared=None, config={"epochs": 1}, model_name="mlp", inputs=[], park=park)
    epsilons, seeds = [e for e, _ in pairs], [s for _, s in pairs]
    fail = {("inf", 0)}
    with pytest.raises(RuntimeError, match=r"runs \['epsilon inf seed 0'\] of 4 failed"):
        runner.train_runs(seeds=seeds, epsilons=epsilons, outputs=outputs, **job)
    assert trained == [p for p in pairs if p not in fail]
    # the same seed at two ε are two runs: each kept in its ε's folder
    assert sorted(str(p.relative_to(park)) for p in park.glob("*/*")) == [
        "eps-1/seed-0",
        "eps-1/seed-1",
        "eps-inf/seed-1",
    ]
    for paths in outputs:
        for path in paths.values():
            Path(path).unlink(missing_ok=True)
    fail, trained = set(), []
    records = runner.train_runs(seeds=seeds, epsilons=epsilons, outputs=outputs, **job)
    assert trained == [("inf", 0)] and [(r["epsilon"], r["seed"]) for r in records] == pairs
    assert Path(outputs[3]["model"]).read_text() == "inf 1" and not (tmp_path / "results/partial/train").exists()


@pytest.mark.integration
def test_chunked_jobs_get_rules_named_for_their_seeds(tmp_path):
    config = {**copy.deepcopy(GRID), "seeds": [0, 1, 2], "execution": {"seeds_per_job": 2}}
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout + result.stderr
    # 4 (dataset, model, method) with both ε (synthetic_lesions: dpsgd, dpsgd_patient, dpsgd-tuned; support2: dpsgd)
    # and dpsgd_f at ε = 1 alone, each cut into seeds (0, 1) and (2); the audit trains reference seed 0 of the
    # 7 untuned (dataset, model, method, ε) cells
    for rule, count in (
        ("train_seeds_0_1", 4),
        ("train_seeds_2", 4),
        ("train_private_seeds_0_1", 1),
        ("evaluate_seeds_0_1", 4),
        ("evaluate_private_seeds_2", 1),
        ("audit_train", 7),
    ):
        assert re.search(rf"^{rule}\s+{count}$", out, re.M), f"{rule} x{count} missing from the dry run:\n{out[-3000:]}"


@pytest.mark.integration
def test_per_cell_and_per_seed_jobs_give_identical_summaries(tmp_path, monkeypatch):
    monkeypatch.setenv("DPFAIR_CONV_STRATEGY", "grouped")  # the timed pick follows the machine's load
    folders = {}
    for per_job in ("all", 1):
        folder = tmp_path / f"per-job-{per_job}"
        folder.mkdir()
        execution = {"seeds_per_job": per_job, "epsilons_per_job": per_job}
        result = snakemake(folder, {**copy.deepcopy(GRID), "execution": execution})
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        folders[per_job] = folder
    lines = diff_summaries.compare(folders[1], folders["all"])
    assert lines and not [line for line in lines if line.startswith("DIFF")], "\n".join(lines)
    assert any(line.startswith("metrics.csv: identical") for line in lines)
    # one train job for every ε and seed against one per run, and the cost table says which runs each covered
    method = "results/benchmarks/train/support2/mlp/dpsgd"
    assert sorted(p.name for p in (folders["all"] / method).iterdir()) == ["eps-1_inf"]
    assert sorted(p.name for p in (folders["all"] / method / "eps-1_inf").iterdir()) == ["seeds-0-1.tsv"]
    assert sorted(p.name for p in (folders[1] / method).iterdir()) == ["eps-1", "eps-inf"]
    assert sorted(p.name for p in (folders[1] / method / "eps-1").iterdir()) == ["seed-0.tsv", "seed-1.tsv"]
    for folder, jobs in ((folders["all"], 1), (folders[1], 2)):
        cost = (folder / "results/summary/compute_cost.csv").read_text().splitlines()
        header = cost[0].split(",")
        row = next(r.split(",") for r in cost[1:] if r.startswith("support2,mlp,dpsgd,1.0"))
        assert (row[header.index("n_seeds")], row[header.index("n_jobs")]) == ("2", str(jobs))
