"""``make run``'s guard against a stale Snakemake lock: resume after a kill with the same command.

Snakemake locks the working directory while it runs and leaves the lock behind when it is killed (kill -9,
a closed laptop, an out-of-memory kill); the next run then stops with a LockException until
``snakemake --unlock``. ``make run`` holds an OS file lock (``flock``) for as long as its Snakemake runs:
the kernel drops it when the process dies, however it dies. So when ``make run`` gets that lock and
Snakemake's lock is still there, the run that left it is dead, and the lock is stale: unlock, then run.
When another ``make run`` holds the file lock, refuse instead. (A Snakemake started by hand in the same
folder is not seen by this guard; do not run one beside ``make run``.)

    python -m dpfair.pipeline.runlock -- snakemake --cores all --configfile benchmarks/default.yaml
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

GUARD = Path(".snakemake") / "dpfair-run.flock"


def run_guarded(command: list[str], *, workdir: str | Path = ".") -> int:
    """Run ``command`` (a Snakemake command line) holding the guard; unlock a stale Snakemake lock first."""
    workdir = Path(workdir)
    guard = workdir / GUARD
    guard.parent.mkdir(parents=True, exist_ok=True)
    with open(guard, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"error: another `make run` is running in {workdir.resolve()}; wait for it to finish", file=sys.stderr
            )
            return 75
        locks = workdir / ".snakemake" / "locks"
        if locks.is_dir() and any(locks.iterdir()):
            print(
                "dpfair: removing the lock an interrupted run left behind (no other run holds it); "
                "finished runs are kept, the rest resumes",
                file=sys.stderr,
            )
            unlocked = subprocess.run([*command, "--unlock"], cwd=workdir)
            if unlocked.returncode:
                return unlocked.returncode
        return subprocess.run(command, cwd=workdir).returncode


def main(argv: list[str] | None = None) -> int:
    """Run the Snakemake command line after ``--`` under :func:`run_guarded`; returns its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("error: usage: python -m dpfair.pipeline.runlock -- snakemake ARGS...", file=sys.stderr)
        return 2
    return run_guarded(args)


if __name__ == "__main__":
    sys.exit(main())
