"""``dpfair findings``: the findings table as the terminal shows it (the report's Findings section in text)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pandas as pd

from dpfair.errors import DpfairError

SUMMARY_FILE = Path("summary") / "findings.csv"


def findings_file(results: str | Path) -> Path:
    """The findings table of a result folder (``results/``), or a dpfair error naming what to run."""
    root = Path(results)
    path = root / SUMMARY_FILE if root.is_dir() else root
    if not path.is_file():
        raise DpfairError(
            f"{path} does not exist: run a benchmark that pools its datasets, e.g. "
            "snakemake --cores 2 --configfile benchmarks/findings.yaml, then dpfair findings results"
        )
    return path


def format_findings(table: pd.DataFrame, *, width: int = 110) -> str:
    """Per finding: the claim, a row per dataset and pooled scope, then the pooled verdicts as sentences."""
    lines = []
    methods = sorted(set(";".join(table["method"].dropna().astype(str)).split(";")) - {""})
    lines.append(f"Arms read: {', '.join(methods)} (each against its own epsilon = inf arm)")
    if methods and all(not m.endswith("-tuned") for m in methods):
        lines.append("  one fixed recipe per dataset, made for non-private training: part of the cost is the recipe's")
    lines.append("")
    for finding, part in table.groupby("finding", sort=True):
        lines.append(f"Finding {int(finding)}: {part['claim'].iloc[0]}")
        header = f"  {'scope':<34} {'eps':>4} {'k':>2} {'estimate':>9} {'interval':>19} {'tau':>6}  verdict"
        lines.append(header)
        for r in part.itertuples(index=False):
            tau = f"{math.sqrt(max(r.tau2, 0.0)):.3f}" if _finite(r.tau2) else ""
            interval = f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]" if _finite(r.ci_low) else ""
            estimate = f"{r.estimate:+.3f}" if _finite(r.estimate) else "n/a"
            k = int(r.k) if _finite(r.k) else ""
            eps = "inf" if not _finite(r.epsilon) else f"{r.epsilon:g}"
            lines.append(
                f"  {str(r.scope)[:34]:<34} {eps:>4} {k!s:>2} {estimate:>9} {interval:>19} {tau:>6}  {r.verdict_class}"
            )
        for sentence in part.loc[part["kind"] != "dataset", "verdict"]:
            lines.extend(textwrap.wrap(sentence, width=width, initial_indent="  * ", subsequent_indent="    "))
        lines.append("")
    return "\n".join(lines)


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
