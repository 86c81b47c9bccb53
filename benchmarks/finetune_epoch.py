"""Median seconds per fine-tuning epoch (training + validation), packed rows against padding to 50.

Both layouts run in the same process, one after the other, so they share the machine's state.
Usage: python benchmarks/finetune_epoch.py [--datasets Beauty LastFM] [--timed-epochs 3]
Writes benchmarks/results/finetune_epoch.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from s3rec.bench import write_record, bench_train
from s3rec.config import TrainConfig
from s3rec.data.negatives import load_for_protocol


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["Beauty", "LastFM"])
    p.add_argument("--timed-epochs", type=int, default=3)
    p.add_argument("--protocol", default="sampled")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "finetune_epoch.json"))
    args = p.parse_args()
    rows = []
    for name in args.datasets:
        ds = load_for_protocol(name, protocol=args.protocol, quiet=True)
        for packed in (True, False):
            cfg = dataclasses.replace(TrainConfig(dataset=ds.name, protocol=args.protocol), packed=packed)
            r = bench_train(cfg, ds, epochs=args.timed_epochs)
            rows.append(r)
            print(f"{ds.name:8s} {'packed' if packed else 'padded':7s} {r['median_seconds_per_epoch']:.2f} s/epoch "
                  f"(train {r['median_train_seconds']:.2f} + valid {r['median_valid_seconds']:.2f})", flush=True)
    write_record(
        args.out, "finetune_epoch",
        command="python benchmarks/finetune_epoch.py " + " ".join(["--datasets", *args.datasets]),
        results=rows,
    )


if __name__ == "__main__":
    main()
