"""Atomic file writes (a reader sees the old file or the new one, never half of one; several files:
all of them or none) and an advisory lock.

A write goes to a hidden temporary file beside its target, ``.NAME.PID.RANDOM.tmp``, which is
fsynced, renamed over the target, and the folder fsynced after the rename. A writer killed midway
leaves its temporary file behind: the next successful write of the same target removes such leftovers
once their writer is gone (its process no longer runs here, or the name carries no process id) and
they are older than :data:`STALE_AFTER` seconds (a writer on another machine sharing the folder is
left alone while it writes).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

STALE_AFTER = 15 * 60  # seconds since a leftover temporary file was last written


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _new_temp(path: Path, suffix: str = ".tmp") -> Path:
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process (or an id we cannot ask about): assume it is alive
    return True


def stale_temp_files(path: str | os.PathLike, now: float | None = None) -> list[Path]:
    """The leftover temporary files of interrupted writes of ``path`` (see the module docstring)."""
    path = Path(path)
    # mkstemp's random part: 8 of [a-z0-9_]; earlier versions wrote no process id
    pattern = re.compile(re.escape(f".{path.name}.") + r"(?:(\d+)\.)?[a-z0-9_]{8}\.(?:tmp|bak)")
    now = time.time() if now is None else now
    stale = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if not m:
            continue
        pid = int(m.group(1)) if m.group(1) else None
        if pid == os.getpid() or (pid is not None and _running(pid)):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER:
                stale.append(Path(entry.path))
        except OSError:
            continue
    return sorted(stale)


def _remove_stale(path: Path) -> None:
    for p in stale_temp_files(path):
        with contextlib.suppress(OSError):
            p.unlink()


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _finish(tmp: Path) -> None:
    """Give a finished temporary file the usual permissions and put it on disk."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    with open(tmp, "rb") as f:  # on disk before it takes the old file's place
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    with atomic_paths([path]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(paths):
    """Yield one temporary path per target of ``paths``; on success they replace their targets, in
    order, all or none: if a rename fails, the targets already replaced get their old files back (a
    target that did not exist is removed again) and the error is raised. On error nothing is left but
    the old files."""
    paths = [Path(p) for p in paths]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []
    try:
        for p in paths:
            temps.append(_new_temp(p))
        yield temps
        for tmp in temps:
            _finish(tmp)
        _replace_all(paths, temps)
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    for folder in dict.fromkeys(p.parent for p in paths):
        fsync_folder(folder)
    for p in paths:
        _remove_stale(p)


def _backup(path: Path) -> Path | None:
    """A second name for the current ``path`` (a hard link, else a copy), or None when there is none."""
    if not os.path.lexists(path):
        return None
    bak = _new_temp(path, ".bak")
    os.unlink(bak)
    try:
        os.link(path, bak, follow_symlinks=False)
    except OSError:
        shutil.copy2(path, bak, follow_symlinks=False)
    return bak


def _replace_all(paths: list[Path], temps: list[Path]) -> None:
    if len(paths) == 1:
        os.replace(temps[0], paths[0])
        return
    done: list[tuple[Path, Path | None]] = []
    try:
        for path, tmp in zip(paths, temps):
            bak = _backup(path)
            done.append((path, bak))
            os.replace(tmp, path)
    except BaseException:
        for path, bak in reversed(done):  # undo, newest first
            with contextlib.suppress(OSError):
                if bak is not None:
                    os.replace(bak, path)
                elif os.path.lexists(path):
                    os.unlink(path)
        raise
    finally:
        for _, bak in done:
            if bak is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(bak)


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
