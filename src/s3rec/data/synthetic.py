"""Synthetic interaction logs at any scale, for load and scale tests of import, training and serving.

The log looks like a real one: a CSV of ``user,item,timestamp`` rows in global time order (users
interleaved), string user ids and item ids that are not 1..n, Zipf-like item popularity, and a
planted sequential pattern (a user's next item is often a fixed successor of the previous one) so
that a model trained on it can learn something. Every user has at least ``min_len`` interactions.
Deterministic for a seed. :func:`synthetic_attributes` gives its items attributes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fileio import atomic_path


def synthetic_log(
    n_users: int, n_items: int, n_interactions: int, seed: int = 0, min_len: int = 5, follow_p: float = 0.5,
    zipf_a: float = 1.1,
) -> dict[str, np.ndarray]:
    """Columns ``user``, ``item`` (int64 original ids) and ``timestamp`` (int64 seconds), time-ordered.

    Sequence lengths are ``min_len`` plus a multinomial share of the rest, so they sum to exactly
    ``n_interactions``. With probability ``follow_p`` an item is the planted successor of the previous
    one, otherwise a draw from the popularity distribution (``p(rank r) ~ r^-zipf_a``).
    """
    if n_users < 1 or n_items < 2:
        raise ValueError("need at least 1 user and 2 items")
    if n_interactions < n_users * min_len:
        raise ValueError(f"{n_interactions} interactions cannot give {n_users} users {min_len} each")
    rng = np.random.default_rng(seed)
    lengths = min_len + rng.multinomial(n_interactions - n_users * min_len, np.full(n_users, 1.0 / n_users))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    popularity = ranks**-zipf_a
    popularity /= popularity.sum()
    items = rng.choice(n_items, size=n_interactions, p=popularity)
    successor = rng.permutation(n_items)
    follow = rng.random(n_interactions) < follow_p
    follow[offsets[:-1]] = False  # the first item of each user is a popularity draw
    # Resolve "item = successor[previous item]" runs left to right, vectorised by run position.
    # After pass d, every follower within d steps of its run's start is final; a follower whose d-th
    # predecessor is also a follower read a stale value and is redone in the next pass.
    idx = np.flatnonzero(follow)
    depth = 1
    while idx.size:
        items[idx] = successor[items[idx - 1]]
        idx = idx[follow[idx - depth]]
        depth += 1
    # Global time order: each user starts at a random time and acts every few minutes to hours.
    users = np.repeat(np.arange(n_users), lengths)
    gaps = rng.integers(60, 36_000, size=n_interactions)
    gaps[offsets[:-1]] = rng.integers(1_500_000_000, 1_600_000_000, size=n_users)
    times = np.cumsum(gaps)
    times -= np.repeat(np.concatenate([[0], times[offsets[1:-1] - 1]]), lengths)  # restart per user
    order = np.argsort(times, kind="stable")
    # Original ids that are not 1..n: scattered large integers.
    user_ids = rng.permutation(n_users * 7)[:n_users] + 1_000_000
    item_ids = rng.permutation(n_items * 3)[:n_items] + 10_000
    return {"user": user_ids[users[order]], "item": item_ids[items[order]], "timestamp": times[order]}


def synthetic_attributes(items: np.ndarray, n_attributes: int, seed: int = 0, most: int = 4,
                         zipf_a: float = 1.0) -> dict[str, np.ndarray]:
    """Columns ``item`` (the given original ids) and ``attribute`` (string ids ``a1``, ``a2``, ...):
    each item gets 1 to ``most`` distinct attributes, drawn with Zipf-like popularity. Deterministic
    for a seed."""
    if n_attributes < 1:
        raise ValueError("need at least 1 attribute")
    rng = np.random.default_rng([seed, 1])
    per_item = rng.integers(1, min(most, n_attributes) + 1, size=len(items))
    p = np.arange(1, n_attributes + 1, dtype=np.float64) ** -zipf_a
    drawn = rng.choice(n_attributes, size=int(per_item.sum()), p=p / p.sum())
    owner = np.repeat(np.arange(len(items)), per_item)
    keys = np.unique(owner.astype(np.int64) * n_attributes + drawn)  # one row per distinct (item, attribute)
    names = np.char.add("a", (np.arange(n_attributes) + 1).astype(str))
    return {"item": np.asarray(items)[keys // n_attributes], "attribute": names[keys % n_attributes]}


def write_csv(columns: dict[str, np.ndarray], path: str | Path) -> None:
    """Write the columns as a CSV with a header, atomically (pyarrow's multi-threaded writer)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pa.table(columns)
    with atomic_path(path) as tmp:
        pacsv.write_csv(table, str(tmp))
