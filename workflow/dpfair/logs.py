"""Logging for rule scripts: everything (our log lines, library warnings, tracebacks) goes to the job's log."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path


def error_record_path(log_path: str | Path) -> Path:
    """Where a job whose log is ``log_path`` records the error it failed with (``<log>.error.json``)."""
    return Path(f"{log_path}.error.json")


def log_to_file(path: str | Path, *, level: int = logging.INFO) -> None:
    """Send logging, warnings and stderr to ``path`` (Snakemake's ``log:``), one line per record.

    An uncaught exception is also recorded as one line in ``<log>.error.json``, which the report lists
    when the run is missing (:mod:`dpfair.pipeline.outcome`); a job that starts again removes its old record.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    record = error_record_path(path)
    record.unlink(missing_ok=True)
    stream = open(path, "a", buffering=1)
    sys.stderr = stream
    logging.basicConfig(
        level=level, stream=stream, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.captureWarnings(True)

    def record_error(kind, exc, tb):
        message = " ".join(str(exc).split()) or kind.__name__
        error = message if message.startswith("error:") else f"{kind.__name__}: {message}"
        try:
            record.write_text(json.dumps({"error": error[:2000]}))
        finally:
            traceback.print_exception(kind, exc, tb, file=stream)

    sys.excepthook = record_error
