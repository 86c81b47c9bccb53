"""The sampled-protocol negatives file (``NAME_sample.txt``): 99 items per user never interacted with.

Generated the way the authors describe: uniform over the dataset's items, excluding every item of
the user's whole sequence, without repeats in a row, from a seeded numpy PCG64 generator (default
seed 12345), so the file is identical across runs and machines.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ..errors import S3RecError
from ..fileio import atomic_write_text
from .formats import N_NEGATIVES, format_negatives

DEFAULT_SEED = 12345


def generate_negatives(ds, seed: int = DEFAULT_SEED, n: int = N_NEGATIVES) -> np.ndarray:
    """``[n_users, n]`` distinct negatives per user, in user order."""
    rng = np.random.default_rng(seed)
    out = np.empty((ds.n_users, n), dtype=np.int64)
    for k in range(ds.n_users):
        own = np.unique(ds.sequence(k))
        if ds.n_items - own.size < n:
            raise S3RecError(
                f"user {int(ds.user_ids[k])} has interacted with {own.size} of {ds.n_items} items: "
                f"fewer than {n} remain to sample as negatives"
            )
        picked = np.empty(0, dtype=np.int64)
        while picked.size < n:
            draw = rng.integers(1, ds.n_items + 1, size=2 * (n - picked.size) + 8)
            draw = draw[~np.isin(draw, own) & ~np.isin(draw, picked)]
            _, first = np.unique(draw, return_index=True)
            picked = np.concatenate([picked, draw[np.sort(first)]])
        out[k] = picked[:n]
    return out


def default_negatives_path(files) -> Path:
    """Beside the data when that folder is writable, otherwise in the cache."""
    from .registry import negatives_cache_path

    # A folder without write bits counts as read-only even for root (who could write it anyway).
    if os.access(files.folder, os.W_OK) and files.folder.stat().st_mode & 0o222:
        return files.folder / f"{files.stem}_sample.txt"
    return negatives_cache_path(files.stem)


def write_negatives(ds, path: Path, seed: int = DEFAULT_SEED) -> Path:
    negatives = generate_negatives(ds, seed)
    atomic_write_text(path, format_negatives(ds.user_ids, negatives))
    return path


def ensure_negatives(ds, files, quiet: bool = False) -> Path:
    """The dataset's negatives file, generated (with the default seed) if it does not exist yet."""
    if files.negatives is not None:
        return files.negatives
    path = default_negatives_path(files)
    if not quiet:
        print(f"{files.name}: no negatives file yet; writing {path} (seed {DEFAULT_SEED})", file=sys.stderr)
    return write_negatives(ds, path)
