"""Writing an imported dataset: the benchmark files and the id maps, all or nothing.

Every file is written to a temporary file first and renamed into place only once every one is
complete (``NAME.txt``, which makes the dataset visible, last); an error, a failed rename included
(:func:`s3rec.fileio.atomic_paths` puts back the files already replaced), leaves the folder as it was.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from ..errors import S3RecError
from ..fileio import atomic_paths
from .columns import joined_lists, text_lines
from .idmaps import id_map_paths, id_map_text
from .pipeline import Attributes, Sequences
from .registry import negatives_cache_path, registered

Log = Callable[[str], None]
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def sequences_text(user_ids: np.ndarray, offsets: np.ndarray, items: np.ndarray) -> bytes:
    """The bytes of a ``NAME.txt``: ``user item item ...`` lines."""
    return text_lines(pa.array(user_ids), joined_lists(offsets, items), sep=" ")


def attributes_json(attrs: Attributes) -> str:
    """The text of ``NAME_item2attributes.json``."""
    values = attrs.attributes.tolist()
    lo = attrs.offsets.tolist()
    return json.dumps({str(item): values[lo[k] : lo[k + 1]] for k, item in enumerate(attrs.items.tolist())})


def output_paths(out: Path, name: str) -> dict[str, Path]:
    """The files of dataset ``name`` in folder ``out``: the benchmark files, then the id maps."""
    return {"sequences": out / f"{name}.txt", "attributes": out / f"{name}_item2attributes.json",
            **id_map_paths(out, name)}


def check_output(out: str | Path, name: str, force: bool) -> dict[str, Path]:
    """Check the dataset name and that nothing would be overwritten without ``force``; the output paths."""
    if not _NAME_RE.fullmatch(name):
        raise S3RecError(f"dataset name {name!r}: use letters, digits and _ . + - (it becomes a file name)")
    info = registered(name)
    if info is not None and info.stem != name:
        raise S3RecError(f"{name!r} is a registered dataset whose files are called {info.stem}.txt; "
                         f"use --name {info.stem} or another name")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise S3RecError(f"{out} is not a folder")
    paths = output_paths(out, name)
    existing = [p for p in [*paths.values(), out / f"{name}_sample.txt"] if p.exists()]
    if existing and not force:
        raise S3RecError(f"{existing[0]} exists; use --force to replace the dataset {name} in {out}")
    return paths


def write_dataset(out: str | Path, name: str, seqs: Sequences, attrs: Attributes, force: bool = False,
                  log: Log | None = None) -> dict[str, Path]:
    """Write the benchmark files and id maps, all or nothing (see the module docstring; ``log`` reports removed files).

    With ``force`` an existing dataset of that name is replaced, and its negatives file
    (``NAME_sample.txt`` beside it, and the cache's copy) is removed: it belongs to the old data.
    """
    paths = check_output(out, name, force)
    contents = {
        "sequences": sequences_text(np.arange(1, seqs.n_users + 1), seqs.offsets, seqs.items),
        "attributes": attributes_json(attrs).encode(),
        "user_ids": id_map_text(seqs.user_names),
        "item_ids": id_map_text(seqs.item_names),
        "attribute_ids": id_map_text(attrs.names),
    }
    order = ["attributes", "user_ids", "item_ids", "attribute_ids", "sequences"]  # NAME.txt (visible) last
    with atomic_paths([paths[key] for key in order]) as temps:
        for key, tmp in zip(order, temps):
            tmp.write_bytes(contents[key])
    for stale in (Path(out) / f"{name}_sample.txt", negatives_cache_path(name)):
        if stale.is_file():
            stale.unlink()
            if log:
                log(f"removed {stale} (negatives of the replaced data)")
    return paths
