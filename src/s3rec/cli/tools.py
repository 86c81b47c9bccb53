"""``s3rec bench``, ``models``, ``recommend`` and ``serve``."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from ..errors import S3RecError
from .common import add_data_dir, add_sets, add_train_args, log, positive_int, train_config, verb

RECOMMEND_HEADER = "user,rank,item,score"  # the CSV that s3rec recommend writes


def add_parsers(sub, defaults) -> None:
    b = verb(sub, "bench", help="speed benchmarks",
             examples=("s3rec bench train --dataset Beauty --json", "s3rec bench pretrain --dataset LastFM"))
    bsub = b.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    bt = verb(
        bsub, "train",
        help="median seconds per fine-tuning epoch (training + validation)",
        description="Time whole fine-tuning epochs (training plus validation under the protocol) after "
        "one warm-up epoch and print the median.",
        examples=(
            "s3rec bench train --dataset Beauty --json",
            "s3rec bench train --dataset LastFM --protocol full",
        ),
    )
    add_train_args(bt, defaults)
    bt.add_argument("--timed-epochs", type=positive_int, default=3, help="epochs timed after the warm-up (default 3)")
    bt.add_argument("--json", action="store_true", help="print JSON")

    bp = verb(
        bsub, "pretrain",
        help="pre-training instances per second",
        description="Instances per second = instances / end-to-end wall time (batch building, the four "
        "objectives, backward, optimizer step) over --batches consecutive batches of a random permutation, "
        "after --warmup batches.",
        examples=(
            "s3rec bench pretrain --dataset LastFM --batches 50",
            "s3rec bench pretrain --dataset Beauty --device cuda --set amp=bf16 --json",
        ),
    )
    bp.add_argument("--dataset", default="LastFM")
    add_data_dir(bp)
    bp.add_argument("--batches", type=positive_int, default=200, help="timed batches (default 200)")
    bp.add_argument("--warmup", type=int, default=20, help="untimed batches first (default 20)")
    bp.add_argument("--device", default="cpu")
    add_sets(bp, help="a pre-training setting")
    bp.add_argument("--json", action="store_true", help="print JSON")

    m = verb(
        sub, "models",
        help="list the available models",
        description="The registered models, one line each. With --params: each model's defaults for the shared "
        "settings (its paper's values, applied when --model selects it) and its own hyper-parameters; all of them "
        "can be changed with `s3rec train --model NAME --set KEY=VALUE` and are recorded in the run's config.json.",
        examples=(
            "s3rec models",
            "s3rec models --params",
        ),
    )
    m.add_argument("--params", action="store_true", help="also show each model's settings and hyper-parameters")

    # recommend / serve
    rc = verb(
        sub, "recommend",
        help="top-k items for users, from a fine-tuned checkpoint (CSV or JSON lines)",
        description="Recommend the top-k items for every user of the checkpoint's dataset (or the users given), "
        "from each user's whole sequence, with the history excluded, in the dataset's original ids (the id maps "
        "that `s3rec data import` keeps). Scored in bounded chunks of users. Output: CSV rows user,rank,item,score "
        "or one JSON object per user.",
        examples=(
            "s3rec recommend runs/shop/best.pt --data-dir data/ -k 20 --out recs.csv",
            "s3rec recommend runs/shop/best.pt --users alice bob --format jsonl",
        ),
    )
    rc.add_argument("checkpoint", help="best.pt or checkpoint.pt of an `s3rec train` run")
    rc.add_argument("--dataset", help="dataset name (default: the one recorded in the checkpoint)")
    add_data_dir(rc)
    rc.add_argument("-k", type=positive_int, default=10, help="items per user (default 10)")
    rc.add_argument("--users", nargs="+", metavar="USER", help="original user ids (default: every user)")
    rc.add_argument("--users-file", help="a file with one original user id per line")
    rc.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="output format (default csv)")
    rc.add_argument("--keep-history", action="store_true", help="allow items already in the history")
    rc.add_argument("--out", help="output file, written atomically (default: standard output); an existing file "
                    "that is not an earlier output of this command needs --force, an input is never replaced")
    rc.add_argument("--force", action="store_true", help="replace an existing --out file that is not a recommend output")
    rc.add_argument("--device", default="cpu")
    sv = verb(
        sub, "serve",
        help="HTTP JSON service: GET /health, GET /info, POST /recommend",
        description="Serve recommendations over HTTP (JSON). POST /recommend with "
        '{"history": [item, ...], "k": 10} answers {"items": [...], "scores": [...]} in original ids; '
        '{"user": ID} recommends from a dataset user\'s whole sequence. Invalid or oversized requests get a 4xx '
        'answer with {"error": ...}; a request must arrive whole within --timeout seconds; at most '
        '--max-connections are served at once (more wait their turn). Binds to 127.0.0.1 unless --host says otherwise.',
        examples=(
            "s3rec serve runs/shop/best.pt --data-dir data/ --port 8080",
            "s3rec serve runs/shop --port 0 --timeout 5     # 0: a free port, printed at start-up",
            'curl -d \'{"history": ["i1", "i2"], "k": 5}\' localhost:8080/recommend',
        ),
    )
    sv.add_argument("checkpoint", help="best.pt or checkpoint.pt of an `s3rec train` run")
    sv.add_argument("--dataset", help="dataset name (default: the one recorded in the checkpoint)")
    add_data_dir(sv)
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=port_number, default=8080, help="port, 0..65535 (default 8080; 0 picks a free one)")
    sv.add_argument("--timeout", type=timeout_seconds, default=10.0, metavar="SECONDS",
                    help="time to receive one whole request, idle keep-alive wait included (default 10)")
    sv.add_argument("--max-connections", type=connection_count, default=64, metavar="N",
                    help="connections served at once (1..4096), one thread each; more wait their turn (default 64)")
    sv.add_argument("--device", default="cpu")
    sv.add_argument("--quiet", action="store_true", help="do not log each request")


def cmd_bench(args) -> int:
    from ..bench import bench_pretrain, bench_train
    from ..data import registry
    from ..data.negatives import load_for_protocol

    if args.bench_command == "pretrain":
        from ..config import PretrainConfig, parse_sets, with_overrides

        cfg = with_overrides(PretrainConfig(), {"dataset": args.dataset, "device": args.device, **parse_sets(args.sets)}).validate()
        ds = registry.load(cfg.dataset, args.data_dir)
        result = bench_pretrain(cfg, ds, args.batches, args.warmup, log=None if args.json else log)
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{ds.name}: {result['instances_per_second']:.0f} instances/s over {result['batches']} batches "
                  f"(an epoch of {result['epoch_instances']} instances: ~{result['estimated_epoch_seconds']:.0f} s)")
        return 0

    cfg = train_config(args)
    ds = load_for_protocol(cfg.dataset, args.data_dir, cfg.protocol)
    result = bench_train(cfg, ds, epochs=args.timed_epochs, log=None if args.json else log)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{ds.name}: median {result['median_seconds_per_epoch']:.2f} s per epoch "
              f"(train {result['median_train_seconds']:.2f} s + valid {result['median_valid_seconds']:.2f} s) "
              f"over {result['epochs_timed']} epochs after 1 warm-up")
    return 0


def cmd_models(args) -> int:
    from ..models import describe_models

    for name, desc in describe_models():
        print(f"{name:<12} " + textwrap.shorten(desc, 100))
        if getattr(args, "params", False):
            import dataclasses

            from ..config import MODEL_SETTINGS, TrainConfig, for_model

            cfg = for_model(TrainConfig(), name)
            shared = ", ".join(f"{k}={getattr(cfg, k)}" for k in MODEL_SETTINGS)
            own = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg.params()).items()) or "none"
            print(f"{'':<12}   settings: {shared}\n{'':<12}   own hyper-parameters: {own}")
    return 0


def _recommender(args):
    from ..config import device_ok
    from ..recommend import Recommender

    if not device_ok(args.device):
        raise S3RecError(f"device {args.device!r} is not available here")
    return Recommender.load(args.checkpoint, args.dataset, args.data_dir, args.device)


def _is_recommendations(path: Path) -> bool:
    """Whether ``path`` starts as ``s3rec recommend`` writes: its CSV header, or a JSON line of one user."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline(1 << 16).rstrip("\n")
        if first == RECOMMEND_HEADER:
            return True
        line = json.loads(first)
        return isinstance(line, dict) and set(line) == {"user", "items", "scores"}
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False


def check_recommend_out(out: Path, inputs: list[Path], force: bool) -> None:
    """Refuse an ``--out`` that would replace an input, a folder, or (without ``force``) a file that is
    not an earlier output of ``s3rec recommend``."""
    if not out.exists():
        return
    if any(p.exists() and out.resolve() == p.resolve() for p in inputs):
        raise S3RecError(f"--out {out} is an input of this command: choose another file")
    if out.is_dir():
        raise S3RecError(f"--out {out} is a folder: give a file name")
    if not force and not _is_recommendations(out):
        raise S3RecError(f"--out {out} exists and is not an s3rec recommend output: use --force to replace it")


def cmd_recommend(args) -> int:
    from ..fileio import atomic_path

    given = Path(args.checkpoint)
    inputs = [given, given / "best.pt"] + ([Path(args.users_file)] if args.users_file else [])
    if args.out:
        check_recommend_out(Path(args.out), inputs, args.force)
    from ..data.idmaps import known_ids, read_id_list

    listed = read_id_list(args.users_file) if args.users_file else []  # before the model is loaded
    rec = _recommender(args)
    users = args.users
    if args.users_file:
        users = (users or []) + known_ids(args.users_file, listed, set(rec.user_names))
    if args.out:  # nor the dataset's files
        check_recommend_out(Path(args.out), [*inputs, *rec.ds.paths.values()], args.force)
    rows = rec.iter_users(users, args.k, exclude_history=not args.keep_history)

    def write(f):
        if args.format == "csv":
            f.write(RECOMMEND_HEADER + "\n")
        for user, top in rows:
            if args.format == "csv":
                f.writelines(f"{_csv_field(user)},{r},{_csv_field(item)},{score:.6g}\n" for r, (item, score) in enumerate(top, 1))
            else:
                f.write(json.dumps({"user": user, "items": [i for i, _ in top], "scores": [round(s, 6) for _, s in top]}) + "\n")

    if args.out:
        with atomic_path(args.out) as tmp, open(tmp, "w", encoding="utf-8") as f:
            write(f)
        log(f"wrote {args.out}")
    else:
        write(sys.stdout)
    return 0


def _csv_field(value: str) -> str:
    value = str(value)
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535 (0 picks a free port), got {value}")
    return value


def timeout_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"must be in (0, 86400] seconds, got {text}")
    return value


def connection_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"must be in 1..4096 (one thread each), got {value}")
    return value


def cmd_serve(args) -> int:
    from ..httpserver import Limits
    from ..serve import serve_forever

    limits = Limits(timeout=args.timeout, max_connections=args.max_connections)
    serve_forever(_recommender(args), args.host, args.port, quiet=args.quiet, log=log, limits=limits)
    return 0

