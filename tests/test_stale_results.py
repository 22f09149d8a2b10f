"""A report is about one definition or says it is not (issue 27).

Editing a dataset module so that its preparation fails leaves every run of the previous module in place:
Snakemake deletes the failed preparation's outputs, not the finished runs downstream of it. The report and
the terminal must name the failed preparation and show none of those runs as current.
"""

import json
import os
import re
import subprocess

import pandas as pd
import pytest
import yaml
from dpfair.pipeline.outcome import run_status
from tiny_grid import REPO, SNAKEMAKE, TINY

#: Appended to a copy of the synthetic module: the loader now raises (registered last, so it wins).
BREAK_LOADER = """

@register_dataset(CARD)
def load(**params):
    raise OSError("the edited archive is unreadable")
"""


def snakemake(workdir, config):
    path = workdir / "benchmark.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO / "workflow")}
    result = subprocess.run(
        [*SNAKEMAKE, "-d", str(workdir), "--configfile", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        cwd=workdir,
    )
    result.out = result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def edited_after_a_complete_run(tmp_path_factory):
    """A complete grid of two datasets; then one dataset's module is edited so that its preparation fails."""
    root = tmp_path_factory.mktemp("stale")
    datasets = root / "datasets"
    datasets.mkdir()
    source = (REPO / "datasets/synthetic_lesions.py").read_text()
    (datasets / "synthetic_lesions.py").write_text(source)
    edited = datasets / "edited_lesions.py"
    edited.write_text(source.replace('name="synthetic_lesions"', 'name="edited_lesions"'))
    params = {"params": {"n_samples": 300, "image_size": 16}}
    config = {
        **TINY,
        "name": "stale",
        "datasets_dir": str(datasets),
        "datasets": {"synthetic_lesions": params, "edited_lesions": params},
        "speed": {"enabled": False},
        # the loss attack only: an audited cell of the edited dataset must turn stale too, cheaply
        "audit": {"attacks": ["loss"], "n_bootstrap": 50},
    }
    work = root / "work"
    work.mkdir()
    first = snakemake(work, config)
    assert first.returncode == 0, first.out[-3000:]
    complete = (work / "report/index.html").read_text()
    edited.write_text(edited.read_text() + BREAK_LOADER)
    second = snakemake(work, config)
    return work, complete, second


@pytest.mark.integration
def test_a_complete_run_records_its_definition_and_the_report_shows_it(edited_after_a_complete_run):
    work, complete, _ = edited_after_a_complete_run
    assert "Benchmark stale: complete, 4 of 4 runs." in complete
    records = sorted((work / "results/runs").rglob("run.json"))
    assert len(records) == 4
    for record in records:
        definition = json.loads(record.read_text())["definition"]
        assert re.fullmatch(r"[0-9a-f]{64}", definition)
        label = str(record.parent.relative_to(work / "results/runs"))
        assert f'<code>{label}</code></td><td class="l"><code>{definition}</code>' in complete


@pytest.mark.integration
def test_a_preparation_that_fails_after_a_complete_run_is_named_and_its_old_runs_are_not_current(
    edited_after_a_complete_run,
):
    work, _, result = edited_after_a_complete_run
    assert result.returncode != 0
    # the terminal names the failed preparation, its error and its log, and counts only the current runs
    log = "results/logs/prepare_dataset/edited_lesions.log"
    assert re.search(
        rf"failed: prepare: edited_lesions \([^)]*OSError: the edited archive is unreadable; log: {log}\)", result.out
    ), result.out[-3000:]
    assert "2 of 4 runs finished under the current definition" in result.out
    assert "4 of 4 runs" not in result.out
    assert "4 stale, made from an earlier definition and not shown: edited_lesions/cnn/dpsgd/eps-" in result.out

    html = (work / "report/index.html").read_text()
    banner, page = html[: html.index('<nav id="toc"')], html[html.index('<nav id="toc"') :]
    assert "complete," not in banner and "Benchmark stale: INCOMPLETE, 2 of 4 runs finished" in banner
    assert "<code>prepare: edited_lesions</code>" in banner and "OSError: the edited archive is unreadable" in banner
    assert f"(log: <code>{log}</code>)" in banner
    stale = banner[banner.index('<ul id="stale">') :]
    for run in ("edited_lesions/cnn/dpsgd/eps-1/seed-0", "edited_lesions/cnn/dpsgd/eps-inf/seed-0"):
        assert f"<code>{run}</code>: made from an earlier definition: prepare: edited_lesions failed" in stale
    assert "<code>audit: edited_lesions/cnn/dpsgd/eps-1</code>" in stale
    # nothing of the old module below the banner: no section, data card, figure row or privacy statement
    assert "edited_lesions" not in page and "synthetic_lesions" in page
    definitions = banner[banner.index('<details id="definitions">') :]
    assert "edited_lesions" not in definitions and "synthetic_lesions/cnn/dpsgd/eps-1/seed-0" in definitions
    metrics = pd.read_csv(work / "results/summary/metrics.csv")
    assert set(metrics["dataset"]) == {"synthetic_lesions"} and len(metrics) == 2


def _run_entry(tmp_path, *, recorded, expected, prepared_after=False, module_after=False):
    """A finished run's entry (outputs, run.json with ``recorded``) whose preparation finished."""
    prep_out = tmp_path / "prepared/dataset.json"
    prep_out.parent.mkdir(parents=True, exist_ok=True)
    prep_out.write_text("{}")
    module = tmp_path / "module.py"
    module.write_text("...")
    run_dir = tmp_path / f"run-{recorded}-{expected}-{prepared_after}-{module_after}"
    run_dir.mkdir()
    (run_dir / "metrics.csv").write_text("x")
    (run_dir / "run.json").write_text(json.dumps({} if recorded is None else {"definition": recorded}))
    for path in (module, prep_out):  # made before the run, as Snakemake orders them
        os.utime(path, (1_000, 1_000))
    if prepared_after:
        os.utime(prep_out, (2e9, 2e9))
    if module_after:
        os.utime(module, (2e9, 2e9))
    return {
        "label": run_dir.name,
        "outputs": [str(run_dir / "metrics.csv")],
        "logs": [],
        "record": str(run_dir / "run.json"),
        "definition": expected,
        "preparation": {"label": "prepare: d", "outputs": [str(prep_out)], "logs": [], "inputs": [str(module)]},
    }


def test_a_run_is_current_only_with_the_current_definition_and_preparation(tmp_path):
    status = run_status([_run_entry(tmp_path, recorded="a" * 64, expected="a" * 64)])
    assert status["complete"] and [c["definition"] for c in status["current"]] == ["a" * 64]
    changed = run_status([_run_entry(tmp_path, recorded="a" * 64, expected="b" * 64)])
    assert not changed["complete"] and changed["finished"] == 0 and not changed["failed"]
    assert (
        "made from an earlier definition (recorded aaaaaaaaaaaa, current bbbbbbbbbbbb)" in changed["stale"][0]["reason"]
    )
    # prepared again after the run (and the run not retrained): stale whatever its hash says
    redone = run_status([_run_entry(tmp_path, recorded="c" * 64, expected="c" * 64, prepared_after=True)])
    assert redone["finished"] == 0 and "changed after it was made" in redone["stale"][0]["reason"]
    # the module edited after the preparation (and the preparation not redone): the preparation is stale, and so
    # is every run made from it
    edited = run_status([_run_entry(tmp_path, recorded="e" * 64, expected="e" * 64, module_after=True)])
    assert edited["preparations"] == {"expected": 1, "finished": 0}
    assert [s["run"] for s in edited["stale"]][0] == "prepare: d" and "module.py changed after it was made" in (
        edited["stale"][0]["reason"]
    )
    assert "made from an earlier definition: prepare: d is stale" in edited["stale"][1]["reason"]
    # a run.json written before runs recorded a definition: Snakemake's word that it is current is kept
    legacy = run_status([_run_entry(tmp_path, recorded=None, expected="d" * 64)])
    assert legacy["complete"] and legacy["current"][0]["definition"] is None
    assert legacy["preparations"] == {"expected": 1, "finished": 1}


def test_the_train_job_and_the_workflow_hash_a_run_alike(tmp_path):
    """train_run's record and the workflow's expected hash come from one function on the same values."""
    from dpfair.data.prepare import prepare_dataset
    from dpfair.pipeline.outcome import run_definition
    from dpfair.pipeline.runner import trained_definition

    params = {"n_samples": 200, "image_size": 16}
    prepared = prepare_dataset(name="synthetic_lesions", params=params, datasets_dir=REPO / "datasets")
    training = {"epochs": 1, "batch_size": 64, "tuning": {"trials": 2}}
    run = {"model": "cnn", "method": "dpsgd-tuned", "epsilon": "1", "seed": 0}
    recorded = trained_definition(prepared, config=training, tuning=None, datasets_dir=REPO / "datasets", **run)
    expected = run_definition(
        dataset="synthetic_lesions",
        module_name="synthetic_lesions",
        module_file=REPO / "datasets/synthetic_lesions.py",
        params=json.loads(json.dumps(params)),
        training=training,
        **run,
    )
    assert recorded == expected
    assert (
        trained_definition(
            prepared, config={**training, "epochs": 2}, tuning=None, datasets_dir=REPO / "datasets", **run
        )
        != expected
    )
    assert (
        trained_definition(prepared, config=training, tuning=None, datasets_dir=tmp_path, **run) is None
    )  # no module there
