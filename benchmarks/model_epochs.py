"""Median seconds per fine-tuning epoch of every registered model on one dataset (`s3rec bench train`).

Runs `s3rec bench train --dataset D --model M --timed-epochs N --json` for each model, one after the
other (nothing else should run meanwhile), and collects the answers.
Usage: python benchmarks/model_epochs.py [--dataset Beauty] [--models sasrec fm ...] [--timed-epochs 3]
Writes benchmarks/results/model_epochs_DATASET.json (models measured before and not re-measured now
are kept, each result with its own date) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

from s3rec.bench import write_record
from s3rec.models import model_names


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="Beauty")
    p.add_argument("--models", nargs="+", default=model_names())
    p.add_argument("--timed-epochs", type=int, default=3)
    p.add_argument("--protocol", default="sampled")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    out = Path(args.out or Path(__file__).parent / "results" / f"model_epochs_{args.dataset}.json")
    old = json.loads(out.read_text()) if out.exists() else {}
    results = old.get("results", {})
    for name in args.models:
        cmd = [sys.executable, "-m", "s3rec", "bench", "train", "--dataset", args.dataset, "--model", name,
               "--protocol", args.protocol, "--timed-epochs", str(args.timed_epochs), "--json"]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        r["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        results[name] = r
        print(f"| {name} | {r['median_seconds_per_epoch']:.2f} | {r['median_train_seconds']:.2f} | "
              f"{r['median_valid_seconds']:.2f} |", flush=True)
    write_record(
        out, "model_epochs",
        dataset=args.dataset,
        command="s3rec bench train --dataset {} --model MODEL --protocol {} --timed-epochs {} --json".format(
            args.dataset, args.protocol, args.timed_epochs),
        results=results,
    )


if __name__ == "__main__":
    main()
