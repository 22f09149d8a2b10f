"""make run's guard (dpfair.pipeline.runlock) with real Snakemake processes on a tiny Snakefile.

A live Snakemake is refused whatever started it; the jobs a killed run leaves behind are stopped before
the resumed run starts, so no run folder has two writers; Ctrl-C lets Snakemake clean up.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dpfair.pipeline import runlock

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--cores", "2"]
GUARDED = [sys.executable, "-m", "dpfair.pipeline.runlock", "--", *SNAKEMAKE]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}
ENV.pop(runlock.MARKER, None)

# Each job notes its PID when it starts, sleeps as long as delay.txt says when it started, then writes its
# PID as its output: an output holding a killed job's PID is a second writer.
SNAKEFILE = """
rule all:
    input: expand("done/{name}.txt", name=["frozen", "running"])

rule job:
    output: "done/{name}.txt"
    script: "job.py"
"""
JOB = """
import os, time
from pathlib import Path

delay = float(Path("delay.txt").read_text())
Path("started").mkdir(exist_ok=True)
Path("started", f"{snakemake.wildcards.name}.{os.getpid()}").touch()
try:
    time.sleep(delay)
except KeyboardInterrupt:  # Ctrl-C: a job that takes a moment to stop (a training loop saving its state)
    time.sleep(2)
    raise
Path(snakemake.output[0]).write_text(str(os.getpid()))
"""


@pytest.fixture
def folder(tmp_path):
    """A run folder with the tiny workflow; every process started in it is killed at the end."""
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "delay.txt").write_text("30")
    started: list[subprocess.Popen] = []
    yield tmp_path, started
    for proc in started:
        # each was started in its own session; a killed Snakemake's jobs keep its process group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    for leftover in runlock.leftover_jobs(tmp_path) + runlock.live_snakemake(tmp_path):
        os.kill(leftover.pid, signal.SIGKILL)


def _default_sigint():
    # a pytest started in the background of a non-interactive shell ignores SIGINT, and children inherit
    # that: the guard must see Ctrl-C as it would from a terminal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(started, command, cwd, **kwargs):
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=ENV,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_default_sigint,
        **kwargs,
    )
    started.append(proc)
    return proc


def wait_for(predicate, what, seconds=60):
    deadline = time.monotonic() + seconds
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def locks(folder):
    directory = folder / ".snakemake" / "locks"
    return {p.name: p.read_text() for p in directory.iterdir()} if directory.is_dir() else {}


def jobs_started(folder, count=2):
    marks = list((folder / "started").glob("*.*")) if (folder / "started").is_dir() else []
    return {p.stem: int(p.suffix[1:]) for p in marks} if len(marks) >= count else None


def gone(pid):
    """True once ``pid`` has exited (a zombie cannot write any more)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_snakemake_command_lines_are_told_apart():
    """The forms a Snakemake main process takes; the Snakemake that runs one job is not one."""
    assert runlock.snakemake_args(["/venv/bin/snakemake", "--cores", "2"]) == ["--cores", "2"]
    assert runlock.snakemake_args(["python3", "-u", "-m", "snakemake", "-n"]) == ["-n"]
    assert runlock.snakemake_args(["/venv/bin/python", "/venv/bin/snakemake", "-d", "x"]) == ["-d", "x"]
    assert runlock.snakemake_args(["python", "-m", "dpfair.pipeline.runlock", "--", "snakemake"]) is None
    assert runlock.snakemake_args(["python", "-c", "import snakemake"]) is None
    assert runlock.snakemake_args(["bash", "-c", "snakemake"]) is None
    assert runlock._is_job(["--target-jobs", "r:", "--mode", "subprocess"])
    assert not runlock._is_job(["--cores", "2", "--configfile", "b.yaml"])


@pytest.mark.integration
@pytest.mark.parametrize("how", ["in the folder", "with -d"])
def test_a_live_snakemake_started_by_hand_is_refused_and_keeps_its_lock(folder, how, capsys):
    """A plain snakemake (the README's form) is running: the guard names its PID and unlocks nothing."""
    tmp_path, started = folder
    if how == "with -d":
        proc = start(started, [*SNAKEMAKE, "-s", str(tmp_path / "Snakefile"), "-d", str(tmp_path)], tmp_path.parent)
    else:
        proc = start(started, SNAKEMAKE, tmp_path)
    held = wait_for(lambda: locks(tmp_path), "snakemake to lock the folder")
    jobs = wait_for(lambda: jobs_started(tmp_path), "its jobs to start")

    assert runlock.run_guarded(SNAKEMAKE, workdir=tmp_path) == runlock.BUSY
    err = capsys.readouterr().err
    assert err.startswith(f"error: a Snakemake run is live in {tmp_path.resolve()} (PID {proc.pid}, started ")
    assert f"kill {proc.pid}" in err and "nothing was unlocked" in err
    assert locks(tmp_path) == held
    assert proc.poll() is None and not any(gone(pid) for pid in jobs.values())  # nothing of it was stopped


@pytest.mark.integration
@pytest.mark.parametrize("how", ["make run", "by hand"])
def test_the_jobs_of_a_killed_run_are_stopped_before_it_resumes(folder, how):
    """kill -9 on Snakemake leaves its jobs running (one frozen): the resume stops them, then reruns them."""
    tmp_path, started = folder
    first = start(started, GUARDED if how == "make run" else SNAKEMAKE, tmp_path)
    wait_for(lambda: locks(tmp_path), "snakemake to lock the folder")
    jobs = wait_for(lambda: jobs_started(tmp_path), "its jobs to start")
    main = first.pid
    if how == "make run":  # the guard's Snakemake, not the guard
        main = next(p.pid for p in runlock.processes().values() if p.ppid == first.pid)
    os.kill(jobs["frozen"], signal.SIGSTOP)
    os.kill(main, signal.SIGKILL)
    first.wait(timeout=30)
    assert not any(gone(pid) for pid in jobs.values())  # the orphans
    (tmp_path / "delay.txt").write_text("0")

    resumed = start(started, GUARDED, tmp_path, text=True)
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out[-3000:]
    assert "dpfair: stopped 2 job process(es) a killed run left running in" in out
    assert all(str(pid) in out for pid in jobs.values())
    assert "removing the lock an interrupted run left behind" in out
    assert all(gone(pid) for pid in jobs.values())
    for name, pid in jobs.items():
        written = (tmp_path / "done" / f"{name}.txt").read_text()
        assert written != str(pid)  # the resumed run's job wrote it, and the killed one cannot any more
    assert not locks(tmp_path)


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stopping_make_run_lets_snakemake_clean_up(folder, sig):
    """Ctrl-C (the terminal's whole group) or SIGTERM to the guard alone: Snakemake ends its jobs and its lock."""
    tmp_path, started = folder
    if sig == signal.SIGTERM:  # Snakemake's SIGTERM lets the running jobs finish
        (tmp_path / "delay.txt").write_text("3")
    guard = start(started, GUARDED, tmp_path, text=True)
    wait_for(lambda: locks(tmp_path), "snakemake to lock the folder")
    jobs = wait_for(lambda: jobs_started(tmp_path), "its jobs to start")
    if sig == signal.SIGINT:
        os.killpg(guard.pid, sig)
    else:
        guard.send_signal(sig)
    out, _ = guard.communicate(timeout=60)
    assert guard.returncode != 0
    if sig == signal.SIGTERM:
        assert "Will exit after finishing currently running jobs" in out, out[-3000:]
    wait_for(lambda: all(gone(pid) for pid in jobs.values()), "the jobs to stop", 30)
    assert not locks(tmp_path)
    assert not runlock.leftover_jobs(tmp_path)
