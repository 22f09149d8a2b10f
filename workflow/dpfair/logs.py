"""Logging for rule scripts: everything (our log lines, library warnings, tracebacks) goes to the job's log.

What a person must see while the workflow runs (a dataset's leak and coding warnings) also goes to the
terminal, through :func:`to_terminal`.
"""

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


def to_terminal(message: str) -> None:
    """Print ``message``, on one line, on the job's original stderr: the terminal Snakemake runs in.

    :func:`log_to_file` sends stderr to the job's log, where nobody looks until something fails; a
    warning that asks a person to decide something (a feature that may leak the outcome), which the
    caller has logged, is printed here as well, so it is seen when the dataset is prepared.
    """
    terminal = sys.__stderr__
    if terminal is not None and terminal is not sys.stderr:
        print(" ".join(message.split()), file=terminal, flush=True)
