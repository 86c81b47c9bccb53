"""Export a benchmark dataset to RecBole atomic files, to check the same split in RecBole.

Writes, into the output folder:

- ``NAME.inter``: ``user_id:token  item_id:token  timestamp:float`` (tab separated), one row per
  interaction, users in file order, each user's items in sequence order. The timestamp is the item's
  position in the user's sequence (1, 2, ...), so sorting by time reproduces our order exactly, repeats
  and all (positions are distinct within a user: no tie is left to the sort).
- ``NAME.item``: ``item_id:token  categories:token_seq``, one row per item 1..n_items, the item's
  attribute ids space separated in the benchmark file's order (repeats kept; empty for an item without
  attributes).

Ids are written as they are in ``NAME.txt`` / ``NAME_item2attributes.json``.

RecBole (1.x) settings that reproduce our leave-one-out split (docs/semantics.md, #data): put the two files in
``<data_path>/NAME/`` and use

    dataset: NAME
    load_col: {inter: [user_id, item_id, timestamp], item: [item_id, categories]}
    user_inter_num_interval: "[0,inf)"    # no further filtering: the data are already 5-core
    item_inter_num_interval: "[0,inf)"
    eval_args: {split: {LS: valid_and_test}, order: TO, group_by: user, mode: full}
    MAX_ITEM_LIST_LENGTH: 50

``LS: valid_and_test`` with ``order: TO`` and ``group_by: user`` holds out each user's last item for
test and the one before it for validation, as we do. For sequential models RecBole's ``mode: full``
ranks every item without removing the user's history: our ``full-unmasked`` protocol. ``mode:
uni100`` samples its own 100 candidates, not our 99 negatives, so compare the sampled protocol's
numbers only loosely. Yelp's repeated items are kept in ``NAME.inter``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import S3RecError
from ..fileio import atomic_paths
from .columns import joined_lists, text_lines

INTER_HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"
ITEM_HEADER = "item_id:token\tcategories:token_seq\n"


def inter_text(ds) -> bytes:
    """The bytes of ``NAME.inter``."""
    lengths = ds.lengths
    users = np.repeat(ds.user_ids, lengths)
    positions = np.arange(ds.n_interactions) - np.repeat(ds.offsets[:-1], lengths) + 1
    return INTER_HEADER.encode() + text_lines(pa.array(users), pa.array(ds.items), pa.array(positions))


def item_text(ds) -> bytes:
    """The bytes of ``NAME.item`` (every item 1..n_items, with its attributes or an empty field)."""
    offsets = ds.attr_offsets[1 : ds.n_items + 2]  # rows 1..n_items of the per-item CSR
    offsets = offsets - offsets[0]
    values = ds.attributes[ds.attr_offsets[1] : ds.attr_offsets[ds.n_items + 1]]
    return ITEM_HEADER.encode() + text_lines(pa.array(np.arange(1, ds.n_items + 1)), joined_lists(offsets, values))


def export_recbole(ds, out: str | Path, name: str | None = None, force: bool = False) -> dict[str, Path]:
    """Write ``NAME.inter`` and ``NAME.item`` for dataset ``ds`` into ``out``; returns the paths.

    Refuses to replace existing files unless ``force``. Both files are written before either is
    renamed into place, and both replace the old ones or neither does.
    """
    out = Path(out)
    name = name or ds.name
    paths = {"inter": out / f"{name}.inter", "item": out / f"{name}.item"}
    existing = [p for p in paths.values() if p.exists()]
    if existing and not force:
        raise S3RecError(f"{existing[0]} exists; use --force to replace it")
    inter, item = inter_text(ds), item_text(ds)
    with atomic_paths([paths["inter"], paths["item"]]) as (tmp_inter, tmp_item):  # both or neither
        tmp_inter.write_bytes(inter)
        tmp_item.write_bytes(item)
    return paths
