"""tools/diff_summaries.py: timing columns aside, one changed digit is a difference."""

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "diff_summaries.py"


def write(root: Path, auroc: str, seconds: str) -> Path:
    summary = root / "results" / "summary"
    summary.mkdir(parents=True)
    (summary / "metrics.csv").write_text(f"dataset,auroc,train_seconds\nd,{auroc},{seconds}\n")
    return root


def run(a: Path, b: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), str(a), str(b)], capture_output=True, text=True)


def test_timing_columns_are_left_out(tmp_path):
    out = run(write(tmp_path / "a", "0.7123", "10.5"), write(tmp_path / "b", "0.7123", "99.0"))
    assert (
        out.returncode == 0
        and "metrics.csv: identical (1 rows; timing columns left out: ['train_seconds'])" in out.stdout
    )


def test_a_changed_last_digit_is_a_difference(tmp_path):
    out = run(write(tmp_path / "a", "0.7123", "10.5"), write(tmp_path / "b", "0.7124", "10.5"))
    assert out.returncode == 1 and "DIFF metrics.csv: 1 of 1 rows differ in ['auroc']" in out.stdout
