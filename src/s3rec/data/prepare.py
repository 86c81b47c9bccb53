"""The paper's preprocessing from the raw public sources (docs/semantics.md, #data), on the import pipeline.

Each source gives interactions and (item, attribute) pairs; then, as in :mod:`.importing`: group by
user, stable sort by time, iterative 5-core on users and items, re-index from 1 in order of first
appearance (users: in the review file; items: in the sorted sequences; attributes: in the metadata
file), and the same outputs (benchmark files plus id maps).

- Amazon 2014 (``reviews_<Category>_5.json.gz``: reviewerID, asin, overall, unixReviewTime;
  ``meta_<Category>.json.gz``: asin, categories, brand). No rating filter, no de-duplication (as the
  authors' script). Attributes of an item: its brand (when present and not empty), then every category
  of every path except the path's first, top-level one, in the file's order (repeats kept), as the
  authors' script lists them. The metadata file is one record per line, strict JSON or a Python dict
  literal (the 2014 files are the latter); only lines of items that survive the filtering are parsed.
- Yelp (``yelp_academic_dataset_review.json``: user_id, business_id, stars, date;
  ``yelp_academic_dataset_business.json``: business_id, categories). Reviews dated from
  ``date_min`` to ``date_max`` are kept (default 2019-01-01 to 2019-12-31, whole days; a bound with
  a time, like ``"2019-12-31 00:00:00"``, is compared with the review's date string as is, which is
  what the authors' script did with that bound). No de-duplication: a user may review a business
  again (the benchmark file keeps those repeats). Attributes: the business's comma-separated
  ``categories``, stripped (null: none).
- LastFM hetrec-2011 (``user_taggedartists-timestamps.dat``: tab separated, header ``userID artistID
  tagID timestamp``, milliseconds). A (user, artist) pair is kept at its first occurrence in file
  order; attributes of an artist: the tagID of every line that tags it, in file order (repeats kept).

Record files are read with pyarrow when they are strict JSON lines; otherwise line by line with
``json``, then ``ast.literal_eval``; a line that is neither is an error naming its line number.
"""

from __future__ import annotations

import ast
import datetime as dt
import gzip
import json
import re
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError, S3RecError
from .columns import Source, encode_ids, to_numpy, to_seconds
from .importing import default_name, write_imported
from .pipeline import AttributePairs, Interactions, Step, build_sequences, first_occurrences
from .readers import attribute_pairs, interactions_from_table, pairs_from_lists, read_text_table
from .writing import Log, check_output

SOURCES = ("amazon", "yelp", "lastfm")
K_CORE = 5


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_records(path: Path, keep_line=None) -> Iterator[tuple[int, dict]]:
    """``(line number, record)`` for each non-blank line: strict JSON, else a Python literal.

    ``keep_line(text) -> bool``, when given, skips lines it rejects without parsing them.
    """
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip() or (keep_line is not None and not keep_line(line)):
                    continue
                try:
                    record = json.loads(line)
                except RecursionError:
                    raise DataError(path, lineno, "malformed line: nested too deeply") from None
                except ValueError as e:
                    try:
                        record = ast.literal_eval(line.strip())
                    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
                        raise DataError(path, lineno, f"malformed line: neither JSON ({e}) nor a Python literal") from None
                if not isinstance(record, dict):
                    raise DataError(path, lineno, f"expected an object, got {type(record).__name__}")
                yield lineno, record
    except UnicodeDecodeError as e:
        raise DataError(path, None, f"not UTF-8 text ({e.reason})") from None
    except (OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise S3RecError(f"{path}: no such file") from None
        raise DataError(path, None, f"cannot read: {e}") from None


def read_records(path: str | Path, fields: dict[str, pa.DataType], required: tuple[str, ...]) -> pa.Table:
    """The ``fields`` of every record of a JSON-lines file as a table (``required`` ones never null).

    Strict JSON lines go through pyarrow (fast); anything else, or a missing/mistyped field, is read
    again line by line, which names the offending line.
    """
    import pyarrow.json as pajson

    path = Path(path)
    if not path.is_file():
        raise S3RecError(f"{path}: no such file")
    schema = pa.schema(list(fields.items()))
    try:
        table = pajson.read_json(path, parse_options=pajson.ParseOptions(explicit_schema=schema,
                                                                         unexpected_field_behavior="ignore"))
        if all(table.column(f).null_count == 0 for f in required):
            return table
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    columns: dict[str, list] = {f: [] for f in fields}
    for lineno, record in iter_records(path):
        for f, t in fields.items():
            value = record.get(f)
            if value is None:
                if f in required:
                    raise DataError(path, lineno, f"no field {f!r}")
            elif pa.types.is_string(t) or pa.types.is_large_string(t):
                if isinstance(value, bool) or not isinstance(value, (str, int)):
                    raise DataError(path, lineno, f"field {f!r}: expected a string, got {value!r}")
                value = str(value)
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(path, lineno, f"field {f!r}: expected a number, got {value!r}")
            columns[f].append(value)
    return pa.table({f: pa.array(v, t) for (f, v), t in zip(columns.items(), fields.values())})


def _interactions(source: Source, users, items, times, label: str) -> Interactions:
    if len(users) == 0:
        raise source.error(None, "no interactions in the file")
    u, user_names = encode_ids(users, source, "user")
    i, item_names = encode_ids(items, source, "item")
    inter = Interactions(u, i, np.asarray(times, dtype=np.float64), user_names, item_names)
    inter.steps.append(Step(label, len(u), len(user_names), len(item_names)))
    return inter


# ---------------------------------------------------------------------------------------------------
# Amazon


def amazon_interactions(reviews: str | Path) -> Interactions:
    reviews = Path(reviews)
    fields = {"reviewerID": pa.large_string(), "asin": pa.large_string(), "unixReviewTime": pa.float64()}
    table = read_records(reviews, fields, required=tuple(fields))
    source = Source(reviews, None)  # errors name the record ("row N": the N-th non-blank line)
    times = to_seconds(table.column("unixReviewTime"), source, "unixReviewTime")
    return _interactions(source, table.column("reviewerID"), table.column("asin"), times, f"read {reviews.name}")


_ASIN = re.compile(r"""['"]asin['"]\s*:\s*(['"])(.*?)\1""")


def amazon_attributes(meta: str | Path, wanted: set[str]) -> AttributePairs:
    """(asin, attribute) pairs for the asins in ``wanted``: brand, then categories minus each path's head."""
    meta = Path(meta)
    if not meta.is_file():
        raise S3RecError(f"{meta}: no such file")

    def keep_line(line: str) -> bool:
        m = _ASIN.search(line)
        return m is None or m.group(2) in wanted  # unsure: parse it

    items: list[str] = []
    attrs: list[str] = []
    done: set[str] = set()
    for lineno, record in iter_records(meta, keep_line):
        asin = record.get("asin")
        if not isinstance(asin, str):
            raise DataError(meta, lineno, "no string field 'asin'")
        if asin not in wanted or asin in done:  # a repeated record: the first one counts
            continue
        done.add(asin)
        found = []
        brand = record.get("brand")
        if isinstance(brand, str) and brand.strip():
            found.append(brand)
        categories = record.get("categories") or []
        if not isinstance(categories, list) or not all(isinstance(p, list) for p in categories):
            raise DataError(meta, lineno, "field 'categories': expected a list of category paths (lists)")
        for path in categories:
            for category in path[1:]:
                if not isinstance(category, str):
                    raise DataError(meta, lineno, f"field 'categories': {category!r} is not a string")
                if category:
                    found.append(category)
        items.extend([asin] * len(found))
        attrs.extend(found)
    return AttributePairs(pa.array(items, pa.large_string()), pa.array(attrs, pa.large_string()))


def category_name(reviews: Path) -> str:
    """``reviews_Beauty_5.json.gz`` -> ``Beauty``."""
    m = re.fullmatch(r"reviews_(.+?)(?:_5)?\.json(?:\.gz)?", reviews.name)
    return m.group(1) if m else default_name(reviews)


# ---------------------------------------------------------------------------------------------------
# Yelp


def _date_bounds(date_min: str, date_max: str) -> tuple[str, str, bool]:
    """(lower bound, upper bound, upper is exclusive). A bare upper date means its whole day."""
    def check(text: str) -> str:
        try:
            dt.datetime.fromisoformat(text)
        except ValueError:
            raise S3RecError(f"date {text!r}: expected YYYY-MM-DD or 'YYYY-MM-DD hh:mm:ss'") from None
        return text

    check(date_min)
    check(date_max)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", date_max):
        next_day = dt.date.fromisoformat(date_max) + dt.timedelta(days=1)
        return date_min, next_day.isoformat(), True
    return date_min, date_max, False


def yelp_interactions(reviews: str | Path, date_min: str = "2019-01-01", date_max: str = "2019-12-31") -> Interactions:
    reviews = Path(reviews)
    lo, hi, exclusive = _date_bounds(date_min, date_max)
    fields = {"user_id": pa.large_string(), "business_id": pa.large_string(), "date": pa.large_string()}
    table = read_records(reviews, fields, required=tuple(fields))
    date = table.column("date")
    upper = pc.less if exclusive else pc.less_equal
    kept = pc.and_(pc.greater_equal(date, pa.scalar(lo, pa.large_string())), upper(date, pa.scalar(hi, pa.large_string())))
    rows = np.flatnonzero(to_numpy(kept))
    shown_hi = f"{date_max} (whole day)" if exclusive else date_max
    if rows.size == 0:
        raise DataError(reviews, None, f"no reviews dated {date_min} to {shown_hi} among {table.num_rows:,}")
    label = f"read {reviews.name}: {table.num_rows:,} reviews; dated {date_min} to {shown_hi}"
    source = Source(reviews, None, rows)  # errors name the record ("row N": the N-th non-blank line)
    table = table.take(pa.array(rows))
    times = to_seconds(table.column("date"), source, "date")
    return _interactions(source, table.column("user_id"), table.column("business_id"), times, label)


def yelp_attributes(business: str | Path) -> AttributePairs:
    business = Path(business)
    fields = {"business_id": pa.large_string(), "categories": pa.large_string()}
    table = read_records(business, fields, required=("business_id",))
    lists = pc.split_pattern(table.column("categories").combine_chunks(), ",")
    pairs = pairs_from_lists(table.column("business_id").combine_chunks(), lists)
    attrs = pc.utf8_trim_whitespace(pairs.attributes)
    keep = pc.greater(pc.utf8_length(attrs), 0)
    return AttributePairs(pairs.items.filter(keep), attrs.filter(keep))


# ---------------------------------------------------------------------------------------------------
# LastFM


def lastfm(tags: str | Path) -> tuple[Interactions, AttributePairs]:
    """Interactions (each (user, artist) pair at its first line) and (artist, tag) pairs of every line."""
    tags = Path(tags)
    if not tags.is_file():
        raise S3RecError(f"{tags}: no such file")
    roles = {"user": "userID", "item": "artistID", "attribute": "tagID", "time": "timestamp"}
    hint = "expected the hetrec-2011 header userID, artistID, tagID, timestamp (tab separated)"
    table, source, _ = read_text_table(tags, roles, "\t", quoting=False, hint=hint)
    if table.num_rows == 0:
        raise source.error(None, "no rows after the header")
    inter = interactions_from_table(table, source, tags, "artist")
    inter = inter.take(first_occurrences(inter.users, inter.items), "each (user, artist) pair at its first line")
    pairs = attribute_pairs(table.column("item"), table.column("attribute"), source)
    return inter, pairs


# ---------------------------------------------------------------------------------------------------


def prepare(
    source: str,
    out: str | Path,
    name: str | None = None,
    *,
    reviews: str | Path | None = None,
    meta: str | Path | None = None,
    business: str | Path | None = None,
    tags: str | Path | None = None,
    date_min: str = "2019-01-01",
    date_max: str = "2019-12-31",
    k: int = K_CORE,
    min_attribute_count: int = 1,
    force: bool = False,
    log: Log | None = None,
) -> dict[str, Path]:
    """Prepare one raw source (``amazon``: reviews + meta; ``yelp``: reviews + business; ``lastfm``:
    tags) into ``out``; returns the paths written."""
    def need(value, flag) -> Path:  # checked before any work
        if value is None:
            raise S3RecError(f"{source} needs {flag}")
        if not Path(value).is_file():
            raise S3RecError(f"{value}: no such file")
        return Path(value)

    if source == "amazon":
        reviews_path, meta_path = need(reviews, "--reviews"), need(meta, "--meta")
        name = name or category_name(reviews_path)
        check_output(out, name, force)
        inter = amazon_interactions(reviews_path)
        seqs = build_sequences(inter, dedup=False, k=k, source=reviews_path)
        pairs = amazon_attributes(meta_path, set(seqs.item_names.to_pylist()))
    elif source == "yelp":
        reviews_path, business_path = need(reviews, "--reviews"), need(business, "--business")
        name = name or "Yelp"
        check_output(out, name, force)
        inter = yelp_interactions(reviews_path, date_min, date_max)
        seqs = build_sequences(inter, dedup=False, k=k, source=reviews_path)
        pairs = yelp_attributes(business_path)
    elif source == "lastfm":
        tags_path = need(tags, "--tags")
        name = name or "LastFM"
        check_output(out, name, force)
        inter, pairs = lastfm(tags_path)
        seqs = build_sequences(inter, dedup=False, k=k, source=tags_path)
    else:
        raise S3RecError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
    return write_imported(out, name, seqs, pairs, min_attribute_count, force=force, log=log)
