"""What the verb modules share: argument helpers, the log line, run-folder checks, config building."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RAW = argparse.RawDescriptionHelpFormatter


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def verb(sub, name: str, help: str, description: str | None = None, examples=(), epilog: str = ""):
    """A subcommand's parser whose ``--help`` ends with ``epilog`` and then its ``examples`` (command lines)."""
    if examples:
        epilog = (epilog + "\n" if epilog else "") + "examples:\n" + "".join(f"  {e}\n" for e in examples)
    return sub.add_parser(name, help=help, description=description, epilog=epilog or None, formatter_class=RAW)


def protocols() -> tuple[str, ...]:
    from ..evaluation import PROTOCOLS

    return PROTOCOLS


def add_protocol(p, help="evaluation protocol for validation and test (default sampled: target + 99 negatives)",
                 **kwargs) -> None:
    p.add_argument("--protocol", choices=protocols(), help=help, **kwargs)


def add_data_dir(p) -> None:
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder with NAME.txt / NAME_item2attributes.json (default: $S3REC_DATA_DIR, then the cache)",
    )


def add_sets(p, dest: str = "sets", flag: str = "--set", help: str = "a setting") -> None:
    p.add_argument(flag, dest=dest, action="append", default=[], metavar="KEY=VALUE", help=help)


def add_train_args(p, defaults) -> None:
    p.add_argument("--dataset", help=f"registered name or file stem (default {defaults.dataset}; with --data-dir: "
                   "its only dataset)")
    add_data_dir(p)
    p.add_argument("--model", help="model name, see `s3rec models` (default sasrec)")
    add_protocol(p)
    p.add_argument("--epochs", type=int, help=f"maximum epochs (default {defaults.epochs})")
    p.add_argument("--seed", type=int, help=f"random seed (default {defaults.seed})")
    p.add_argument("--loss", choices=["bce", "ce", "bpr", "sampled-softmax", "gbce"],
                   help="bce: one negative per position (paper); ce: full softmax; bpr: pairwise; "
                   "sampled-softmax / gbce: against n_negatives uniform negatives (sasrec; --set n_negatives=N, gbce_t=T) "
                   "(default: the model's, see `s3rec models --params`)")
    p.add_argument("--device", help="cpu (default) or cuda")
    add_sets(p, help="any other setting, e.g. --set lr=0.0005 --set patience=20 (docs/training.md lists every "
             "setting), or a hyper-parameter of the model (see `s3rec models --params`), e.g. --model caser --set L=3")
    add_quiet(p)
    p.add_argument("--preset", metavar="NAME|FILE", help="start from a named configuration (see `s3rec presets`) or a "
                   "preset .toml file; flags and --set win over it")


TRAIN_FLAGS = ("dataset", "model", "protocol", "epochs", "seed", "loss", "device", "init")


def train_config(args, base=None):
    """The run's config: ``base`` (the defaults, or a resumed run's settings) plus what was given."""
    from ..config import TrainConfig, parse_sets, with_overrides

    overrides = {k: getattr(args, k, None) for k in TRAIN_FLAGS if getattr(args, k, None) is not None}
    if "model" in overrides:
        overrides["model"] = overrides["model"].lower()
    overrides.update(parse_sets(args.sets))
    base = base or TrainConfig()
    if getattr(args, "preset", None):
        from ..presets import apply_finetune, load_preset

        base = apply_finetune(base, load_preset(args.preset))
    return with_overrides(base, overrides).validate()


def resumed_config(args, out: Path, make):
    """With --resume, settings not given on the command line come from the run being resumed."""
    if args.resume and (out / "config.json").is_file():
        return make(args, (out / "config.json").read_text())
    return None


def folder_dataset(args) -> None:
    """``--data-dir`` without ``--dataset``: the folder's only dataset, said on stderr, not the default
    one (:func:`s3rec.data.registry.only_dataset`); a resumed ``--out`` keeps its own."""
    if args.dataset is None and args.data_dir and not (args.resume and args.out):
        from ..data.registry import only_dataset

        args.dataset = only_dataset(args.data_dir)
        log(f"--data-dir {args.data_dir}: using its only dataset, {args.dataset}")


def add_quiet(p) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars and no per-epoch lines on stderr (the run's log.txt still has them)")


def add_tensorboard(p) -> None:
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                   help="write TensorBoard event files (losses, validation metrics, lr per epoch) in the run "
                   "folder (default: when tensorboard is installed: pip install 's3rec[tensorboard]')")


def run_log(args):
    """The log of a training run from the command line: stderr (per-epoch lines not with --quiet),
    the run's log.txt, TensorBoard as --tensorboard says (:class:`s3rec.loop.RunLog`)."""
    from ..loop import RunLog

    return RunLog(log, quiet=args.quiet, tensorboard=getattr(args, "tensorboard", None))


def add_run_folder_args(p, default: str) -> None:
    p.add_argument("--out", help=f"run directory (default {default})")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
