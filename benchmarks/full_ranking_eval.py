"""Seconds per full-ranking evaluation of every user (SASRec, the validation split), three ways.

two-sums   ranks as ``1 + (scores > t).sum(1) + (scores == t).sum(1) - 1`` (int64 counts), chunks of up to
           64 MiB of scores, NaN check ``isnan(scores).any()`` (s3rec before 2026-11-28)
one-count  ranks as ``(scores >= t).sum(1, dtype=int32)`` (``s3rec.metrics.target_ranks``), the same
           chunks and NaN check (2026-11-28 to 2026-12-03)
default    ``target_ranks``, chunks of up to 16 MiB on a CPU (``FULL_CHUNK_CELLS``), NaN check on
           ``scores.amax()`` (``s3rec.evaluation.has_nan``)
The full protocol validates every fine-tuning epoch, so this is part of every full-ranking epoch. The
three alternate round by round in one process on the same (untrained) model and must give identical ranks.
Usage: python benchmarks/full_ranking_eval.py [--datasets Beauty LastFM] [--rounds 3] [--threads N]
Writes benchmarks/results/full_ranking_eval.json and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import s3rec.evaluation as evaluate_module
from s3rec.bench import write_record
from s3rec.config import TrainConfig
from s3rec.data import registry
from s3rec.data.batches import SequenceTensors
from s3rec.metrics import target_ranks
from s3rec.train import build

OLD_CHUNK_CELLS = 1 << 24  # 64 MiB of float32 scores per chunk


def two_sums(scores: torch.Tensor, target_col: torch.Tensor) -> torch.Tensor:
    t = scores.gather(1, target_col.view(-1, 1))
    return 1 + (scores > t).sum(1) + (scores == t).sum(1) - 1


def isnan_any(scores: torch.Tensor) -> bool:
    return bool(torch.isnan(scores).any())


CONFIGS = {  # label: (rank count, NaN check, chunk cells)
    "two-sums": (two_sums, isnan_any, OLD_CHUNK_CELLS),
    "one-count": (target_ranks, isnan_any, OLD_CHUNK_CELLS),
    "default": (target_ranks, evaluate_module.has_nan, evaluate_module.FULL_CHUNK_CELLS),
}


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
        ds = registry.load(name)
        torch.manual_seed(0)
        model, _ = build(TrainConfig(dataset=ds.name, protocol="full").resolved(), ds)
        st = SequenceTensors(ds)
        times, ranks = {label: [] for label in CONFIGS}, {}
        for r in range(args.rounds + 1):  # round 0 warms up and is not counted
            for label, (count, nan_check, cells) in CONFIGS.items():
                evaluate_module.target_ranks, evaluate_module.has_nan = count, nan_check
                chunk = evaluate_module.full_chunk(ds.n_items, cells)
                t0 = time.perf_counter()
                ranks[label], _ = evaluate_module.evaluate_ranks(model, ds, "valid", "full", "cpu", st, chunk=chunk)
                if r:
                    times[label].append(time.perf_counter() - t0)
        evaluate_module.target_ranks, evaluate_module.has_nan = CONFIGS["default"][:2]
        if any(not torch.equal(ranks["default"], other) for other in ranks.values()):
            raise SystemExit(f"{name}: the rank counts differ")
        row = {"dataset": ds.name, "users": ds.n_users, "items": ds.n_items, "rounds": times,
               **{f"median_{label.replace('-', '_')}_seconds": statistics.median(times[label]) for label in CONFIGS}}
        row["speedup_vs_one_count"] = row["median_one_count_seconds"] / row["median_default_seconds"]
        row["speedup_vs_two_sums"] = row["median_two_sums_seconds"] / row["median_default_seconds"]
        rows.append(row)
        print(f"{ds.name:8s} two-sums {row['median_two_sums_seconds']:.2f} s  one-count "
              f"{row['median_one_count_seconds']:.2f} s  default {row['median_default_seconds']:.2f} s  "
              f"x{row['speedup_vs_one_count']:.2f} over one-count (ranks identical)", flush=True)
    write_record(
        args.out, "full_ranking_eval",
        command=f"python benchmarks/full_ranking_eval.py --datasets {' '.join(args.datasets)} --rounds {args.rounds} "
        f"--threads {args.threads}",
        results=rows,
    )


if __name__ == "__main__":
    main()
