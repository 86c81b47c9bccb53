"""The ``s3rec`` command line: each verb is a thin function over the library (:mod:`s3rec.api` and the
packages it fronts), in one module per group of verbs: ``data``, ``train`` (train, pretrain, run,
evaluate), ``tools`` (bench, models, recommend, serve), ``reproduce`` (reproduce, report), ``tune``
(tune, presets).

Errors in the user's input (files, settings, checkpoints) print one line and exit with status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import difflib
import re
import os
import sys

from ..errors import S3RecError
from . import data, reproduce, tools, train, tune
from .common import RAW

EXAMPLES = """
examples:
  s3rec data fetch LastFM                      download + verify into the cache (needs the internet)
  export S3REC_DATA_DIR=/path/to/data          or use local files (NAME.txt, NAME_item2attributes.json)
  s3rec data stats Beauty
  s3rec data import ratings.csv --out data/    your own data (see `s3rec data import --help`)
  s3rec train --dataset Beauty                 SASRec, sampled protocol (the paper's Table 2)
  s3rec train --dataset Beauty --protocol full --out runs/beauty-full
  s3rec train --out runs/beauty-full --resume  continue an interrupted run
  s3rec evaluate runs/beauty-full/best.pt --dataset Beauty --protocol sampled
  s3rec bench train --dataset Beauty --json
"""

HANDLERS = {
    "data": data.cmd_data, "train": train.cmd_train, "pretrain": train.cmd_pretrain, "run": train.cmd_run,
    "evaluate": train.cmd_evaluate, "bench": tools.cmd_bench, "models": tools.cmd_models,
    "recommend": tools.cmd_recommend, "serve": tools.cmd_serve, "reproduce": reproduce.cmd_reproduce,
    "report": reproduce.cmd_report, "tune": tune.cmd_tune, "presets": tune.cmd_presets,
}


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error of the command line:
    ``s3rec train: error: argument --epochs: invalid int value: 'x' (see s3rec train --help)``."""

    def error(self, message: str):
        bad = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)", message)
        if bad:
            choices = re.findall(r"'([^']*)'", bad.group(2))
            close = difflib.get_close_matches(bad.group(1), choices, n=1)
            if close:
                message = f"{message}: did you mean '{close[0]}'?"
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from ..config import TrainConfig

    defaults = TrainConfig()
    parser = Parser(
        prog="s3rec",
        description="Self-supervised sequential recommendation (S3-Rec, CIKM 2020): data, training, evaluation.",
        epilog=EXAMPLES,
        formatter_class=RAW,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action="version", version=f"s3rec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data.add_parsers(sub)
    train.add_parsers(sub, defaults)
    tools.add_parsers(sub, defaults)
    reproduce.add_parsers(sub)
    tune.add_parsers(sub)
    for p in subcommand_parsers(parser):  # `s3rec train --debug ...` as well as `s3rec --debug train ...`
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    return parser


def command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the (sub)command ``argv`` runs (``s3rec data import ...``: that of ``data import``)."""
    words = [a for a in argv if not a.startswith("-")]
    best = parser
    for p in subcommand_parsers(parser):
        names = p.prog.split()[1:]
        if words[: len(names)] == names and len(names) > len(best.prog.split()) - 1:
            best = p
    return best


def subcommand_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every subcommand's parser under ``parser``, nested ones (``data fetch``) included."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in dict.fromkeys(action.choices.values()):
                found += [p, *subcommand_parsers(p)]
    return found


DISTRIBUTED = ("pretrain", "train")  # the commands that run under torchrun


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the command they were given to, whose --help lists what it takes
        command_parser(parser, argv).error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = argv  # the command as given (`s3rec reproduce --jobs` starts workers with it)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and args.command not in DISTRIBUTED:
        print(f"s3rec: error: {args.command} runs as one process; under torchrun (WORLD_SIZE > 1) only "
              "`s3rec pretrain` and `s3rec train` are distributed", file=sys.stderr)
        return 2
    try:
        return HANDLERS[args.command](args)
    except (S3RecError, OSError) as e:  # OSError: unreadable files, full disks: the user's environment, not a bug
        if args.debug:
            raise
        print(f"s3rec: error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        if args.debug:
            raise
        print(f"s3rec: error: {args.command}: out of memory (smaller settings, e.g. --set batch_size=..., "
              "or a machine with more memory)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("s3rec: interrupted (a run continues with --resume)", file=sys.stderr)
        return 130
