"""Import your own interactions (and item attributes) into the benchmark format.

Inputs (:mod:`.readers`; the format is chosen by the file name; ``.gz``/``.bz2``/``.zst`` compression
is read as is):

- interactions: CSV (``.csv``, ``.tsv``), Parquet (``.parquet``) or a RecBole atomic ``NAME.inter``
  (tab separated, header ``user_id:token item_id:token rating:float timestamp:float``; the ``:type``
  suffixes are ignored when matching column names). Columns: user, item, timestamp and, with a rating
  threshold, rating. Defaults ``user,item,timestamp,rating`` (RecBole: ``user_id,item_id,timestamp,
  rating``). Timestamps are numbers (unix seconds, or any unit: only their order matters) or ISO-8601
  dates (``2019-01-31``, ``2019-01-31 12:00:00``, ``2019-01-31T12:00:00Z``; without a zone: UTC).
- attributes (optional): CSV/Parquet rows ``item,attribute`` (several rows per item), a JSON object
  ``{"item": ["attr", ...]}``, or a RecBole ``NAME.item`` whose attribute column (``token_seq``: space
  separated tokens, or ``token``: one) is chosen by name (default: the first ``token_seq`` column).

Pipeline (:mod:`.pipeline`; numpy over whole columns, no Python loop over rows):

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

Outputs in the output folder (:mod:`.writing`; ``NAME`` is the dataset name):

- ``NAME.txt`` and ``NAME_item2attributes.json``: the benchmark format (see :mod:`.formats`);
  every item with at least one attribute gets an entry, in order of first appearance in the source;
- ``NAME_user_ids.tsv``, ``NAME_item_ids.tsv``, ``NAME_attribute_ids.tsv``: the id maps, a header
  line ``id<TAB>original_id`` then one line ``internal_id<TAB>original_id`` per id, internal ids 1..n
  in order. The original id is the rest of the line after the first tab, verbatim (it may contain
  tabs or spaces, never a line break). Read them with :func:`.idmaps.load_id_maps`.

All files are written to temporary files first and renamed into place only once every one is
complete; an error leaves the folder as it was.
"""

from __future__ import annotations

from pathlib import Path

from .pipeline import AttributePairs, Sequences, build_attributes, build_sequences, summary
from .readers import check_delimiter, read_attributes, read_interactions
from .writing import Log, check_output, write_dataset


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
    check_delimiter(delimiter)
    inter = read_interactions(interactions, user_col, item_col, time_col, rating_col, rating_threshold, delimiter)
    pairs = read_attributes(attributes, attr_item_col, attr_col, delimiter) if attributes else None
    seqs = build_sequences(inter, dedup=dedup, k=k, source=interactions)
    return write_imported(out, name, seqs, pairs, min_attribute_count, force=force, log=log)


def write_imported(out: str | Path, name: str, seqs: Sequences, pairs: AttributePairs | None,
                   min_attribute_count: int = 1, force: bool = False, log: Log | None = None) -> dict[str, Path]:
    """Attach the attributes to the sequences, write the dataset and log the counts of every step
    (the end of :func:`import_dataset` and of :func:`.prepare.prepare`); returns the paths written."""
    attrs = build_attributes(seqs, pairs, min_attribute_count)
    paths = write_dataset(out, name, seqs, attrs, force=force, log=log)
    if log:
        log(summary(seqs, attrs))
        log(f"wrote {name} to {Path(out)} ({', '.join(p.name for p in paths.values())})")
    return paths


def default_name(path: Path) -> str:
    """The file name without its extensions (``ratings.csv.gz`` -> ``ratings``)."""
    return path.name.split(".", 1)[0]
