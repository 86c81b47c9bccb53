"""Where and with what a run was made: recorded beside its results, so a number can be traced to the
code, library versions and machine that produced it (``results.json``'s ``environment``; a
pre-training's ``environment.jsonl``, one line per start or resume)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

PACKAGE_DIR = Path(__file__).resolve().parent


def machine_description() -> str:
    """CPU model, core count, torch version and threads (and the GPU, when one is used)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    desc = f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        desc += f", GPU {torch.cuda.get_device_name(0)}"
    return desc


def _git(*args: str) -> str | None:
    # --no-optional-locks: never take the index lock a user's own git command may need
    try:
        done = subprocess.run(["git", "--no-optional-locks", "-C", str(PACKAGE_DIR), *args], capture_output=True,
                              text=True, timeout=10, errors="replace")
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_commit() -> str | None:
    """The git commit of the s3rec source tree this code runs from (``+dirty`` when tracked files under
    ``src/`` or ``pyproject.toml`` differ from it), or None: an installed copy, no git, or a repository
    that is not s3rec's own (a virtual environment inside some other checkout)."""
    top = _git("rev-parse", "--show-toplevel")
    if not top or (Path(top) / "src" / "s3rec").resolve() != PACKAGE_DIR:
        return None
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return None
    # the code only: results written into the checkout's docs/ while a grid runs do not make it dirty
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ":/src", ":/pyproject.toml")
    return commit + ("+dirty" if dirty else "")


def environment(device: str = "cpu") -> dict:
    """The run's provenance: s3rec version and commit, Python, torch, machine, device, command line,
    UTC time. Take it when the run starts: the checkout may move on while it runs."""
    from . import __version__

    try:
        commit = source_commit()
    except Exception:  # noqa: BLE001 - provenance must never cost a finished run its results
        commit = None
    return {
        "s3rec": __version__,
        "commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": machine_description(),
        "device": device,
        "argv": " ".join(Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv)),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
