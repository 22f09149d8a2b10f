"""Diff the summary tables of two result folders, timing columns aside: does a change move results?

    python tools/diff_summaries.py BEFORE_DIR AFTER_DIR

Each of ``BEFORE_DIR/results/summary/*.csv`` is compared with its namesake cell by cell, as text (so a
bit-identical float is required), leaving out the columns that time or size a job or say how the grid was cut
into jobs (names containing ``seconds``, ``rss``, ``wall``, ``overhead``, ``n_jobs`` or ``job_share``). Prints one line per table; exits 1 if any table differs or is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

# the columns that time or size a job, and how the grid was cut into jobs (execution.seeds_per_job)
TIMING = ("seconds", "rss", "wall", "overhead", "n_jobs", "job_share")


def compare(before: Path, after: Path) -> list[str]:
    """One line per summary table: identical, or what differs; differing lines start with ``DIFF``."""
    a, b = before / "results" / "summary", after / "results" / "summary"
    lines = []
    for name in sorted({p.name for p in a.glob("*.csv")} | {p.name for p in b.glob("*.csv")}):
        if not (a / name).exists() or not (b / name).exists():
            lines.append(f"DIFF {name}: only in {'before' if (a / name).exists() else 'after'}")
            continue
        x, y = (pd.read_csv(p / name, keep_default_na=False, dtype=str) for p in (a, b))
        timing = sorted(c for c in set(x.columns) | set(y.columns) if any(t in c for t in TIMING))
        x, y = x.drop(columns=timing, errors="ignore"), y.drop(columns=timing, errors="ignore")
        if list(x.columns) != list(y.columns) or x.shape != y.shape:
            lines.append(
                f"DIFF {name}: columns or shape differ ({list(x.columns)} {x.shape} vs {list(y.columns)} {y.shape})"
            )
            continue
        differ = x != y
        if differ.any().any():
            columns = list(differ.columns[differ.any()])
            lines.append(f"DIFF {name}: {int(differ.any(axis=1).sum())} of {len(x)} rows differ in {columns}")
        else:
            lines.append(f"{name}: identical ({len(x)} rows; timing columns left out: {timing})")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    lines = compare(Path(argv[0]), Path(argv[1]))
    print("\n".join(lines))
    return 1 if any(line.startswith("DIFF") for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
