"""The import pipeline between reading and writing: sort, de-duplicate, k-core filter and re-index
(steps 2-5 of :mod:`.importing`), on numpy arrays over whole columns (no Python loop over rows).

Data held between the steps: :class:`Interactions` (what a reader returns), :class:`AttributePairs`,
then the re-indexed :class:`Sequences` and :class:`Attributes` (what the writer writes), each with the
:class:`Step` counts that the summary and the errors show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError
from .columns import single, to_numpy
from .formats import MIN_SEQUENCE_LENGTH


@dataclass
class Step:
    """Counts after one step of the pipeline, for the summary and for errors."""

    label: str
    interactions: int
    users: int
    items: int

    def __str__(self) -> str:
        return f"{self.label}: {self.interactions:,} interactions ({self.users:,} users, {self.items:,} items)"


@dataclass
class Interactions:
    """Interactions in file order. ``users``/``items`` are codes into ``user_names``/``item_names``
    (original ids as strings, codes in order of first appearance in the file)."""

    users: np.ndarray  # int64 [n]
    items: np.ndarray  # int64 [n]
    times: np.ndarray  # float64 [n]; only their order matters
    user_names: pa.Array  # string [n_user_codes]
    item_names: pa.Array  # string [n_item_codes]
    steps: list[Step] = field(default_factory=list)

    def take(self, keep: np.ndarray, label: str) -> Interactions:
        """The rows where ``keep`` (a bool mask or indices), with the step recorded."""
        out = Interactions(self.users[keep], self.items[keep], self.times[keep], self.user_names,
                           self.item_names, list(self.steps))
        out.steps.append(count_step(label, out.users, out.items))
        return out


@dataclass
class AttributePairs:
    """(item, attribute) pairs of original ids, in the attribute source's order."""

    items: pa.Array  # string [n]
    attributes: pa.Array  # string [n]


@dataclass
class Sequences:
    """The re-indexed sequences: user ``k+1`` has items ``items[offsets[k]:offsets[k+1]]``."""

    offsets: np.ndarray  # int64 [n_users + 1]
    items: np.ndarray  # int64 [n_interactions], ids 1..n_items
    user_names: pa.Array  # string [n_users]: original id of user k+1 at k
    item_names: pa.Array  # string [n_items]: original id of item k+1 at k
    steps: list[Step]

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return len(self.item_names)


@dataclass
class Attributes:
    """Re-indexed attributes: item ``items[k]`` has ``attributes[offsets[k]:offsets[k+1]]``."""

    items: np.ndarray  # int64 [n_items_with_attributes], item ids in order of first appearance
    offsets: np.ndarray  # int64 [len(items) + 1]
    attributes: np.ndarray  # int64, ids 1..n_attributes
    names: pa.Array  # string [n_attributes]: original id of attribute k+1 at k

    @staticmethod
    def empty() -> Attributes:
        return Attributes(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64), pa.array([], pa.string()))


def count_step(label: str, users: np.ndarray, items: np.ndarray) -> Step:
    if users.size == 0:
        return Step(label, 0, 0, 0)
    return Step(label, int(users.size), int(np.count_nonzero(np.bincount(users))), int(np.count_nonzero(np.bincount(items))))


def first_occurrences(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each (user, item) pair, in the arrays' order (ascending)."""
    if users.size == 0:
        return np.zeros(0, np.int64)
    key = users.astype(np.int64) * (int(items.max()) + 1) + items
    _, first = np.unique(key, return_index=True)  # a stable sort: the first occurrence's index
    return np.sort(first)


def k_core(users: np.ndarray, items: np.ndarray, k: int, min_user: int = MIN_SEQUENCE_LENGTH) -> tuple[np.ndarray, int]:
    """Iterative k-core: the mask of interactions left, and the number of rounds.

    Repeatedly drops users with fewer than ``max(k, min_user)`` interactions and items with fewer than
    ``k`` (``k <= 1``: items are not filtered) until nothing changes. Counts are interactions, so a
    repeated item counts each time.
    """
    user_min, item_min = max(k, min_user), max(k, 1)
    rounds = 0
    idx = np.arange(len(users))
    u, i = users, items
    while True:
        rounds += 1
        ok = (np.bincount(u)[u] >= user_min) & (np.bincount(i)[i] >= item_min)
        if ok.all():
            break
        idx, u, i = idx[ok], u[ok], i[ok]
        if idx.size == 0:
            break
    keep = np.zeros(len(users), dtype=bool)
    keep[idx] = True
    return keep, rounds


def _empty_error(source: Path, steps: list[Step], hint: str) -> DataError:
    counts = "; ".join(str(s) for s in steps)
    return DataError(source, None, f"no interactions left after filtering ({counts}){hint}")


def build_sequences(inter: Interactions, dedup: bool = False, k: int = 5, source: str | Path = "interactions") -> Sequences:
    """Sort, de-duplicate, k-core filter and re-index (steps 2-5 of the module docstring)."""
    steps = list(inter.steps)
    order = np.lexsort((inter.times, inter.users))  # stable: ties in time keep file order
    users, items = inter.users[order], inter.items[order]
    if dedup:
        first = first_occurrences(users, items)
        users, items = users[first], items[first]
        steps.append(count_step("repeated (user, item) pairs dropped", users, items))
    keep, rounds = k_core(users, items, k)
    users, items = users[keep], items[keep]
    label = (f"{k}-core on users and items ({rounds} round{'s' * (rounds > 1)}; users need >= {max(k, MIN_SEQUENCE_LENGTH)})"
             if k > 1 else f"users with < {MIN_SEQUENCE_LENGTH} interactions dropped")
    steps.append(count_step(label, users, items))
    if users.size == 0:
        hint = "; try a smaller --k-core" if k > 1 else ""
        raise _empty_error(Path(source), steps, hint)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    offsets = np.append(starts, users.size).astype(np.int64)
    codes, first = np.unique(items, return_index=True)
    by_first = codes[np.argsort(first)]  # item codes in order of first appearance in the sequences
    new_id = np.zeros(len(inter.item_names), dtype=np.int64)
    new_id[by_first] = np.arange(1, by_first.size + 1)
    return Sequences(
        offsets=offsets,
        items=new_id[items],
        user_names=single(inter.user_names).take(pa.array(users[starts])),
        item_names=single(inter.item_names).take(pa.array(by_first)),
        steps=steps,
    )


def build_attributes(seqs: Sequences, pairs: AttributePairs | None, min_count: int = 1) -> Attributes:
    """Attach attributes to the re-indexed items (step 5's attribute rule).

    Pairs whose item is not in ``seqs`` are dropped; then attributes that occur fewer than
    ``min_count`` times over the kept items are dropped (``min_count <= 1`` keeps all).
    """
    if pairs is None or len(pairs.items) == 0:
        return Attributes.empty()
    idx = pc.index_in(single(pairs.items), value_set=single(seqs.item_names).cast(pa.large_string()))
    item_ids = to_numpy(pc.fill_null(idx, -1)).astype(np.int64) + 1  # 0: not a kept item
    kept = np.flatnonzero(item_ids > 0)
    if kept.size == 0:
        return Attributes.empty()
    encoded = pc.dictionary_encode(single(pairs.attributes))
    codes, names = to_numpy(encoded.indices).astype(np.int64), encoded.dictionary
    item_ids, codes = item_ids[kept], codes[kept]
    if min_count > 1:
        ok = np.bincount(codes)[codes] >= min_count
        item_ids, codes = item_ids[ok], codes[ok]
        if item_ids.size == 0:
            return Attributes.empty()
    uniq, first = np.unique(codes, return_index=True)
    by_first = uniq[np.argsort(first)]
    new_attr = np.zeros(len(names), dtype=np.int64)
    new_attr[by_first] = np.arange(1, by_first.size + 1)
    # Group by item, items in order of first appearance, each item's attributes in source order.
    ids, first_item = np.unique(item_ids, return_index=True)
    rank = np.zeros(seqs.n_items + 1, dtype=np.int64)
    item_order = ids[np.argsort(first_item)]
    rank[item_order] = np.arange(item_order.size)
    order = np.argsort(rank[item_ids], kind="stable")
    counts = np.bincount(rank[item_ids], minlength=item_order.size)
    offsets = np.zeros(item_order.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Attributes(item_order, offsets, new_attr[codes[order]], names.take(pa.array(by_first)))


def summary(seqs: Sequences, attrs: Attributes) -> str:
    """The counts at each step, one per line."""
    lines = [str(s) for s in seqs.steps]
    with_attr = len(attrs.items)
    lines.append(f"attributes: {len(attrs.names):,} distinct, on {with_attr:,} of {seqs.n_items:,} items "
                 f"({seqs.n_items - with_attr:,} without)")
    return "\n".join(lines)
