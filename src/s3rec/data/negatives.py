"""The sampled-protocol negatives file (``NAME_sample.txt``): 99 items per user never interacted with.

Generated the way the authors describe: uniform over the dataset's items, excluding every item of
the user's whole sequence, without repeats in a row, from a seeded numpy PCG64 generator (default
seed 12345), so the file is identical across runs and machines.

This module is the one place where a negatives file is generated: :func:`load_with_negatives` (what
the sampled protocol loads) makes it when it is missing, ``s3rec data negatives`` on request.
:func:`.registry.load` only reads.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import DataError, S3RecError
from ..fileio import atomic_write_text
from .formats import N_NEGATIVES, format_negatives, present, read_negatives
from .idmaps import id_map_paths, read_id_map
from .registry import DatasetFiles, load, locate, negatives_cache_path
from .store import Dataset, load_files

DEFAULT_SEED = 12345


def generate_negatives(ds: Dataset, seed: int = DEFAULT_SEED, n: int = N_NEGATIVES) -> np.ndarray:
    """``[n_users, n]`` distinct negatives per user, in user order.

    Per user, rounds of ``2 * (n - picked) + 8`` uniform draws from 1..n_items, each round keeping
    the first occurrence of every draw that is neither the user's item nor picked before, until n are
    picked. What is held or picked is marked in one boolean array over the items (set for the user,
    cleared after), so a round costs a few operations on its draws, whatever the catalogue's size."""
    rng = np.random.default_rng(seed)
    out = np.empty((ds.n_users, n), dtype=np.int64)
    taken = np.zeros(ds.n_items + 2, dtype=bool)  # the user's items and those picked so far
    room = ds.n_items - n  # a user with at most this many items leaves n to pick
    for k in range(ds.n_users):
        own = ds.sequence(k)
        if len(own) > room and ds.n_items - np.unique(own).size < n:
            raise too_few_items(ds, k, np.unique(own).size, n)
        taken[own] = True
        row, filled = out[k], 0
        while filled < n:
            draw = rng.integers(1, ds.n_items + 1, size=2 * (n - filled) + 8)
            draw = draw[~taken[draw]]
            _, first = np.unique(draw, return_index=True)  # each value's first position
            new = draw[np.sort(first)][: n - filled]
            row[filled : filled + len(new)] = new
            taken[new] = True
            filled += len(new)
        taken[own] = False
        taken[row] = False
    return out


def too_few_items(ds: Dataset, k: int, own: int, n: int = N_NEGATIVES) -> DataError:
    """The error for the k-th user, who leaves fewer than ``n`` items to sample: names the user as
    the data does (the original id, from the id map of an imported dataset) and its line."""
    user = str(int(ds.user_ids[k]))
    seq = ds.paths.get("sequences")
    maps = id_map_paths(Path(seq).parent, Path(seq).stem) if seq else {}
    with contextlib.suppress(S3RecError):  # the id map only names the user better
        if maps and present(maps["user_ids"]):
            names = read_id_map(maps["user_ids"])
            if int(user) < len(names):
                user = f"{user} (original id {names[int(user)]!r})"
    return DataError(seq or ds.name, k + 1 if seq else None,
                     f"user {user} has interacted with {own} of {ds.n_items} items: fewer than {n} remain to "
                     f"sample as the sampled protocol's negatives; evaluate against every item with --protocol full")


def default_negatives_path(files: DatasetFiles) -> Path:
    """Beside the data when that folder is writable, otherwise in the cache."""
    # A folder without write bits counts as read-only even for root (who could write it anyway).
    if os.access(files.folder, os.W_OK) and files.folder.stat().st_mode & 0o222:
        return files.folder / f"{files.stem}_sample.txt"
    return negatives_cache_path(files.stem)


def write_negatives(ds: Dataset, path: Path, seed: int = DEFAULT_SEED) -> Path:
    negatives = generate_negatives(ds, seed)
    atomic_write_text(path, format_negatives(ds.user_ids, negatives))
    return path


def ensure_negatives(ds: Dataset, files: DatasetFiles, quiet: bool = False) -> Path:
    """The dataset's negatives file, generated (with the default seed, and a line on stderr unless
    ``quiet``) if it does not exist yet."""
    if files.negatives is not None:
        return files.negatives
    path = default_negatives_path(files)
    negatives = generate_negatives(ds)  # a catalogue too small fails before anything is said or written
    if not quiet:
        print(f"{files.name}: no negatives file yet; writing {path} (seed {DEFAULT_SEED})", file=sys.stderr)
    atomic_write_text(path, format_negatives(ds.user_ids, negatives))
    return path


def needs_negatives(protocol: str) -> bool:
    """Whether an evaluation protocol ranks against the negatives file (only ``sampled`` does)."""
    return protocol == "sampled"


def load_for_protocol(name: str, data_dir=None, protocol: str = "sampled", quiet: bool = False) -> Dataset:
    """The dataset as ``protocol`` evaluates it: with its negatives (:func:`load_with_negatives`) for
    the sampled protocol, else :func:`.registry.load`."""
    if needs_negatives(protocol):
        return load_with_negatives(name, data_dir, quiet=quiet)
    return load(name, data_dir)


def load_with_negatives(name: str, data_dir=None, quiet: bool = False) -> Dataset:
    """:func:`.registry.load` plus ``ds.negatives`` (``[n_users, 99]``), the sampled protocol's
    candidates, read from the dataset's negatives file after :func:`ensure_negatives`."""
    files = locate(name, data_dir)
    return attach_negatives(load_files(files.name, files.sequences, files.attributes), files, quiet)


def attach_negatives(ds: Dataset, files: DatasetFiles | None = None, quiet: bool = False) -> Dataset:
    """``ds`` with ``ds.negatives`` set (after :func:`ensure_negatives`), without reading its
    sequences again; ``files``: where it was found (default: the folder of its sequences file)."""
    files = files or locate(ds.name, Path(ds.paths["sequences"]).parent)
    path = ensure_negatives(ds, files, quiet=quiet)
    ds.negatives = read_negatives(path, ds.user_ids, ds.offsets, ds.items, ds.n_items)
    ds.paths["negatives"] = path
    return ds
