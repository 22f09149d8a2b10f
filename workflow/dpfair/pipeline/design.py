"""``dpfair design``: a benchmark's primary rows sized from a pilot run or stated assumptions.

Reads the benchmark (:func:`~dpfair.pipeline.benchmark.load_benchmark`: the schema, which declares
``datasets.<d>.primary`` and ``evaluation.alpha``/``power``/``equivalence_margin``, and the primary family's
checks), its primary family per dataset (:func:`~dpfair.fairness.gap_changes.primary_families`, the same
family ``gap_changes`` tests), a pilot's ``gap_changes.csv`` and the ``subgroups.csv`` beside it, and each
dataset's test rows; :mod:`dpfair.tables.design` does the arithmetic and the text (docs/design.md).
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dpfair.errors import ConfigError
from dpfair.fairness.gap_changes import primary_families
from dpfair.pipeline.benchmark import Benchmark, load_benchmark
from dpfair.privacy.params import parse_epsilon
from dpfair.tables import design as sizing

#: Where a pilot is looked for (below the working directory) when none is given.
DEFAULT_PILOT = "results/summary/gap_changes.csv"
SUBGROUP_COLUMNS = ["dataset", "attribute", "group", "n"]


@dataclass(frozen=True)
class Design:
    """A sized benchmark: the :func:`~dpfair.tables.design.design_table` and its text."""

    table: pd.DataFrame
    text: str


def design_benchmark(
    path: str | Path,
    *,
    pilot: str | Path | None = None,
    no_pilot: bool = False,
    target_mde: float = 0.05,
    seeds: int | None = None,
    test_rows: Sequence[str] = (),
    assumptions: sizing.Assumptions | None = None,
    directory: str | Path = ".",
) -> Design:
    """Size the benchmark at ``path``: each primary row's se and MDE, and the seeds ``target_mde`` needs.

    Args:
        path: the benchmark YAML.
        pilot: a pilot's gap_changes.csv (default :data:`DEFAULT_PILOT` below ``directory`` when it exists);
            the subgroups.csv beside it gives the pilot's test rows and group sizes.
        no_pilot: ignore the pilot's variances (its subgroups.csv is still read).
        target_mde: the MDE to size for (AUROC units; squared for a τ² row).
        seeds: the design's seeds per arm (default the benchmark's).
        test_rows: ``DATASET=N`` items, the design's test rows of those datasets.
        assumptions: the stated values of rows without a pilot (default :class:`~dpfair.tables.design.Assumptions`).
        directory: the working directory whose ``results/`` is read.

    Raises:
        ConfigError: a bad benchmark, option, pilot or subgroups table (one line; the CLI exits 2).
    """
    assumptions = assumptions or sizing.Assumptions()
    _check_options(target_mde, seeds, assumptions)
    benchmark = load_benchmark(path)
    evaluation = benchmark.config["evaluation"]
    alpha, power, margin = (float(evaluation[k]) for k in ("alpha", "power", "equivalence_margin"))
    workdir = Path(directory)
    pilot_table, pilot_path = _read_pilot(pilot, no_pilot=no_pilot, workdir=workdir)
    summary = Path(pilot).parent if pilot else workdir / Path(DEFAULT_PILOT).parent
    subgroups_path = summary / "subgroups.csv"
    subgroups = _read_subgroups(subgroups_path, benchmark.datasets)

    rows, notes = primary_rows(benchmark)
    overrides = parse_test_rows(test_rows, benchmark.datasets)
    sg_rows, groups = {}, {}
    if subgroups is not None and not subgroups.empty:
        sg_rows = sizing.pilot_test_rows(subgroups)
        groups = sizing.group_sizes_from_subgroups(
            subgroups, source=str(subgroups_path), min_class_size=int(evaluation["min_class_size"])
        )
        notes.append(f"test rows of {', '.join(sg_rows)} (one run's groups summed) and group sizes: {subgroups_path}")
    design_rows, pilot_rows = _test_rows(
        benchmark, overrides, sg_rows, groups, workdir=workdir, has_pilot=pilot_table is not None, notes=notes
    )
    k = seeds if seeds is not None else len(benchmark.seeds)
    table = sizing.design_table(
        primary_rows=rows,
        pilot=pilot_table,
        seeds=k,
        test_rows=design_rows,
        pilot_test_rows=pilot_rows,
        groups=groups,
        assumptions=assumptions,
        alpha=alpha,
        power=power,
        target_mde=target_mde,
        margin=margin,
    )
    header = [
        f"design of benchmark {benchmark.name!r} ({path}): {k} seeds per arm"
        + (" (--seeds)" if seeds is not None else ""),
        f"pilot: {pilot_path} ({_pilot_seeds(pilot_table)})"
        if pilot_table is not None
        else "pilot: none (stated assumptions)",
        f"MDE at {100 * power:g}% power, two-sided alpha {alpha:g} (a primary row at alpha/m: Holm's first step); "
        f"target MDE {target_mde:g}; equivalence margin {margin:g}",
    ]
    text = sizing.render(
        table, header=header, assumptions_text=_assumptions_text(table, assumptions), sources=notes, power=power
    )
    return Design(table=table, text=text)


def primary_rows(benchmark: Benchmark) -> tuple[pd.DataFrame, list[str]]:
    """The rows of each dataset's primary family, as ``gap_changes`` forms it, and notes on datasets left out.

    The family is :func:`~dpfair.fairness.gap_changes.primary_families` of the benchmark's datasets
    (checked by :func:`~dpfair.pipeline.benchmark.validate_config`): its method and metric, each model of
    the dataset, each of its attributes (None: every single sensitive attribute of the dataset, not
    intersections) and each finite ε against ∞. A dataset that does not run the family's method has no
    primary rows (as in its gap_changes).
    """
    from dpfair.data import get_dataset

    finite = [e for e in benchmark.epsilons if e != "inf"]
    if "inf" not in benchmark.epsilons or not finite:
        raise ConfigError(
            f"epsilons: {benchmark.epsilons} has no finite epsilon against inf; a gap change needs both (add inf)"
        )
    rows, notes = [], []
    for dataset, family in primary_families(benchmark.config["datasets"]).items():
        methods = benchmark.methods_for(dataset)
        if family.method not in methods:
            notes.append(f"{dataset}: runs no {family.method} (methods {methods}): no primary rows")
            continue
        attributes = family.attributes
        if attributes is None:
            card = get_dataset(benchmark.module(dataset), benchmark.config["datasets_dir"]).card
            attributes = card.sensitive_attributes
        rows += [
            {"dataset": dataset, "model": model, "method": family.method, "attribute": attribute,
             "metric": family.metric, "epsilon": parse_epsilon(eps)}
            for model in benchmark.models_for(dataset) for attribute in attributes for eps in finite
        ]  # fmt: skip
    return pd.DataFrame(rows, columns=sizing.ROW_KEYS), notes


def parse_test_rows(items: Sequence[str], datasets: Sequence[str]) -> dict[str, int]:
    """``DATASET=N`` items as {dataset: N}; an unknown dataset or an N below 2 is a ConfigError."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in datasets:
            raise ConfigError(f"--test-rows {item!r}: write DATASET=N with DATASET one of {list(datasets)}")
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 2:
            raise ConfigError(f"--test-rows {item!r}: N is a whole number of test rows, at least 2")
        out[name] = n
    return out


def own_test_rows(benchmark: Benchmark, dataset: str, workdir: Path, groups: dict) -> tuple[int | None, str]:
    """The dataset's test rows without a subgroups table, and where they come from.

    Its prepared ``dataset.json`` below ``workdir``, else its size (``params.n_samples``, or the loader's
    default) × ``split.test_fraction``. Fills ``groups[dataset]`` from the prepared meta's group sizes when
    it has none.
    """
    from dpfair.data import get_dataset
    from dpfair.pipeline.preflight import PREPARED_META

    evaluation = benchmark.config["evaluation"]
    meta_path = workdir / PREPARED_META.format(dataset=dataset)
    if meta_path.is_file():
        sizes = sizing.group_sizes_from_meta(
            json.loads(meta_path.read_text()),
            min_group_size=int(evaluation["min_group_size"]),
            min_class_size=int(evaluation["min_class_size"]),
            source=str(meta_path),
        )
        if sizes is not None:
            groups.setdefault(dataset, sizes)
            return sizes.test_rows, str(meta_path)
    size = (benchmark.dataset_settings(dataset).get("params") or {}).get("n_samples")
    where = f"datasets.{dataset}.params.n_samples"
    if size is None:
        load = get_dataset(benchmark.module(dataset), benchmark.config["datasets_dir"]).load
        parameter = inspect.signature(load).parameters.get("n_samples")
        size = parameter.default if parameter is not None else None
        where = f"the {benchmark.module(dataset)} loader's default n_samples"
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        fraction = float(benchmark.split(dataset)["test_fraction"])
        return round(size * fraction), f"{where} = {size} × split.test_fraction {fraction:g} (≈, before stratification)"
    return None, ""


def _test_rows(benchmark, overrides, sg_rows, groups, *, workdir: Path, has_pilot: bool, notes: list) -> tuple:
    """({dataset: design's test rows}, {dataset: pilot's test rows}); where they come from goes to ``notes``.

    The design's: ``--test-rows``, else the pilot's subgroups.csv, else :func:`own_test_rows`; the pilot's
    (None without a pilot): the same without ``--test-rows``.
    """
    design_rows, pilot_rows = {}, {}
    for dataset in benchmark.datasets:
        own, where = own_test_rows(benchmark, dataset, workdir, groups)
        base = sg_rows.get(dataset, own)
        if dataset not in sg_rows and own is not None:
            also = " (the pilot's too: no subgroups.csv beside it)" if has_pilot else ""
            notes.append(f"{dataset}: {own} test rows from {where}{also}")
        pilot_rows[dataset] = base if has_pilot else None
        design_rows[dataset] = overrides.get(dataset, base)
        if design_rows[dataset] is None and not has_pilot:
            raise ConfigError(
                f"datasets.{dataset}: its test rows are unknown (no subgroups.csv, no prepared dataset, no size "
                f"the module declares); pass --test-rows {dataset}=N"
            )
        if design_rows[dataset] is None:
            notes.append(f"{dataset}: test rows unknown, scaled as the pilot's; --test-rows {dataset}=N sets them")
    return design_rows, pilot_rows


def _check_options(target_mde: float, seeds: int | None, assumptions: sizing.Assumptions) -> None:
    a = assumptions
    checks = [
        ("--target-mde", target_mde, target_mde > 0, "a positive number, e.g. 0.05"),
        ("--seeds", seeds, seeds is None or seeds >= 2, "a whole number of at least 2"),
        ("--seed-sd", a.seed_sd, a.seed_sd >= 0, "a standard deviation, 0 or more"),
        ("--test-correlation", a.test_correlation, 0 <= a.test_correlation < 1, "a correlation in [0, 1)"),
        ("--auroc", a.auroc, 0.5 <= a.auroc < 1, "an AUROC in [0.5, 1)"),
        ("--prevalence", a.prevalence, 0 < a.prevalence < 1, "a share in (0, 1)"),
    ]
    for name, value, ok, fix in checks:
        if not ok:
            raise ConfigError(f"{name} {value}: give {fix}")


def _read_pilot(pilot, *, no_pilot: bool, workdir: Path) -> tuple[pd.DataFrame | None, Path | None]:
    """The pilot's gap_changes table and its path (None, None without one); it must have :data:`PILOT_COLUMNS`."""
    if no_pilot:
        return None, None
    path = Path(pilot) if pilot else workdir / DEFAULT_PILOT
    if not path.is_file():
        if pilot:
            raise ConfigError(f"--pilot {pilot}: no such file; give a gap_changes.csv, or --no-pilot")
        return None, None
    table = _read_csv(path)
    missing = [c for c in sizing.PILOT_COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(
            f"{path}: lacks columns {missing}; a pilot is a gap_changes.csv with the seed-contrast "
            "variance parts (dpfair's rewritten gap_changes), or run with --no-pilot for stated assumptions"
        )
    return table, path


def _read_subgroups(path: Path, datasets: Sequence[str]) -> pd.DataFrame | None:
    """The subgroups.csv beside the pilot, the benchmark's datasets only (None when there is none)."""
    if not path.is_file():
        return None
    table = _read_csv(path)
    missing = [c for c in SUBGROUP_COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(f"{path}: lacks columns {missing}; give a subgroups.csv of dpfair's summary")
    return table[table["dataset"].isin(datasets)]


def _assumptions_text(table: pd.DataFrame, assumptions: sizing.Assumptions) -> list[str]:
    """The stated assumptions, when some row uses them, and each assumed row's v and c."""
    assumed = table[table["source"] == "assumed"]
    if assumed.empty:
        return []
    a = assumptions
    return [
        f"rows without a pilot: each group's AUROC {a.auroc:g} (--auroc), its test variance Hanley & "
        "McNeil (Radiology 1982); a run's gap variance V = Var_A + Var_B; one seed's difference v = 2V "
        "(the two arms' test errors taken as uncorrelated); two seeds' differences share "
        f"c = {a.test_correlation:g}·v (--test-correlation); seed sd of a gap change {a.seed_sd:g} (--seed-sd); "
        f"groups of unknown size: two equal groups at prevalence {a.prevalence:g} (--prevalence)",
        *(
            f"{r['dataset']} {r['attribute']}: sd of one run's gap sqrt(V) = {math.sqrt(r['var_test'] / 2):.4f}, "
            f"v = {r['var_test']:.3g}, c = {r['cov_test']:.3g} at {r['test_rows']} test rows"
            for r in assumed.drop_duplicates(["dataset", "attribute"]).to_dict("records")
            if math.isfinite(r["var_test"])
        ),
    ]


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read it as CSV ({exc})") from exc


def _pilot_seeds(pilot: pd.DataFrame) -> str:
    seeds = sorted({int(k) for k in pilot["n_seeds"].dropna()})
    return "seeds per row: " + ", ".join(map(str, seeds)) if seeds else "no seeds"
