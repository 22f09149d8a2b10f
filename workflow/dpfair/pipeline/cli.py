"""``dpfair`` command line: inspect dataset modules and benchmark definitions without running anything.

Commands::

    dpfair datasets list
    dpfair datasets check NAME [--param KEY=VALUE ...] [--example]
    dpfair config check benchmarks/default.yaml
    dpfair design benchmarks/default.yaml [--pilot results/summary/gap_changes.csv] [--target-mde 0.05]
    dpfair findings results [--claims]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import textwrap
from pathlib import Path

import yaml

from dpfair.errors import DpfairError


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default: the process's arguments); returns the exit status.

    Errors are printed as one line on stderr, never a traceback: status 2 for a dpfair error (bad
    config, broken dataset), 1 for anything else.
    """
    parser = argparse.ArgumentParser(prog="dpfair", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="group", required=True)
    datasets = sub.add_parser("datasets", help="dataset modules").add_subparsers(dest="command", required=True)
    ls = datasets.add_parser("list", help="list dataset modules and their cards")
    ls.add_argument("--datasets-dir", default=None, help="folder of dataset modules (default ./datasets)")
    check = datasets.add_parser(
        "check", help="load, validate (coding, leakage) and split a dataset; print its card and group sizes"
    )
    check.add_argument("name")
    check.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="loader parameter (value parsed as YAML), e.g. --param root=/data/chexpert",
    )
    check.add_argument(
        "--example",
        action="store_true",
        help="check against the tiny copy the module's make_example writes (no real data needed)",
    )
    check.add_argument("--min-group-size", type=int, default=30)
    check.add_argument("--datasets-dir", default=None)
    config = sub.add_parser("config", help="benchmark definitions").add_subparsers(dest="command", required=True)
    cfg = config.add_parser(
        "check", help="make every check the workflow makes before its first job, and print the grid"
    )
    cfg.add_argument("path")
    cfg.add_argument(
        "-d",
        "--directory",
        default=".",
        help="the workflow's working directory (snakemake -d; default here): δ and patient ids are checked against "
        "the datasets prepared there",
    )
    cfg.add_argument(
        "--no-device-check",
        action="store_true",
        help="skip the CUDA check: on a cluster's submitting host, whose jobs check on their GPU nodes",
    )
    _add_design_parser(sub)
    found = sub.add_parser("findings", help="print the findings table of a result folder (benchmarks/findings.yaml)")
    found.add_argument("path", nargs="?", default="results", help="the result folder (default ./results)")
    found.add_argument(
        "--claims",
        action="store_true",
        help="print every private cell in the DP leaderboard's claim shape (summary/leaderboard_claims.yaml) instead",
    )
    args = parser.parse_args(argv)
    try:
        if args.group == "datasets" and args.command == "list":
            return _list(args)
        if args.group == "datasets" and args.command == "check":
            return _check(args)
        if args.group == "design":
            return _design(args)
        if args.group == "findings":
            return _findings(args)
        return _config_check(args)
    except DpfairError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - anything else is still one line, never a traceback
        where = (
            f" ({args.path})"
            if getattr(args, "path", None)
            else f" (dataset {args.name!r})"
            if getattr(args, "name", None)
            else ""
        )
        print(f"error{where}: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        return 1


def _findings(args) -> int:
    import pandas as pd

    from dpfair.findings.terminal import findings_file, format_findings

    path = findings_file(args.path)
    if args.claims:
        claims = path.with_name("leaderboard_claims.yaml")
        if not claims.is_file():
            raise DpfairError(f"{claims} does not exist: the findings stage writes it beside {path.name}")
        print(claims.read_text(), end="")
        return 0
    print(format_findings(pd.read_csv(path)))
    return 0


def _one_line(message: str) -> str:
    """A multi-line message (a schema's list of problems, "- " bullets) joined onto one line; "--option" stays whole."""
    lines = (line.strip().removeprefix("- ").strip() for line in message.splitlines())
    return "; ".join(line for line in lines if line.strip("-"))


def _list(args) -> int:
    from dpfair.data import available_datasets, get_dataset

    for name in available_datasets(args.datasets_dir):
        try:
            card = get_dataset(name, args.datasets_dir).card
            print(
                f"{name:20s} {card.modality:8s} {', '.join(card.sensitive_attributes) or '-':28s} {card.outcome[:70]}"
            )
        except DpfairError as exc:
            print(f"{name:20s} BROKEN   {exc}")
    return 0


def _check(args) -> int:
    from dpfair.data import get_dataset
    from dpfair.data.contract import group_sort_key
    from dpfair.data.prepare import prepare_dataset

    logging.getLogger("dpfair").setLevel(logging.ERROR)  # warnings are printed below, once
    spec = get_dataset(args.name, args.datasets_dir)
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise DpfairError(f"--param {item!r}: write KEY=VALUE")
        params[key] = yaml.safe_load(value)
    with tempfile.TemporaryDirectory() as tmp:
        if args.example:
            if spec.make_example is None:
                raise DpfairError(f"{spec.path} defines no make_example(root); run without --example")
            params = {**spec.make_example(Path(tmp)), **params}
        prepared = prepare_dataset(
            name=args.name,
            params=params,
            min_group_size=args.min_group_size,
            datasets_dir=args.datasets_dir,
            # the shipped example files are a handful of rows: check the format, not the split's size
            min_split_events=1 if args.example else None,
        )
    meta = prepared.meta
    card = spec.card
    print(f"{card.name}: OK ({spec.path})")
    for field in ("modality", "task", "outcome", "license", "citation", "homepage", "source"):
        print(textwrap.fill(f"{field}: {getattr(card, field)}", width=100, subsequent_indent="    "))
    print(
        f"input shape: {tuple(meta['input_shape'])}   privacy unit: {meta['privacy_unit']}   delta (auto): {meta['delta']:g}"
    )
    print(f"split: {meta['split']}")
    print("rows:       " + "   ".join(f"{s} {meta['n'][s]}" for s in ("train", "val", "test")))
    print("prevalence: " + "   ".join(f"{s} {meta['prevalence'][s]:.3f}" for s in ("train", "val", "test")))
    for attr, sizes in meta["group_sizes"].items():
        print(f"{attr} (train / val / test):")
        for group in sorted(
            sizes["train"].keys() | sizes["val"].keys() | sizes["test"].keys(), key=lambda v: group_sort_key(attr, v)
        ):
            print(f"    {group:16s} " + " / ".join(str(sizes[s].get(group, 0)) for s in ("train", "val", "test")))
    for warning in meta["warnings"]:
        print(f"warning: {warning}")
    return 0


def _config_check(args) -> int:
    """The Snakefile's checks (validate_config, then check_benchmark, as common.smk makes them), and the grid."""
    from dpfair.audit.plan import audit_is_on
    from dpfair.pipeline.benchmark import load_benchmark
    from dpfair.pipeline.preflight import PREPARED_META, check_benchmark

    benchmark = load_benchmark(args.path)
    workdir = Path(args.directory)
    check_benchmark(
        benchmark,
        meta_path=lambda name: workdir / PREPARED_META.format(dataset=name),
        check_cuda=not args.no_device_check,
    )
    config = benchmark.config
    print(f"{args.path}: OK, benchmark {benchmark.name!r}")
    for dataset, model in benchmark.cells():
        print(
            f"    {dataset} x {model}: epsilons {benchmark.epsilons}, seeds {benchmark.seeds}, {benchmark.training(dataset)}"
        )
    print(f"{len(benchmark.runs())} training runs")
    audit = config["audit"]
    print(
        f"audit: {audit['attacks']}, reference seeds {audit['reference_seeds']}"
        if audit_is_on(config)
        else "audit: off"
    )
    print(f"speed benchmark: {'on' if config['speed']['enabled'] else 'off (make bench runs it)'}")
    print(json.dumps({k: benchmark.config[k] for k in ("privacy", "split", "evaluation")}))
    return 0


def _add_design_parser(sub) -> None:
    """The ``design`` subcommand's options (:func:`dpfair.pipeline.design.design_benchmark`'s arguments)."""
    design = sub.add_parser(
        "design",
        help="size a benchmark: each primary row's MDE at its seeds and test rows, and the seeds a target MDE needs",
        description="For each primary row (every finite epsilon against inf of the dataset's primary method, metric "
        "and attributes, each model), the MDE at the stated power for the benchmark's seeds and test rows, and "
        "the seeds needed for --target-mde, from a pilot's variance components (gap_changes.csv) or, without "
        "one, from stated assumptions (docs/design.md).",
    )
    design.add_argument("path", help="benchmark definition, e.g. benchmarks/default.yaml")
    design.add_argument(
        "--pilot",
        default=None,
        help="a pilot run's gap_changes.csv (default results/summary/gap_changes.csv when it exists); its "
        "subgroups.csv beside it gives the pilot's test rows and group sizes",
    )
    design.add_argument(
        "--no-pilot",
        action="store_true",
        help="ignore the pilot's variances: stated assumptions only (its subgroups.csv still gives the test rows "
        "and group sizes)",
    )
    design.add_argument("--target-mde", type=float, default=0.05, help="MDE to size the seeds for (default 0.05)")
    design.add_argument("--seeds", type=int, default=None, help="seeds per arm (default: the benchmark's seeds)")
    design.add_argument(
        "--test-rows",
        action="append",
        default=[],
        metavar="DATASET=N",
        help="test rows of a dataset (default: the pilot's subgroups.csv, the prepared dataset, or its size "
        "times split.test_fraction)",
    )
    for flag, help_text in _ASSUMPTION_OPTIONS.items():
        design.add_argument(flag, type=float, default=None, help=help_text)
    design.add_argument(
        "-d", "--directory", default=".", help="working directory of the results/ folder (default here)"
    )


#: The stated assumptions of rows without a pilot (dpfair.tables.design.Assumptions, whose defaults apply).
_ASSUMPTION_OPTIONS = {
    "--seed-sd": "assumed seed sd of one seed's gap change, rows without a pilot (default 0.02)",
    "--test-correlation": "assumed correlation of two seeds' test errors, c = rho * v, rows without a pilot "
    "(default 0.5)",
    "--auroc": "assumed AUROC of every group for the Hanley-McNeil variance (default 0.8)",
    "--prevalence": "assumed prevalence when the groups' sizes are unknown (default 0.3)",
}


def _design(args) -> int:
    """``dpfair design``: :func:`dpfair.pipeline.design.design_benchmark`, printed."""
    from dpfair.pipeline.design import design_benchmark
    from dpfair.tables.design import Assumptions

    given = {name: getattr(args, name) for name in ("seed_sd", "test_correlation", "auroc", "prevalence")}
    design = design_benchmark(
        args.path,
        pilot=args.pilot,
        no_pilot=args.no_pilot,
        target_mde=args.target_mde,
        seeds=args.seeds,
        test_rows=args.test_rows,
        assumptions=Assumptions(**{k: v for k, v in given.items() if v is not None}),
        directory=args.directory,
    )
    print(design.text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
