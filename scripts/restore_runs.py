"""Rebuild a runs folder from committed reports' records.

A fresh checkout has ``docs/results/reproduce`` (each experiment's ``runs.json`` and, for the
experiments with paired t-tests, ``test_ranks.npz``: see :mod:`s3rec.reproduce.records`) but no
``runs/reproduce``: the folder ``s3rec reproduce`` skips finished runs in and reuses identical runs
from. This script writes the records back, each report folder ``REPORTS/NAME`` into ``RUNS/NAME``
(the folder ``s3rec reproduce NAME`` uses by default), so that a grid can be extended without redoing
the runs the reports hold and ``s3rec report`` can make the reports again:

    s3rec report runs/reproduce --out docs/results/reproduce

(made into the folder that holds the records, a report takes the pre-trainings' per-epoch records and
the t-tests whose ranks were never recorded from its ``runs.json``). Checkpoints are never recorded:
a pre-training must be run again before anything is fine-tuned from it, and a ``checkpoint_from`` run
(``full_ranking``'s AutoInt) whose source run is restored cannot be made (it fails with "no best.pt").

Nothing is overwritten: a run folder that exists (finished, failed, partial or running) is left
alone, as is an existing ``grid.json`` (the next ``s3rec reproduce`` merges the records); each file is
written atomically, ``results.json`` last.

Usage::

    python scripts/restore_runs.py docs/results/reproduce runs/reproduce [--dry-run]
    python scripts/restore_runs.py docs/results/reproduce/table2 runs/reproduce   # one report
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from s3rec.errors import S3RecError
from s3rec.reproduce.records import restore


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report_dir", type=Path, help="a folder of reports (docs/results/reproduce) or one report")
    p.add_argument("runs_dir", type=Path, help="the folder of experiment folders to fill (runs/reproduce)")
    p.add_argument("--dry-run", action="store_true", help="count what would be restored; write nothing")
    args = p.parse_args(argv)
    if not args.report_dir.is_dir():
        print(f"error: {args.report_dir}: no such folder", file=sys.stderr)
        return 2
    try:
        counts = restore(args.report_dir, args.runs_dir, args.dry_run)
    except S3RecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not counts:
        print(f"error: {args.report_dir}: no runs.json in it or in its sub-folders", file=sys.stderr)
        return 2
    for exp, n in counts.items():
        print(f"{exp}: {n} runs {'to restore' if args.dry_run else 'restored'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
