"""Rebuild a runs folder from a committed report's run records.

A fresh checkout has ``docs/results/reproduce`` (each experiment's ``grid.json`` and every finished
run's ``results.json``, ``config.json`` and ``metrics.jsonl``) but no ``runs/reproduce``: the folder
``s3rec reproduce`` skips finished runs in, and reuses identical runs from. This script writes those
records back where ``s3rec reproduce`` looks for them, so that a grid can be extended without redoing
the runs the report already holds, and an experiment's runs can be reused by another.

What cannot come back: checkpoints (``best.pt``, pre-training checkpoints), never committed. The
per-user test ranks behind a report's paired t-tests come back where the report kept them
(``test_ranks.npz``, written by ``s3rec report`` since 2026-12-02 for the experiments with tests);
reports committed before then have none, so

- a report regenerated from records without ranks says "per-user ranks missing" where its committed
  version had p-values: regenerate only the experiments you extended, leave the others as they are;
- pre-training records are not restored: without checkpoints they would say "done" with nothing to
  fine-tune from.

Usage::

    python scripts/restore_runs.py docs/results/reproduce runs/reproduce [--dry-run]

Existing files under the runs folder are never overwritten.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

RECORDS = ("results.json", "config.json", "metrics.jsonl", "test_ranks.npz")


def restore(report_dir: Path, runs_dir: Path, dry_run: bool = False) -> dict[str, int]:
    """Copy each experiment's ``grid.json`` and run records from ``report_dir`` into ``runs_dir``;
    returns the number of runs restored per experiment folder. As with ``s3rec report``,
    ``report_dir`` is one experiment's report (it holds ``grid.json``; restored into ``runs_dir``
    itself) or a folder of them (each restored into ``runs_dir/NAME``)."""
    restored: dict[str, int] = {}
    if (report_dir / "grid.json").is_file():
        pairs = [(report_dir / "grid.json", runs_dir)]
    else:
        pairs = [(g, runs_dir / g.parent.name) for g in sorted(report_dir.glob("*/grid.json"))]
    for grid_path, dest_exp in pairs:
        exp = grid_path.parent.name
        grid = json.loads(grid_path.read_text(encoding="utf-8"))
        n = 0
        for rec in grid.get("runs", []):
            src = grid_path.parent / "runs" / rec["id"]
            dst = (dest_exp / rec["dir"]).resolve()
            if not (src / "results.json").is_file() or (dst / "results.json").exists():
                continue
            n += 1
            if dry_run:
                continue
            dst.mkdir(parents=True, exist_ok=True)
            for name in RECORDS[1:] + RECORDS[:1]:  # results.json last: a run is finished once it is there
                if (src / name).is_file():
                    shutil.copyfile(src / name, dst / name)
        if not dry_run and not (dest_exp / "grid.json").exists():
            dest_exp.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(grid_path, dest_exp / "grid.json")
        restored[exp] = n
    return restored


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report_dir", type=Path, help="a report folder (docs/results/reproduce)")
    p.add_argument("runs_dir", type=Path, help="the runs folder to fill (runs/reproduce)")
    p.add_argument("--dry-run", action="store_true", help="count what would be restored; write nothing")
    args = p.parse_args(argv)
    if not args.report_dir.is_dir():
        print(f"error: {args.report_dir}: no such folder", file=sys.stderr)
        return 2
    counts = restore(args.report_dir, args.runs_dir, args.dry_run)
    if not counts:
        print(f"error: {args.report_dir}: no grid.json in it or in its sub-folders", file=sys.stderr)
        return 2
    for exp, n in counts.items():
        print(f"{exp}: {n} runs {'to restore' if args.dry_run else 'restored'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
