"""Pre-training instances per second for each exact saving, measured one after another in one process.

Configurations (all exactly the same computation):
  padded          every sequence padded to max_len (the released code's layout), 4 sequences per instance
  packed          block-diagonal packed rows, the whole batch in one encoder pass
  packed+partial  ... and the last block computed only where a loss reads it (the default)
Instances/s = instances / end-to-end wall time over 200 batches after 20 warm-up batches.
Usage: python benchmarks/pretrain_throughput.py [--datasets Beauty LastFM]
Writes benchmarks/results/pretrain_throughput.json and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from s3rec.bench import write_record, bench_pretrain
from s3rec.config import PretrainConfig
from s3rec.data import registry
from s3rec.models.s3rec import S3RecPretrain

CONFIGS = {
    "padded": ({"packed": False}, False),
    "packed": ({}, False),
    "packed+partial": ({}, True),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["Beauty", "LastFM"])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "pretrain_throughput.json"))
    args = p.parse_args()
    rows = []
    for name in args.datasets:
        ds = registry.load(name)
        for label in args.configs:
            overrides, partial = CONFIGS[label]
            S3RecPretrain.partial_last_layer = partial
            cfg = dataclasses.replace(PretrainConfig(dataset=ds.name), **overrides)
            r = bench_pretrain(cfg, ds, batches=args.batches)
            r["config"] = label
            rows.append(r)
            print(f"{ds.name:8s} {label:15s} {r['instances_per_second']:7.0f} instances/s", flush=True)
    S3RecPretrain.partial_last_layer = True
    write_record(
        args.out, "pretrain_throughput",
        command="python benchmarks/pretrain_throughput.py --datasets " + " ".join(args.datasets),
        results=rows,
    )


if __name__ == "__main__":
    main()
