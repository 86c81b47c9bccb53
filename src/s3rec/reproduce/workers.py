"""``s3rec reproduce --jobs N``: the same command as N worker processes sharing the grid.

Each worker is ``python -m s3rec.cli`` with the command as given plus ``--jobs 1 --wait --quiet
--no-retry-failed`` (argparse keeps the last value); the workers share the grid through its run locks
(:mod:`s3rec.reproduce.runner`). Ctrl-C or SIGTERM here stops them (SIGINT, then SIGTERM after 30 s):
their runs resume on the next invocation.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from .plan import Plan
from .status import clear_failures, status_counts

STOP_SECONDS = 30.0  # how long stopped workers get to leave after SIGINT, all together


def worker_argv(argv: list[str]) -> list[str]:
    """A worker's command line: ``argv`` with the worker options before any ``--``."""
    argv = list(argv)
    at = argv.index("--") if "--" in argv else len(argv)  # options go before a "--"
    argv[at:at] = ["--jobs", "1", "--wait", "--quiet", "--no-retry-failed"]
    return argv


def worker_threads(jobs: int) -> str:
    """OMP_NUM_THREADS for each of ``jobs`` workers: as set, else the cores shared out."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return os.environ.get("OMP_NUM_THREADS") or str(max(1, cores // jobs))


def _stop(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGINT)
    deadline = time.time() + STOP_SECONDS
    for w in workers:
        try:
            w.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            w.terminate()
            w.wait()


def run_workers(plan: Plan, jobs: int, argv: list[str], retry_failed: bool, log) -> int:
    """Run the command ``argv`` (an ``s3rec reproduce`` command line) as ``jobs`` worker processes on
    ``plan``; 0 when every worker ended with 0."""
    if retry_failed:  # here, once: a run failing again is then left failed, not retried by every worker
        cleared = clear_failures(plan)
        log(f"{plan.experiment.name}: retrying {len(cleared)} failed runs" + (f": {', '.join(cleared)}" if cleared else ""))
    threads = worker_threads(jobs)
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    command = [sys.executable, "-m", "s3rec.cli", *worker_argv(argv)]
    log(f"{plan.experiment.name}: {jobs} worker processes, {threads} thread(s) each ({plan.out})")
    workers: list[subprocess.Popen] = []

    def stop(signum, frame):
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, stop) if in_main else None
    try:
        for _ in range(jobs):  # own sessions: a terminal's Ctrl-C reaches them once, from here
            workers.append(subprocess.Popen(command, env=env, start_new_session=True))
        codes = [w.wait() for w in workers]
    except KeyboardInterrupt:
        _stop(workers)
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    counts = status_counts(plan)
    log(f"{plan.experiment.name}: workers ended with exit status {', '.join(map(str, codes))}; "
        + ", ".join(f"{v} {k}" for k, v in counts.items() if v) + f"; report: s3rec report {plan.out}")
    return 0 if all(c == 0 for c in codes) else 1
