"""Rebuild a runs folder from committed reports' run records.

A fresh checkout has ``docs/results/reproduce`` (each experiment's ``grid.json`` and every finished
run's ``results.json``, ``config.json``, ``metrics.jsonl`` and, for the experiments with paired
t-tests, ``test_ranks.npz``) but no ``runs/reproduce``: the folder ``s3rec reproduce`` skips finished
runs in and reuses identical runs from. This script writes those records back, each report folder
``REPORTS/NAME`` into ``RUNS/NAME`` (the folder ``s3rec reproduce NAME`` uses by default), so that a
grid can be extended without redoing the runs the reports hold and ``s3rec report`` can make the
reports again.

What does not come back, never having been committed:

- checkpoints: a pre-training must be run again before anything is fine-tuned from it, and a
  ``checkpoint_from`` run (``full_ranking``'s AutoInt) whose source run is restored cannot be made
  (it fails with "no best.pt");
- pre-training records: a report made from restored runs into a new folder lists its pre-trainings
  as not run; made again in place (``s3rec report runs/reproduce/NAME --out docs/results/reproduce/NAME``)
  it keeps the records the committed report holds, marked "(kept)";
- per-user ranks of reports made before 2026-12-02: their rebuilt significance tables say "per-user
  ranks missing" where the committed ones have p-values. Regenerate only the experiments you extend.

Nothing is overwritten: a run folder that exists (finished, failed, partial or running) is left
alone, as is an existing ``grid.json`` (the next ``s3rec reproduce`` merges the records); each file is
written atomically, ``results.json`` last.

Usage::

    python scripts/restore_runs.py docs/results/reproduce runs/reproduce [--dry-run]
    python scripts/restore_runs.py docs/results/reproduce/table2 runs/reproduce   # one report
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from s3rec.reproduce.report import COMPACT_RANKS, RUN_RECORDS

# what a report keeps of a run, results.json last: once it is there the run counts as finished
RECORDS = (*(n for n in RUN_RECORDS if n != "results.json"), COMPACT_RANKS, "results.json")


def report_folders(reports: Path) -> list[Path]:
    """``reports`` itself when it is one experiment's report (it holds ``grid.json``), else its
    sub-folders that are."""
    if (reports / "grid.json").is_file():
        return [reports]
    return sorted(g.parent for g in reports.glob("*/grid.json"))


def restore(reports: Path, runs_dir: Path, dry_run: bool = False, log=print) -> dict[str, int]:
    """Write the run records of each report folder ``reports/NAME`` (or of ``reports`` itself) into
    ``runs_dir/NAME``; returns the number of runs restored per experiment folder."""
    from s3rec.fileio import atomic_path

    restored: dict[str, int] = {}
    for report in report_folders(Path(reports)):
        grid = json.loads((report / "grid.json").read_text(encoding="utf-8"))
        dest = Path(runs_dir) / report.name
        n = 0
        for rec in grid.get("runs", []):
            src = report / "runs" / rec["id"]
            dst = dest / rec["dir"]
            if not (src / "results.json").is_file() or (dst.exists() and any(dst.iterdir())):
                continue  # not finished there, or a run folder here already (finished, failed or running)
            n += 1
            if dry_run:
                continue
            for name in RECORDS:
                if (src / name).is_file():
                    with atomic_path(dst / name) as tmp:
                        shutil.copyfile(src / name, tmp)
        if not dry_run:
            if (dest / "grid.json").exists():
                if n:
                    log(f"{dest / 'grid.json'}: kept as it is; the next `s3rec reproduce` into {dest} merges "
                        "the restored runs into it")
            else:
                with atomic_path(dest / "grid.json") as tmp:
                    shutil.copyfile(report / "grid.json", tmp)
        restored[report.name] = n
    return restored


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report_dir", type=Path, help="a folder of reports (docs/results/reproduce) or one report")
    p.add_argument("runs_dir", type=Path, help="the folder of experiment folders to fill (runs/reproduce)")
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
