"""Logging for rule scripts: everything (our log lines, library warnings, tracebacks) goes to the job's log."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def log_to_file(path: str | Path, *, level: int = logging.INFO) -> None:
    """Send logging, warnings and stderr to ``path`` (Snakemake's ``log:``), one line per record."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "a", buffering=1)
    sys.stderr = stream
    logging.basicConfig(
        level=level, stream=stream, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.captureWarnings(True)
