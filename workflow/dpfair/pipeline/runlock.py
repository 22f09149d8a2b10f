"""``make run``'s guard: one writer per folder, and resume after a kill with the same command.

Snakemake locks the working directory while it runs and leaves the lock behind when it is killed (kill -9,
a closed laptop, an out-of-memory kill); the next run then stops with a LockException until
``snakemake --unlock``. The lock alone cannot tell a dead run from a live one, so before it unlocks
anything the guard looks at the processes themselves (Linux ``/proc``):

1. another ``make run`` in the folder holds an OS file lock (``flock``, dropped by the kernel however its
   holder dies): refuse;
2. a Snakemake main process is alive in the folder (``snakemake`` or ``python -m snakemake`` whose
   working directory, or ``-d/--directory``, is the folder), e.g. a plain ``snakemake --configfile ...``
   started by hand: refuse, naming its PID, and leave its lock alone;
3. job processes of a killed run are still running (Snakemake's local jobs outlive a SIGKILLed Snakemake;
   a job finishing after the resume would overwrite what the resumed run wrote): stop them, SIGTERM then
   SIGKILL, and wait until they are gone. They are recognised by ``DPFAIR_RUN_DIR``, which the guard puts
   in the environment of the Snakemake it starts and which every job and its children inherit, or, for a
   Snakemake started by hand, by the shape of Snakemake's job command lines in the folder. Jobs that SLURM
   runs on this machine are not killed behind SLURM's back: the guard refuses and names their job ids;
4. only then clear a stale Snakemake lock and run.

While Snakemake runs the guard waits for it through Ctrl-C (the terminal sends it to Snakemake too, which
stops its jobs and removes its lock) and passes a SIGTERM on to it (Snakemake then lets its running jobs
finish and exits). Without ``/proc`` (not Linux) only step 1 guards the folder.

    python -m dpfair.pipeline.runlock -- snakemake --cores all --configfile benchmarks/default.yaml
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

GUARD = Path(".snakemake") / "dpfair-run.flock"
MARKER = "DPFAIR_RUN_DIR"
PROC = Path("/proc")
# a job gets this long to exit on SIGTERM, then SIGKILL; and this long to be gone after SIGKILL
TERM_GRACE_S = 3.0
KILL_WAIT_S = 10.0
BUSY = 75  # EX_TEMPFAIL: the folder is in use, try again later


@dataclass(frozen=True)
class Process:
    """One process as ``/proc`` shows it; ``start`` (clock ticks after boot) tells a reused PID apart."""

    pid: int
    ppid: int
    state: str
    start: int
    argv: tuple[str, ...]
    cwd: str | None
    run_dir: str | None
    slurm_job: str | None

    @property
    def dead(self) -> bool:
        """True for a zombie: it has exited and cannot write any more, only its parent has not reaped it."""
        return self.state in ("Z", "X", "x")


def _read(pid: int) -> Process | None:
    base = PROC / str(pid)
    try:
        stat = (base / "stat").read_text()
        argv = tuple((base / "cmdline").read_bytes().decode(errors="replace").split("\0"))
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: the fields after the last ')' are safe
    fields = stat[stat.rindex(")") + 2 :].split()
    try:
        cwd = os.readlink(base / "cwd")
    except OSError:  # another user's process, or a zombie
        cwd = None
    env = {}
    try:
        for item in (base / "environ").read_bytes().split(b"\0"):
            key, _, value = item.decode(errors="replace").partition("=")
            if key in (MARKER, "SLURM_JOB_ID"):
                env[key] = value
    except OSError:
        pass
    return Process(
        pid=pid,
        ppid=int(fields[1]),
        state=fields[0],
        start=int(fields[19]),
        argv=argv[:-1] if argv[-1:] == ("",) else argv,
        cwd=cwd,
        run_dir=env.get(MARKER),
        slurm_job=env.get("SLURM_JOB_ID"),
    )


def processes() -> dict[int, Process]:
    """Every process this user can see, by PID; empty where there is no ``/proc``.

    Returns:
        A mapping from PID to :class:`Process`; processes that exit while it is read are left out.
    """
    if not PROC.is_dir():
        return {}
    table = {}
    for name in os.listdir(PROC):
        if name.isdigit() and (process := _read(int(name))) is not None:
            table[process.pid] = process
    return table


def snakemake_args(argv: tuple[str, ...] | list[str]) -> list[str] | None:
    """Snakemake's own arguments when ``argv`` runs Snakemake, else None.

    Recognises ``snakemake ...``, ``python [options] -m snakemake ...`` and ``python /path/bin/snakemake ...``
    (how the kernel runs the console script).

    Args:
        argv: A command line, program first.

    Returns:
        The arguments after the Snakemake program, or None when ``argv`` is not Snakemake.
    """
    argv = list(argv)
    if not argv:
        return None
    if Path(argv[0]).name == "snakemake":
        return argv[1:]
    if not Path(argv[0]).name.startswith("python"):
        return None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            return argv[i + 2 :] if argv[i + 1 : i + 2] == ["snakemake"] else None
        if arg.startswith("-m"):
            return argv[i + 1 :] if arg == "-msnakemake" else None
        if arg.startswith("-c"):
            return None
        if arg in ("-W", "-X", "--check-hash-based-pycs"):
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return argv[i + 1 :] if Path(arg).name == "snakemake" else None
    return None


def _is_job(args: list[str]) -> bool:
    """True for the Snakemake that runs one job (a ``run:`` block, a cluster job), not a whole workflow."""
    for i, arg in enumerate(args):
        if arg == "--target-jobs" or arg in ("--mode=subprocess", "--mode=remote"):
            return True
        if arg == "--mode" and args[i + 1 : i + 2] in (["subprocess"], ["remote"]):
            return True
    return False


def _directories(process: Process, args: list[str]) -> set[str]:
    """The folders a Snakemake main process may be locking: its cwd, or its ``-d/--directory``."""
    given = None
    for i, arg in enumerate(args):
        if arg in ("-d", "--directory"):
            given = args[i + 1] if i + 1 < len(args) else None
        elif arg.startswith("--directory="):
            given = arg.partition("=")[2]
        elif arg.startswith("-d") and not arg.startswith("--"):
            given = arg[2:]
    if given and os.path.isabs(given):
        return {os.path.realpath(given)}
    found = {process.cwd} if process.cwd else set()
    # Snakemake changes into a relative -d soon after it starts: before, cwd/d is the folder; after, cwd is
    if given and process.cwd:
        found.add(os.path.realpath(os.path.join(process.cwd, given)))
    return found


def _is_main(process: Process) -> bool:
    args = snakemake_args(process.argv)
    return args is not None and not process.dead and not _is_job(args)


def live_snakemake(workdir: str | Path, table: dict[int, Process] | None = None) -> list[Process]:
    """The Snakemake main processes alive in ``workdir`` (not their jobs), oldest first.

    Args:
        workdir: The folder Snakemake would lock.
        table: A snapshot from :func:`processes`; read afresh when None.

    Returns:
        The live Snakemake main processes whose working directory is ``workdir``; not this process.
    """
    folder = os.path.realpath(workdir)
    table = processes() if table is None else table
    mine = _ancestry(os.getpid(), table)
    found = [
        p
        for p in table.values()
        if p.pid not in mine and _is_main(p) and folder in _directories(p, snakemake_args(p.argv) or [])
    ]
    return sorted(found, key=lambda p: p.start)


def _ancestry(pid: int, table: dict[int, Process]) -> set[int]:
    """``pid`` and its ancestors: never stop those (the shell or ``make`` that started the guard)."""
    seen = set()
    while pid in table and pid not in seen:
        seen.add(pid)
        pid = table[pid].ppid
    return seen | {pid}


def _looks_like_job(process: Process, folder: str) -> bool:
    """True for a local job of a Snakemake working in ``folder``, as Snakemake 8 and 9 start them."""
    if process.cwd != folder:
        return False
    argv = process.argv
    args = snakemake_args(argv)
    if args is not None and _is_job(args):  # a run: block, run by its own Snakemake
        return True
    scripts = os.path.join(folder, ".snakemake", "scripts") + os.sep
    if any(a.startswith(scripts) or a.startswith(".snakemake/scripts/") for a in argv):  # script:, notebook:
        return True
    if len(argv) >= 3 and Path(argv[0]).name in ("bash", "sh") and argv[1] == "-c":
        command = argv[2]
        # shell: (Snakemake prefixes bash commands with this), or the sh that wraps a run: block's Snakemake
        return command.startswith("set -euo pipefail;") or ("snakemake" in command and "--target-jobs" in command)
    return False


def leftover_jobs(workdir: str | Path, table: dict[int, Process] | None = None) -> list[Process]:
    """Processes of a Snakemake run in ``workdir`` that no live Snakemake owns: the jobs of a killed run.

    A process counts when it carries ``DPFAIR_RUN_DIR=<workdir>`` (set for the Snakemake the guard starts,
    inherited by every job) or looks like one of Snakemake's local jobs in ``workdir``; their child
    processes count with them. A process below a live Snakemake main (its own job), this process and its
    ancestors never count.

    Args:
        workdir: The run folder.
        table: A snapshot from :func:`processes`; read afresh when None.

    Returns:
        The leftover processes, PID order.
    """
    folder = os.path.realpath(workdir)
    table = processes() if table is None else table
    mine = _ancestry(os.getpid(), table)
    roots = {p.pid for p in table.values() if not p.dead and (p.run_dir == folder or _looks_like_job(p, folder))}
    children: dict[int, list[int]] = {}
    for p in table.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    owned = {pid for pid in found if any(_is_main(table[a]) for a in _ancestry(pid, table) - {pid} if a in table)}
    return [table[pid] for pid in sorted(found - mine - owned) if not table[pid].dead]


def _under_slurm(process: Process, table: dict[int, Process]) -> bool:
    return any(Path(table[a].argv[0]).name == "slurmstepd" for a in _ancestry(process.pid, table) if a in table)


def _alive(process: Process) -> bool:
    now = _read(process.pid)
    return now is not None and now.start == process.start and not now.dead


def _signal(process: Process, sig: int) -> None:
    """Signal ``process`` unless it has exited, even if its PID was reused since it was seen."""
    try:
        handle = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return
    try:
        # the pidfd pins this PID: once it still shows the same start time, the signal reaches that process
        if _alive(process):
            signal.pidfd_send_signal(handle, sig)
    except (ProcessLookupError, PermissionError):  # gone; or another user's, which then counts as not stopped
        pass
    finally:
        os.close(handle)


def _wait_gone(victims: list[Process], seconds: float) -> list[Process]:
    deadline = time.monotonic() + seconds
    while (left := [p for p in victims if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def stop(victims: list[Process], workdir: str | Path) -> list[Process]:
    """Stop leftover job processes: freeze them, SIGTERM, then SIGKILL; wait until they are gone.

    Freezing first keeps a job from starting a child the guard has not seen; the table is read again
    until no new leftover appears.

    Args:
        victims: Processes from :func:`leftover_jobs`.
        workdir: Their run folder (to find children started meanwhile).

    Returns:
        The processes still alive at the end (none, unless they could not be signalled or are stuck in the
        kernel).
    """
    known = {p.pid: p for p in victims}
    for _ in range(10):
        for p in known.values():
            _signal(p, signal.SIGSTOP)
        new = [p for p in leftover_jobs(workdir) if p.pid not in known]
        if not new:
            break
        known.update((p.pid, p) for p in new)
    victims = list(known.values())
    for sig in (signal.SIGTERM, signal.SIGCONT):  # a frozen process sees its SIGTERM only when continued
        for p in victims:
            _signal(p, sig)
    left = _wait_gone(victims, TERM_GRACE_S)
    for p in left:
        _signal(p, signal.SIGKILL)
    return _wait_gone(left, KILL_WAIT_S)


def _started(process: Process) -> str:
    try:
        boot = next(
            int(line.split()[1]) for line in (PROC / "stat").read_text().splitlines() if line.startswith("btime ")
        )
        when = boot + process.start / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError):
        return "at an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def _pids(found: list[Process]) -> str:
    return " ".join(str(p.pid) for p in found)


def check_folder(workdir: str | Path) -> int:
    """Refuse while a Snakemake is live in ``workdir``; stop the jobs a killed run left there.

    Args:
        workdir: The run folder.

    Returns:
        0 when the folder has no other writer left, else :data:`BUSY` (the reason printed as one ``error:``
        line).
    """
    folder = os.path.realpath(workdir)
    table = processes()
    live = live_snakemake(folder, table)
    if live:
        first = live[0]
        print(
            f"error: a Snakemake run is live in {folder} (PID {first.pid}, started {_started(first)}"
            + (f"; also PID {_pids(live[1:])}" if live[1:] else "")
            + f"): wait for it or stop it (kill {_pids(live)}); nothing was unlocked",
            file=sys.stderr,
        )
        return BUSY
    leftover = leftover_jobs(folder, table)
    slurm = [p for p in leftover if _under_slurm(p, table)]
    if slurm:
        jobs = sorted({p.slurm_job for p in slurm if p.slurm_job})
        print(
            f"error: SLURM jobs of a run in {folder} are running on this machine (PID {_pids(slurm)}"
            + (f"; SLURM job {' '.join(jobs)}" if jobs else "")
            + f"), and no Snakemake here owns them: wait for them or cancel them (scancel {' '.join(jobs) or '<job id>'}); "
            "nothing was unlocked",
            file=sys.stderr,
        )
        return BUSY
    if leftover:
        left = stop(leftover, folder)
        if left:
            print(
                f"error: job processes a killed run left in {folder} did not stop (PID {_pids(left)}): "
                f"stop them (kill -9 {_pids(left)}) and run again; nothing was unlocked",
                file=sys.stderr,
            )
            return BUSY
        print(
            f"dpfair: stopped {len(leftover)} job process(es) a killed run left running in {folder} "
            f"(PID {_pids(leftover)}), so that no run folder has two writers",
            file=sys.stderr,
        )
    return 0


def _wait(child: subprocess.Popen) -> int:
    """Wait for Snakemake to exit, through Ctrl-C, passing a SIGTERM on to it."""

    def forward(signum, _frame):
        child.send_signal(signum)

    try:
        previous = signal.signal(signal.SIGTERM, forward)
    except ValueError:  # not the main thread: signals stay with whoever owns it
        previous = None
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                # Ctrl-C reached Snakemake too (same terminal process group): it stops its jobs and removes
                # its lock. subprocess.run would SIGKILL it after 0.25 s, leaving both behind
                continue
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run_guarded(command: list[str], *, workdir: str | Path = ".") -> int:
    """Run a Snakemake command line once the folder has no other writer; unlock a stale lock first.

    Args:
        command: The Snakemake command line, program first.
        workdir: The run folder (Snakemake runs there).

    Returns:
        Snakemake's exit status, or :data:`BUSY` when another run is live in the folder or its leftover
        jobs could not be stopped (nothing is unlocked or run then).
    """
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
            return BUSY
        if refused := check_folder(workdir):
            return refused
        # every process of this run carries the marker, so a later guard can find them if this run is killed
        env = {**os.environ, MARKER: os.path.realpath(workdir)}
        locks = workdir / ".snakemake" / "locks"
        if locks.is_dir() and any(locks.iterdir()):
            print(
                "dpfair: removing the lock an interrupted run left behind (no Snakemake is running here); "
                "finished runs are kept, the rest resumes",
                file=sys.stderr,
            )
            unlocked = subprocess.run([*command, "--unlock"], cwd=workdir, env=env)
            if unlocked.returncode:
                return unlocked.returncode
        return _wait(subprocess.Popen(command, cwd=workdir, env=env))


def main(argv: list[str] | None = None) -> int:
    """Run the Snakemake command line after ``--`` under :func:`run_guarded`.

    Args:
        argv: The arguments, ``--`` then the Snakemake command line; ``sys.argv[1:]`` when None.

    Returns:
        The exit status.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("error: usage: python -m dpfair.pipeline.runlock -- snakemake ARGS...", file=sys.stderr)
        return 2
    return run_guarded(args)


if __name__ == "__main__":
    sys.exit(main())
