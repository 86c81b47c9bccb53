"""Reading interaction and attribute files in their formats (chosen by the file name; ``.gz``/``.bz2``/
``.zst`` compression is read as is): CSV, TSV, Parquet, JSON and RecBole atomic files. See
:mod:`.importing` for what each format holds and the column defaults.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError, S3RecError
from .columns import Source, encode_ids, first_true, numbers, single, to_numpy, to_seconds
from .formats import line_of_key, present, read_json_object
from .pipeline import AttributePairs, Interactions, Step

COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")
DEFAULT_COLUMNS = {"user": "user", "item": "item", "time": "timestamp", "rating": "rating"}
RECBOLE_COLUMNS = {"user": "user_id", "item": "item_id", "time": "timestamp", "rating": "rating"}
COLUMN_FLAGS = {"user": "--user-col", "item": "--item-col", "time": "--time-col", "rating": "--rating-col",
                "attr_item": "--attr-item-col", "attribute": "--attr-col"}


def separator(delimiter: str | None, kind: str) -> str:
    """The field separator of a text table: ``delimiter`` (``--delimiter``), checked, or the format's."""
    if delimiter is None:
        return "," if kind == "csv" else "\t"
    check_delimiter(delimiter)
    return delimiter


def check_delimiter(delimiter: str | None) -> None:
    """Refuse a ``--delimiter`` that pyarrow cannot split on (None: the format's default)."""
    if delimiter is None:
        return
    problem = None
    if len(delimiter) != 1:
        problem = "must be exactly one character"
    elif not delimiter.isascii() or delimiter in "\0\n\r":
        problem = "must be one ASCII character other than a line break or NUL"
    elif delimiter == '"':
        problem = "cannot be the quote character '\"'"
    if problem:
        raise S3RecError(f"--delimiter {delimiter!r}: {problem}, e.g. ',' ';' '|' or a tab")


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
    if not present(path):  # (a folder or a FIFO is an error of its own)
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
        table, source, _ = read_text_table(path, roles, separator(delimiter, kind), quoting=kind != "recbole-inter")
    if table.num_rows == 0:
        raise source.error(None, "no interactions (no rows after the header)")
    inter = interactions_from_table(table, source, path)
    if rating_threshold is not None:
        ratings = numbers(single(table.column("rating")), source, "rating")
        inter = inter.take(ratings >= rating_threshold, f"rating >= {rating_threshold:g}")
    return inter


def interactions_from_table(table: pa.Table, source: Source, path: Path, item_word: str = "item") -> Interactions:
    """A table's ``user``, ``item`` and ``time`` columns as interactions (ids encoded in order of first
    appearance), with the first step of the pipeline's summary; ``item_word`` names items in errors."""
    users, user_names = encode_ids(table.column("user"), source, "user")
    items, item_names = encode_ids(table.column("item"), source, item_word)
    times = to_seconds(table.column("time"), source)
    inter = Interactions(users, items, times, user_names, item_names)
    inter.steps.append(Step(f"read {path.name}", len(users), len(user_names), len(item_names)))
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
    bad = first_true(pc.and_(keep, pc.or_kleene(pc.is_null(items), pc.equal(pc.utf8_length(items), 0))))
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
        table, source, _ = read_text_table(path, roles, separator(delimiter, kind), quoting=True)
    return attribute_pairs(table.column("attr_item"), table.column("attribute"), source)
