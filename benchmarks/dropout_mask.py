"""Pre-training and fine-tuning steps with the dropout masks drawn by ``rand`` against random bytes.

rand   the former mask: ``torch.rand_like(x).ge_(p).mul_(1 / (1 - p))`` (one generator call per element)
bytes  ``s3rec.models.encoder.keep_scale`` (the default): the same inverted dropout, its mask cut from
       full-range 64-bit draws, 8 elements per call when 256 p is whole (p = 0.5 here)
Each configuration is a list of the same batches (S3-Rec pre-training: the four objectives, backward and
Adam, batches of 100 instances; SASRec fine-tuning with the paper's loss, batches of 256 users); the two
masks alternate round by round (each first in every other round) in one process, so they share the
machine's state. The table gives the median over rounds of the instances (or users) per second and their ratio.
Usage: python benchmarks/dropout_mask.py [--configs Beauty:50 LastFM:50 LastFM:200] [--rounds 5] [--steps 10]
       [--threads N]
Writes benchmarks/results/dropout_mask.json and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import s3rec.models.encoder as encoder
from s3rec.bench import step_fixture, time_steps, write_record
from s3rec.config import PretrainConfig, TrainConfig
from s3rec.data import registry
from s3rec.pretraining import Pretrainer

BYTES = encoder.keep_scale


def rand_keep_scale(x: torch.Tensor, p: float) -> torch.Tensor:
    return torch.rand_like(x).ge_(p).mul_(1.0 / (1.0 - p))


def use(mask: str) -> None:
    encoder.keep_scale = BYTES if mask == "bytes" else rand_keep_scale


def pretrain_rounds(ds, max_len: int, steps: int):
    cfg = PretrainConfig(dataset=ds.name, max_len=max_len)
    torch.manual_seed(0)
    trainer = Pretrainer(cfg, ds)
    gen = torch.Generator().manual_seed(0)
    batches = trainer.epoch_order(gen)[:steps]

    def run() -> float:
        t0 = time.perf_counter()
        for idx in batches:
            trainer.step(idx, gen)
        return sum(len(i) for i in batches) / (time.perf_counter() - t0)

    return run


def finetune_rounds(ds, max_len: int, steps: int):
    cfg = TrainConfig(dataset=ds.name, model="sasrec", max_len=max_len).resolved()
    model, optimizer, batches = step_fixture(cfg, ds, steps)
    users = sum(len(b.users) for b in batches)
    return lambda: users / (time_steps(model, optimizer, batches) * len(batches))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["Beauty:50", "LastFM:50", "LastFM:200"],
                   help="DATASET:MAX_LEN pre-training configurations")
    p.add_argument("--finetune", nargs="*", default=["Beauty"], help="datasets for the SASRec fine-tuning step")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=10, help="batches per round and mask")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "dropout_mask.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    jobs = [("pretrain", *c.split(":")) for c in args.configs] + [("finetune", d, "50") for d in args.finetune]
    rows = []
    for kind, name, max_len in jobs:
        ds = registry.load(name)
        run = (pretrain_rounds if kind == "pretrain" else finetune_rounds)(ds, int(max_len), args.steps)
        rates = {"rand": [], "bytes": []}
        for r in range(args.rounds + 1):  # round 0 warms up and is not counted
            for mask in (("rand", "bytes") if r % 2 else ("bytes", "rand")):  # each goes first in turn
                use(mask)
                rate = run()
                if r:
                    rates[mask].append(rate)
        use("bytes")
        unit = "instances" if kind == "pretrain" else "users"
        row = {"step": kind, "dataset": ds.name, "max_len": int(max_len), "unit": unit,
               "median_rand_per_second": statistics.median(rates["rand"]),
               "median_bytes_per_second": statistics.median(rates["bytes"]), "rounds": rates}
        row["speedup"] = row["median_bytes_per_second"] / row["median_rand_per_second"]
        rows.append(row)
        print(f"{kind:8s} {ds.name:8s} max_len {max_len:>3s}  rand {row['median_rand_per_second']:8.1f} {unit}/s  "
              f"bytes {row['median_bytes_per_second']:8.1f} {unit}/s  x{row['speedup']:.2f}", flush=True)
    write_record(
        args.out, "dropout_mask",
        command=f"python benchmarks/dropout_mask.py --configs {' '.join(args.configs)} "
        f"--finetune {' '.join(args.finetune)} --rounds {args.rounds} --steps {args.steps} --threads {args.threads}",
        results=rows,
    )


if __name__ == "__main__":
    main()
