"""Atomic file writes (a reader sees the old file or the new one, never half of one) and an advisory lock."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        with open(tmp, "rb") as f:  # on disk before it takes the old file's place
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def try_lock(path: str | os.PathLike, wait: bool = False, on_wait=None):
    """Hold an exclusive advisory lock on ``path`` (created, with its folder, if missing) for the
    ``with`` block: yields True when held; when another process holds it, yields False at once, or
    with ``wait`` calls ``on_wait()`` and blocks until it is released (then yields True). The lock
    goes with the process, so a killed holder never leaves it stuck. Where ``fcntl`` is missing
    (Windows), yields True and locks nothing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - POSIX everywhere this project runs
        yield True
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            if on_wait:
                on_wait()
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def exclusive_lock(path: str | os.PathLike, on_wait=None):
    """:func:`try_lock` that waits for the lock (calling ``on_wait()`` once if it has to)."""
    return try_lock(path, wait=True, on_wait=on_wait)
