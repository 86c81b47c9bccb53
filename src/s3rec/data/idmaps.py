"""Id maps: the original ids of an imported dataset's users, items and attributes.

Files ``NAME_user_ids.tsv``, ``NAME_item_ids.tsv``, ``NAME_attribute_ids.tsv`` beside ``NAME.txt``: a
header line ``id<TAB>original_id`` then one line ``internal_id<TAB>original_id`` per id, internal
ids 1..n in order. The original id is the rest of the line after the first tab, verbatim (it may
contain tabs or spaces, never a line break). The public benchmarks have none: their ids are the only
ones there are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .formats import present, read_lines
from .registry import locate

ID_MAP_HEADER = "id\toriginal_id"
ID_MAP_KINDS = ("user_ids", "item_ids", "attribute_ids")


@dataclass
class IdMaps:
    """Original ids of an imported dataset, indexed by internal id.

    ``users[k]``, ``items[k]``, ``attributes[k]`` are the original ids (strings) of internal id ``k``;
    index 0 is ``""`` (ids start at 1; 0 is padding), so ``len(items) == n_items + 1``.
    ``user_index()``, ``item_index()``, ``attribute_index()`` give the reverse dicts, original -> internal.
    """

    users: list[str]
    items: list[str]
    attributes: list[str]
    _index: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)

    def _reverse(self, what: str) -> dict[str, int]:
        if what not in self._index:
            names = getattr(self, what)
            self._index[what] = {n: k for k, n in enumerate(names) if k}
        return self._index[what]

    def user_index(self) -> dict[str, int]:
        return self._reverse("users")

    def item_index(self) -> dict[str, int]:
        return self._reverse("items")

    def attribute_index(self) -> dict[str, int]:
        return self._reverse("attributes")

    def check(self, dataset) -> None:
        """Raise :class:`DataError` unless the maps cover exactly ``dataset``'s users and items."""
        for what, n in (("users", dataset.n_users), ("items", dataset.n_items)):
            if len(getattr(self, what)) - 1 != n:
                raise DataError(dataset.paths.get("sequences", dataset.name), None,
                                f"the {what[:-1]} id map has {len(getattr(self, what)) - 1} ids; the dataset has {n} {what}")
        if len(self.attributes) - 1 < dataset.n_attributes:
            raise DataError(dataset.paths.get("attributes", dataset.name), None,
                            f"the attribute id map has {len(self.attributes) - 1} ids; the dataset uses {dataset.n_attributes}")


def id_map_text(names: pa.Array) -> bytes:
    """The bytes of an id map: the header, then ``internal_id<TAB>original_id`` for ids 1..n."""
    import pyarrow as pa  # (writing maps needs the [data] extra; reading them, as recommend does, not)

    from .columns import text_lines

    body = text_lines(pa.array(np.arange(1, len(names) + 1)), names) if len(names) else b""
    return (ID_MAP_HEADER + "\n").encode() + body


def id_map_paths(folder: Path, stem: str) -> dict[str, Path]:
    """The id map files of dataset ``stem`` in ``folder``: ``{"user_ids": ..., "item_ids": ..., "attribute_ids": ...}``."""
    return {kind: Path(folder) / f"{stem}_{kind}.tsv" for kind in ID_MAP_KINDS}


def read_id_map(path: str | Path) -> list[str]:
    """Read one id map file: a list whose index k holds the original id of internal id k (0: "")."""
    path = Path(path)
    lines = read_lines(path)
    if not lines or lines[0] != ID_MAP_HEADER:
        raise DataError(path, 1, f"expected the header {ID_MAP_HEADER!r}")
    names = [""]
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines[1:], 2):
        internal, tab, original = line.partition("\t")
        if not tab:
            raise DataError(path, lineno, "expected internal_id<TAB>original_id")
        if internal != str(len(names)):
            raise DataError(path, lineno, f"expected internal id {len(names)}, got {internal!r}")
        if original in seen:
            raise DataError(path, lineno, f"original id {original!r} already has internal id {seen[original]}")
        seen[original] = len(names)
        names.append(original)
    return names


def read_id_list(path: str | Path) -> list[tuple[int, str]]:
    """``(line, original id)`` for each line of a list of ids, one per line (surrounding spaces and
    blank lines ignored), as ``s3rec recommend --users-file`` takes them; a missing, non-regular or
    non-UTF-8 file is a :class:`DataError`. Check them with :func:`known_ids`."""
    return [(k, line.strip()) for k, line in enumerate(read_lines(Path(path)), 1) if line.strip()]


def known_ids(path: str | Path, listed: list[tuple[int, str]], known, what: str = "user") -> list[str]:
    """The ids of :func:`read_id_list`'s ``listed``, once each is found among ``known`` (a set of
    original ids); the first that is not is a :class:`DataError` naming ``path`` and its line."""
    bad = next(((k, i) for k, i in listed if i not in known), None)
    if bad is not None:
        raise DataError(path, bad[0], f"unknown {what} id {bad[1]!r} (not in the dataset)")
    return [i for _, i in listed]


def load_id_maps(data_dir: str | Path | None, name: str) -> IdMaps | None:
    """The id maps of dataset ``name``, found like the dataset itself (``data_dir``, then
    ``$S3REC_DATA_DIR``, then the cache: the folder that holds ``NAME.txt``).

    Returns an :class:`IdMaps` (lists ``users``/``items``/``attributes`` of original ids indexed by
    internal id, index 0 = ``""``; reverse dicts from ``user_index()`` etc.), or ``None`` when the
    dataset has no id maps (e.g. the public benchmarks, whose ids are the only ones there are).
    Raises :class:`S3RecError` if the dataset is not found, :class:`DataError` if a map is malformed
    or only some of the three exist.
    """
    files = locate(name, data_dir)
    maps = id_map_paths(files.folder, files.stem)
    found = [p for p in maps.values() if present(p)]
    if not found:
        return None
    if len(found) != len(maps):
        missing = next(p for p in maps.values() if p not in found)
        raise DataError(missing, None, f"missing, while {found[0].name} exists (re-run `s3rec data import`)")
    return IdMaps(read_id_map(maps["user_ids"]), read_id_map(maps["item_ids"]), read_id_map(maps["attribute_ids"]))
