"""What the workflow runs: the benchmark definition, one run as files, what finished, checks before the first job, the CLI."""

from dpfair.faces import lazy_face

__all__, __getattr__, __dir__ = lazy_face(
    __name__,
    {
        "Benchmark": "benchmark",
        "load_benchmark": "benchmark",
        "validate_config": "benchmark",
        "load_yaml": "benchmark",
        "train_run": "runner",
        "train_runs": "runner",
        "evaluate_run": "evaluation",
        "evaluate_runs": "evaluation",
        "run_status": "outcome",
        "report_what_exists": "outcome",
        "main": "cli",
    },
)
