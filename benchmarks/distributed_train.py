"""Distributed fine-tuning against one process, end to end through the command line: `s3rec train`
as one process and under `torchrun --standalone --nproc_per_node N` (gloo, one thread per rank), with
dropout off (the same optimisation: test metrics equal within float rounding) and with the defaults
(each rank draws its own dropout: the same band, not the same numbers).

Usage: python benchmarks/distributed_train.py [--dataset LastFM] [--ranks 2] [--set KEY=VALUE ...]
Writes benchmarks/results/distributed_train_DATASET.json and prints a table (test metrics, epochs,
wall seconds). The runs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NO_DROPOUT = ["--set", "hidden_dropout=0", "--set", "attn_dropout=0"]


def run(ranks: int, extra: list[str], out: Path, dataset: str) -> dict:
    cmd = ["-m", "s3rec", "train", "--dataset", dataset, "--quiet", "--out", str(out), *extra]
    if ranks > 1:
        cmd = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, *cmd], env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    results = json.loads((out / "results.json").read_text())
    return {"ranks": ranks, "settings": extra, "test": results["test"], "best_epoch": results["best_epoch"],
            "epochs": results["epochs"], "wall_seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="LastFM")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a fine-tuning setting for every run")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sets = [x for kv in args.set for x in ("--set", kv)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in (("dropout off", NO_DROPOUT), ("defaults", [])):
            for ranks in (1, args.ranks):
                row = run(ranks, [*extra, *sets], Path(tmp) / f"{label.replace(' ', '-')}-{ranks}", args.dataset)
                rows.append({"case": label, **row})
                t = row["test"]
                print(f"{label:11s} ranks {ranks}: HR@10 {t['HR@10']:.4f} NDCG@10 {t['NDCG@10']:.4f} MRR {t['MRR']:.4f} "
                      f"best epoch {row['best_epoch']} of {row['epochs']}, {row['wall_seconds']} s", flush=True)
    from s3rec.bench import write_record

    out = Path(args.out or Path(__file__).parent / "results" / f"distributed_train_{args.dataset}.json")
    write_record(out, "distributed_train", "python benchmarks/distributed_train.py " + shlex.join(sys.argv[1:]),
                 results={"dataset": args.dataset, "threads_per_rank": 1, "runs": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
