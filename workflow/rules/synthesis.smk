# DP synthetic data (methods synth_aim, synth_mst; dpfair.synthesis): per dataset, its training rows as codes
# of a public domain and each epsilon's zCDP budget (synthesis_plan, main environment); per run, one
# synthesizer release (synthesize, in .venv-synth: smartnoise-synth pins Opacus 0.14 and mbi 1, which cannot
# share the main environment); the train rule of a synthesis method reads its runs' releases
# (get_synthetic_inputs), and synthesis_fidelity compares the synthetic rows' marginals with the real ones.
if SYNTH_METHODS:

    rule synthesis_plan:
        input:
            data=rules.prepare_dataset.output.data,
            samples=rules.prepare_dataset.output.samples,
            meta=rules.prepare_dataset.output.meta,
        output:
            table=f"{SYNTH_DIR}/train_codes.npz",
            plan=f"{SYNTH_DIR}/plan.json",
        log:
            "results/logs/synthesis_plan/{dataset}.log",
        wildcard_constraints:
            dataset="|".join(map(re.escape, SYNTH_DATASETS)),
        params:
            epsilons=get_synthesis_epsilons,
            n_bins=lambda wildcards: BENCHMARK.synthesis(wildcards.dataset)["n_bins"],
        script:
            "../scripts/synthesis_plan.py"

    rule synthesize:
        input:
            table=rules.synthesis_plan.output.table,
            plan=rules.synthesis_plan.output.plan,
        output:
            codes=f"{SYNTH_RUN_DIR}/codes.npz",
            noise=f"{SYNTH_RUN_DIR}/noise.json",
        log:
            "results/logs/synthesize/{dataset}/{method}/eps-{epsilon}/seed-{seed}.log",
        benchmark:
            "results/benchmarks/synthesize/{dataset}/{method}/eps-{epsilon}/seed-{seed}.tsv"
        wildcard_constraints:
            dataset="|".join(map(re.escape, SYNTH_DATASETS)),
            method="|".join(SYNTH_METHODS),
            epsilon=r"(?!inf$)[^/]+",
        threads: 1
        params:
            python=SYNTH_PYTHON,
            script=workflow.source_path("../scripts/synthesize.py"),
            synthesizer=lambda wildcards: synthesizer_of(wildcards.method),
            rounds_per_column=lambda wildcards: BENCHMARK.synthesis(wildcards.dataset)["aim_rounds_per_column"],
        shell:
            "{params.python} {params.script} --table {input.table} --plan {input.plan} --epsilon {wildcards.epsilon}"
            " --method {params.synthesizer} --rounds-per-column {params.rounds_per_column}"
            " --seed-key {wildcards.dataset}/{wildcards.method}/eps-{wildcards.epsilon}/seed-{wildcards.seed}"
            " --out-codes {output.codes} --out-log {output.noise} > {log} 2>&1"

    rule synthesis_fidelity:
        input:
            plans=expand(f"{SYNTH_DIR}/plan.json", dataset=SYNTH_DATASETS),
            tables=expand(f"{SYNTH_DIR}/train_codes.npz", dataset=SYNTH_DATASETS),
            releases=get_synthetic_releases(),
        output:
            table="results/summary/synthesis_fidelity.csv",
        log:
            "results/logs/synthesis_fidelity.log",
        params:
            runs=get_synthetic_runs(),
        script:
            "../scripts/synthesis_fidelity.py"
