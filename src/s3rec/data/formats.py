"""Readers and validators for the benchmark file format.

- ``NAME.txt``: one user per line, ``user_id item item ...`` (chronological, space separated).
- ``NAME_item2attributes.json``: ``{"item_id": [attribute_id, ...], ...}``.
- ``NAME_sample.txt``: ``user_id neg_1 ... neg_99`` per line (the sampled-protocol candidates).

Every problem raises :class:`~s3rec.errors.DataError` naming the file, the line and the problem.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np

from ..errors import DataError

MIN_SEQUENCE_LENGTH = 3  # valid and test each take one item; fine-tuning needs the rest
N_NEGATIVES = 99
_INT64_MAX = 2**63 - 1  # ids are stored as int64


def present(path: Path) -> bool:
    """Whether a dataset file is there: True for a regular file (or a link to one), False only when
    nothing has that name. Anything else (a folder, a device, a FIFO, a broken or looping link) is a
    :class:`DataError`, never taken for a missing file (a dataset without attributes, say)."""
    if path.is_file():
        return True
    if not os.path.lexists(path):
        return False
    raise DataError(path, None, f"not a regular file but {_kind(path)}: replace it with the file, or remove it")


def _kind(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError:  # a link to nothing, or to itself
        return "a broken or looping link"
    kinds = [(stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
             (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")]
    return next((what for test, what in kinds if test(mode)), "another kind of file")


def read_bytes(path: Path) -> bytes:
    """A file's bytes. Anything but a regular file (a folder, a device, a FIFO, a broken link) is a
    :class:`DataError` naming the file."""
    path = Path(path)
    if not present(path):
        raise DataError(path, None, "no such file")
    try:
        return path.read_bytes()
    except MemoryError:
        raise DataError(path, None, "too large to read into memory") from None


def decode(path: Path, data: bytes) -> str:
    """``data`` (the bytes of ``path``) as UTF-8 text, or a :class:`DataError` naming the file."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, None, f"not UTF-8 text ({e.reason})") from None
    except MemoryError:
        raise DataError(path, None, "too large to read into memory") from None


def read_text(path: Path) -> str:
    """A UTF-8 text file's text (:func:`read_bytes`, :func:`decode`)."""
    return decode(Path(path), read_bytes(path))


def read_lines(path: Path, text: str | None = None) -> list[str]:
    """A UTF-8 text file's lines (:func:`read_text`, or ``text`` when given), without the newline that
    ends the last one."""
    lines = (read_text(path) if text is None else text).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines



def _shown(t: str) -> str:
    return t if len(t) <= 24 else f"{t[:10]}...{t[-10:]} ({len(t)} digits)"


def _parse_ints(path: Path, lineno: int, line: str) -> list[int]:
    tokens = line.split()
    try:
        values = [int(t) for t in tokens]
    except ValueError:
        for t in tokens:
            if not re.fullmatch(r"[0-9]+", t):
                raise DataError(path, lineno, f"token {t!r} is not a non-negative integer") from None
        # Only digit strings beyond Python's int-conversion limit (4300 digits) get here.
        t = max(tokens, key=len)
        raise DataError(path, lineno, f"integer {_shown(t)} is out of range (does not fit in 64 bits)") from None
    if values and max(map(abs, values)) > _INT64_MAX:
        t = tokens[max(range(len(values)), key=lambda k: abs(values[k]))]
        raise DataError(path, lineno, f"integer {_shown(t)} is out of range (does not fit in 64 bits)")
    return values


def read_sequences(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``NAME.txt`` into CSR arrays.

    Returns ``(user_ids [n_users], offsets [n_users + 1], items [n_interactions])`` (int64), in file
    order. Item ids must be 1..n_items with every id used at least once.
    """
    path = Path(path)
    data = read_bytes(path)
    plain = _plain_sequences(data)  # a well-formed file at numpy's speed; any other, line by line
    if plain is not None:
        user_ids, lengths, items = plain
    else:
        user_ids, lengths, items = _sequences_by_line(path, decode(path, data))
    return _check_contiguous(path, user_ids, lengths, items)


# the bytes of a plain sequences file: digits, spaces and newlines
_PLAIN_BYTES = np.zeros(256, dtype=bool)
_PLAIN_BYTES[list(b"0123456789 \n")] = True


def _plain_sequences(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(user_ids, lengths, items)`` of a sequences file in the plain form (digits, spaces and
    newlines, every line a user id of 1 or more, not seen before, and at least MIN_SEQUENCE_LENGTH item
    ids of 1 or more, every number under 19 digits), parsed by numpy; None for any other file, which
    :func:`_sequences_by_line` reads (and names its problem)."""
    b = np.frombuffer(data, dtype=np.uint8)
    if not b.size or not _PLAIN_BYTES[b].all():
        return None
    sep = (b == 32) | (b == 10)
    starts = np.flatnonzero(~sep & np.concatenate([[True], sep[:-1]]))  # each number's first byte
    stops = np.flatnonzero(~sep & np.concatenate([sep[1:], [True]])) + 1
    if len(starts) and int((stops - starts).max()) > 18:
        return None
    ends = np.flatnonzero(b == 10)
    if b[-1] != 10:
        ends = np.append(ends, b.size)
    per_line = np.diff(np.searchsorted(starts, ends), prepend=0)  # numbers on each line
    if not len(per_line) or int(per_line.min()) < 1 + MIN_SEQUENCE_LENGTH:
        return None  # an empty line, or a user with too few items
    values = np.fromstring(data.decode("ascii"), dtype=np.int64, sep=" ")  # spaces and newlines alike
    if len(values) != len(starts):
        return None
    first = np.cumsum(per_line) - per_line
    user_ids = values[first]
    keep = np.ones(len(values), dtype=bool)
    keep[first] = False
    items = values[keep]
    if int(user_ids.min()) < 1 or int(items.min()) < 1 or len(np.unique(user_ids)) != len(user_ids):
        return None
    return user_ids, per_line - 1, items


def _sequences_by_line(path: Path, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(user_ids, lengths, items)`` read line by line, each problem a :class:`DataError` naming its line."""
    user_ids: list[int] = []
    lengths: list[int] = []
    flat: list[int] = []
    first_line: dict[int, int] = {}
    lines = read_lines(path, text)
    if not lines:
        raise DataError(path, None, "the file is empty")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            raise DataError(path, lineno, "empty line")
        ints = _parse_ints(path, lineno, line)
        user, seq = ints[0], ints[1:]
        if user < 1:
            raise DataError(path, lineno, f"user id {user} is below 1")
        if user in first_line:
            raise DataError(path, lineno, f"user {user} already appears on line {first_line[user]}")
        first_line[user] = lineno
        if len(seq) < MIN_SEQUENCE_LENGTH:
            raise DataError(
                path, lineno, f"user {user} has {len(seq)} items; at least {MIN_SEQUENCE_LENGTH} are needed"
            )
        bad = next((i for i in seq if i < 1), None)
        if bad is not None:
            raise DataError(path, lineno, f"item id {bad} is out of range (item ids start at 1; 0 is padding)")
        user_ids.append(user)
        lengths.append(len(seq))
        flat.extend(seq)
    return np.asarray(user_ids, dtype=np.int64), np.asarray(lengths, dtype=np.int64), np.asarray(flat, dtype=np.int64)


def _check_contiguous(path: Path, user_ids: np.ndarray, lengths: np.ndarray,
                      items: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(user_ids, offsets, items)`` once the item ids are checked to be 1..n_items, each used."""
    # The distinct ids (all >= 1) are exactly 1..n_items iff there are n_items of them. (No array of
    # size n_items: a stray huge id must give this error, not a MemoryError.)
    distinct = np.unique(items)
    n_items = int(distinct[-1])
    if distinct.size != n_items:
        first_missing = int(np.flatnonzero(distinct != np.arange(1, distinct.size + 1))[0]) + 1
        # Name the line where the first id beyond the gap first appears.
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        pos = int(np.flatnonzero(items > first_missing)[0])
        lineno = int(np.searchsorted(offsets, pos, side="right"))
        raise DataError(
            path,
            lineno,
            f"item ids are not contiguous: {n_items - distinct.size} id(s) in 1..{n_items} never occur "
            f"(first: {first_missing}), but item {int(items[pos])} does",
        )
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return user_ids, offsets, items


def line_of_key(text: str, key: str) -> int:
    """The 1-based line of a JSON text where the object key ``key`` first appears (1 if not found)."""
    m = re.search(r'"' + re.escape(key) + r'"\s*:', text)
    return text.count("\n", 0, m.start()) + 1 if m else 1


def read_json_object(path: Path, what: str) -> tuple[dict, str]:
    """``(mapping, text)`` of a UTF-8 JSON file holding one object; every failure is a one-line
    :class:`DataError` naming the file (and the line where JSON reports one). ``what`` describes the
    expected object in the message."""
    text = read_text(path)
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, f"malformed JSON: {e.msg} (column {e.colno})") from None
    except ValueError:  # a number beyond Python's int-conversion limit (4300 digits)
        raise DataError(path, None, "malformed JSON: a number has too many digits") from None
    except RecursionError:
        raise DataError(path, None, "malformed JSON: nested too deeply") from None
    except MemoryError:
        raise DataError(path, None, "too large to parse in memory") from None
    if not isinstance(mapping, dict):
        raise DataError(path, 1, f"expected a JSON object {what}, got {type(mapping).__name__}")
    return mapping, text


def read_attributes(path: str | Path, n_items: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Read ``NAME_item2attributes.json`` into CSR arrays indexed by item id.

    Returns ``(offsets [n_items + 2], attributes [n], n_attributes)``: the attributes of item ``i``
    are ``attributes[offsets[i]:offsets[i+1]]`` (duplicates kept as in the file; rows 0 (padding)
    and ``n_items + 1`` (mask) are empty). ``n_attributes`` is the largest attribute id.
    """
    path = Path(path)
    mapping, text = read_json_object(path, "item_id -> [attribute ids]")
    per_item: list[list[int]] = [[] for _ in range(n_items + 2)]
    for key, value in mapping.items():
        if not re.fullmatch(r"[0-9]+", key):
            raise DataError(path, line_of_key(text, key), f"key {key!r} is not an item id")
        item = int(key) if len(key) <= 24 else n_items + 1  # (int() refuses over 4300 digits)
        if not 1 <= item <= n_items:
            raise DataError(
                path,
                line_of_key(text, key),
                f"item id {_shown(key)} is out of range 1..{n_items} (from the sequences file)",
            )
        if not isinstance(value, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in value):
            raise DataError(path, line_of_key(text, key), f"item {item}: expected a list of integer attribute ids")
        bad = next((a for a in value if a < 1), None)
        if bad is not None:
            raise DataError(path, line_of_key(text, key), f"item {item}: attribute id {bad} is below 1")
        if value and max(value) > _INT64_MAX:
            big = _shown(str(max(value)))
            problem = f"item {item}: attribute id {big} is out of range (does not fit in 64 bits)"
            raise DataError(path, line_of_key(text, key), problem)
        per_item[item] = value
    lengths = np.fromiter((len(v) for v in per_item), dtype=np.int64, count=len(per_item))
    offsets = np.zeros(len(per_item) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    attributes = np.fromiter((a for v in per_item for a in v), dtype=np.int64, count=int(offsets[-1]))
    n_attributes = int(attributes.max()) if attributes.size else 0
    used = np.unique(attributes)
    # ids must be 1..n_attributes (they index an embedding table). (No array of size n_attributes: a
    # stray huge id must give this error, not a MemoryError.)
    if used.size != n_attributes:
        gap = int(np.flatnonzero(used != np.arange(1, used.size + 1))[0]) + 1
        key = next(k for k, v in mapping.items() if isinstance(v, list) and any(a > gap for a in v))
        raise DataError(
            path, line_of_key(text, key),
            f"attribute ids are not contiguous: {n_attributes - used.size} id(s) in 1..{n_attributes} never occur "
            f"(first: {gap}), but item {key} has a larger one",
        )
    return offsets, attributes, n_attributes


def read_negatives(
    path: str | Path, user_ids: np.ndarray, offsets: np.ndarray, items: np.ndarray, n_items: int
) -> np.ndarray:
    """Read ``NAME_sample.txt``: returns ``[n_users, 99]`` negatives aligned with ``user_ids``.

    Each row must name a known user once, hold exactly 99 item ids in 1..n_items, and contain none of
    that user's own items (any part of the sequence).
    """
    path = Path(path)
    index = {int(u): k for k, u in enumerate(user_ids)}
    out = np.zeros((len(user_ids), N_NEGATIVES), dtype=np.int64)
    seen = np.zeros(len(user_ids), dtype=bool)
    lines = read_lines(path)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            raise DataError(path, lineno, "empty line")
        ints = _parse_ints(path, lineno, line)
        user, negs = ints[0], ints[1:]
        k = index.get(user)
        if k is None:
            raise DataError(path, lineno, f"user {user} does not appear in the sequences file")
        if seen[k]:
            raise DataError(path, lineno, f"user {user} appears twice")
        if len(negs) != N_NEGATIVES:
            raise DataError(path, lineno, f"user {user} has {len(negs)} negatives; expected {N_NEGATIVES}")
        bad = next((i for i in negs if not 1 <= i <= n_items), None)
        if bad is not None:
            raise DataError(path, lineno, f"negative item {bad} is out of range 1..{n_items}")
        own = set(items[offsets[k] : offsets[k + 1]].tolist())
        clash = next((i for i in negs if i in own), None)
        if clash is not None:
            raise DataError(path, lineno, f"negative item {clash} is one of user {user}'s own items")
        out[k] = negs
        seen[k] = True
    if not seen.all():
        missing = int(user_ids[np.flatnonzero(~seen)[0]])
        raise DataError(path, None, f"{int((~seen).sum())} user(s) have no negatives row (first: user {missing})")
    return out


def format_negatives(user_ids: np.ndarray, negatives: np.ndarray) -> str:
    """The text of a ``NAME_sample.txt`` file."""
    return "".join(
        f"{int(u)} " + " ".join(map(str, row)) + "\n" for u, row in zip(user_ids.tolist(), negatives.tolist())
    )
