"""The ``s3rec`` command line: each verb is a thin function over the library.

Errors in the user's input (files, settings, checkpoints) print one line and exit with status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
import time
from pathlib import Path

from .errors import ConfigError, S3RecError

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


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _add_data_dir(p):
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder with NAME.txt / NAME_item2attributes.json (default: $S3REC_DATA_DIR, then the cache)",
    )


def _add_train_args(p, defaults):
    p.add_argument("--dataset", help=f"registered name or file stem (default {defaults.dataset})")
    _add_data_dir(p)
    p.add_argument("--model", help="model name, see `s3rec models` (default sasrec)")
    p.add_argument(
        "--protocol",
        choices=["sampled", "full", "full-unmasked", "full-original"],
        help="evaluation protocol for validation and test (default sampled: target + 99 negatives)",
    )
    p.add_argument("--epochs", type=int, help=f"maximum epochs (default {defaults.epochs})")
    p.add_argument("--seed", type=int, help=f"random seed (default {defaults.seed})")
    p.add_argument("--loss", choices=["bce", "ce", "bpr", "sampled-softmax", "gbce"],
                   help="bce: one negative per position (paper); ce: full softmax; bpr: pairwise; "
                   "sampled-softmax / gbce: against n_negatives uniform negatives (sasrec; --set n_negatives=N, gbce_t=T) "
                   "(default: the model's, see `s3rec models --params`)")
    p.add_argument("--device", help="cpu (default) or cuda")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting, e.g. --set lr=0.0005 --set patience=20 (the README lists every setting), "
        "or a hyper-parameter of the model (see `s3rec models --params`), e.g. --model caser --set L=3",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--preset", metavar="NAME|FILE", help="start from a named configuration (see `s3rec presets`) or a "
                   "preset .toml file; flags and --set win over it")


def build_parser() -> argparse.ArgumentParser:
    from .config import TrainConfig

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="s3rec",
        description="Self-supervised sequential recommendation (S3-Rec, CIKM 2020): data, training, evaluation.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action="version", version=f"s3rec {__import__('s3rec').__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # data
    data = sub.add_parser("data", help="fetch, inspect and prepare datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = dsub.add_parser(
        "fetch",
        help="download a public dataset and verify its SHA-256",
        description="Download a registered dataset from the authors' repository into the cache "
        "($S3REC_CACHE_DIR, default ~/.cache/s3rec), verify each file's SHA-256 and move it into place "
        "atomically. Does nothing if a data folder already holds verified copies.",
    )
    f.add_argument("name", help="Beauty, Sports, Toys, Yelp or LastFM")
    f.add_argument("--url", help="base URL to download from (default: the authors' repository or $S3REC_DATA_URL)")
    f.add_argument("--dest", help="folder to write to (default: the cache)")
    _add_data_dir(f)
    s = dsub.add_parser("stats", help="users, items, interactions, attributes, lengths, repeats")
    s.add_argument("name", help="registered name or file stem")
    _add_data_dir(s)
    s.add_argument("--json", action="store_true", help="print JSON")
    n = dsub.add_parser(
        "negatives",
        help="write the 99-negatives file for the sampled protocol",
        description="Write NAME_sample.txt: 99 distinct items per user outside the user's whole sequence, "
        "uniform, seeded (deterministic across runs and machines). Written next to the data when that "
        "folder is writable, otherwise in the cache. Refuses to overwrite without --force.",
    )
    n.add_argument("name", help="registered name or file stem")
    _add_data_dir(n)
    n.add_argument("--seed", type=int, default=12345, help="sampling seed (default 12345, the authors')")
    n.add_argument("--out", help="output path (default: beside the data, or the cache)")
    n.add_argument("--force", action="store_true", help="overwrite an existing file")
    _add_data_io_parsers(dsub)

    # train
    t = sub.add_parser(
        "train",
        help="train and evaluate a model (SASRec by default)",
        description="Fine-tune a next-item model with the paper's recipe: Adam, batches of 256 users, "
        "validation every epoch, early stopping (patience 10) on MRR (sampled) or NDCG@20 (full), then "
        "the best checkpoint evaluated once on test. A checkpoint is written every epoch; --resume "
        "continues an interrupted run to the same result.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_train_args(t, defaults)
    t.add_argument("--out", help="run directory (default runs/DATASET-MODEL-PROTOCOL-seedSEED)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run directory")

    t.add_argument("--init", help="start from a pre-training checkpoint (ours or the authors' state_dict): SASRec "
                   "takes the embeddings, LayerNorm and encoder (S3-Rec); other models their item embeddings only")
    t.add_argument("--pretrain-dir", metavar="DIR", default="runs/pretrain",
                   help="where a preset that fine-tunes from a pre-training (`pretrained = true`, e.g. s3rec-plus) "
                   "keeps it, one folder per distinct pre-training setting: a finished one is reused, an "
                   "interrupted one resumed (default runs/pretrain; --init skips this)")

    # pretrain
    pt = sub.add_parser(
        "pretrain",
        help="S3-Rec self-supervised pre-training (AAP, MIP, MAP, SP)",
        description="Pre-train the bidirectional encoder with the four S3-Rec objectives on every prefix of "
        "every user's training part: random batches of 100, fresh corruption each epoch, joint loss "
        "0.2*AAP + 1*MIP + 1*MAP + 0.5*SP. Writes pretrain-epoch-K.pt every 10 epochs and a resumable "
        "checkpoint.pt every epoch. Ablations: --set sp_weight=0 (w/o SP) and so on.",
        epilog="examples:\n  s3rec pretrain --dataset LastFM --epochs 30\n"
        "  s3rec pretrain --dataset Beauty --out runs/beauty-pre --resume\n"
        "  s3rec pretrain --dataset Beauty --set sp_weight=0          # the paper's w/o SP\n"
        "  s3rec train --dataset Beauty --init runs/beauty-pre/pretrain-epoch-150.pt\n"
        "  torchrun --standalone --nproc_per_node 4 -m s3rec pretrain --dataset Beauty   # data-parallel\n"
        "      (same summed gradient per batch; README, \"Distributed pre-training\")",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pt.add_argument("--dataset", help="registered name or file stem (default LastFM)")
    _add_data_dir(pt)
    pt.add_argument("--epochs", type=int, help="epochs (default: 150 Beauty/Toys/LastFM, 100 Sports/Yelp)")
    pt.add_argument("--seed", type=int, help="random seed (default 42)")
    pt.add_argument("--device", help="cpu (default) or cuda")
    pt.add_argument("--init", help="continue from a pre-training checkpoint (ours or the authors' state_dict)")
    pt.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="other settings: lr, batch_size, mask_p, aap_weight, mip_weight, map_weight, sp_weight, "
                    "segment_pool, negative_sampler, save_every, amp, packed, hidden_size, causal=true "
                    "(left-to-right attention), backbone=gru4rec|gru4rec_f|sasrec_f (pre-train that model's "
                    "own encoder; fine-tune it with --model NAME --init CKPT), ...")
    pt.add_argument("--out", help="run directory (default runs/DATASET-pretrain-seedSEED)")
    pt.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    pt.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    pt.add_argument("--quiet", action="store_true", help="no progress bars")

    # run
    r = sub.add_parser(
        "run",
        help="S3-Rec end to end: pre-train, fine-tune, evaluate test",
        description="Pre-train S3-Rec, fine-tune SASRec from the last pre-training checkpoint, evaluate test "
        "once, and print the metrics beside the paper's. OUT/pretrain and OUT/finetune are ordinary run "
        "directories; --resume continues whichever stage was interrupted.",
        epilog="examples:\n  s3rec run --dataset LastFM --pretrain-epochs 20\n  s3rec run --dataset Beauty --resume",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--dataset", default="LastFM", help="registered name or file stem (default LastFM)")
    _add_data_dir(r)
    r.add_argument("--pretrain-epochs", type=int, help="pre-training epochs (default: the dataset's, see pretrain)")
    r.add_argument("--protocol", choices=["sampled", "full", "full-unmasked", "full-original"], help="default sampled")
    r.add_argument("--seed", type=int, help="random seed for both stages (default 42)")
    r.add_argument("--device", help="cpu (default) or cuda")
    r.add_argument("--pretrain-set", dest="pretrain_sets", action="append", default=[], metavar="KEY=VALUE",
                   help="a pre-training setting (see `s3rec pretrain --help`)")
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="a fine-tuning setting")
    r.add_argument("--out", help="run directory (default runs/DATASET-s3rec-PROTOCOL-seedSEED)")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run")
    r.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--preset", metavar="NAME|FILE", help="fine-tuning and pre-training settings from a preset (see "
                   "`s3rec presets`); flags, --set and --pretrain-set win over it")

    # evaluate
    e = sub.add_parser("evaluate", help="evaluate a saved model")
    e.add_argument("checkpoint", help="best.pt or checkpoint.pt of a run")
    e.add_argument("--dataset", help="dataset (default: the one the model was trained on)")
    _add_data_dir(e)
    e.add_argument("--protocol", default="sampled", choices=["sampled", "full", "full-unmasked", "full-original"])
    e.add_argument("--split", default="test", choices=["valid", "test"])
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", action="store_true", help="print JSON")

    # bench
    b = sub.add_parser("bench", help="speed benchmarks")
    bsub = b.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    bt = bsub.add_parser(
        "train",
        help="median seconds per fine-tuning epoch (training + validation)",
        description="Time whole fine-tuning epochs (training plus validation under the protocol) after "
        "one warm-up epoch and print the median.",
    )
    _add_train_args(bt, defaults)
    bt.add_argument("--timed-epochs", type=_positive_int, default=3, help="epochs timed after the warm-up (default 3)")
    bt.add_argument("--json", action="store_true", help="print JSON")

    bp = bsub.add_parser(
        "pretrain",
        help="pre-training instances per second",
        description="Instances per second = instances / end-to-end wall time (batch building, the four "
        "objectives, backward, optimizer step) over --batches consecutive batches of a random permutation, "
        "after --warmup batches.",
    )
    bp.add_argument("--dataset", default="LastFM")
    _add_data_dir(bp)
    bp.add_argument("--batches", type=_positive_int, default=200, help="timed batches (default 200)")
    bp.add_argument("--warmup", type=int, default=20, help="untimed batches first (default 20)")
    bp.add_argument("--device", default="cpu")
    bp.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="a pre-training setting")
    bp.add_argument("--json", action="store_true", help="print JSON")

    m = sub.add_parser(
        "models",
        help="list the available models",
        description="The registered models, one line each. With --params: each model's defaults for the shared "
        "settings (its paper's values, applied when --model selects it) and its own hyper-parameters; all of them "
        "can be changed with `s3rec train --model NAME --set KEY=VALUE` and are recorded in the run's config.json.",
    )
    m.add_argument("--params", action="store_true", help="also show each model's settings and hyper-parameters")

    # recommend / serve
    rc = sub.add_parser(
        "recommend",
        help="top-k items for users, from a fine-tuned checkpoint (CSV or JSON lines)",
        description="Recommend the top-k items for every user of the checkpoint's dataset (or the users given), "
        "from each user's whole sequence, with the history excluded, in the dataset's original ids (the id maps "
        "that `s3rec data import` keeps). Scored in bounded chunks of users. Output: CSV rows user,rank,item,score "
        "or one JSON object per user.",
    )
    rc.add_argument("checkpoint", help="best.pt or checkpoint.pt of an `s3rec train` run")
    rc.add_argument("--dataset", help="dataset name (default: the one recorded in the checkpoint)")
    _add_data_dir(rc)
    rc.add_argument("-k", type=_positive_int, default=10, help="items per user (default 10)")
    rc.add_argument("--users", nargs="+", metavar="USER", help="original user ids (default: every user)")
    rc.add_argument("--users-file", help="a file with one original user id per line")
    rc.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="output format (default csv)")
    rc.add_argument("--keep-history", action="store_true", help="allow items already in the history")
    rc.add_argument("--out", help="output file, written atomically (default: standard output)")
    rc.add_argument("--device", default="cpu")
    sv = sub.add_parser(
        "serve",
        help="HTTP JSON service: GET /health, GET /info, POST /recommend",
        description="Serve recommendations over HTTP (JSON). POST /recommend with "
        '{"history": [item, ...], "k": 10} answers {"items": [...], "scores": [...]} in original ids; '
        '{"user": ID} recommends from a dataset user\'s whole sequence. Invalid requests get a 4xx answer '
        'with {"error": ...}. Binds to 127.0.0.1 unless --host says otherwise.',
    )
    sv.add_argument("checkpoint", help="best.pt or checkpoint.pt of an `s3rec train` run")
    sv.add_argument("--dataset", help="dataset name (default: the one recorded in the checkpoint)")
    _add_data_dir(sv)
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    sv.add_argument("--device", default="cpu")
    sv.add_argument("--quiet", action="store_true", help="do not log each request")
    _add_reproduce_parsers(sub)
    _add_tune_parsers(sub)
    return parser


def _add_reproduce_parsers(sub) -> None:
    """``s3rec reproduce EXPERIMENT`` and ``s3rec report RUNS_DIR``."""
    from .reproduce.experiment import experiment_names, load_experiment

    listing = "\n".join(f"  {n:<16} {load_experiment(n).title}" for n in experiment_names())
    rp = sub.add_parser(
        "reproduce",
        help="reproduce a table or figure of the paper (a resumable grid of runs)",
        description="Run the grid of an experiment of the paper (datasets x methods x varied setting x seeds), each "
        "run in its own folder under --out; pre-training runs are shared (one per dataset and pre-training settings, "
        "in --pretrain-dir) and fine-tuning starts from their checkpoints. Finished runs (results.json) are skipped, so "
        "running the same command again continues an interrupted reproduction; a failing run is recorded (error.txt) "
        "and the others go on; the exit status is 1 when any failed. Then `s3rec report OUT`.",
        epilog="experiments:\n" + listing + "\n\nexamples:\n"
        "  s3rec reproduce table2 --dry-run                       the grid, each run's status and estimated time\n"
        "  s3rec reproduce ablation --datasets LastFM --seeds 42  a small grid\n"
        "  s3rec reproduce pretrain_epochs --values 0 10 20 --datasets LastFM\n"
        "  s3rec reproduce table2 --retry-failed                  run the failed runs again\n"
        "  s3rec reproduce ablation --jobs 4                      four worker processes share the grid\n"
        "  s3rec reproduce ablation --report docs/results/reproduce/ablation   the report made again after each run\n"
        "  s3rec reproduce my_grid.toml                           your own definition (see s3rec/reproduce/experiment.py)\n"
        "  s3rec report runs/reproduce/table2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rp.add_argument("experiment", metavar="EXPERIMENT", help="a name listed below, or the path of a .toml definition")
    rp.add_argument("--out", help="experiment folder (default runs/reproduce/EXPERIMENT)")
    rp.add_argument("--pretrain-dir", help="folder of the shared pre-training runs (default: pretrain/ beside --out)")
    _add_data_dir(rp)
    rp.add_argument("--datasets", nargs="+", metavar="NAME", help="replace the experiment's datasets")
    rp.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="replace the fine-tuning seeds (default 42 43 44)")
    rp.add_argument("--pretrain-seed", type=int, help="the pre-training seed (default 42)")
    rp.add_argument("--methods", nargs="+", metavar="ID", help="only these methods (ids as in --dry-run)")
    rp.add_argument("--values", nargs="+", metavar="V", help="replace the values of the varied setting")
    rp.add_argument("--pretrain-epochs", type=_positive_int, help="pre-training length (default: the dataset's)")
    rp.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="a fine-tuning setting for every run, e.g. --set epochs=20 (hidden_size, n_layers, n_heads "
                    "and max_len apply to pre-training too)")
    rp.add_argument("--pretrain-set", dest="pretrain_sets", action="append", default=[], metavar="KEY=VALUE",
                    help="a pre-training setting for every pre-training run")
    rp.add_argument("--device", help="cpu (default) or cuda")
    rp.add_argument("--dry-run", action="store_true", help="print the grid, statuses and estimated time; run nothing")
    rp.add_argument("--retry-failed", action=argparse.BooleanOptionalAction, default=False,
                    help="run again the runs that failed before (default: report them and leave them)")
    rp.add_argument("--no-reuse", action="store_true",
                    help="compute every run even when another experiment beside this one finished a run with exactly "
                    "its settings (by default that run's records are copied, marked same_run_as)")
    rp.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                    help="run N worker processes on the grid at once, each with cores/N threads (unless "
                    "OMP_NUM_THREADS is set) and without progress bars; they share the runs through the run locks "
                    "and wait for each other's pre-trainings (default 1)")
    rp.add_argument("--wait", action="store_true",
                    help="when another process is running a run of the grid (or the pre-training it needs), go on "
                    "with the other runs and look again every 20 s until it is finished or free, instead of leaving "
                    "it to that process")
    rp.add_argument("--quiet", action="store_true", help="no progress bars")
    rp.add_argument("--report", metavar="DIR",
                    help="after each run that finishes, make this experiment's report again in DIR, in place (what "
                    "`s3rec report OUT --out DIR` writes; e.g. a folder you commit), so results are kept as soon as "
                    "they exist")

    rep = sub.add_parser(
        "report",
        help="tables (Markdown, CSV) and plots (PNG) from `s3rec reproduce` folders",
        description="Write report.md, CSV tables (ours as mean and standard deviation over seeds, the paper's value, "
        "the relative difference; a paired t-test over users' reciprocal ranks for the tables) and PNG plots for the "
        "figures, from an experiment folder or a folder of them (then one report per experiment and an index). "
        "Runs that did not finish are marked 'not run', never filled in.",
        epilog="examples:\n  s3rec report runs/reproduce/ablation\n  s3rec report runs/reproduce --out docs/results/reproduce",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument("runs_dir", metavar="RUNS_DIR", help="an experiment folder (with grid.json) or a folder of them")
    rep.add_argument("--out", help="output folder (default RUNS_DIR/report)")


def _add_tune_parsers(sub) -> None:
    """``s3rec tune`` (a hyper-parameter search on validation) and ``s3rec presets``."""
    from .tune.space import describe_spaces

    spaces = "\n".join(f"  {n:<12} {desc}" for n, desc in describe_spaces())
    tu = sub.add_parser(
        "tune",
        help="hyper-parameter search (optuna) on the validation split; resumable",
        description="Search fine-tuning settings (and optionally pre-training settings) with optuna's TPE sampler: each "
        "trial fine-tunes with sampled settings and scores the best epoch's validation metric (MRR sampled, NDCG@20 "
        "full); test is never evaluated. The study lives in --study-dir (a journal file, no database): running the "
        "same command again continues it, --trials being the total; a trial cut short is retried from its checkpoint. "
        "best.json holds the best trial; --save-preset writes it as a preset for `s3rec train/run --preset FILE`.",
        epilog="search spaces (--space NAME, or a .toml file of the same form: see s3rec/tune/space.py):\n" + spaces
        + "\n\nexamples:\n"
        "  s3rec tune --dataset LastFM --init runs/LastFM-pretrain-seed42/pretrain-epoch-150.pt --trials 30\n"
        "  s3rec tune --dataset LastFM --trials 30 --set epochs=50      SASRec from scratch, shorter trials\n"
        "  s3rec tune --dataset LastFM --space pretrain --pretrain-epochs 50 --trials 40\n"
        "  s3rec tune --dataset LastFM --init CKPT --trials 30 --save-preset lastfm-tuned --preset-dir presets/\n"
        "  s3rec train --dataset LastFM --init CKPT --preset presets/lastfm-tuned.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tu.add_argument("--dataset", required=True, help="registered name or file stem")
    _add_data_dir(tu)
    tu.add_argument("--trials", type=_non_negative_int, required=True,
                    help="total number of finished trials wanted in the study (earlier runs count)")
    tu.add_argument("--study-dir", help="study folder (default runs/tune/DATASET-MODEL-PROTOCOL-SPACE)")
    tu.add_argument("--space", default="finetune", metavar="NAME|FILE", help="search space (default finetune)")
    tu.add_argument("--init", help="a fixed pre-trained checkpoint every trial fine-tunes from")
    tu.add_argument("--pretrain", action="store_true",
                    help="pre-train S3-Rec first (once per distinct pre-training setting, cached in the study folder)")
    tu.add_argument("--pretrain-epochs", type=_positive_int, help="pre-training epochs (implies --pretrain)")
    tu.add_argument("--pretrain-set", dest="pretrain_sets", action="append", default=[], metavar="KEY=VALUE",
                    help="a fixed pre-training setting (implies --pretrain)")
    tu.add_argument("--model", help="model name (default sasrec)")
    tu.add_argument("--protocol", choices=["sampled", "full", "full-unmasked", "full-original"], help="default sampled")
    tu.add_argument("--seed", type=int, help="training seed of every trial (default 42)")
    tu.add_argument("--sampler-seed", type=int, default=0, help="seed of the TPE sampler (default 0)")
    tu.add_argument("--device", help="cpu (default) or cuda")
    tu.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="a fixed fine-tuning setting, e.g. --set epochs=50 (not one the space searches)")
    tu.add_argument("--preset", metavar="NAME|FILE", help="base settings from a preset; --set wins over it")
    tu.add_argument("--save-preset", metavar="NAME", help="write the best trial as the preset file PRESET_DIR/NAME.toml")
    tu.add_argument("--preset-dir", metavar="DIR", help="folder for --save-preset (default: the study folder)")
    tu.add_argument("--verbose", action="store_true", help="log every epoch of every trial")

    ps = sub.add_parser(
        "presets",
        help="list the shipped presets, or show one",
        description="Presets are named configurations (TOML files in s3rec/presets/) that `s3rec train --preset NAME` "
        "and `s3rec run --preset NAME` start from; flags and --set win over them. `--preset FILE.toml` takes any "
        "preset file, such as one written by `s3rec tune --save-preset`.",
    )
    ps.add_argument("name", nargs="?", metavar="NAME|FILE", help="show this preset's settings")


_TRAIN_FLAGS = ("dataset", "model", "protocol", "epochs", "seed", "loss", "device", "init")


def _train_config(args, base=None):
    """The run's config: ``base`` (the defaults, or a resumed run's settings) plus what was given."""
    from .config import TrainConfig, parse_sets, with_overrides

    overrides = {k: getattr(args, k, None) for k in _TRAIN_FLAGS if getattr(args, k, None) is not None}
    if "model" in overrides:
        overrides["model"] = overrides["model"].lower()
    overrides.update(parse_sets(args.sets))
    base = base or TrainConfig()
    if getattr(args, "preset", None):
        from .presets import apply_finetune, load_preset

        base = apply_finetune(base, load_preset(args.preset))
    return with_overrides(base, overrides).validate()


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _add_pipeline_args(p, dedup: bool, default_name: str) -> None:
    p.add_argument("--name", help=f"dataset name: the files are NAME.txt, NAME_item2attributes.json, ... (default: {default_name})")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (use it later as --data-dir)")
    if dedup:
        p.add_argument("--dedup", action=argparse.BooleanOptionalAction, default=True,
                       help="drop repeated (user, item) pairs, keeping the earliest (default); --no-dedup keeps repeats")
    p.add_argument("--k-core", dest="k_core", type=_non_negative_int, default=5, metavar="K",
                   help="iterative K-core on users and items (default 5; 0 or 1: off). Users with fewer than "
                   "3 interactions are always dropped (the split needs 3)")
    p.add_argument("--min-attribute-count", type=_positive_int, default=1, metavar="N",
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
    fmt = argparse.RawDescriptionHelpFormatter
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
        description="Build a dataset from the raw public files the paper used (SPEC section 1): group by user, "
        "stable sort by time, iterative 5-core, re-index from 1 in order of first appearance.",
        epilog=_DATA_IO_EPILOG + "\nexamples:\n"
        "  s3rec data prepare amazon --reviews reviews_Beauty_5.json.gz --meta meta_Beauty.json.gz --out data/\n"
        "  s3rec data prepare yelp --reviews yelp_academic_dataset_review.json "
        "--business yelp_academic_dataset_business.json --out data/\n"
        "  s3rec data prepare lastfm --tags user_taggedartists-timestamps.dat --out data/",
        formatter_class=fmt,
    )
    psub = prep.add_subparsers(dest="source", required=True, metavar="SOURCE")
    pa_ = psub.add_parser(
        "amazon", help="Amazon 2014 5-core reviews + metadata",
        description="Amazon 2014: reviews_<Category>_5.json.gz (reviewerID, asin, unixReviewTime) and "
        "meta_<Category>.json.gz (asin, categories, brand; JSON or Python-literal lines). No rating filter, no "
        "de-duplication. Attributes: the brand, then every category of every path except its first, top-level one.",
    )
    pa_.add_argument("--reviews", required=True, help="reviews_<Category>_5.json.gz")
    pa_.add_argument("--meta", required=True, help="meta_<Category>.json.gz")
    _add_pipeline_args(pa_, dedup=False, default_name="the category, e.g. Beauty")
    py = psub.add_parser(
        "yelp", help="Yelp academic dataset reviews + businesses",
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
    pl = psub.add_parser(
        "lastfm", help="LastFM hetrec-2011 tag assignments",
        description="LastFM hetrec-2011: user_taggedartists-timestamps.dat (tab separated: userID artistID tagID "
        "timestamp). Each (user, artist) pair at its first line; attributes: the artist's tags (every tagging).",
    )
    pl.add_argument("--tags", required=True, help="user_taggedartists-timestamps.dat")
    _add_pipeline_args(pl, dedup=False, default_name="LastFM")

    ex = dsub.add_parser(
        "export",
        help="export a dataset to RecBole atomic files (NAME.inter, NAME.item)",
        description="Write NAME.inter (user_id, item_id, timestamp = position in the sequence) and NAME.item "
        "(item_id, categories token_seq) so the same data and leave-one-out split can be checked in RecBole "
        "(eval_args: split LS valid_and_test, order TO, group_by user; see `s3rec.data.export`).",
    )
    ex.add_argument("name", help="registered name or file stem")
    _add_data_dir(ex)
    ex.add_argument("--out", required=True, metavar="DIR", help="output folder (RecBole: <data_path>/NAME)")
    ex.add_argument("--as", dest="as_name", metavar="NAME", help="file name stem (default: the dataset's name)")
    ex.add_argument("--force", action="store_true", help="replace existing files")

    sy = dsub.add_parser(
        "synth",
        help="write a synthetic interaction log (CSV) for scale and load tests",
        description="Write a CSV of user,item,timestamp rows in global time order: Zipf-like item popularity, "
        "a planted next-item pattern, scattered original ids, every user with at least 5 interactions. "
        "Deterministic for --seed. Import it with `s3rec data import`.",
    )
    sy.add_argument("--out", required=True, metavar="FILE", help="CSV file to write (atomically)")
    sy.add_argument("--users", type=_positive_int, default=10_000, help="users (default 10,000)")
    sy.add_argument("--items", type=_positive_int, default=1_000, help="items (default 1,000)")
    sy.add_argument("--interactions", type=_positive_int, default=100_000, help="rows (default 100,000)")
    sy.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _cmd_data_io(args) -> int:
    if args.data_command == "synth":
        from .data.synthetic import synthetic_log, write_csv

        try:
            log = synthetic_log(args.users, args.items, args.interactions, args.seed)
        except ValueError as e:
            raise S3RecError(f"data synth: {e}") from None
        write_csv(log, args.out)
        _log(f"{args.interactions:,} interactions of {args.users:,} users over {args.items:,} items")
        print(args.out)
        return 0
    if args.data_command == "import":
        from .data.importing import import_dataset

        paths = import_dataset(
            args.interactions, args.out, args.name, args.attributes, user_col=args.user_col, item_col=args.item_col,
            time_col=args.time_col, rating_col=args.rating_col, rating_threshold=args.rating_threshold,
            attr_item_col=args.attr_item_col, attr_col=args.attr_col, delimiter=args.delimiter, dedup=args.dedup,
            k=args.k_core, min_attribute_count=args.min_attribute_count, force=args.force, log=_log,
        )
    elif args.data_command == "prepare":
        from .data.prepare import prepare

        paths = prepare(
            args.source, args.out, args.name, reviews=getattr(args, "reviews", None), meta=getattr(args, "meta", None),
            business=getattr(args, "business", None), tags=getattr(args, "tags", None),
            date_min=getattr(args, "date_min", "2019-01-01"), date_max=getattr(args, "date_max", "2019-12-31"),
            k=args.k_core, min_attribute_count=args.min_attribute_count, force=args.force, log=_log,
        )
    else:
        from .data import registry
        from .data.export import export_recbole

        ds = registry.load(args.name, args.data_dir)
        paths = export_recbole(ds, args.out, args.as_name, force=args.force)
    for path in paths.values():
        print(path)
    return 0


def cmd_data(args) -> int:
    from .data import registry

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
        from .data.negatives import default_negatives_path, write_negatives

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


def _default_out(cfg) -> Path:
    return Path("runs") / f"{cfg.dataset}-{cfg.model}-{cfg.protocol}-seed{cfg.seed}"


def _prepare_out(out: Path, resume: bool, overwrite: bool) -> bool:
    """Check the run directory; True when the run there already finished (only with --resume)."""
    if resume:
        return (out / "results.json").is_file()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise S3RecError(f"run directory {out} is not empty: use --resume to continue it, --overwrite to replace it, or --out")
    return False


def _resumed_config(args, out: Path, make):
    """With --resume, settings not given on the command line come from the run being resumed."""
    if args.resume and (out / "config.json").is_file():
        return make(args, (out / "config.json").read_text())
    return None


def _finetune(cfg, data_dir, out: Path, resume: bool, overwrite: bool, quiet: bool, paper_model: str) -> dict:
    """Load the data, (re)start the run directory, fine-tune, print ours beside the paper's numbers."""
    import dataclasses

    from .data import registry
    from .paper import comparison_table
    from .train import finetune

    ds = registry.load(cfg.dataset, data_dir, negatives=cfg.protocol == "sampled", quiet=quiet)
    cfg = dataclasses.replace(cfg, dataset=ds.name)
    init_state = None
    if cfg.init and not (resume and (out / "checkpoint.pt").is_file()):
        from .pretrain import init_for_finetuning

        init_state = init_for_finetuning(cfg.init, ds, cfg)
    if out.exists() and overwrite and not resume:
        shutil.rmtree(out)
    start = f"from {cfg.init}" if cfg.init else "from scratch"
    _log(f"{ds.name}: {ds.n_users} users, {ds.n_items} items; {cfg.model} {start}; protocol {cfg.protocol}; run {out}")
    results = finetune(cfg, ds, out, resume=resume, progress=not quiet, log=_log, init_state=init_state)
    _log(f"test metrics, {ds.name}, {paper_model}, {cfg.protocol} protocol (paper: Zhou et al. 2020)\n"
         + comparison_table(results["test"], cfg.protocol, paper_model, ds.name))
    return results


def _preset_pretraining(args, cfg):
    """``cfg`` fine-tuning from the pre-training a ``pretrained = true`` preset asks for: its checkpoint
    in the shared folder under --pretrain-dir when there, else pre-trained (or extended) there first,
    under a lock so that concurrent runs wait for one pre-training instead of each doing it."""
    import dataclasses

    from .config import PretrainConfig, with_overrides
    from .data import registry
    from .fileio import exclusive_lock
    from .presets import apply_pretrain, data_fingerprint, load_preset, shared_pretrain_dir
    from .pretrain import BACKBONE_MUST_MATCH, default_epochs, pretrain

    if cfg.init or not getattr(args, "preset", None):
        return cfg
    preset = load_preset(args.preset)
    if not preset.pretrained:
        return cfg
    ds = registry.load(cfg.dataset, args.data_dir, quiet=True)
    # the users a limited-data run keeps are the users its pre-training sees (as in `s3rec reproduce`)
    pre = with_overrides(apply_pretrain(PretrainConfig(), preset), {
        "dataset": ds.name, "device": cfg.device, "train_fraction": cfg.train_fraction, "fraction_seed": cfg.fraction_seed})
    pre = dataclasses.replace(pre, epochs=pre.epochs or default_epochs(ds.name)).validate()
    if pre.backbone not in ("s3rec", cfg.model):
        raise ConfigError(f"preset {preset.name} pre-trains {pre.backbone}, which {cfg.model} cannot fine-tune from: "
                          f"add --model {pre.backbone}")
    whole = pre.backbone == cfg.model or (pre.backbone == "s3rec" and cfg.model == "sasrec")
    keys = BACKBONE_MUST_MATCH if whole else ("hidden_size",)  # other models take the item embeddings only
    diff = [f"{k} {getattr(pre, k)} vs {getattr(cfg, k)}" for k in keys if getattr(pre, k) != getattr(cfg, k)]
    if diff:  # found out now, not after the pre-training
        raise ConfigError(f"preset {preset.name}: its pre-training and this fine-tuning differ in {', '.join(diff)}: "
                          "drop those --set, or use a preset file whose [pretrain] matches, or --init CKPT")
    out = shared_pretrain_dir(Path(args.pretrain_dir), pre, data_fingerprint(ds)).resolve()
    final = out / f"pretrain-epoch-{pre.epochs}.pt"
    if not final.is_file():
        out.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(out / ".lock", lambda: _log(f"waiting for the pre-training another process runs in {out}")):
            if not final.is_file():  # not made while this one waited
                done = len((out / "metrics.jsonl").read_text().splitlines()) if (out / "metrics.jsonl").is_file() else 0
                if done > pre.epochs:
                    raise ConfigError(f"{out} went past epoch {pre.epochs} without keeping its checkpoint: "
                                      "use another --pretrain-dir, or --init CKPT")
                _log(f"preset {preset.name} fine-tunes from an S3-Rec pre-training: pre-training {pre.epochs} epochs "
                     f"in {out}" + (f" (continuing after epoch {done})" if done else "") + "; resumable, shared")
                pretrain(pre, ds, out, resume=True, progress=not args.quiet, log=_log)
    else:
        _log(f"preset {preset.name} fine-tunes from an S3-Rec pre-training: reusing {final}")
    return dataclasses.replace(cfg, init=str(final))


def cmd_train(args) -> int:
    from .config import config_from_json

    cfg = _train_config(args)
    out = Path(args.out) if args.out else _default_out(cfg)
    cfg = _resumed_config(args, out, lambda a, text: _train_config(a, config_from_json(text))) or cfg
    if _prepare_out(out, args.resume, args.overwrite):
        _log(f"{out} already finished; results:")
        print((out / "results.json").read_text().strip())
        return 0
    cfg = _preset_pretraining(args, cfg)  # after the run folder's checks: a resumed run keeps its init
    paper_model = "s3rec" if cfg.init and cfg.model == "sasrec" else cfg.model
    results = _finetune(cfg, args.data_dir, out, args.resume, args.overwrite, args.quiet, paper_model)
    print(json.dumps({"test": results["test"], "best_epoch": results["best_epoch"], "epochs": results["epochs"], "out": str(out)}, indent=2))
    return 0


def _pretrain_config(args, base=None):
    from .config import PretrainConfig, parse_sets, with_overrides

    overrides = {k: getattr(args, k) for k in ("dataset", "epochs", "seed", "device", "init") if getattr(args, k, None) is not None}
    overrides.update(parse_sets(args.sets))
    return with_overrides(base or PretrainConfig(), overrides).validate()


def _pretrain(cfg, data_dir, out: Path, resume: bool, overwrite: bool, quiet: bool, world=None) -> dict:
    import dataclasses

    from .data import registry
    from .distributed import World
    from .pretrain import pretrain, read_pretrained

    world = world or World()

    ds = registry.load(cfg.dataset, data_dir, quiet=quiet)
    cfg = dataclasses.replace(cfg, dataset=ds.name)
    init_state = None
    if cfg.init and not (resume and (out / "checkpoint.pt").is_file()):
        init_state, _ = read_pretrained(cfg.init)
    if out.exists() and overwrite and not resume and world.main:
        shutil.rmtree(out)
    world.barrier()
    return pretrain(cfg, ds, out, resume=resume, progress=not quiet, log=_log, init_state=init_state, world=world)


def cmd_pretrain(args) -> int:
    import dataclasses

    from . import distributed
    from .config import PretrainConfig, config_from_json

    cfg = _pretrain_config(args)
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.dataset}-pretrain-seed{cfg.seed}"
    cfg = _resumed_config(args, out, lambda a, text: _pretrain_config(a, config_from_json(text, PretrainConfig))) or cfg
    _prepare_out(out, args.resume, args.overwrite)
    world, device = distributed.from_env(cfg.device)  # launched by torchrun: one rank of several
    try:
        world.barrier()  # every rank has checked the run directory before rank 0 writes to it
        summary = _pretrain(dataclasses.replace(cfg, device=device), args.data_dir, out, args.resume,
                            args.overwrite, args.quiet, world)
    finally:
        distributed.close(world)
    if world.main:
        print(json.dumps({**summary, "out": str(out)}, indent=2))
    if world.active:
        # leave without C++ static destructors: with torch 2.13's gloo, a rank's exit aborted ("terminate
        # called without an active exception", after the last Python frame) in 8 of ~120 torchrun runs
        # on 2026-11-27; none in 44 runs since this exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def cmd_run(args) -> int:
    """Pre-train, fine-tune from the last pre-training checkpoint, evaluate test: one command."""
    import dataclasses

    from .config import PretrainConfig, TrainConfig, config_from_json, parse_sets, with_overrides
    from .data.registry import registered

    def given(pairs: dict, sets: list[str]) -> dict:
        return {**{k: v for k, v in pairs.items() if v is not None}, **parse_sets(sets)}

    info = registered(args.dataset)
    pre_given = given({"dataset": info.name if info else args.dataset, "seed": args.seed, "device": args.device,
                       "epochs": args.pretrain_epochs}, args.pretrain_sets)
    ft_given = given({"seed": args.seed, "device": args.device, "protocol": args.protocol}, args.sets)
    from .presets import apply_finetune, apply_pretrain, load_preset

    preset = load_preset(args.preset) if args.preset else None
    pre = with_overrides(apply_pretrain(PretrainConfig(), preset), pre_given).validate()
    protocol = ft_given.get("protocol", "sampled")
    out = Path(args.out) if args.out else Path("runs") / f"{pre.dataset}-s3rec-{protocol}-seed{pre.seed}"
    pre_json, ft_json = out / "pretrain" / "config.json", out / "finetune" / "config.json"
    if args.resume and pre_json.is_file():  # settings not given now come from the run being resumed
        pre = with_overrides(apply_pretrain(config_from_json(pre_json.read_text(), PretrainConfig), preset),
                             pre_given).validate()
    if _prepare_out(out / "finetune", args.resume, args.overwrite):
        _log(f"{out} already finished; results:")
        print((out / "finetune" / "results.json").read_text().strip())
        return 0
    if not args.resume and out.exists() and any(out.iterdir()) and not args.overwrite:
        raise S3RecError(f"run directory {out} is not empty: use --resume to continue it, --overwrite to replace it, or --out")
    model = with_overrides(apply_finetune(TrainConfig(), preset), ft_given).model
    if pre.backbone not in ("s3rec", model):  # found out now, not after the pre-training
        raise ConfigError(f"the pre-trained backbone is {pre.backbone} but the model to fine-tune is {model}: "
                          f"add --set model={pre.backbone}")
    summary = _pretrain(pre, args.data_dir, out / "pretrain", args.resume, args.overwrite, args.quiet)
    shared = ("dataset", "seed", "device", "hidden_size", "n_layers", "n_heads", "max_len")
    ft_base = dataclasses.replace(apply_finetune(TrainConfig(), preset), **{k: getattr(pre, k) for k in shared},
                                  init=summary["checkpoint"])
    if args.resume and ft_json.is_file():
        ft_base = apply_finetune(config_from_json(ft_json.read_text()), preset)
    ft = with_overrides(ft_base, ft_given).validate()
    results = _finetune(ft, args.data_dir, out / "finetune", args.resume, args.overwrite, args.quiet, "s3rec")
    print(json.dumps({"test": results["test"], "best_epoch": results["best_epoch"], "pretrain_epochs": summary["epochs"],
                      "out": str(out)}, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from .data import registry
    from .evaluate import evaluate
    from .train import model_from_checkpoint

    from .config import device_ok

    if not device_ok(args.device):
        raise S3RecError(f"device {args.device!r} is not available here")
    model, cfg, state = model_from_checkpoint(Path(args.checkpoint), args.device)
    ds = registry.load(args.dataset or state["dataset"], args.data_dir, negatives=args.protocol == "sampled")
    if ds.n_items != int(state["n_items"]):
        raise S3RecError(f"{args.checkpoint} was trained on {state['n_items']} items; {ds.name} has {ds.n_items}")
    metrics, info = evaluate(model, ds, args.split, args.protocol, args.device)
    if args.json:
        print(json.dumps({"metrics": metrics, **info}))
    else:
        print(f"{ds.name} {args.split} ({args.protocol}, {info['users']} users)")
        for k, v in metrics.items():
            print(f"  {k:<8} {v:.4f}")
        if "targets_in_history" in info:
            print(f"  targets already in the history (certain misses): {info['targets_in_history']}")
    return 0


def cmd_bench(args) -> int:
    from .bench import bench_pretrain, bench_train
    from .data import registry

    if args.bench_command == "pretrain":
        from .config import PretrainConfig, parse_sets, with_overrides

        cfg = with_overrides(PretrainConfig(), {"dataset": args.dataset, "device": args.device, **parse_sets(args.sets)}).validate()
        ds = registry.load(cfg.dataset, args.data_dir, quiet=True)
        result = bench_pretrain(cfg, ds, args.batches, args.warmup, log=None if args.json else _log)
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{ds.name}: {result['instances_per_second']:.0f} instances/s over {result['batches']} batches "
                  f"(an epoch of {result['epoch_instances']} instances: ~{result['estimated_epoch_seconds']:.0f} s)")
        return 0

    cfg = _train_config(args)
    ds = registry.load(cfg.dataset, args.data_dir, negatives=cfg.protocol == "sampled")
    result = bench_train(cfg, ds, epochs=args.timed_epochs, log=None if args.json else _log)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{ds.name}: median {result['median_seconds_per_epoch']:.2f} s per epoch "
              f"(train {result['median_train_seconds']:.2f} s + valid {result['median_valid_seconds']:.2f} s) "
              f"over {result['epochs_timed']} epochs after 1 warm-up")
    return 0


def cmd_models(args) -> int:
    from .models import describe_models

    for name, desc in describe_models():
        print(f"{name:<12} " + textwrap.shorten(desc, 100))
        if getattr(args, "params", False):
            import dataclasses

            from .config import MODEL_SETTINGS, TrainConfig, for_model

            cfg = for_model(TrainConfig(), name)
            shared = ", ".join(f"{k}={getattr(cfg, k)}" for k in MODEL_SETTINGS)
            own = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg.params()).items()) or "none"
            print(f"{'':<12}   settings: {shared}\n{'':<12}   own hyper-parameters: {own}")
    return 0


def _recommender(args):
    from .config import device_ok
    from .recommend import Recommender

    if not device_ok(args.device):
        raise S3RecError(f"device {args.device!r} is not available here")
    return Recommender.load(args.checkpoint, args.dataset, args.data_dir, args.device)


def cmd_recommend(args) -> int:
    from .fileio import atomic_path

    users = args.users
    if args.users_file:
        path = Path(args.users_file)
        if not path.is_file():
            raise S3RecError(f"{path}: file not found")
        users = (users or []) + [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rec = _recommender(args)
    rows = rec.iter_users(users, args.k, exclude_history=not args.keep_history)

    def write(f):
        if args.format == "csv":
            f.write("user,rank,item,score\n")
        for user, top in rows:
            if args.format == "csv":
                f.writelines(f"{_csv_field(user)},{r},{_csv_field(item)},{score:.6g}\n" for r, (item, score) in enumerate(top, 1))
            else:
                f.write(json.dumps({"user": user, "items": [i for i, _ in top], "scores": [round(s, 6) for _, s in top]}) + "\n")

    if args.out:
        with atomic_path(args.out) as tmp, open(tmp, "w", encoding="utf-8") as f:
            write(f)
        _log(f"wrote {args.out}")
    else:
        write(sys.stdout)
    return 0


def _csv_field(value: str) -> str:
    value = str(value)
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def cmd_reproduce(args) -> int:
    from .config import parse_sets
    from .reproduce.experiment import load_experiment, narrowed
    from .reproduce.plan import make_plan
    from .reproduce.runner import Runner, dry_run_text

    exp = load_experiment(args.experiment)
    exp = narrowed(exp, args.datasets, args.seeds, args.methods, args.values, args.pretrain_seed)
    out = Path(args.out) if args.out else Path("runs") / "reproduce" / exp.name
    pre_dir = Path(args.pretrain_dir) if args.pretrain_dir else out.parent / "pretrain"
    plan = make_plan(exp, out, pre_dir, parse_sets(args.sets), parse_sets(args.pretrain_sets), args.pretrain_epochs,
                     args.device)
    if args.dry_run:
        print(dry_run_text(plan, args.data_dir, reuse=not args.no_reuse))
        return 0
    if args.jobs > 1:
        return _reproduce_in_workers(args, plan)
    summary = Runner(plan, args.data_dir, progress=not args.quiet, log=_log,
                     reuse=not args.no_reuse, report_dir=args.report).run(retry_failed=args.retry_failed, wait=args.wait)
    _log(f"{exp.name}: " + ", ".join(f"{v} {k}" for k, v in summary.counts.items() if v)
         + f"; grid.json and the runs in {out}; report: s3rec report {out}")
    for run_id, line in summary.failed.items():
        _log(f"  failed: {run_id}: {line}")
    if summary.busy:
        _log(f"  left to another process running them: {', '.join(summary.busy)}")
    return 0 if summary.ok else 1


def _reproduce_in_workers(args, plan) -> int:
    """``s3rec reproduce --jobs N``: the same command as N worker processes (``--jobs 1 --wait --quiet
    --no-retry-failed`` added: argparse keeps the last value), which share the grid through its run
    locks; 0 when every worker ended with 0. Ctrl-C or SIGTERM here stops the workers (SIGINT, then
    SIGTERM after 30 s): their runs resume on the next invocation."""
    import signal
    import subprocess
    import threading

    from .reproduce.runner import clear_failures, status_counts

    if args.retry_failed:  # here, once: a run failing again is then left failed, not retried by every worker
        cleared = clear_failures(plan)
        _log(f"{plan.experiment.name}: retrying {len(cleared)} failed runs" + (f": {', '.join(cleared)}" if cleared else ""))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, cores // args.jobs))
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    argv = list(args.argv)
    at = argv.index("--") if "--" in argv else len(argv)  # options go before a "--"
    argv[at:at] = ["--jobs", "1", "--wait", "--quiet", "--no-retry-failed"]
    _log(f"{plan.experiment.name}: {args.jobs} worker processes, {threads} thread(s) each ({plan.out})")
    workers: list[subprocess.Popen] = []

    def stop(signum, frame):
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, stop) if in_main else None
    try:
        for _ in range(args.jobs):  # own sessions: a terminal's Ctrl-C reaches them once, from here
            workers.append(subprocess.Popen([sys.executable, "-m", "s3rec.cli", *argv], env=env,
                                            start_new_session=True))
        codes = [w.wait() for w in workers]
    except KeyboardInterrupt:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGINT)
        deadline = time.time() + 30  # for all of them together
        for w in workers:
            try:
                w.wait(timeout=max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                w.terminate()
                w.wait()
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    counts = status_counts(plan)
    _log(f"{plan.experiment.name}: workers ended with exit status {', '.join(map(str, codes))}; "
         + ", ".join(f"{v} {k}" for k, v in counts.items() if v) + f"; report: s3rec report {plan.out}")
    return 0 if all(c == 0 for c in codes) else 1


def cmd_report(args) -> int:
    from .reproduce.paper import FILES, reference_dirs
    from .reproduce.report import write_report

    if not any((d / f).is_file() for d in reference_dirs() for f in FILES.values()):
        looked = ", ".join(str(d) for d in reference_dirs()) or "nowhere: neither is set"
        print(f"s3rec report: warning: the paper's tables ({', '.join(FILES.values())}) were not found "
              f"(looked in {looked}), so the reports have no paper numbers; set S3REC_REFERENCE_DIR to the "
              f"folder holding them, or S3REC_DATA_DIR to a data folder with reference/ beside it", file=sys.stderr)
    for path in write_report(Path(args.runs_dir), Path(args.out) if args.out else None):
        print(path)
    return 0


def cmd_serve(args) -> int:
    from .serve import serve_forever

    serve_forever(_recommender(args), args.host, args.port, quiet=args.quiet, log=_log)
    return 0


def cmd_tune(args) -> int:
    from .config import parse_sets
    from .presets import load_preset
    from .tune.space import load_space
    from .tune.study import Tuner, make_setup, save_best_preset

    ft_sets = {k: getattr(args, k) for k in ("model", "protocol", "seed", "device", "init") if getattr(args, k) is not None}
    ft_sets.update(parse_sets(args.sets))
    pre_sets = parse_sets(args.pretrain_sets)
    if args.pretrain_epochs is not None:
        pre_sets["epochs"] = args.pretrain_epochs
    preset = load_preset(args.preset) if args.preset else None
    if preset and preset.pretrained and not (args.init or args.pretrain or pre_sets):
        raise ConfigError(f"preset {preset.name} fine-tunes from a pre-training: give --init CKPT (e.g. the "
                          f"checkpoint `s3rec train --preset {preset.name}` made under runs/pretrain/) or --pretrain")
    setup = make_setup(args.dataset, load_space(args.space), ft_sets, pre_sets, preset, args.pretrain, args.study_dir,
                       args.data_dir, args.sampler_seed)
    best = Tuner(setup, log=_log, verbose=args.verbose).run(args.trials)
    if best is None:
        raise S3RecError(f"no trial of the study in {setup.study_dir} completed (see the lines above)")
    params = ", ".join(f"{k}={v}" for section in best["params"].values() for k, v in section.items())
    _log(f"best: trial {best['trial']}, valid {best['metric']} {best['value']:.4f}: {params}\n"
         f"  {setup.study_dir / 'best.json'}; its test score, once chosen: s3rec evaluate {best['checkpoint']} "
         f"--protocol {best['protocol']}")
    if args.save_preset:
        path = save_best_preset(best, args.save_preset, args.preset_dir or setup.study_dir)
        _log(f"preset written: {path} (use it with --preset {path})")
    print(json.dumps(best, indent=2))
    return 0


def cmd_presets(args) -> int:
    from .presets import describe_presets, load_preset

    if args.name:
        preset = load_preset(args.name)
        print(f"{preset.name}: {preset.description}")
        if preset.pretrained:
            print("  fine-tunes from an S3-Rec pre-training with the [pretrain] settings: `s3rec train --preset "
                  f"{preset.name}` pre-trains first (once; reused by every later run with the same settings)")
        for section in ("finetune", "pretrain"):
            table = getattr(preset, section)
            if table:
                print(f"  [{section}] " + ", ".join(f"{k}={v}" for k, v in table.items()))
        return 0
    rows = describe_presets()
    width = max([len(n) for n, _ in rows] + [6])
    for name, desc in rows:
        print(f"{name:<{width}}  {textwrap.shorten(desc, 100)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command as given (`s3rec reproduce --jobs` starts workers with it)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and args.command != "pretrain":
        print(f"s3rec: error: {args.command} runs as one process; under torchrun (WORLD_SIZE > 1) only "
              "`s3rec pretrain` is distributed", file=sys.stderr)
        return 2
    handlers = {"data": cmd_data, "train": cmd_train, "pretrain": cmd_pretrain, "run": cmd_run,
                "evaluate": cmd_evaluate, "bench": cmd_bench, "models": cmd_models,
                "recommend": cmd_recommend, "serve": cmd_serve, "reproduce": cmd_reproduce, "report": cmd_report,
                "tune": cmd_tune, "presets": cmd_presets}
    try:
        return handlers[args.command](args)
    except S3RecError as e:
        if args.debug:
            raise
        print(f"s3rec: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # unreadable files, full disks: the user's environment, not a bug
        if args.debug:
            raise
        print(f"s3rec: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("s3rec: interrupted (a run continues with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
