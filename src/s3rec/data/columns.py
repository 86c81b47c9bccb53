"""Arrow columns in and out of the import pipeline: ids, numbers and timestamps read from a column
(with errors that name the file and line of the bad value), and text files written from columns.

Everything works on whole columns (pyarrow compute, numpy); only an error path looks at single values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError


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


def first_true(mask) -> int | None:
    """Index of the first true value of a boolean arrow array, or None."""
    idx = np.flatnonzero(to_numpy(mask).astype(bool, copy=False))
    return int(idx[0]) if idx.size else None


def encode_ids(col, source: Source, what: str) -> tuple[np.ndarray, pa.Array]:
    """Dictionary-encode an id column: (codes int64, names as strings) with codes in order of first
    appearance. Integer ids are written in decimal; an empty or missing id is an error."""
    col = single(col)
    if pa.types.is_integer(col.type):
        bad = first_true(pc.is_null(col))
        if bad is not None:
            raise source.error(bad, f"missing {what} id")
        encoded = col.dictionary_encode()
        return to_numpy(encoded.indices).astype(np.int64), pc.cast(encoded.dictionary, pa.large_string())
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise source.error(None, f"the {what} id column has type {col.type}; expected strings or integers")
    bad = first_true(pc.or_kleene(pc.is_null(col), pc.equal(pc.utf8_length(col), 0)))
    if bad is not None:
        raise source.error(bad, f"empty {what} id")
    encoded = col.dictionary_encode()
    names = encoded.dictionary
    k = first_true(pc.match_substring_regex(names, r"[\r\n]"))
    if k is not None:
        row = first_true(pc.equal(col, names[k]))
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


def numbers(col: pa.Array, source: Source, what: str, expected: str = "a number") -> np.ndarray:
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
        k = first_true(pc.is_null(col))
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
        k = first_true(pc.is_null(col))
        if k is not None:
            raise source.error(k, f"missing {what}")
        micros = pc.cast(pc.cast(col, pa.timestamp("us", tz=getattr(t, "tz", None))), pa.int64())
        return to_numpy(micros).astype(np.float64) / 1e6
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return numbers(col, source, what)
    k = first_true(pc.or_kleene(pc.is_null(col), pc.equal(pc.utf8_length(col), 0)))
    if k is not None:
        raise source.error(k, f"empty {what}")
    if len(col) == 0 or _looks_numeric(col[0].as_py()):
        return numbers(col, source, what, expected="a number like the first row's")
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

