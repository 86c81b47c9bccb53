"""Seconds per full-ranking evaluation of every user (SASRec, the validation split): ranks counted two ways.

two-sums  ``1 + (scores > t).sum(1) + (scores == t).sum(1) - 1`` (int64 counts; s3rec before 2026-11-28)
one-count ``(scores >= t).sum(1, dtype=int32)`` (the default ``s3rec.metrics.target_ranks``: the same ranks)
The full protocol validates every fine-tuning epoch, so this is part of every full-ranking epoch. The two
alternate round by round in one process on the same (untrained) model and must give identical ranks.
Usage: python benchmarks/full_ranking_eval.py [--datasets Beauty LastFM] [--rounds 3] [--threads N]
Writes benchmarks/results/full_ranking_eval.json and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import s3rec.evaluate as evaluate_module
from s3rec.bench import write_record
from s3rec.config import TrainConfig
from s3rec.data import registry
from s3rec.data.batches import SequenceTensors
from s3rec.metrics import target_ranks
from s3rec.train import build


def two_sums(scores: torch.Tensor, target_col: torch.Tensor) -> torch.Tensor:
    t = scores.gather(1, target_col.view(-1, 1))
    return 1 + (scores > t).sum(1) + (scores == t).sum(1) - 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["Beauty", "LastFM"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "full_ranking_eval.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.datasets:
        ds = registry.load(name, negatives=False, quiet=True)
        torch.manual_seed(0)
        model, _ = build(TrainConfig(dataset=ds.name, protocol="full").resolved(), ds)
        st = SequenceTensors(ds)
        times, ranks = {"two-sums": [], "one-count": []}, {}
        for r in range(args.rounds + 1):  # round 0 warms up and is not counted
            for label, fn in (("two-sums", two_sums), ("one-count", target_ranks)):
                evaluate_module.target_ranks = fn
                t0 = time.perf_counter()
                ranks[label], _ = evaluate_module.evaluate_ranks(model, ds, "valid", "full", "cpu", st)
                if r:
                    times[label].append(time.perf_counter() - t0)
        evaluate_module.target_ranks = target_ranks
        if not torch.equal(ranks["two-sums"], ranks["one-count"]):
            raise SystemExit(f"{name}: the two rank counts differ")
        row = {"dataset": ds.name, "users": ds.n_users, "items": ds.n_items,
               "median_two_sums_seconds": statistics.median(times["two-sums"]),
               "median_one_count_seconds": statistics.median(times["one-count"]), "rounds": times}
        row["speedup"] = row["median_two_sums_seconds"] / row["median_one_count_seconds"]
        rows.append(row)
        print(f"{ds.name:8s} two-sums {row['median_two_sums_seconds']:.2f} s  one-count "
              f"{row['median_one_count_seconds']:.2f} s  x{row['speedup']:.2f}  (ranks identical)", flush=True)
    write_record(
        args.out, "full_ranking_eval",
        command=f"python benchmarks/full_ranking_eval.py --datasets {' '.join(args.datasets)} --rounds {args.rounds} "
        f"--threads {args.threads}",
        results=rows,
    )


if __name__ == "__main__":
    main()
