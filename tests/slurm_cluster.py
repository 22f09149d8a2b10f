"""A single-node SLURM cluster on loopback, started inside a test and torn down after it.

munged, slurmctld and slurmd run in the foreground as child processes (each in its own process group),
with the config at the compiled-in path ``/etc/slurm/slurm.conf`` so that every SLURM command the
executor plugin and its job steps run (sbatch, squeue, scontrol, srun, scancel) finds it without
environment variables. No accounting database: jobs are polled with ``squeue``, which sees a finished
job for ``MinJobAge`` seconds, so that must be at least 3 × the plugin's initial status wait.

The node advertises two GPUs backed by /dev/null and /dev/zero (``Gres=gpu:2``) so that a train job's
``gpu: 1`` request goes through the scheduler's real GRES allocation without any hardware.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
#: First line of the files we write, so a leftover of ours can be replaced but a real site config never is.
MARKER = "# dpfair loopback test cluster (tests/slurm_cluster.py); safe to delete"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "srun", "sinfo")
PARTITION = "debug"
MIN_JOB_AGE = 3600  # keeps every finished job visible to squeue and to the test's checks


def missing_reason() -> str | None:
    """Why this machine cannot host the loopback cluster, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (munged and slurmd run as root, and the config lives in /etc/slurm)"
    missing = [p for p in DAEMONS + CLIENTS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]
    if missing:
        return (
            f"SLURM packages are not installed (missing {missing}); apt-get install slurmctld slurmd slurm-client munge"
        )
    for path in (SLURM_CONF, GRES_CONF):
        if path.exists() and not path.read_text().startswith(MARKER):
            return (
                f"{path} exists and is not ours: this machine has a real SLURM config, which the test will not replace"
            )
    if not Path("/etc/munge/munge.key").exists():
        return "/etc/munge/munge.key is missing (the munge package creates it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _daemon(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _config(root: Path, *, cpus: int, memory_mb: int, ctld_port: int, slurmd_port: int) -> str:
    return f"""{MARKER}
ClusterName=dpfairtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge={MIN_JOB_AGE}
SlurmdTimeout=60
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} Gres=gpu:2 State=UNKNOWN
PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _kill_group(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


def _processes_holding(root: Path) -> list[int]:
    """Ids of the processes with an open file under ``root`` (the cluster's job-step daemons and their jobs)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            targets = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        if any(t.startswith(str(root)) for t in targets):
            found.append(int(proc.name))
    return found


def _wait_for(check, *, timeout: float, what: str, logs: list[Path]) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in logs if p.exists())
    raise RuntimeError(f"loopback SLURM: {what} not ready after {timeout:.0f} s\n{tails}")


def _quiet(*cmd: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@contextmanager
def loopback_slurm(root: Path, *, cpus: int | None = None, memory_mb: int = 4000):
    """Start munged, slurmctld and slurmd; yield the partition name; kill everything on exit."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir(exist_ok=True)
    cpus = cpus or os.cpu_count() or 1
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.write_text(
        _config(root, cpus=cpus, memory_mb=memory_mb, ctld_port=_free_port(), slurmd_port=_free_port())
    )
    GRES_CONF.write_text(f"{MARKER}\nAutoDetect=off\nName=gpu File=/dev/null\nName=gpu File=/dev/zero\n")
    munge_dir = Path("/run/munge")
    munge_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    logs = [root / "munged.log", root / "slurmctld.log", root / "slurmd.log"]

    def start(*cmd: str, log: Path) -> subprocess.Popen:
        out = open(log, "ab")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        return proc

    try:
        # munged refuses root without --force; the socket path is the compiled-in one auth/munge uses
        start(
            _daemon("munged"),
            "--foreground",
            "--force",
            "--socket",
            str(munge_dir / "munge.socket.2"),
            "--pid-file",
            str(root / "munge" / "munged.pid"),
            "--seed-file",
            str(root / "munge" / "seed"),
            log=root / "munged.log",
        )
        _wait_for(lambda: (munge_dir / "munge.socket.2").exists(), timeout=20, what="munged", logs=logs)
        # -i: ignore state left by an earlier run; -D: foreground
        start(_daemon("slurmctld"), "-D", "-i", log=root / "slurmctld.out")
        _wait_for(lambda: _quiet("scontrol", "ping").stdout.count("UP") >= 1, timeout=30, what="slurmctld", logs=logs)
        start(_daemon("slurmd"), "-D", "-N", "localhost", log=root / "slurmd.out")
        _wait_for(
            lambda: "idle" in _quiet("sinfo", "-h", "-o", "%t").stdout,
            timeout=40,
            what="slurmd (node idle)",
            logs=logs + [root / "slurmd.out", root / "slurmctld.out"],
        )
        yield PARTITION
    finally:
        try:
            _quiet("scancel", "--full", "--partition", PARTITION, timeout=10)
        except (subprocess.TimeoutExpired, FileNotFoundError):
            pass
        for proc in reversed(procs):
            _kill_group(proc)
        # job step daemons detach from slurmd; ours are the ones holding files under root (the slurmd log)
        for pid in _processes_holding(root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for path in (SLURM_CONF, GRES_CONF):
            if path.exists() and path.read_text().startswith(MARKER):
                path.unlink()
