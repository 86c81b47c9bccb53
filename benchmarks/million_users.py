"""A million users end to end: wall time and peak memory of every step on a synthetic log.

Steps, each in its own child process (peak memory = the child's ``ru_maxrss``), on the log of
``s3rec data synth`` (default 1M users, 100k items, 10M interactions, 3,000 attributes):

1. ``synth``: the CSVs (skipped when they exist in ``--work``);
2. ``import``: ``s3rec data import`` (5-core, de-duplication: the defaults);
3. ``load``: reading the imported dataset (``s3rec.data.registry.load``), and ``negatives``: generating
   the sampled protocol's 99 negatives per user (timed apart, in the same child);
4. ``pretrain``: ``s3rec bench pretrain`` over ``--batches`` batches (instances/s);
5. ``train``: ``s3rec train`` SASRec for one epoch, sampled protocol (validation and test of every user);
6. ``evaluate``: ``s3rec evaluate RUN --protocol full``: the full-ranking test of every user;
7. ``recommend``: ``s3rec recommend RUN/best.pt`` for every user, top 10, to a CSV.

Usage: python benchmarks/million_users.py [--users 1000000 --items 100000 --interactions 10000000]
       [--attributes 3000] [--batches 200] [--work /tmp/s3rec-million] [--out FILE]
Writes benchmarks/results/million_users.json (or --out) after every step, and prints each step.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from s3rec.bench import write_record

LOAD = """
import json, sys, time
t0 = time.perf_counter()
from s3rec.data import registry
from s3rec.data.negatives import generate_negatives
ds = registry.load(sys.argv[1], sys.argv[2])
t1 = time.perf_counter()
neg = generate_negatives(ds)
t2 = time.perf_counter()
print(json.dumps({"load_seconds": round(t1 - t0, 2), "negatives_seconds": round(t2 - t1, 2),
                  "users": ds.n_users, "items": ds.n_items, "interactions": int(ds.n_interactions),
                  "attributes": ds.n_attributes}))
import resource
sys.stderr.write(f"PEAK_RSS_KIB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n")
"""


# each step runs in a child that reports its own peak resident memory (not its parent's or siblings')
PROBE = ("import resource, sys; from s3rec.cli import main; rc = main(sys.argv[1:]); "
         "sys.stderr.write(f'PEAK_RSS_KIB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n'); sys.exit(rc)")


def child(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """Run ``python -c PROBE|LOAD ...``; (wall seconds, the child's peak resident GiB, its stdout).
    Exits on failure."""
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode:
        sys.exit(f"{shlex.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    peak = [int(line.split()[1]) for line in res.stderr.splitlines() if line.startswith("PEAK_RSS_KIB ")]
    return seconds, peak[-1] / 2**20, res.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--interactions", type=int, default=10_000_000)
    ap.add_argument("--attributes", type=int, default=3_000)
    ap.add_argument("--batches", type=int, default=200, help="pre-training batches timed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="/tmp/s3rec-million")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "million_users.json"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data, run = work / "data", work / "run"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "S3REC_CACHE_DIR": str(work / "cache")}
    s3rec = [sys.executable, "-c", PROBE]
    log_csv, attrs_csv = work / "log.csv", work / "attrs.csv"
    steps: list[dict] = []
    command = "python benchmarks/million_users.py " + shlex.join(sys.argv[1:])

    def step(name: str, cmd: list[str], **facts) -> str:
        seconds, peak, out = child(cmd, env)
        row = {"step": name, "seconds": round(seconds, 1), "peak_gib": round(peak, 2), **facts}
        steps.append(row)
        print(json.dumps(row), flush=True)
        write_record(args.out, "million_users", command, results={
            "users": args.users, "items": args.items, "interactions": args.interactions,
            "attributes": args.attributes, "threads": args.threads, "steps": steps})
        return out

    if not (log_csv.is_file() and attrs_csv.is_file()):
        step("synth", [*s3rec, "data", "synth", "--out", str(log_csv), "--users", str(args.users), "--items",
                       str(args.items), "--interactions", str(args.interactions), "--attributes", str(attrs_csv),
                       "--n-attributes", str(args.attributes)])
    step("import", [*s3rec, "data", "import", str(log_csv), "--attributes", str(attrs_csv), "--name", "Million",
                    "--out", str(data), "--force"])
    facts = json.loads(step("load + negatives", [sys.executable, "-c", LOAD, "Million", str(data)]).splitlines()[-1])
    steps[-1].update(facts)
    out = step("pretrain", [*s3rec, "bench", "pretrain", "--dataset", "Million", "--data-dir", str(data),
                            "--batches", str(args.batches), "--json"])
    steps[-1]["instances_per_second"] = json.loads(out)["instances_per_second"]
    step("train", [*s3rec, "train", "--dataset", "Million", "--data-dir", str(data), "--epochs", "1", "--quiet",
                   "--out", str(run), "--overwrite"])
    step("evaluate", [*s3rec, "evaluate", str(run), "--protocol", "full", "--json"])
    step("recommend", [*s3rec, "recommend", str(run / "best.pt"), "--data-dir", str(data), "--out",
                       str(work / "recs.csv"), "--force"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
