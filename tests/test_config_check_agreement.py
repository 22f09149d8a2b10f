"""`dpfair config check` and the workflow refuse the same configs, before any job, with the same one line.

Each case goes through both front doors as a user would: the CLI in a subprocess (``error: <message>``)
and a Snakemake dry run of the real Snakefile (``<message>`` under Snakemake's ``ConfigError in file ...``).
Both call :func:`dpfair.pipeline.benchmark.validate_config` then
:func:`dpfair.pipeline.preflight.check_benchmark`, so a case that one refuses and the other does not, or
that they word differently, is a bug. All subprocesses run at once (a dry run parses the workflow only).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BASE = {
    "datasets_dir": str(REPO / "datasets"),
    "datasets": {"support2": None},
    "models": ["mlp"],
    "epsilons": [1],
    "seeds": [0],
}
#: A prepared record of support2 that says it has 70 training rows, for the δ case.
PREPARED = {"module": "support2", "params": {}, "n": {"train": 70}, "train_patients": None}

#: name -> (changes to BASE, the exact message both refuse it with; None: both accept it)
CASES = {
    "seeds_without_0": ({"seeds": [3, 4]}, None),
    "seeds_without_0_audit_off": ({"seeds": [3, 4], "evaluation": {"membership_inference": False}}, None),
    "reference_seed_not_trained": (
        {"seeds": [0, 1], "audit": {"reference_seeds": [1, 7]}},
        "audit.reference_seeds[1] = 7 is not one of seeds [0, 1]; pick seeds the benchmark trains, or leave "
        "audit.reference_seeds unset (the first seed, 0)",
    ),
    "patient_method_without_patient_ids": (
        {"methods": ["dpsgd", "dpsgd_patient"]},
        "methods[1] = 'dpsgd_patient' needs patient ids, and dataset 'support2' has none (one row per person, or "
        "the source has no ids); run record-level methods on it: datasets.support2.methods: ['dpsgd']",
    ),
    "repeated_intersection_attribute": (
        {"evaluation": {"intersections": [["sex", "sex"]]}},
        "evaluation.intersections[0] = ['sex', 'sex'] names ['sex'] more than once; an intersection combines two "
        "or more different attributes, e.g. [sex, age_group]",
    ),
    "delta_above_a_prepared_dataset": (
        {"privacy": {"delta": 0.05}},
        "privacy.delta = 0.05 but this dataset has n_train = 70: delta must lie in (0, 1/n_train) = (0, 0.0143); "
        "use 'auto' (0.001) or a smaller value (n_train from results/prepared/support2/dataset.json); nothing was run or "
        "deleted",
    ),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """name -> (config check, Snakemake dry run) of every case, each in its own working directory."""
    started = {}
    for name, (changes, _) in CASES.items():
        work = tmp_path_factory.mktemp(name)
        path = work / "benchmark.yaml"
        path.write_text(yaml.safe_dump({**BASE, **changes}))
        if name == "delta_above_a_prepared_dataset":
            (work / "results/prepared/support2").mkdir(parents=True)
            (work / "results/prepared/support2/dataset.json").write_text(json.dumps(PREPARED))
        run = dict(cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started[name] = (
            subprocess.Popen([sys.executable, "-m", "dpfair.pipeline.cli", "config", "check", str(path)], **run),
            subprocess.Popen(
                [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "-n"]
                + ["--cores", "1", "--configfile", str(path)],
                **run,
            ),
        )
    done = {}
    for name, procs in started.items():
        done[name] = tuple((*p.communicate(timeout=300), p.returncode) for p in procs)
        done[name] = tuple((rc, out, err) for out, err, rc in done[name])
    return done


@pytest.mark.parametrize("name", [n for n, (_, message) in CASES.items() if message])
def test_config_check_and_the_workflow_refuse_it_with_the_same_line(outcomes, name):
    (cli_rc, _, cli_err), (sm_rc, sm_out, sm_err) = outcomes[name]
    message = CASES[name][1]
    assert cli_rc == 2 and cli_err.strip() == f"error: {message}", cli_err
    assert "Traceback" not in cli_err
    assert sm_rc != 0 and message in (sm_out + sm_err).splitlines(), sm_out[-2000:] + sm_err[-3000:]
    assert "Job stats" not in sm_out + sm_err  # refused while parsing, before any job was planned


@pytest.mark.parametrize("name", [n for n, (_, message) in CASES.items() if not message])
def test_seeds_without_0_pass_both(outcomes, name):
    (cli_rc, cli_out, cli_err), (sm_rc, sm_out, sm_err) = outcomes[name]
    assert cli_rc == 0 and cli_err == "", cli_err
    assert sm_rc == 0, sm_out[-2000:] + sm_err[-3000:]
    plan = sm_out + sm_err
    assert "results/runs/support2/mlp/dpsgd/eps-1/seed-3" in plan and "seed-0" not in plan
    if name == "seeds_without_0":  # the audit's reference seed follows the seeds: the first one
        assert "reference seeds [3]" in cli_out
        assert "results/audit/support2/mlp/dpsgd/eps-1/seed-3/models.json" in plan
    else:
        assert "audit: off" in cli_out and "audit_train" not in plan and "rule audit" not in plan
    assert "rule speed" not in plan and "speed benchmark: off" in cli_out  # no benchmark here asks for it
