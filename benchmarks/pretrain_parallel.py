"""Pre-training instances per second on one machine's cores: one process with 1 or N threads against
N torchrun processes (gloo) with one thread each, over the same number of batches of 100.

Every configuration does the same optimisation (README, "Distributed pre-training": the ranks add
their gradients before the same Adam step); only the random draws differ. Each configuration runs
in a fresh child process (threads are set before torch starts), the configurations alternate round
by round, and the median of the rounds is reported, since the machine is shared and noisy.

Instances/s = instances / wall time over ``--batches`` batches after ``--warmup`` batches, measured
between barriers on rank 0 (the slowest rank decides, as in a real run).

Usage: python benchmarks/pretrain_parallel.py [--dataset Beauty] [--set map_weight=0] [--rounds 2]
Writes benchmarks/results/pretrain_parallel.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def child(args) -> None:
    """One measurement, in this process (one rank of several under torchrun)."""
    import torch

    from s3rec.config import PretrainConfig, with_overrides
    from s3rec.data import registry
    from s3rec.distributed import close, from_env
    from s3rec.pretraining import Pretrainer

    world, _ = from_env("cpu")
    ds = registry.load(args.dataset)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    cfg = with_overrides(PretrainConfig(dataset=ds.name), overrides).validate()
    trainer = Pretrainer(cfg, ds, world)
    order_gen = torch.Generator().manual_seed(cfg.seed)  # the same permutation on every rank
    order = []
    while len(order) < args.warmup + args.batches:
        order += trainer.epoch_order(order_gen)
    draws = world.epoch_generator(cfg.seed, 1) if world.active else torch.Generator().manual_seed(cfg.seed)
    for idx in order[: args.warmup]:
        trainer.step(idx, draws)
    world.barrier()
    t0 = time.perf_counter()
    timed = order[args.warmup : args.warmup + args.batches]
    for idx in timed:
        trainer.step(idx, draws)
    world.barrier()
    seconds = time.perf_counter() - t0
    if world.main:
        n = sum(len(i) for i in timed)
        print(json.dumps({"instances_per_second": n / seconds, "seconds": seconds, "instances": n,
                          "threads": torch.get_num_threads(), "processes": world.size}), flush=True)
    close(world)


def measure(processes: int, threads: int, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--dataset", args.dataset,
           "--batches", str(args.batches), "--warmup", str(args.warmup)]
    for kv in args.set:
        cmd += ["--set", kv]
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               *cmd[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"pretrain_parallel: {processes} x {threads} failed:\n{out.stderr[-2000:]}")
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="Beauty")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="pre-training setting, as `s3rec pretrain --set` (e.g. map_weight=0)")
    p.add_argument("--batches", type=int, default=150)
    p.add_argument("--warmup", type=int, default=15)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "pretrain_parallel.json"))
    args = p.parse_args()
    if args.child:
        return child(args)

    from s3rec.bench import write_record

    configs = [(1, 1), (1, args.cores), (args.cores, 1)]  # (processes, threads each)
    seen: dict[tuple, list[dict]] = {c: [] for c in configs}
    for r in range(args.rounds):
        for c in configs:
            res = measure(*c, args)
            seen[c].append(res)
            print(f"round {r + 1}: {c[0]} process(es) x {c[1]} thread(s): "
                  f"{res['instances_per_second']:7.0f} instances/s", flush=True)
    base = statistics.median(x["instances_per_second"] for x in seen[(1, 1)])
    rows = []
    print(f"\n{' '.join([args.dataset, *args.set])}: median of {args.rounds} rounds, {args.batches} batches each")
    for (procs, threads), runs in seen.items():
        ips = statistics.median(x["instances_per_second"] for x in runs)
        rows.append({"processes": procs, "threads_each": threads, "instances_per_second": ips,
                     "speedup_over_one_thread": ips / base, "rounds": runs})
        print(f"  {procs} process(es) x {threads} thread(s): {ips:7.0f} instances/s ({ips / base:.2f}x)")
    write_record(args.out, "pretrain_parallel",
                 command="python benchmarks/pretrain_parallel.py --dataset " + args.dataset
                 + "".join(f" --set {kv}" for kv in args.set) + f" --rounds {args.rounds} --batches {args.batches}",
                 results=rows)


if __name__ == "__main__":
    main()
