"""Import your own interactions (and item attributes) into the benchmark format.

Inputs (the format is chosen by the file name; ``.gz``/``.bz2``/``.zst`` compression is read as is):

- interactions: CSV (``.csv``, ``.tsv``), Parquet (``.parquet``) or a RecBole atomic ``NAME.inter``
  (tab separated, header ``user_id:token item_id:token rating:float timestamp:float``; the ``:type``
  suffixes are ignored when matching column names). Columns: user, item, timestamp and, with a rating
  threshold, rating. Defaults ``user,item,timestamp,rating`` (RecBole: ``user_id,item_id,timestamp,
  rating``). Timestamps are numbers (unix seconds, or any unit: only their order matters) or ISO-8601
  dates (``2019-01-31``, ``2019-01-31 12:00:00``, ``2019-01-31T12:00:00Z``; without a zone: UTC).
- attributes (optional): CSV/Parquet rows ``item,attribute`` (several rows per item), a JSON object
  ``{"item": ["attr", ...]}``, or a RecBole ``NAME.item`` whose attribute column (``token_seq``: space
  separated tokens, or ``token``: one) is chosen by name (default: the first ``token_seq`` column).

Pipeline (numpy over whole columns; no Python loop over rows):

1. read; optionally keep rows with ``rating >= rating_threshold``;
2. group by user and sort each user's interactions by time, stably: ties keep file order;
3. drop repeated (user, item) pairs, keeping the first, i.e. the earliest (ties: file order); on by
   default in :func:`import_dataset` and ``s3rec data import`` (``--no-dedup`` keeps repeats);
4. iterative k-core: drop users and items with fewer than k interactions until none is left to drop
   (``k <= 1`` disables it). Users with fewer than 3 interactions are always dropped, k-core or not:
   the leave-one-out split needs 3 (and the benchmark reader refuses shorter sequences);
5. re-index from 1: users in order of first appearance in the interactions file; items in order of
   first appearance in the resulting sequences read top to bottom (user 1's sequence, then user 2's,
   ...); attributes in order of first appearance in the attribute source, among the kept items. (The
   authors' preprocessing numbers users, items and attributes the same way.) Attributes of items that
   have no interactions left are dropped; an item's attributes keep their source order, repeats included.

Outputs in the output folder (``NAME`` is the dataset name):

- ``NAME.txt`` and ``NAME_item2attributes.json``: the benchmark format (see :mod:`.formats`);
  every item with at least one attribute gets an entry, in order of first appearance in the source;
- ``NAME_user_ids.tsv``, ``NAME_item_ids.tsv``, ``NAME_attribute_ids.tsv``: the id maps, a header
  line ``id<TAB>original_id`` then one line ``internal_id<TAB>original_id`` per id, internal ids 1..n
  in order. The original id is the rest of the line after the first tab, verbatim (it may contain
  tabs or spaces, never a line break). Read them with :func:`load_id_maps`.

All files are written to temporary files first and renamed into place only once every one is
complete; an error leaves the folder as it was.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError, S3RecError
from ..fileio import atomic_path
from .formats import MIN_SEQUENCE_LENGTH, line_of_key, read_json_object

Log = Callable[[str], None]

COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")
DEFAULT_COLUMNS = {"user": "user", "item": "item", "time": "timestamp", "rating": "rating"}
RECBOLE_COLUMNS = {"user": "user_id", "item": "item_id", "time": "timestamp", "rating": "rating"}
COLUMN_FLAGS = {"user": "--user-col", "item": "--item-col", "time": "--time-col", "rating": "--rating-col",
                "attr_item": "--attr-item-col", "attribute": "--attr-col"}
ID_MAP_HEADER = "id\toriginal_id"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


# ---------------------------------------------------------------------------------------------------
# data held between the steps


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


# ---------------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class Source:
    """Where rows came from, to name the file and line (or row) in errors."""

    path: Path
    header_lines: int | None  # text files: lines before the first row; Parquet: None (rows are counted)
    rows: np.ndarray | None = None  # original row of each kept row, when blank lines were dropped

    def error(self, row: int | None, problem: str) -> DataError:
        if row is None:
            return DataError(self.path, None, problem)
        if self.rows is not None:
            row = int(self.rows[row])
        if self.header_lines is None:
            return DataError(self.path, None, f"row {row + 1}: {problem}")
        return DataError(self.path, row + 1 + self.header_lines, problem)


def file_kind(path: Path) -> str:
    """``csv``, ``tsv``, ``parquet``, ``json``, ``recbole-inter`` or ``recbole-item``, from the name."""
    name = path.name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith(".inter"):
        return "recbole-inter"
    if name.endswith(".item"):
        return "recbole-item"
    if name.endswith(".json"):
        return "json"
    if name.endswith((".tsv", ".tab")):
        return "tsv"
    return "csv"


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise S3RecError(f"{path}: no such file")


def _no_column(path: Path, line: int | None, name: str, role: str, header: list[str], hint: str | None) -> DataError:
    found = ", ".join(repr(c) for c in header)
    return DataError(path, line, f"no column {name!r} (the {role.replace('_', ' ')}); columns: {found}; "
                                 + (hint or f"choose one with {COLUMN_FLAGS[role]}"))


def read_text_table(path: Path, roles: dict[str, str], delimiter: str, quoting: bool,
                    hint: str | None = None) -> tuple[pa.Table, Source, list[str]]:
    """Read the columns named in ``roles`` (role -> column name) of a delimited text file as strings.

    RecBole headers (``name:type``) match by name. Returns the table (columns renamed to the roles),
    the source (blank lines dropped, line numbers kept) and all column names of the file. A missing
    column's error ends with ``hint`` (default: the command-line flag that names that column).
    """
    import pyarrow.csv as pacsv

    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quoting else False, ignore_empty_lines=False)
    try:
        with pacsv.open_csv(path, parse_options=parse) as reader:
            header = reader.schema.names
    except (pa.ArrowInvalid, StopIteration) as e:
        raise _csv_error(path, e, delimiter, quoting) from None
    by_name = {}
    for col in header:
        by_name.setdefault(col, col)
        by_name.setdefault(col.split(":", 1)[0], col)
    chosen = {}
    for role, name in roles.items():
        if name not in by_name:
            raise _no_column(path, 1, name, role, header, hint)
        chosen[role] = by_name[name]
    columns = list(dict.fromkeys(chosen.values()))
    convert = pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.large_string() for c in columns},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    try:
        table = pacsv.read_csv(path, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as e:
        raise _csv_error(path, e, delimiter, quoting) from None
    table = pa.table({role: table.column(col) for role, col in chosen.items()})
    # Blank lines become rows of empty strings: drop them, remembering the line of every other row.
    blank = None
    for role in chosen:
        empty = pc.equal(pc.utf8_length(table.column(role)), 0)
        blank = empty if blank is None else pc.and_(blank, empty)
    source = Source(path, 1)
    if blank is not None and pc.any(blank).as_py():
        keep = np.flatnonzero(~to_numpy(blank).astype(bool))
        table = table.take(pa.array(keep))
        source = Source(path, 1, keep)
    return table, source, header


def _read_parquet_table(path: Path, roles: dict[str, str]) -> tuple[pa.Table, Source]:
    import pyarrow.parquet as pq

    try:
        header = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(path, None, f"not a readable Parquet file: {_arrow_message(e)}") from None
    for role, name in roles.items():
        if name not in header:
            raise _no_column(path, None, name, role, header, None)
    columns = list(dict.fromkeys(roles.values()))
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(path, None, f"not a readable Parquet file: {_arrow_message(e)}") from None
    return pa.table({role: table.column(name) for role, name in roles.items()}), Source(path, None)


def _arrow_message(e: BaseException) -> str:
    return str(e).strip().replace("\n", " ")


def _csv_error(path: Path, e: BaseException, delimiter: str = ",", quoting: bool = True) -> DataError:
    """A pyarrow CSV error as a DataError with its line: pyarrow's ``Row #N`` (which counts lines) when
    it gives one, else the first line whose field count differs from the header's (found by a scan)."""
    msg = _arrow_message(e) or "the file is empty"
    m = re.match(r"CSV parse error: Row #(\d+): (.*)", msg)
    if m:
        return DataError(path, int(m.group(1)), f"CSV parse error: {m.group(2)}")
    if msg.startswith("CSV parse error: Expected"):
        line = _ragged_line(path, delimiter, quoting)
        if line is not None:
            return DataError(path, line, msg)
    return DataError(path, None, msg)


def _ragged_line(path: Path, delimiter: str, quoting: bool) -> int | None:
    """The first line with another number of fields than the header (error path only: a Python scan)."""
    import bz2
    import csv
    import gzip

    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix.lower(), open)
    if path.suffix.lower() in COMPRESSION_SUFFIXES and opener is open:
        return None
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        rows = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE)
        width = None
        for row in rows:
            if width is None:
                width = len(row)
            elif row and len(row) != width:
                return rows.line_num
    return None


def to_numpy(col) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return col.to_numpy(zero_copy_only=False)


def single(col) -> pa.Array:
    """One contiguous array (large_string for strings, so no 2 GiB limit)."""
    if isinstance(col, pa.ChunkedArray):
        if pa.types.is_string(col.type):
            col = col.cast(pa.large_string())
        col = col.combine_chunks()
    return col


def _first(mask) -> int | None:
    """Index of the first true value of a boolean arrow array, or None."""
    idx = np.flatnonzero(to_numpy(mask).astype(bool, copy=False))
    return int(idx[0]) if idx.size else None


def encode_ids(col, source: Source, what: str) -> tuple[np.ndarray, pa.Array]:
    """Dictionary-encode an id column: (codes int64, names as strings) with codes in order of first
    appearance. Integer ids are written in decimal; an empty or missing id is an error."""
    col = single(col)
    if pa.types.is_integer(col.type):
        bad = _first(pc.is_null(col))
        if bad is not None:
            raise source.error(bad, f"missing {what} id")
        encoded = col.dictionary_encode()
        return to_numpy(encoded.indices).astype(np.int64), pc.cast(encoded.dictionary, pa.large_string())
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise source.error(None, f"the {what} id column has type {col.type}; expected strings or integers")
    bad = _first(pc.or_kleene(pc.is_null(col), pc.equal(pc.utf8_length(col), 0)))
    if bad is not None:
        raise source.error(bad, f"empty {what} id")
    encoded = col.dictionary_encode()
    names = encoded.dictionary
    k = _first(pc.match_substring_regex(names, r"[\r\n]"))
    if k is not None:
        row = _first(pc.equal(col, names[k]))
        raise source.error(row, f"{what} id {names[k].as_py()!r} contains a line break")
    return to_numpy(encoded.indices).astype(np.int64), names


def _first_failure(arr: pa.Array, convert: Callable[[pa.Array], object]) -> int:
    """The index of the first element that ``convert`` fails on (it fails on the whole array)."""
    lo, hi = 0, len(arr)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            convert(arr.slice(lo, mid - lo))
            lo = mid
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hi = mid
    return lo


def _numbers(col: pa.Array, source: Source, what: str, expected: str = "a number") -> np.ndarray:
    """Strings (or numbers) to float64, rejecting the first unparsable or non-finite value."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        def convert(a):
            return pc.cast(a, pa.float64())
        try:
            values = to_numpy(convert(col))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            k = _first_failure(col, convert)
            raise source.error(k, f"unparsable {what} {col[k].as_py()!r}: expected {expected}") from None
    elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
        k = _first(pc.is_null(col))
        if k is not None:
            raise source.error(k, f"missing {what}")
        values = to_numpy(pc.cast(col, pa.float64()))
    else:
        raise source.error(None, f"the {what} column has type {col.type}; expected numbers")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        k = int(bad[0])
        raise source.error(k, f"{what} {col[k].as_py()!r} is not a finite number")
    return values


_ZONED = r"\d:\d\d(?::\d\d(?:[.,]\d*)?)?(?:Z|z|[+-]\d\d(?::?\d\d)?)$"


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def to_seconds(col, source: Source, what: str = "timestamp") -> np.ndarray:
    """A timestamp column as float64 seconds (numbers are taken as they are: any unit keeps the order).

    Accepts numbers, numeric strings, ISO-8601 strings (naive ones are read as UTC; zoned ones are
    converted), and Parquet timestamp/date columns. The first value decides between numbers and dates;
    the first value of the other kind, or an unparsable one, is an error naming its line.
    """
    col = single(col)
    t = col.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        k = _first(pc.is_null(col))
        if k is not None:
            raise source.error(k, f"missing {what}")
        micros = pc.cast(pc.cast(col, pa.timestamp("us", tz=getattr(t, "tz", None))), pa.int64())
        return to_numpy(micros).astype(np.float64) / 1e6
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return _numbers(col, source, what)
    k = _first(pc.or_kleene(pc.is_null(col), pc.equal(pc.utf8_length(col), 0)))
    if k is not None:
        raise source.error(k, f"empty {what}")
    if len(col) == 0 or _looks_numeric(col[0].as_py()):
        return _numbers(col, source, what, expected="a number like the first row's")
    # ISO-8601 dates: naive and zoned values are cast separately (arrow wants one or the other).
    zoned = to_numpy(pc.match_substring_regex(col, _ZONED)).astype(bool)
    values = np.empty(len(col), dtype=np.float64)
    for mask, target in ((~zoned, pa.timestamp("us")), (zoned, pa.timestamp("us", tz="UTC"))):
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            continue
        part = col if rows.size == len(col) else col.take(pa.array(rows))

        def convert(a, target=target):
            return pc.cast(a, target)
        try:
            values[rows] = to_numpy(pc.cast(convert(part), pa.int64())).astype(np.float64) / 1e6
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            k = _first_failure(part, convert)
            raise source.error(int(rows[k]), f"unparsable {what} {part[k].as_py()!r}: expected an ISO-8601 date "
                                             f"like the first row's ({col[0].as_py()!r})") from None
    return values


def read_interactions(
    path: str | Path,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    rating_col: str | None = None,
    rating_threshold: float | None = None,
    delimiter: str | None = None,
) -> Interactions:
    """Read an interactions file (CSV/TSV, Parquet or RecBole ``.inter``) in file order.

    With ``rating_threshold`` only rows with ``rating >= rating_threshold`` are kept (the rating
    column must exist then; it is not read otherwise).
    """
    path = Path(path)
    _check_file(path)
    kind = file_kind(path)
    if kind in ("json", "recbole-item"):
        raise S3RecError(f"{path}: interactions must be CSV, TSV, Parquet or a RecBole .inter file")
    defaults = RECBOLE_COLUMNS if kind == "recbole-inter" else DEFAULT_COLUMNS
    roles = {"user": user_col or defaults["user"], "item": item_col or defaults["item"],
             "time": time_col or defaults["time"]}
    if rating_threshold is not None:
        roles["rating"] = rating_col or defaults["rating"]
    if kind == "parquet":
        table, source = _read_parquet_table(path, roles)
    else:
        sep = delimiter or ("," if kind == "csv" else "\t")
        table, source, _ = read_text_table(path, roles, sep, quoting=kind != "recbole-inter")
    if table.num_rows == 0:
        raise source.error(None, "no interactions (no rows after the header)")
    users, user_names = encode_ids(table.column("user"), source, "user")
    items, item_names = encode_ids(table.column("item"), source, "item")
    times = to_seconds(table.column("time"), source)
    inter = Interactions(users, items, times, user_names, item_names)
    inter.steps.append(Step(f"read {path.name}", len(users), len(user_names), len(item_names)))
    if rating_threshold is not None:
        ratings = _numbers(single(table.column("rating")), source, "rating")
        inter = inter.take(ratings >= rating_threshold, f"rating >= {rating_threshold:g}")
    return inter


def pairs_from_lists(items: pa.Array, lists: pa.Array) -> AttributePairs:
    """Flatten a list<string> column into (item, attribute) pairs, dropping empty tokens."""
    parents = pc.list_parent_indices(lists)
    attrs = pc.list_flatten(lists)
    pairs_items = items.take(parents)
    keep = pc.greater(pc.utf8_length(attrs), 0)
    return AttributePairs(pairs_items.filter(keep), attrs.filter(keep))


def attribute_pairs(items, attrs, source: Source) -> AttributePairs:
    """Pairs from an item column and an attribute column: rows without an attribute are skipped; a row
    with an attribute but no item id is an error."""
    items, attrs = single(items), single(attrs)
    if not pa.types.is_large_string(items.type):
        items = pc.cast(items, pa.large_string())
    if not pa.types.is_large_string(attrs.type):
        attrs = pc.cast(attrs, pa.large_string())
    keep = pc.and_(pc.is_valid(attrs), pc.greater(pc.utf8_length(attrs), 0))  # no attribute: nothing to add
    bad = _first(pc.and_(keep, pc.or_kleene(pc.is_null(items), pc.equal(pc.utf8_length(items), 0))))
    if bad is not None:
        raise source.error(bad, "empty item id")
    return AttributePairs(items.filter(keep), attrs.filter(keep))


def _read_json_attributes(path: Path) -> AttributePairs:
    mapping, text = read_json_object(path, "item -> [attributes]")
    items: list[str] = []
    attrs: list[str] = []
    for key, value in mapping.items():
        ok = isinstance(value, list) and all(isinstance(a, (str, int)) and not isinstance(a, bool) for a in value)
        if not ok:
            raise DataError(path, line_of_key(text, key), f"item {key!r}: expected a list of attribute names (strings or integers)")
        for a in value:
            a = str(a)
            if a:
                items.append(key)
                attrs.append(a)
    return AttributePairs(pa.array(items, pa.large_string()), pa.array(attrs, pa.large_string()))


def read_attributes(
    path: str | Path, item_col: str | None = None, attr_col: str | None = None, delimiter: str | None = None
) -> AttributePairs:
    """Read item attributes as (item, attribute) pairs in file order.

    CSV/TSV/Parquet: one pair per row, columns ``item_col`` (default ``item``) and ``attr_col``
    (default ``attribute``). JSON: an object ``{"item": ["attribute", ...]}``. RecBole ``.item``:
    ``item_col`` default ``item_id``; ``attr_col`` default the first ``token_seq`` column (space
    separated tokens); a ``token`` column gives one attribute per row. Empty attributes are skipped.
    """
    path = Path(path)
    _check_file(path)
    kind = file_kind(path)
    if kind == "json":
        return _read_json_attributes(path)
    if kind == "recbole-item":
        import pyarrow.csv as pacsv

        parse = pacsv.ParseOptions(delimiter="\t", quote_char=False)
        try:
            with pacsv.open_csv(path, parse_options=parse) as reader:
                header = reader.schema.names
        except (pa.ArrowInvalid, StopIteration) as e:
            raise _csv_error(path, e, "\t", False) from None
        if attr_col is None:
            seqs = [c.split(":", 1)[0] for c in header if c.endswith(":token_seq")]
            if not seqs:
                raise DataError(path, 1, f"no token_seq column to take attributes from (columns: {', '.join(header)}); "
                                         f"choose one with {COLUMN_FLAGS['attribute']}")
            attr_col = seqs[0]
        roles = {"attr_item": item_col or "item_id", "attribute": attr_col}
        table, source, header = read_text_table(path, roles, "\t", quoting=False)
        full = next(c for c in header if c == attr_col or c.split(":", 1)[0] == attr_col)
        pairs = attribute_pairs(table.column("attr_item"), table.column("attribute"), source)
        if full.endswith(":token_seq"):
            return pairs_from_lists(pairs.items, pc.split_pattern(pairs.attributes, " "))
        return pairs
    roles = {"attr_item": item_col or "item", "attribute": attr_col or "attribute"}
    if kind == "parquet":
        table, source = _read_parquet_table(path, roles)
    else:
        sep = delimiter or ("," if kind == "csv" else "\t")
        table, source, _ = read_text_table(path, roles, sep, quoting=True)
    return attribute_pairs(table.column("attr_item"), table.column("attribute"), source)


# ---------------------------------------------------------------------------------------------------
# the pipeline


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


def count_step(label: str, users: np.ndarray, items: np.ndarray) -> Step:
    if users.size == 0:
        return Step(label, 0, 0, 0)
    return Step(label, int(users.size), int(np.count_nonzero(np.bincount(users))), int(np.count_nonzero(np.bincount(items))))


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


# ---------------------------------------------------------------------------------------------------
# writing


def text_lines(*columns: pa.Array, sep: str = "\t") -> bytes:
    """The bytes of a text file: one line per row, the columns' strings joined by ``sep``."""
    s = pa.scalar(sep, pa.large_string())
    cols = [c if pa.types.is_large_string(c.type) else pc.cast(c, pa.large_string()) for c in columns]
    lines = cols[0] if len(cols) == 1 else pc.binary_join_element_wise(*cols, s)
    lines = pc.binary_join_element_wise(lines, pa.scalar("", pa.large_string()), pa.scalar("\n", pa.large_string()))
    return _concatenated(lines)


def _concatenated(strings: pa.Array) -> bytes:
    """All the strings of a large_string array back to back, without a copy per string."""
    if isinstance(strings, pa.ChunkedArray):
        return b"".join(_concatenated(c) for c in strings.chunks)
    if len(strings) == 0:
        return b""
    _, offsets_buf, data = strings.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[strings.offset : strings.offset + len(strings) + 1]
    return memoryview(data)[int(offsets[0]) : int(offsets[-1])].tobytes() if data is not None else b""


def joined_lists(offsets: np.ndarray, values: np.ndarray | pa.Array, sep: str = " ") -> pa.Array:
    """One string per row: ``values[offsets[k]:offsets[k+1]]`` joined by ``sep``."""
    strings = values if isinstance(values, pa.Array) else pa.array(values)
    strings = pc.cast(strings, pa.large_string())
    lists = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), strings)
    return pc.binary_join(lists, pa.scalar(sep, pa.large_string()))


def sequences_text(user_ids: np.ndarray, offsets: np.ndarray, items: np.ndarray) -> bytes:
    """The bytes of a ``NAME.txt``: ``user item item ...`` lines."""
    return text_lines(pa.array(user_ids), joined_lists(offsets, items), sep=" ")


def id_map_text(names: pa.Array) -> bytes:
    """The bytes of an id map: the header, then ``internal_id<TAB>original_id`` for ids 1..n."""
    body = text_lines(pa.array(np.arange(1, len(names) + 1)), names) if len(names) else b""
    return (ID_MAP_HEADER + "\n").encode() + body


def attributes_json(attrs: Attributes) -> str:
    """The text of ``NAME_item2attributes.json``."""
    values = attrs.attributes.tolist()
    lo = attrs.offsets.tolist()
    return json.dumps({str(item): values[lo[k] : lo[k + 1]] for k, item in enumerate(attrs.items.tolist())})


def output_paths(out: Path, name: str) -> dict[str, Path]:
    return {
        "sequences": out / f"{name}.txt",
        "attributes": out / f"{name}_item2attributes.json",
        "user_ids": out / f"{name}_user_ids.tsv",
        "item_ids": out / f"{name}_item_ids.tsv",
        "attribute_ids": out / f"{name}_attribute_ids.tsv",
    }


def check_output(out: str | Path, name: str, force: bool) -> dict[str, Path]:
    """Check the dataset name and that nothing would be overwritten without ``force``; the output paths."""
    from .registry import registered

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
    """Write the benchmark files and id maps, all or nothing (see the module docstring).

    With ``force`` an existing dataset of that name is replaced, and its negatives file
    (``NAME_sample.txt`` beside it, and the cache's copy) is removed: it belongs to the old data.
    """
    from .registry import negatives_cache_path

    paths = check_output(out, name, force)
    contents = {
        "sequences": sequences_text(np.arange(1, seqs.n_users + 1), seqs.offsets, seqs.items),
        "attributes": attributes_json(attrs).encode(),
        "user_ids": id_map_text(seqs.user_names),
        "item_ids": id_map_text(seqs.item_names),
        "attribute_ids": id_map_text(attrs.names),
    }
    with contextlib.ExitStack() as stack:
        # Entered first, exited (renamed into place) last: NAME.txt, which makes the dataset visible.
        for key in ["sequences", "attributes", "user_ids", "item_ids", "attribute_ids"]:
            tmp = stack.enter_context(atomic_path(paths[key]))
            tmp.write_bytes(contents[key])
    for stale in (Path(out) / f"{name}_sample.txt", negatives_cache_path(name)):
        if stale.is_file():
            stale.unlink()
            if log:
                log(f"removed {stale} (negatives of the replaced data)")
    return paths


def summary(seqs: Sequences, attrs: Attributes) -> str:
    """The counts at each step, one per line."""
    lines = [str(s) for s in seqs.steps]
    with_attr = len(attrs.items)
    lines.append(f"attributes: {len(attrs.names):,} distinct, on {with_attr:,} of {seqs.n_items:,} items "
                 f"({seqs.n_items - with_attr:,} without)")
    return "\n".join(lines)


def import_dataset(
    interactions: str | Path,
    out: str | Path,
    name: str | None = None,
    attributes: str | Path | None = None,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    rating_col: str | None = None,
    rating_threshold: float | None = None,
    attr_item_col: str | None = None,
    attr_col: str | None = None,
    delimiter: str | None = None,
    dedup: bool = True,
    k: int = 5,
    min_attribute_count: int = 1,
    force: bool = False,
    log: Log | None = None,
) -> dict[str, Path]:
    """Read, filter, re-index and write a dataset (the whole module docstring); returns the paths written."""
    interactions = Path(interactions)
    name = name or default_name(interactions)
    check_output(out, name, force)  # before the work, not after it
    inter = read_interactions(interactions, user_col, item_col, time_col, rating_col, rating_threshold, delimiter)
    pairs = read_attributes(attributes, attr_item_col, attr_col, delimiter) if attributes else None
    seqs = build_sequences(inter, dedup=dedup, k=k, source=interactions)
    attrs = build_attributes(seqs, pairs, min_attribute_count)
    paths = write_dataset(out, name, seqs, attrs, force=force, log=log)
    if log:
        log(summary(seqs, attrs))
        log(f"wrote {name} to {Path(out)} ({', '.join(p.name for p in paths.values())})")
    return paths


def default_name(path: Path) -> str:
    """The file name without its extensions (``ratings.csv.gz`` -> ``ratings``)."""
    return path.name.split(".", 1)[0]


# ---------------------------------------------------------------------------------------------------
# id maps


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


def read_id_map(path: str | Path) -> list[str]:
    """Read one id map file: a list whose index k holds the original id of internal id k (0: "")."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, None, f"not UTF-8 text ({e.reason})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
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


def load_id_maps(data_dir: str | Path | None, name: str) -> IdMaps | None:
    """The id maps of dataset ``name``, found like the dataset itself (``data_dir``, then
    ``$S3REC_DATA_DIR``, then the cache: the folder that holds ``NAME.txt``).

    Returns an :class:`IdMaps` (lists ``users``/``items``/``attributes`` of original ids indexed by
    internal id, index 0 = ``""``; reverse dicts from ``user_index()`` etc.), or ``None`` when the
    dataset has no id maps (e.g. the public benchmarks, whose ids are the only ones there are).
    Raises :class:`S3RecError` if the dataset is not found, :class:`DataError` if a map is malformed
    or only some of the three exist.
    """
    from .registry import locate

    files = locate(name, data_dir)
    paths = output_paths(files.folder, files.stem)
    maps = {k: paths[k] for k in ("user_ids", "item_ids", "attribute_ids")}
    present = [p for p in maps.values() if p.is_file()]
    if not present:
        return None
    if len(present) != len(maps):
        missing = next(p for p in maps.values() if not p.is_file())
        raise DataError(missing, None, f"missing, while {present[0].name} exists (re-run `s3rec data import`)")
    return IdMaps(read_id_map(maps["user_ids"]), read_id_map(maps["item_ids"]), read_id_map(maps["attribute_ids"]))
