"""``s3rec data``: fetch, stats, negatives, import, prepare, export, synth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import S3RecError
from .common import RAW, add_data_dir, log, non_negative_int, positive_int, verb


def add_parsers(sub) -> None:
    data = verb(sub, "data", help="fetch, inspect and prepare datasets",
                examples=("s3rec data fetch LastFM", "s3rec data stats LastFM", "s3rec data import ratings.csv --out data/"))
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = verb(
        dsub, "fetch",
        help="download a public dataset and verify its SHA-256",
        description="Download a registered dataset from the authors' repository into the cache "
        "($S3REC_CACHE_DIR, default ~/.cache/s3rec), verify each file's SHA-256 and move it into place "
        "atomically. Does nothing if a data folder already holds verified copies.",
        examples=(
            "s3rec data fetch LastFM",
            "s3rec data fetch Beauty --dest data/",
        ),
    )
    f.add_argument("name", help="Beauty, Sports, Toys, Yelp or LastFM")
    f.add_argument("--url", help="base URL to download from (default: the authors' repository or $S3REC_DATA_URL)")
    f.add_argument("--dest", help="folder to write to (default: the cache)")
    add_data_dir(f)
    s = verb(dsub, "stats", help="users, items, interactions, attributes, lengths, repeats",
             examples=("s3rec data stats Beauty", "s3rec data stats Shop --data-dir data/ --json"))
    s.add_argument("name", help="registered name or file stem")
    add_data_dir(s)
    s.add_argument("--json", action="store_true", help="print JSON")
    n = verb(
        dsub, "negatives",
        help="write the 99-negatives file for the sampled protocol",
        description="Write NAME_sample.txt: 99 distinct items per user outside the user's whole sequence, "
        "uniform, seeded (deterministic across runs and machines). Written next to the data when that "
        "folder is writable, otherwise in the cache. Refuses to overwrite without --force.",
        examples=(
            "s3rec data negatives Shop --data-dir data/",
            "s3rec data negatives Beauty --out /tmp/Beauty_sample.txt",
        ),
    )
    n.add_argument("name", help="registered name or file stem")
    add_data_dir(n)
    n.add_argument("--seed", type=int, default=12345, help="sampling seed (default 12345, the authors')")
    n.add_argument("--out", help="output path (default: beside the data, or the cache)")
    n.add_argument("--force", action="store_true", help="overwrite an existing file")
    _add_data_io_parsers(dsub)


def _add_pipeline_args(p, dedup: bool, default_name: str) -> None:
    p.add_argument("--name", help=f"dataset name: the files are NAME.txt, NAME_item2attributes.json, ... (default: {default_name})")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (use it later as --data-dir)")
    if dedup:
        p.add_argument("--dedup", action=argparse.BooleanOptionalAction, default=True,
                       help="drop repeated (user, item) pairs, keeping the earliest (default); --no-dedup keeps repeats")
    p.add_argument("--k-core", dest="k_core", type=non_negative_int, default=5, metavar="K",
                   help="iterative K-core on users and items (default 5; 0 or 1: off). Users with fewer than "
                   "3 interactions are always dropped (the split needs 3)")
    p.add_argument("--min-attribute-count", type=positive_int, default=1, metavar="N",
                   help="drop attributes occurring fewer than N times over the kept items (default 1: keep all)")
    p.add_argument("--force", "--overwrite", dest="force", action="store_true",
                   help="replace an existing dataset of that name in --out")


_DATA_IO_EPILOG = """
Outputs in --out: NAME.txt and NAME_item2attributes.json (the benchmark format, ids from 1), and the id
maps NAME_user_ids.tsv, NAME_item_ids.tsv, NAME_attribute_ids.tsv (header "id<TAB>original_id", then
one "internal_id<TAB>original_id" line per id), written all or nothing. Pipeline: sort each user's
interactions by time (ties keep file order), de-duplication (import only, default on), iterative k-core, re-index in
order of first appearance (users: in the file; items: in the sorted sequences; attributes: in the
attribute file). Counts at each step go to stderr.
"""


def _add_data_io_parsers(dsub) -> None:
    """``s3rec data import``, ``data prepare SOURCE`` and ``data export``."""
    fmt = RAW
    imp = dsub.add_parser(
        "import",
        help="import your own interactions (CSV, Parquet, RecBole) into the benchmark format",
        description="Import interactions (CSV/TSV, Parquet, or a RecBole .inter file; by extension) and optional "
        "item attributes (CSV/Parquet rows item,attribute; a JSON object {item: [attributes]}; or a RecBole .item "
        "file) into a dataset that every s3rec command can use. Timestamps: unix seconds (or any number) or "
        "ISO-8601 dates.",
        epilog=_DATA_IO_EPILOG + "\nexamples:\n"
        "  s3rec data import ratings.csv --attributes genres.csv --name Shop --out data/ --rating-threshold 4\n"
        "  s3rec data import ml-1m.inter --attributes ml-1m.item --attr-col genre --out data/\n"
        "  s3rec train --dataset Shop --data-dir data/",
        formatter_class=fmt,
    )
    imp.add_argument("interactions", help="interactions file: .csv, .tsv, .parquet or .inter (may be .gz)")
    imp.add_argument("--attributes", metavar="FILE", help="item attributes: .csv/.tsv/.parquet (item,attribute rows), "
                     ".json ({item: [attributes]}) or a RecBole .item file")
    imp.add_argument("--user-col", help="user column (default user; RecBole: user_id)")
    imp.add_argument("--item-col", help="item column (default item; RecBole: item_id)")
    imp.add_argument("--time-col", help="timestamp column (default timestamp)")
    imp.add_argument("--rating-col", help="rating column (default rating; read only with --rating-threshold)")
    imp.add_argument("--rating-threshold", type=float, metavar="X", help="keep rows with rating >= X")
    imp.add_argument("--attr-item-col", help="item column of the attribute file (default item; RecBole: item_id)")
    imp.add_argument("--attr-col", help="attribute column (default attribute; RecBole: the first token_seq column)")
    imp.add_argument("--delimiter", help="CSV field delimiter (default: ',' for .csv, tab for .tsv)")
    _add_pipeline_args(imp, dedup=True, default_name="the interactions file's name without extensions")

    prep = dsub.add_parser(
        "prepare",
        help="the paper's preprocessing from the raw Amazon, Yelp or LastFM files",
        description="Build a dataset from the raw public files the paper used (docs/semantics.md, #data): group by user, "
        "stable sort by time, iterative 5-core, re-index from 1 in order of first appearance.",
        epilog=_DATA_IO_EPILOG + "\nexamples:\n"
        "  s3rec data prepare amazon --reviews reviews_Beauty_5.json.gz --meta meta_Beauty.json.gz --out data/\n"
        "  s3rec data prepare yelp --reviews yelp_academic_dataset_review.json "
        "--business yelp_academic_dataset_business.json --out data/\n"
        "  s3rec data prepare lastfm --tags user_taggedartists-timestamps.dat --out data/",
        formatter_class=fmt,
    )
    psub = prep.add_subparsers(dest="source", required=True, metavar="SOURCE")
    pa_ = verb(
        psub, "amazon", help="Amazon 2014 5-core reviews + metadata",
        examples=("s3rec data prepare amazon --reviews reviews_Beauty_5.json.gz --meta meta_Beauty.json.gz --out data/",),
        description="Amazon 2014: reviews_<Category>_5.json.gz (reviewerID, asin, unixReviewTime) and "
        "meta_<Category>.json.gz (asin, categories, brand; JSON or Python-literal lines). No rating filter, no "
        "de-duplication. Attributes: the brand, then every category of every path except its first, top-level one.",
    )
    pa_.add_argument("--reviews", required=True, help="reviews_<Category>_5.json.gz")
    pa_.add_argument("--meta", required=True, help="meta_<Category>.json.gz")
    _add_pipeline_args(pa_, dedup=False, default_name="the category, e.g. Beauty")
    py = verb(
        psub, "yelp", help="Yelp academic dataset reviews + businesses",
        examples=("s3rec data prepare yelp --reviews yelp_academic_dataset_review.json "
                  "--business yelp_academic_dataset_business.json --out data/",),
        description="Yelp: yelp_academic_dataset_review.json (user_id, business_id, date), reviews dated "
        "--date-min to --date-max (default: the year 2019); attributes: the business's comma-separated categories "
        "from yelp_academic_dataset_business.json. Repeated reviews of a business are kept.",
    )
    py.add_argument("--reviews", required=True, help="yelp_academic_dataset_review.json")
    py.add_argument("--business", required=True, help="yelp_academic_dataset_business.json")
    py.add_argument("--date-min", default="2019-01-01", help="first date kept (default 2019-01-01)")
    py.add_argument("--date-max", default="2019-12-31",
                    help="last date kept, the whole day (default 2019-12-31); with a time, e.g. '2019-12-31 00:00:00' "
                    "(the authors' bound), reviews up to that instant")
    _add_pipeline_args(py, dedup=False, default_name="Yelp")
    pl = verb(
        psub, "lastfm", help="LastFM hetrec-2011 tag assignments",
        examples=("s3rec data prepare lastfm --tags user_taggedartists-timestamps.dat --out data/",),
        description="LastFM hetrec-2011: user_taggedartists-timestamps.dat (tab separated: userID artistID tagID "
        "timestamp). Each (user, artist) pair at its first line; attributes: the artist's tags (every tagging).",
    )
    pl.add_argument("--tags", required=True, help="user_taggedartists-timestamps.dat")
    _add_pipeline_args(pl, dedup=False, default_name="LastFM")

    ex = verb(
        dsub, "export",
        help="export a dataset to RecBole atomic files (NAME.inter, NAME.item)",
        description="Write NAME.inter (user_id, item_id, timestamp = position in the sequence) and NAME.item "
        "(item_id, categories token_seq) so the same data and leave-one-out split can be checked in RecBole "
        "(eval_args: split LS valid_and_test, order TO, group_by user; see `s3rec.data.export`).",
        examples=(
            "s3rec data export Beauty --out recbole/Beauty",
        ),
    )
    ex.add_argument("name", help="registered name or file stem")
    add_data_dir(ex)
    ex.add_argument("--out", required=True, metavar="DIR", help="output folder (RecBole: <data_path>/NAME)")
    ex.add_argument("--as", dest="as_name", metavar="NAME", help="file name stem (default: the dataset's name)")
    ex.add_argument("--force", action="store_true", help="replace existing files")

    sy = verb(
        dsub, "synth",
        help="write a synthetic interaction log (CSV) for scale and load tests",
        description="Write a CSV of user,item,timestamp rows in global time order: Zipf-like item popularity, "
        "a planted next-item pattern, scattered original ids, every user with at least 5 interactions. "
        "Deterministic for --seed. Import it with `s3rec data import`.",
        examples=(
            "s3rec data synth --out log.csv --users 1000 --items 200 --interactions 20000",
            "s3rec data import log.csv --name Synth --out data/",
            "s3rec data synth --out log.csv --attributes attrs.csv --n-attributes 3000",
        ),
    )
    sy.add_argument("--out", required=True, metavar="FILE", help="CSV file to write (atomically)")
    sy.add_argument("--users", type=positive_int, default=10_000, help="users (default 10,000)")
    sy.add_argument("--items", type=positive_int, default=1_000, help="items (default 1,000)")
    sy.add_argument("--interactions", type=positive_int, default=100_000, help="rows (default 100,000)")
    sy.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sy.add_argument("--attributes", metavar="FILE", help="also write item,attribute rows (CSV) for the log's items")
    sy.add_argument("--n-attributes", type=positive_int, default=2_000,
                    help="distinct attributes with --attributes (default 2,000; 1 to 4 per item)")


def _cmd_data_io(args) -> int:
    from ..extras import require

    require("pyarrow", "data", f"s3rec data {args.data_command}")
    if args.data_command == "synth":
        import numpy as np

        from ..data.synthetic import synthetic_attributes, synthetic_log, write_csv

        if args.attributes and Path(args.attributes).resolve() == Path(args.out).resolve():
            raise S3RecError("data synth: --attributes and --out name the same file")
        try:
            rows = synthetic_log(args.users, args.items, args.interactions, args.seed)
            attrs = synthetic_attributes(np.unique(rows["item"]), args.n_attributes, args.seed) if args.attributes else None
        except ValueError as e:
            raise S3RecError(f"data synth: {e}") from None
        write_csv(rows, args.out)
        log(f"{args.interactions:,} interactions of {args.users:,} users over {args.items:,} items")
        print(args.out)
        if attrs is not None:
            write_csv(attrs, args.attributes)
            log(f"{len(attrs['item']):,} item-attribute rows over {args.n_attributes:,} attributes")
            print(args.attributes)
        return 0
    if args.data_command == "import":
        from ..data.importing import import_dataset

        paths = import_dataset(
            args.interactions, args.out, args.name, args.attributes, user_col=args.user_col, item_col=args.item_col,
            time_col=args.time_col, rating_col=args.rating_col, rating_threshold=args.rating_threshold,
            attr_item_col=args.attr_item_col, attr_col=args.attr_col, delimiter=args.delimiter, dedup=args.dedup,
            k=args.k_core, min_attribute_count=args.min_attribute_count, force=args.force, log=log,
        )
    elif args.data_command == "prepare":
        from ..data.prepare import prepare

        paths = prepare(
            args.source, args.out, args.name, reviews=getattr(args, "reviews", None), meta=getattr(args, "meta", None),
            business=getattr(args, "business", None), tags=getattr(args, "tags", None),
            date_min=getattr(args, "date_min", "2019-01-01"), date_max=getattr(args, "date_max", "2019-12-31"),
            k=args.k_core, min_attribute_count=args.min_attribute_count, force=args.force, log=log,
        )
    else:
        from ..data import registry
        from ..data.export import export_recbole

        ds = registry.load(args.name, args.data_dir)
        paths = export_recbole(ds, args.out, args.as_name, force=args.force)
    for path in paths.values():
        print(path)
    return 0


def cmd_data(args) -> int:
    from ..data import registry

    if args.data_command == "fetch":
        folder = registry.fetch(args.name, base_url=args.url, dest=args.dest, data_dir=args.data_dir)
        print(folder)
        return 0
    if args.data_command in ("import", "prepare", "export", "synth"):
        return _cmd_data_io(args)
    ds = registry.load(args.name, args.data_dir)
    if args.data_command == "stats":
        st = ds.stats()
        if args.json:
            print(json.dumps(st))
        else:
            width = max(map(len, st))
            print("\n".join(f"{k:<{width}}  {v}" for k, v in st.items()))
        return 0
    if args.data_command == "negatives":
        from ..data.negatives import default_negatives_path, write_negatives

        files = registry.locate(args.name, args.data_dir)
        path = Path(args.out) if args.out else default_negatives_path(files)
        # With --out only that path can be overwritten; by default a copy in the cache counts too.
        existing = path if path.exists() or args.out else files.negatives
        if existing is not None and existing.exists() and not args.force:
            raise S3RecError(f"{existing} exists; use --force to overwrite it")
        write_negatives(ds, path, args.seed)
        print(path)
        return 0
    raise AssertionError(args.data_command)
