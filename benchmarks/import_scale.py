"""Import at scale: time and peak memory of `s3rec data import` on a synthetic log.

Generates a CSV of ``--interactions`` rows (``--users`` users, ``--items`` items; see
``s3rec.data.synthetic``) unless it exists, then runs ``s3rec data import`` on it in a child process
(5-core filtering and de-duplication on, the defaults) and measures the child's wall time and peak
resident memory (``ru_maxrss`` of the child). Default: 10 million interactions, 1 million users,
100k items, the scale the issue asks for (target: under 2 minutes and 4 GiB on a 2-core machine).

Usage: python benchmarks/import_scale.py [--interactions 10000000] [--work /tmp/s3rec-scale]
Writes benchmarks/results/import_scale.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from s3rec.bench import write_record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interactions", type=int, default=10_000_000)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="/tmp/s3rec-scale", help="folder for the CSV and the imported dataset")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "import_scale.json"))
    args = p.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    csv = work / f"synthetic-{args.interactions}-{args.users}-{args.items}-{args.seed}.csv"
    gen_seconds = None
    if not csv.exists():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "s3rec.cli", "data", "synth", "--out", str(csv),
                        "--interactions", str(args.interactions), "--users", str(args.users),
                        "--items", str(args.items), "--seed", str(args.seed)], check=True)
        gen_seconds = round(time.perf_counter() - t0, 2)
    out_dir = work / "imported"
    # The child reports its own peak RSS, so the generator's memory never counts.
    probe = ("import resource, sys; from s3rec.cli import main; rc = main(sys.argv[1:]); "
             "sys.stderr.write(f'PEAK_RSS_KIB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n'); sys.exit(rc)")
    cmd = [sys.executable, "-c", probe, "data", "import", str(csv), "--name", "Synthetic",
           "--out", str(out_dir), "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"import failed ({proc.returncode}): {proc.stderr.strip()}")
    lines = proc.stderr.strip().splitlines()
    peak_kib = int(lines[-1].split()[1])
    lines = lines[:-1]
    record = write_record(
        args.out, "import_scale",
        command=f"python benchmarks/import_scale.py --interactions {args.interactions} --users {args.users} "
                   f"--items {args.items} --seed {args.seed}",
        import_command="s3rec " + " ".join(cmd[3:]),
        csv_bytes=os.path.getsize(csv),
        generate_seconds=gen_seconds,
        import_seconds=round(wall, 2),
        peak_rss_gib=round(peak_kib / 2**20, 3),
        import_summary=lines[-12:],
    )
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
