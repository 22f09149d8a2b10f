import os
import re
import sys
from dataclasses import asdict
from types import SimpleNamespace

# Two torch jobs side by side collapse under libgomp's default spin-wait (0.015 s -> 0.60 s per step
# measured on 2 cores); passive waiting costs nothing solo. Jobs inherit this environment.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path

from snakemake.exceptions import WorkflowError

from dpfair.jobs import group_label
from dpfair.pipeline.benchmark import load_yaml, validate_config
from dpfair.data.registry import datasets_dir

DEFAULT_BENCHMARK = Path(workflow.basedir) / "benchmarks" / "default.yaml"

if not config:
    config.update(load_yaml(DEFAULT_BENCHMARK))
for _configfile in workflow.configfiles:  # Snakemake keeps the last of a key written twice; refuse it instead
    load_yaml(_configfile)

# a relative datasets_dir is relative to the workflow's folder, so `snakemake -d elsewhere` finds datasets/
if not Path(config.get("datasets_dir", "datasets")).is_absolute():
    config["datasets_dir"] = str(Path(workflow.basedir) / config.get("datasets_dir", "datasets"))

BENCHMARK = validate_config(config)
DATASETS_DIR = str(datasets_dir(config["datasets_dir"]))

RUN_DIR = "results/runs/{dataset}/{model}/{method}/eps-{epsilon}/seed-{seed}"
CELL_STEM = "{dataset}/{model}/{method}/eps-{epsilon}"
PREPARED_DIR = "results/prepared/{dataset}"
# the seeds each train and evaluate job runs (execution.seeds_per_job; dpfair.jobs.SeedGroup), and their ε
# (execution.epsilons_per_job; dpfair.jobs.JobGroup)
SEED_GROUPS = BENCHMARK.seed_groups()
JOB_GROUPS = BENCHMARK.job_groups()
METHOD_STEM = "{dataset}/{model}/{method}"
TRAIN_FILES = {"model": "model.pt", "scores": "scores.csv", "record": "run.json", "card": "privacy_card.json"}
EVALUATION_FILES = {
    "metrics": "metrics.csv",
    "subgroups": "subgroups.csv",
    "gaps": "gaps.csv",
    "replicates": "gap_replicates.csv.gz",
    "reliability": "reliability.csv",
}


wildcard_constraints:
    dataset="|".join(map(re.escape, BENCHMARK.datasets)),
    model="|".join(map(re.escape, sorted({m for _, m in BENCHMARK.cells()}))),
    method="|".join(map(re.escape, BENCHMARK.methods)),
    epsilon="|".join(map(re.escape, BENCHMARK.epsilons)),
    seed=r"\d+",


def group_outputs(group, folder, files):
    """A job's files, named ``<name>_<i>`` for the job's i-th run (the rule script pairs them by i).

    ``group`` is a dpfair.jobs.JobGroup (runs by ε, then seed) or a SeedGroup (the seeds of one cell); ``folder``
    is a per-run folder pattern with ``{epsilon}`` and ``{seed}``; what the job does not fix stays a wildcard.
    """
    runs = group.patterns() if hasattr(group, "patterns") else [("{epsilon}", s) for s in group_seeds(group)]
    return {
        f"{name}_{i}": f"{folder.replace('{epsilon}', e).replace('{seed}', s)}/{file}"
        for i, (e, s) in enumerate(runs)
        for name, file in files.items()
    }


def group_seeds(group):
    return ["{seed}"] if group.seeds is None else [str(s) for s in group.seeds]


def job_log(stage, label, stem=CELL_STEM):
    """The log pattern of a ``stage`` job labelled ``label`` inside ``stem`` (a cell's, or a JobGroup's in METHOD_STEM)."""
    return f"results/logs/{stage}/{stem}/{label}.log"


def job_benchmark(stage, label, stem=CELL_STEM):
    """The Snakemake benchmark-record pattern of such a job (dpfair.tables.compute_cost reads its path)."""
    return f"results/benchmarks/{stage}/{stem}/{label}.tsv"


def job_label(seed, groups=None):
    """The seed label of the audit_train job that trains ``seed`` (dpfair.jobs.SeedGroup.label)."""
    return group_label(seed, SEED_GROUPS if groups is None else groups)


def run_job_label(run):
    """``<ε label>/<seed label>`` of the train and evaluate job that runs ``run``, filled, inside its METHOD_STEM."""
    for job in JOB_GROUPS:
        group = job.epsilons
        if group.epsilons is None or (
            run.epsilon in group.epsilons and run.dataset in group.datasets and run.method in group.methods
        ):
            return f"{group.label.format(epsilon=run.epsilon)}/{job_label(run.seed)}"
    raise KeyError(f"run {run} is in no job's epsilons")


def run_job_path(kind, stage, run):
    """The log (kind ``log``) or benchmark record (``benchmark``) of the ``stage`` job that ran ``run``."""
    pattern = job_log if kind == "log" else job_benchmark
    return pattern(stage, run_job_label(run), stem=METHOD_STEM).format(**asdict(run))


def run_preflight_checks():
    """Refuse before any job what would otherwise fail inside one: dpfair.pipeline.preflight.check_benchmark,
    the same checks `dpfair config check` makes after validate_config."""
    from dpfair.pipeline.preflight import check_benchmark

    check_benchmark(
        BENCHMARK,
        meta_path=get_prepared_meta,
        # a cluster job's submitting process has checked the data already
        load_data=not workflow.remote_exec,
        # the submitting host of a cluster may have no GPU; its jobs check on their node (remote execution)
        check_cuda=workflow.local_exec or workflow.remote_exec,
    )


def get_prepared_meta(dataset):
    """The prepared dataset.json of one dataset."""
    return Path(PREPARED_DIR.format(dataset=dataset), "dataset.json")


def get_final_output():
    return ["report/index.html"]


def get_run_outputs(name):
    """One path per run of the grid, e.g. every run's metrics.csv."""
    return [f"results/runs/{r.path}/{name}" for r in BENCHMARK.runs()]


def get_dataset_meta():
    return expand(f"{PREPARED_DIR}/dataset.json", dataset=BENCHMARK.datasets)


def get_prepare_settings(wildcards):
    split = BENCHMARK.split(wildcards.dataset)
    return {
        "module": BENCHMARK.module(wildcards.dataset),
        "params": BENCHMARK.dataset_settings(wildcards.dataset).get("params", {}),
        "val_fraction": split["val_fraction"],
        "test_fraction": split["test_fraction"],
        "split_seed": split["seed"],
        "delta": BENCHMARK.privacy(wildcards.dataset)["delta"],
        "min_group_size": config["evaluation"]["min_group_size"],
        "datasets_dir": DATASETS_DIR,
    }


def get_dataset_module_file(wildcards):
    """The dataset module's file: an input of its preparation, so editing it re-prepares the dataset."""
    return str(Path(DATASETS_DIR) / f"{BENCHMARK.module(wildcards.dataset)}.py")


def get_training_config(wildcards):
    """The run's training params; a tuned arm (m-tuned) also carries the dataset's ``tuning`` block, which
    :func:`dpfair.pipeline.runner.train_run` hands to the tuning procedure (other runs' params stay as they were, so
    enabling tuning retrains nothing that exists)."""
    params = BENCHMARK.training(wildcards.dataset).params()
    base, tuned = split_method(wildcards.method)
    if tuned:
        params["tuning"] = BENCHMARK.tuning(wildcards.dataset)
    if get_mechanism(base).federated:  # a federated method's runs are Flower simulations of this schedule
        params["federated"] = BENCHMARK.federated(wildcards.dataset)
    return params


def get_public_weights(wildcards):
    """The dataset's ``training.init_weights`` (public weights its runs start from), or nothing."""
    path = BENCHMARK.training(wildcards.dataset).init_weights
    return [path] if path else []


def get_comparison_attributes():
    """Per dataset that runs dpsgd beside a method the comparison sets against it, the attribute compared:
    a fairness mitigation's target (``mitigation.attribute``), else for a federated method the dataset's site
    attribute (the federation's partition)."""
    from dpfair.data.registry import get_dataset
    from dpfair.training.mechanisms import get_mechanism

    out = {}
    for dataset in BENCHMARK.datasets:
        methods = BENCHMARK.methods_for(dataset)
        if "dpsgd" not in methods:
            continue
        mechanisms = [get_mechanism(split_method(m)[0]) for m in methods]
        if any(m.targets_attribute for m in mechanisms):
            out[dataset] = BENCHMARK.mitigation(dataset).get("attribute")
        elif any(m.federated for m in mechanisms):
            out[dataset] = get_dataset(BENCHMARK.module(dataset), DATASETS_DIR).card.site_attribute
    return out


def get_report_settings():
    """The parts of the benchmark definition the report's header describes."""
    keys = ("name", "description", "epsilons", "seeds", "models", "split", "evaluation")
    return {k: config[k] for k in keys}


def get_train_gpus(wildcards):
    """Train jobs claim a GPU when they run on CUDA, so --resources gpu=N bounds them.

    An explicit cuda device claims one without looking for a GPU here (a cluster's submit host may have
    none); 'auto' claims one when this machine has CUDA.
    """
    device = config["device"]
    if device == "auto":
        import torch

        return 1 if torch.cuda.is_available() else 0
    return 1 if device.startswith("cuda") else 0


def get_train_gpu_mem_mb(wildcards):
    """A train job's claim on its card's memory (dpfair.pipeline.gpu), so profiles/gpu can run several per card."""
    from dpfair.pipeline.gpu import train_gpu_memory_mb

    if not get_train_gpus(wildcards):
        return 0
    params = BENCHMARK.dataset_settings(wildcards.dataset).get("params", {})
    claim = train_gpu_memory_mb(
        model=wildcards.model,
        batch_size=BENCHMARK.training(wildcards.dataset).batch_size,
        image_size=params.get("image_size") or params.get("size"),
    )
    # a job claiming more than the card's limit would never start: it gets the whole card instead
    limit = getattr(workflow.global_resources.get("gpu_mem_mb"), "value", workflow.global_resources.get("gpu_mem_mb"))
    return min(claim, int(limit)) if isinstance(limit, (int, float)) and limit > 0 else claim


def get_speed_table():
    """The speed benchmark's table when the config asks for it (speed.enabled), else nothing."""
    return ["results/speed.csv"] if config["speed"]["enabled"] else []


def get_run_benchmarks():
    """Snakemake's benchmark record of every train job of the grid (wall time, peak memory), each once."""
    paths = [run_job_path("benchmark", "train", r) for r in BENCHMARK.runs()]
    return list(dict.fromkeys(paths))


def get_speed_cells():
    """Each (dataset, model) cell with the batch size and clipping path its training uses."""
    cells = []
    for dataset, model in BENCHMARK.cells():
        training = BENCHMARK.training(dataset)
        cells.append(
            {
                "dataset": dataset,
                "model": model,
                "batch_size": training.batch_size,
                "clipping_backend": training.clipping_backend,
            }
        )
    return cells


def get_speed_threads():
    """Every local core: timings taken beside other jobs would measure the contention, not the path.

    Cluster executors may run without --cores; there the job gets its own node and the profile's
    set-threads decides.
    """
    try:
        return workflow.cores
    except WorkflowError:
        return 1


# --- audit stage (workflow/rules/audit.smk) ------------------------------------------------------------
from dpfair.audit.plan import audit_plan  # noqa: E402
from dpfair.training.tuning.names import split_method  # noqa: E402

AUDIT = audit_plan(
    config,
    seeds=BENCHMARK.seeds,
    epsilons=BENCHMARK.epsilons,
    # a tuned arm (m-tuned) is not audited on its own: its reference and canary models would need the
    # tuning rerun per model; the audit of m (same mechanism, fixed recipe) stands for the mechanism
    cells=[
        (d, m, meth) for d, m in BENCHMARK.cells() for meth in BENCHMARK.methods_for(d) if not split_method(meth)[1]
    ],
)
# audit only the (dataset, model, method, ε) cells the grid trains (mitigations share dpsgd's ε = ∞ arm)
_TRAINED_CELLS = {(r.dataset, r.model, r.method, r.epsilon) for r in BENCHMARK.runs()}
AUDIT.cells = [c for c in AUDIT.cells if (c["dataset"], c["model"], c["method"], c["epsilon"]) in _TRAINED_CELLS]
AUDIT_DIR = "results/audit/{dataset}/{model}/{method}/eps-{epsilon}"
AUDIT_SEED_GROUPS = BENCHMARK.seed_groups(AUDIT.trained_seeds)


def get_audit_settings():
    return AUDIT.settings


def get_audit_tables(name):
    """Every audited cell's table ``name`` (audit.csv, roc.csv)."""
    return [f"{AUDIT_DIR.format(**c)}/{name}" for c in AUDIT.cells]


def get_audit_run_inputs(wildcards):
    """The cell's runs (one per seed) and, on the reference seeds, what its attacks need trained."""
    runs = [RUN_DIR.format(**{**dict(wildcards), "seed": s}) for s in BENCHMARK.seeds]
    inputs = {name: [f"{r}/{name}" for r in runs] for name in ("scores.csv", "run.json", "privacy_card.json")}
    cell = AUDIT_DIR.format(**dict(wildcards))
    inputs["trained"] = [f"{cell}/seed-{s}/{f}" for s in AUDIT.trained_seeds for f in AUDIT.trained_files]
    return inputs


def get_audit_training_config(wildcards):
    return {"training": BENCHMARK.training(wildcards.dataset).params(), **AUDIT.training_settings}


def get_preparation_entry(dataset):
    """A dataset's preparation as a dpfair.pipeline.outcome entry: its files, its log, its module (stale when newer)."""
    wildcards = SimpleNamespace(dataset=dataset)
    return {
        "label": f"prepare: {dataset}",
        "outputs": [str(p).format(dataset=dataset) for p in rules.prepare_dataset.output],
        "logs": [str(rules.prepare_dataset.log[0]).format(dataset=dataset)],
        "inputs": [get_dataset_module_file(wildcards)],
    }


def get_run_definition(run):
    """The definition hash the run's run.json must record to be current (dpfair.pipeline.outcome.run_definition).

    Computed from the train rule's own params functions, as the train job hashes its params, so the two agree
    exactly when the job ran with what the workflow would give it now.
    """
    from dpfair.pipeline.outcome import run_definition

    wildcards = SimpleNamespace(**asdict(run))
    return run_definition(
        dataset=run.dataset,
        module_name=BENCHMARK.module(run.dataset),
        module_file=get_dataset_module_file(wildcards),
        params=BENCHMARK.dataset_settings(run.dataset).get("params", {}),
        training=get_training_config(wildcards),
        model=run.model,
        method=run.method,
        epsilon=run.epsilon,
        seed=run.seed,
    )


def get_run_entries():
    """Every run of the grid with its files and its jobs' logs, for dpfair.pipeline.outcome (what finished, what failed).

    Paths come from the rules' own patterns, so they follow any change of the run folder layout. Each entry
    names its preparation and the definition hash its run.json must record, so a run left from an earlier
    definition (whose preparation failed or whose settings changed) is stale, not finished.
    """

    def fill(pattern, values):
        return str(pattern).format(**values)

    entries = []
    for run in BENCHMARK.runs():
        values = asdict(run)
        run_dir = fill(RUN_DIR, values)
        tables = {name: f"{run_dir}/{EVALUATION_FILES[name]}" for name in EVALUATION_FILES}
        tables.update(
            record=f"{run_dir}/{TRAIN_FILES['record']}",
            card=f"{run_dir}/{TRAIN_FILES['card']}",
            benchmark=run_job_path("benchmark", "train", run),
        )
        entries.append(
            {
                "label": run_dir.removeprefix("results/runs/"),
                "outputs": [
                    tables[name] for name in ("metrics", "subgroups", "gaps", "replicates", "reliability", "card")
                ],
                "logs": [
                    fill(rules.prepare_dataset.log[0], values),
                    run_job_path("log", "train", run),
                    run_job_path("log", "evaluate", run),
                ],
                "tables": tables,
                "preparation": get_preparation_entry(run.dataset),
                "record": tables["record"],
                "definition": get_run_definition(run),
            }
        )
    return entries


def get_audit_entries():
    """Every audited cell as a dpfair.pipeline.outcome entry (its audit table; its audit-training and audit logs)."""
    entries = []
    for cell in AUDIT.cells:
        labels = dict.fromkeys(job_label(s, AUDIT_SEED_GROUPS) for s in AUDIT.trained_seeds)
        entries.append(
            {
                "label": f"audit: {AUDIT_DIR.format(**cell).removeprefix('results/audit/')}",
                "outputs": [f"{AUDIT_DIR.format(**cell)}/audit.csv"],
                "logs": [
                    *(job_log("audit_train", label).format(**cell) for label in labels),
                    str(rules.audit.log[0]).format(**cell),
                ],
                # made from the cell's runs: stale when one of them is gone or newer, or the preparation is
                "inputs": get_audit_run_inputs(cell)["run.json"],
                "preparation": get_preparation_entry(cell["dataset"]),
            }
        )
    return entries


def report_what_exists():
    """onerror: summary and report from the runs that finished, listing what failed (dpfair.pipeline.outcome)."""
    from dpfair.pipeline.outcome import report_what_exists as render, status_line
    from dpfair.tables.summary import statistics_options

    status = render(
        runs=get_run_entries(),
        dataset_meta=get_dataset_meta(),
        benchmark=get_report_settings(),
        summary=dict(rules.aggregate.output.items()),
        output=rules.report.output.html,
        level=config["evaluation"]["ci_level"],
        statistics=statistics_options(config),
        speed=get_speed_table()[0] if get_speed_table() else None,
        stages=get_audit_entries(),
    )
    print(status_line(status, rules.report.output.html), file=sys.stderr)


run_preflight_checks()


# DP synthesis (workflow/rules/synthesis.smk; dpfair.synthesis): the methods that train on a synthetic release,
# the datasets that run one, and the interpreter of the environment the synthesizers run in.
from dpfair.synthesis.release import SYNTH_DIR, SYNTH_RUN_DIR, release_files, synth_python  # noqa: E402
from dpfair.training.mechanisms import get_mechanism  # noqa: E402


def synthesizer_of(method):
    """The synthesizer a method trains on the release of (``aim``, ``mst``), or None."""
    return get_mechanism(split_method(method)[0]).synthesizes


SYNTH_METHODS = [m for m in BENCHMARK.methods if synthesizer_of(m)]
SYNTH_DATASETS = [d for d in BENCHMARK.datasets if any(synthesizer_of(m) for m in BENCHMARK.methods_for(d))]
SYNTH_PYTHON = synth_python(workflow.basedir) if SYNTH_METHODS else None


def get_synthesis_epsilons(wildcards):
    """The finite ε a dataset's synthesis methods run at: its plan holds a budget for each."""
    return [e for e in BENCHMARK.epsilons if e != "inf"]


def synthetic_run_files(run):
    """The release files of one synthesis run (a dpfair.pipeline.benchmark.Run)."""
    files = release_files(dataset=run.dataset, method=run.method, epsilon=run.epsilon, seed=run.seed)
    return [files["codes"], files["log"]]


def get_synthetic_runs():
    """The grid's synthesis runs at finite ε, one (dataset, method, ε, seed) each (a model shares its release)."""
    runs = [(r.dataset, r.method, r.epsilon, r.seed) for r in BENCHMARK.runs() if synthesizer_of(r.method)]
    return [{"dataset": d, "method": m, "epsilon": e, "seed": s} for d, m, e, s in dict.fromkeys(runs) if e != "inf"]


def get_synthetic_releases():
    """Every synthesis run's release files."""
    return [f for run in get_synthetic_runs() for f in synthetic_run_files(SimpleNamespace(**run))]


def get_synthetic_inputs(job):
    """A train job's synthetic releases (none for a method that trains on the real rows)."""

    def inputs(wildcards):
        if not synthesizer_of(wildcards.method):
            return []
        values = dict(wildcards.items())
        out = []
        for e, s in job.patterns():
            e, s = e.format(**values), s.format(**values)
            if e != "inf":
                out += synthetic_run_files(
                    SimpleNamespace(dataset=wildcards.dataset, method=wildcards.method, epsilon=e, seed=s)
                )
        return out

    return inputs


# the findings stage's settings, each dataset's model and attribute resolved (None: the benchmark does not pool)
FINDINGS = BENCHMARK.findings()


def get_reference_scores():
    """Every ε = ∞ run's scores.csv (the findings orient each gap on their validation rows)."""
    return [f"results/runs/{r.path}/scores.csv" for r in BENCHMARK.runs() if r.epsilon == "inf"]


def get_findings_table():
    """The findings table, where the benchmark pools its datasets (an input of the report)."""
    return ["results/summary/findings.csv"] if FINDINGS else []


def get_synthesis_fidelity():
    """The fidelity table, where the grid runs a synthesis method (an input of the report)."""
    return ["results/summary/synthesis_fidelity.csv"] if SYNTH_METHODS else []
