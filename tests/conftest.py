"""Shared fixtures: tiny synthetic datasets written in the benchmark format, and the shared data folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The public datasets: $S3REC_DATA_DIR, else ../shared/data beside the checkout."""
    env = os.environ.get("S3REC_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def shared_reference_dir() -> Path:
    return shared_data_dir().parent / "reference"


def write_dataset(folder: Path, name: str, seqs: dict[int, list[int]], attrs: dict[int, list[int]] | None = None) -> Path:
    """Write ``NAME.txt`` (and ``NAME_item2attributes.json`` when attrs is given) into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text("".join(f"{u} " + " ".join(map(str, s)) + "\n" for u, s in seqs.items()))
    if attrs is not None:
        (folder / f"{name}_item2attributes.json").write_text(json.dumps({str(k): v for k, v in attrs.items()}))
    return folder


def synthetic_sequences(n_users=40, n_items=30, min_len=4, max_len=12, seed=0) -> dict[int, list[int]]:
    """Random sequences that use every item id 1..n_items at least once."""
    rng = np.random.default_rng(seed)
    seqs = {}
    for u in range(1, n_users + 1):
        n = int(rng.integers(min_len, max_len + 1))
        seqs[u] = rng.choice(np.arange(1, n_items + 1), size=n, replace=False).tolist()
    used = {i for s in seqs.values() for i in s}
    missing = [i for i in range(1, n_items + 1) if i not in used]
    for k, i in enumerate(missing):  # make the ids contiguous
        seqs[1 + k % n_users].append(i)
    return seqs


def cycle_sequences(n_users=60, n_items=20, length=10, seed=0) -> dict[int, list[int]]:
    """Each user walks the deterministic cycle 1 -> 2 -> ... -> n_items -> 1 from a random start."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(n_items, size=n_users)
    return {u: [(int(starts[u - 1]) + t) % n_items + 1 for t in range(length)] for u in range(1, n_users + 1)}


def pretrain_terms_and_grads(trainer, batch) -> tuple[dict, dict]:
    """A :class:`~s3rec.pretraining.Pretrainer`'s four loss terms on a CPU-built ``batch`` (moved to its
    device) and the gradients of their weighted total, both on the CPU."""
    from s3rec.models.heads import weighted_total

    batch = batch.to(trainer.device)
    terms = trainer.losses(batch, trainer.attrs, trainer.weights)
    trainer.model.zero_grad(set_to_none=True)
    weighted_total(terms, trainer.weights).backward()
    return ({k: v.detach().cpu() for k, v in terms.items()},
            {n: p.grad.cpu() for n, p in trainer.model.named_parameters() if p.grad is not None})


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root: a regular file's bytes, None for anything else (folders, links): what a
    command that refuses its input must leave exactly as it was."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() and not p.is_symlink() else None
            for p in sorted(root.rglob("*"))}


def one_error_line(err: str, *words: str) -> str:
    """The single ``s3rec: error: ...`` line that ``err`` (a command's stderr) must be, with no traceback
    and each of ``words`` in it."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("s3rec: error: "), err
    for word in words:
        assert word in lines[0], f"{word!r} not in: {lines[0]}"
    return lines[0]


@pytest.fixture
def tiny_data(tmp_path, monkeypatch) -> Path:
    """A folder with the synthetic dataset ``Tiny`` (40 users, 150 items, attributes), set as the data dir.

    150 items leave room for the sampled protocol's 99 negatives per user.
    """
    seqs = synthetic_sequences(n_items=150)
    attrs = {i: [1 + i % 5, 1 + (i * 7) % 9] for i in range(1, 151) if i % 4}
    folder = write_dataset(tmp_path / "data", "Tiny", seqs, attrs)
    monkeypatch.setenv("S3REC_DATA_DIR", str(folder))
    monkeypatch.setenv("S3REC_CACHE_DIR", str(tmp_path / "cache"))
    return folder


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never touch the user's real cache from a test."""
    if "S3REC_CACHE_DIR" not in os.environ or not os.environ["S3REC_CACHE_DIR"].startswith(str(tmp_path)):
        monkeypatch.setenv("S3REC_CACHE_DIR", str(tmp_path / "cache"))


def kill_after_epochs(argv: list[str], out: Path, epochs: int, timeout: float = 120.0) -> int:
    """Run ``s3rec ARGV --out OUT`` in a subprocess, SIGKILL it once ``metrics.jsonl`` has ``epochs``
    lines, and return how many epochs it had logged."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "s3rec.cli", *argv, "--out", str(out)],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= epochs:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return len(metrics.read_text().splitlines())
