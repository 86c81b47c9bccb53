"""``s3rec reproduce`` (a resumable grid of runs: :mod:`s3rec.reproduce`) and ``s3rec report``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import RAW, add_data_dir, log, positive_int


def add_parsers(sub) -> None:
    """``s3rec reproduce EXPERIMENT`` and ``s3rec report RUNS_DIR`` (or ``RUN_DIR``)."""
    from ..reproduce.experiment import experiment_names, load_experiment

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
        formatter_class=RAW,
    )
    rp.add_argument("experiment", metavar="EXPERIMENT", help="a name listed below, or the path of a .toml definition")
    rp.add_argument("--out", help="experiment folder (default runs/reproduce/EXPERIMENT)")
    rp.add_argument("--pretrain-dir", help="folder of the shared pre-training runs (default: pretrain/ beside --out)")
    add_data_dir(rp)
    rp.add_argument("--datasets", nargs="+", metavar="NAME", help="replace the experiment's datasets")
    rp.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="replace the fine-tuning seeds (default 42 43 44)")
    rp.add_argument("--pretrain-seed", type=int, help="the pre-training seed (default 42)")
    rp.add_argument("--methods", nargs="+", metavar="ID", help="only these methods (ids as in --dry-run)")
    rp.add_argument("--values", nargs="+", metavar="V", help="replace the values of the varied setting")
    rp.add_argument("--pretrain-epochs", type=positive_int, help="pre-training length (default: the dataset's)")
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
    rp.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                    help="run N worker processes on the grid at once, each with cores/N threads (unless "
                    "OMP_NUM_THREADS is set) and without progress bars; they share the runs through the run locks "
                    "and wait for each other's pre-trainings (default 1)")
    rp.add_argument("--wait", action="store_true",
                    help="when another process is running a run of the grid (or the pre-training it needs), go on "
                    "with the other runs and look again every 20 s until it is finished or free, instead of leaving "
                    "it to that process")
    rp.add_argument("--quiet", action="store_true",
                    help="no progress bars and no per-epoch lines on stderr (each run's log.txt still has them)")
    rp.add_argument("--report", metavar="DIR",
                    help="after each run that finishes, make this experiment's report again in DIR, in place (what "
                    "`s3rec report OUT --out DIR` writes; e.g. a folder you commit), so results are kept as soon as "
                    "they exist")

    rep = sub.add_parser(
        "report",
        help="tables (Markdown, CSV) and plots (PNG) from `s3rec reproduce` folders, or one run's curves",
        description="Write report.md, CSV tables (ours as mean and standard deviation over seeds, the paper's value, "
        "the relative difference; a paired t-test over users' reciprocal ranks for the tables) and PNG plots for the "
        "figures, from an experiment folder or a folder of them (then one report per experiment and an index). "
        "Runs that did not finish are marked 'not run', never filled in. Given the folder of one run (train, "
        "pretrain or run), plot its curves instead: losses and validation metrics per epoch, in curves.png. "
        "The plots need matplotlib (pip install 's3rec[report]'); without it the tables are still written.",
        epilog="examples:\n  s3rec report runs/reproduce/ablation\n  s3rec report runs/reproduce --out docs/results/reproduce\n"
        "  s3rec report runs/LastFM-sasrec-sampled-seed42     one run's curves: runs/LastFM-sasrec-sampled-seed42/curves.png\n"
        "  s3rec report runs/LastFM-s3rec-sampled-seed42      an `s3rec run`: its pre-training and fine-tuning curves",
        formatter_class=RAW,
    )
    rep.add_argument("runs_dir", metavar="RUNS_DIR", help="an experiment folder (with grid.json) or a folder of them; "
                     "or one run's folder")
    rep.add_argument("--out", help="output folder (default RUNS_DIR/report; for one run's curves: the run folder)")


def cmd_reproduce(args) -> int:
    from ..config import parse_sets
    from ..reproduce.experiment import load_experiment, narrowed
    from ..reproduce.plan import make_plan
    from ..reproduce.runner import Runner, dry_run_text
    from ..reproduce.workers import run_workers

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
        return run_workers(plan, args.jobs, args.argv, args.retry_failed, log)
    summary = Runner(plan, args.data_dir, progress=not args.quiet, log=log,
                     reuse=not args.no_reuse, report_dir=args.report).run(retry_failed=args.retry_failed, wait=args.wait)
    log(f"{exp.name}: " + ", ".join(f"{v} {k}" for k, v in summary.counts.items() if v)
         + f"; grid.json and the runs in {out}; report: s3rec report {out}")
    for run_id, line in summary.failed.items():
        log(f"  failed: {run_id}: {line}")
    if summary.busy:
        log(f"  left to another process running them: {', '.join(summary.busy)}")
    return 0 if summary.ok else 1



def cmd_report(args) -> int:
    from ..extras import available
    from ..paper import FILES, reference_dirs
    from ..reproduce.report import NO_PLOTS, write_report
    from ..reproduce.run_curves import CURVES, is_run_folder, plot_run

    if is_run_folder(Path(args.runs_dir)):
        print(plot_run(Path(args.runs_dir), Path(args.out) / CURVES if args.out else None))
        return 0
    if not available("matplotlib"):
        print(f"s3rec report: warning: no plots: {NO_PLOTS}; the tables are written", file=sys.stderr)

    if not any((d / f).is_file() for d in reference_dirs() for f in FILES.values()):
        looked = ", ".join(str(d) for d in reference_dirs()) or "nowhere: neither is set"
        print(f"s3rec report: warning: the paper's tables ({', '.join(FILES.values())}) were not found "
              f"(looked in {looked}), so the reports have no paper numbers; set S3REC_REFERENCE_DIR to the "
              f"folder holding them, or S3REC_DATA_DIR to a data folder with reference/ beside it", file=sys.stderr)
    for path in write_report(Path(args.runs_dir), Path(args.out) if args.out else None):
        print(path)
    return 0

