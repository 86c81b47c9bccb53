"""The in-memory dataset: sequences and attributes as CSR arrays, plus the leave-one-out split.

IDs: items are 1..n_items, 0 is padding and ``mask_id = n_items + 1``; attributes are
1..n_attributes with 0 as padding.

Split of a user's sequence s (length n): fine-tuning input s[:-3] predicting s[1:-2]; validation
input s[:-2] predicting s[-2]; test input s[:-1] predicting s[-1]. Inputs are cut to the last
``max_len`` items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import formats

SPLIT_HOLDOUT = {"train": 3, "valid": 2, "test": 1}  # items removed from the end to form the input


@dataclass
class Dataset:
    name: str
    user_ids: np.ndarray  # [n_users] original user ids, file order
    offsets: np.ndarray  # [n_users + 1] into items
    items: np.ndarray  # [n_interactions] item ids, chronological per user
    n_items: int
    attr_offsets: np.ndarray  # [n_items + 3] into attributes, indexed by item id
    attributes: np.ndarray  # [n] attribute ids
    n_attributes: int
    negatives: np.ndarray | None = None  # [n_users, 99] sampled-protocol negatives, when loaded
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def folder(self) -> Path | None:
        """The folder its files were read from, absolute (None for a dataset made in memory)."""
        return Path(self.paths["sequences"]).absolute().parent if "sequences" in self.paths else None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.items)

    @property
    def mask_id(self) -> int:
        return self.n_items + 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, k: int) -> np.ndarray:
        """The full sequence of the k-th user (0-based row, not the user id)."""
        return self.items[self.offsets[k] : self.offsets[k + 1]]

    def split_input(self, k: int, split: str) -> np.ndarray:
        """The k-th user's input at ``split`` (not cut to a ``max_len``): s[:-3] for "train" (predicting
        s[1:-2]), s[:-2] for "valid" (predicting s[-2]), s[:-1] for "test" (predicting s[-1])."""
        return self.sequence(k)[: -SPLIT_HOLDOUT[split]]

    def targets(self, split: str) -> np.ndarray:
        """The validation (s[-2]) or test (s[-1]) target of every user: the item right after the input."""
        if split == "train":
            raise ValueError("the training split has a target at every position, not one per user")
        return self.items[self.offsets[1:] - SPLIT_HOLDOUT[split]]

    def stats(self) -> dict:
        lengths = self.lengths
        users = np.repeat(np.arange(self.n_users), lengths)
        pairs = np.unique(users * (self.n_items + 1) + self.items)
        repeated = int(self.n_interactions - pairs.size)
        return {
            "dataset": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "attributes": int(np.unique(self.attributes).size),
            "attribute_id_max": self.n_attributes,
            "avg_len": round(float(lengths.mean()), 2),
            "min_len": int(lengths.min()),
            "max_len": int(lengths.max()),
            "repeated_user_item_pairs": repeated,
        }


def check_trainable(ds: Dataset) -> None:
    """Refuse to fine-tune on a dataset where no user has more than 3 items: validation and test take
    each user's last two, so the training input s[:-3] is empty for everyone and there is no training
    pair at all (the model would be evaluated untrained)."""
    if ds.n_users and int(ds.lengths.max()) <= SPLIT_HOLDOUT["train"]:
        raise DataError(ds.paths.get("sequences", ds.name), None,
                        f"no user has more than {SPLIT_HOLDOUT['train']} items, so there is nothing to fine-tune on "
                        "(each user's last 2 items are validation and test; training needs 2 more before them)")


def load_files(name: str, sequences: Path, attributes: Path | None) -> Dataset:
    """Read and validate a dataset from its files (attributes are optional; the sampled protocol's
    negatives are attached by :mod:`.negatives`)."""
    user_ids, offsets, items = formats.read_sequences(sequences)
    n_items = int(items.max())
    paths = {"sequences": Path(sequences)}
    if attributes is not None:
        attr_offsets, attrs, n_attributes = formats.read_attributes(attributes, n_items)
        paths["attributes"] = Path(attributes)
    else:
        attr_offsets, attrs, n_attributes = np.zeros(n_items + 3, dtype=np.int64), np.zeros(0, np.int64), 0
    return Dataset(name, user_ids, offsets, items, n_items, attr_offsets, attrs, n_attributes, None, paths)
