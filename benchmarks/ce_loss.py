"""Seconds per fine-tuning step with the full softmax cross-entropy: plain against fused.

plain  ``F.cross_entropy(h @ table.T (+ bias), targets)`` (autograd's log-softmax, NLL and their backward)
fused  ``s3rec.losses.LinearCrossEntropy`` (the default: the same loss and gradients up to float rounding)
A step is the forward, backward and Adam update of one batch of 256 users (the model's own batches, max_len
50) from the dataset's training sequences: SASRec with ``--loss ce`` (S3-Rec's fine-tuning in the
``s3rec-plus-ce`` presets) and BERT4Rec (its cloze loss is this softmax). The two alternate round by round in one process over the same batches, so they
share the machine's state; the table gives the median step of each and their ratio.
Usage: python benchmarks/ce_loss.py [--datasets Beauty LastFM] [--models sasrec bert4rec] [--rounds 5] [--steps 10]
       [--threads N]
Writes benchmarks/results/ce_loss.json and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

import s3rec.models.sasrec as sasrec
from s3rec.bench import step_fixture, time_steps, write_record
from s3rec.config import TrainConfig
from s3rec.data import registry
from s3rec.losses import ce_next_item


def plain_ce(h, table, targets, n_items):
    return F.cross_entropy(h @ table[1 : n_items + 1].T, targets - 1)


def use_fused(model, fused: bool) -> None:
    """SASRec's loss calls ``sasrec.ce_next_item``; the other models fuse when ``output_table`` names their table."""
    sasrec.ce_next_item = ce_next_item if fused else plain_ce
    if fused:
        model.__dict__.pop("output_table", None)
    else:
        model.output_table = lambda: None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["Beauty", "LastFM"])
    p.add_argument("--models", nargs="+", default=["sasrec", "bert4rec"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=10, help="steps per round and loss")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "ce_loss.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.datasets:
        ds = registry.load(name)
        for model_name in args.models:
            cfg = TrainConfig(dataset=ds.name, model=model_name, protocol="full", loss="ce").resolved()
            model, optimizer, batches = step_fixture(cfg, ds, args.steps)
            times = {"plain": [], "fused": []}
            for r in range(args.rounds + 1):  # round 0 warms up and is not counted
                for label in ("plain", "fused"):
                    use_fused(model, label == "fused")
                    seconds = time_steps(model, optimizer, batches)
                    if r:
                        times[label].append(seconds)
            use_fused(model, True)
            row = {"dataset": ds.name, "model": model_name, "items": ds.n_items,
                   "median_plain_seconds": statistics.median(times["plain"]),
                   "median_fused_seconds": statistics.median(times["fused"]), "rounds": times}
            row["speedup"] = row["median_plain_seconds"] / row["median_fused_seconds"]
            rows.append(row)
            print(f"{ds.name:8s} {model_name:9s} plain {row['median_plain_seconds']:.3f} s/step  "
                  f"fused {row['median_fused_seconds']:.3f} s/step  x{row['speedup']:.2f}", flush=True)
    write_record(
        args.out, "ce_loss",
        command=f"python benchmarks/ce_loss.py --datasets {' '.join(args.datasets)} --models {' '.join(args.models)} "
        f"--rounds {args.rounds} "
        f"--steps {args.steps} --threads {args.threads}",
        results=rows,
    )


if __name__ == "__main__":
    main()
