"""S3-Rec pre-training speed on Beauty (or --dataset): s3rec against RecBole 1.2.1's S3Rec and the authors'
released code (github aHuiWang/CIKM2020-S3Rec), all measured in one run, each in a fresh child process.

What is measured, for each system: instances per second = instances / end-to-end wall time over
``--batches`` consecutive training batches of 100, after ``--warmup`` batches, with
``torch.set_num_threads(--threads)`` (and OMP_NUM_THREADS) in every timed process. End to end means each
system's own batch building is inside the timed loop:

- s3rec: ``s3rec bench pretrain --dataset Beauty --batches N --warmup W --json`` (its batch builder,
  the four objectives, backward, Adam).
- RecBole: its PretrainTrainer's ``_train_epoch`` on RecBole's own TrainDataLoader: the collate, then
  ``S3Rec.calculate_loss``, which rebuilds the four objectives' inputs from the item sequences in Python
  every batch, backward, Adam. Data: Beauty as ``s3rec data export`` writes it (same leave-one-out split),
  the item attribute field ``categories`` from the .item file; the paper's settings (hidden 64, 2 layers,
  2 heads, inner 256, max length 50, mask ratio 0.2, AAP/MIP/MAP/SP weights 0.2/1/1/0.5, dropout 0.5,
  lr 1e-3, batch 100).
- the authors (with ``--authors-dir``, a checkout of their repository): their PretrainDataset (batch
  building in ``__getitem__``) + DataLoader(RandomSampler, batch 100), their S3RecModel and their
  ``PretrainTrainer.pretrain`` loop (run_pretrain.py's settings, CPU, tqdm off), on their data files
  from ``--data-dir`` (default $S3REC_DATA_DIR). Their modules are imported from the checkout; nothing of
  theirs is copied here.

The child drivers for the two peers are in ``peer_drivers.py``. Setup (loading the data, RecBole's
dataset build) is timed apart and never counted in instances/s. Instances per epoch are each system's own
count: s3rec and the authors pre-train on every prefix of each user's last 50 training items (150,258 on
Beauty); RecBole on its augmented next-item training set, one instance per training target, so each
user's training sequence minus its first item, untruncated (131,413 on Beauty). The seconds per epoch
are each system's own epoch at its own speed. The order is s3rec, RecBole, the authors, s3rec again
(``--rounds`` repeats the first three), since the machine is shared and noisy; s3rec's figure in the
ratios is the median of its runs.

The peers run in a separate virtual environment (``--venv``, default /tmp/s3rec-peer-recbole-venv),
made if needed with this python's ``-m venv`` and ``pip install recbole==1.2.1 torch==2.13.0 'numpy<2'
'pandas<3' 'setuptools<81'`` (RecBole's own requirements come with it: scipy, tqdm, colorlog, colorama,
scikit-learn, pyyaml, tensorboard, thop, tabulate, plotly, texttable, psutil, ray<=2.6.3). pandas < 3
because RecBole 1.2.1's dataset build fails under pandas 3 (a token_seq field's remap); setuptools < 81
because ray 2.6.3 imports pkg_resources. A venv that already imports those versions is reused.

Usage (from the repository root, with the data: S3REC_DATA_DIR=...):
    .venv/bin/python benchmarks/peer_recbole.py [--batches 300] [--threads 2] [--venv DIR]
        [--authors-dir DIR] [--skip-recbole] [--out PATH]
Writes benchmarks/results/peer_recbole.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DRIVERS = HERE / "peer_drivers.py"
PEER_PACKAGES = ["recbole==1.2.1", "torch==2.13.0", "numpy<2", "pandas<3", "setuptools<81"]
VERSIONS = ("import json, recbole, torch, numpy, pandas; print(json.dumps({'recbole': recbole.__version__, "
            "'torch': torch.__version__, 'numpy': numpy.__version__, 'pandas': pandas.__version__, "
            "'cuda': torch.version.cuda}))")
S3REC_BENCH = "import sys, torch; torch.set_num_threads(int(sys.argv.pop(1))); from s3rec.cli import main; sys.exit(main())"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fail(msg: str, out: str = "") -> None:
    lines = [ln for ln in out.strip().splitlines() if not ln.startswith("WARNING: Location")]  # pip's noise
    tail = "\n".join(lines[-25:])
    raise SystemExit(f"peer_recbole: {msg}" + (f"\n{tail}" if tail else ""))


def peer_versions(python: Path) -> dict | None:
    """The peer venv's versions, or None where it does not import them."""
    if not python.exists():
        return None
    r = subprocess.run([str(python), "-c", VERSIONS], capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None


def ensure_venv(venv: Path) -> tuple[Path, dict]:
    """The peer venv's python and versions, after making the venv and installing into it if needed."""
    python = venv / "bin" / "python"
    v = peer_versions(python)
    ok = v and v["recbole"] == "1.2.1" and v["torch"].split("+")[0] == "2.13.0" and int(v["numpy"].split(".")[0]) < 2 \
        and int(v["pandas"].split(".")[0]) < 3
    if ok:
        log(f"peer venv {venv}: reused ({v})")
        return python, v
    t0 = time.perf_counter()
    if not python.exists():
        log(f"peer venv {venv}: creating")
        r = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
        if r.returncode != 0 or not python.exists():
            fail(f"cannot create the virtual environment {venv} with `{sys.executable} -m venv` "
                 "(is the venv module / python3-venv installed? is the folder writable?)", r.stdout + r.stderr)
    log(f"peer venv {venv}: pip install {' '.join(PEER_PACKAGES)} (a few minutes the first time)")
    r = subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"pip install into {venv} failed (PyPI reachable? disk space?); rerun after fixing, or "
             f"delete {venv} to start over", r.stderr)
    v = peer_versions(python)
    if v is None:
        r = subprocess.run([str(python), "-c", VERSIONS], capture_output=True, text=True)
        fail(f"RecBole does not import in {venv} after pip install", r.stderr)
    log(f"peer venv {venv}: ready in {time.perf_counter() - t0:.0f} s ({v})")
    return python, v


def child(name: str, cmd: list[str], threads: int, cwd: Path | None = None) -> dict:
    """Run one timed child with ``threads`` threads; its last JSON line (``PEER_RESULT`` prefix or not)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
    log(f"{name}: running")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    lines = [ln.removeprefix("PEER_RESULT ") for ln in r.stdout.splitlines()
             if ln.startswith(("PEER_RESULT ", "{"))]
    if r.returncode != 0 or not lines:
        fail(f"{name} failed (exit {r.returncode}): {shlex.join(cmd)}", r.stdout + r.stderr)
    res = json.loads(lines[-1])
    res.pop("machine", None)  # the record has it once
    res["wall_seconds"] = time.perf_counter() - t0
    if res.get("threads") != threads:
        log(f"{name}: WARNING ran with {res.get('threads')} threads, not {threads}")
    log(f"{name}: {res['instances_per_second']:.0f} instances/s over {res['batches']} batches "
        f"(setup {res['setup_seconds']:.1f} s, whole child {res['wall_seconds']:.0f} s)")
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=300, help="timed batches per system (default 300)")
    p.add_argument("--warmup", type=int, default=20, help="untimed batches first (default 20)")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every timed process (default 2)")
    p.add_argument("--rounds", type=int, default=1, help="s3rec, RecBole, authors this many times, then s3rec")
    p.add_argument("--dataset", default="Beauty")
    p.add_argument("--venv", type=Path, default=Path("/tmp/s3rec-peer-recbole-venv"),
                   help="the peers' virtual environment (made if needed)")
    p.add_argument("--authors-dir", type=Path, help="a checkout of aHuiWang/CIKM2020-S3Rec (else not timed)")
    p.add_argument("--data-dir", type=Path, default=os.environ.get("S3REC_DATA_DIR"),
                   help="folder with NAME.txt and NAME_item2attributes.json (default: $S3REC_DATA_DIR)")
    p.add_argument("--skip-recbole", action="store_true", help="do not time RecBole")
    p.add_argument("--s3rec-python", default=sys.executable, help="python with s3rec installed (default: this one)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "peer_recbole.json")
    args = p.parse_args()
    if min(args.batches, args.threads, args.rounds) < 1 or args.warmup < 0:
        p.error("--batches, --threads and --rounds must be >= 1, --warmup >= 0")
    if args.authors_dir:
        args.authors_dir = args.authors_dir.resolve()
        missing = [f for f in ("datasets.py", "models.py", "modules.py", "trainers.py", "utils.py")
                   if not (args.authors_dir / f).is_file()]
        if missing:
            p.error(f"--authors-dir {args.authors_dir} lacks {', '.join(missing)}")
        if not args.data_dir:
            p.error("the authors' code needs --data-dir (or S3REC_DATA_DIR): NAME.txt, NAME_item2attributes.json")
    if args.skip_recbole and not args.authors_dir:
        p.error("nothing to compare: --skip-recbole without --authors-dir")
    data_dir = [] if not args.data_dir else ["--data-dir", str(Path(args.data_dir).resolve())]

    python, versions = ensure_venv(args.venv.resolve())
    s3rec_cmd = [args.s3rec_python, "-c", S3REC_BENCH, str(args.threads), "bench", "pretrain", "--dataset",
                 args.dataset, *data_dir, "--batches", str(args.batches), "--warmup", str(args.warmup), "--json"]
    steps = "--batches", str(args.batches), "--warmup", str(args.warmup), "--threads", str(args.threads)
    runs: dict[str, list[dict]] = {"s3rec": [], "recbole": [], "authors": []}
    with tempfile.TemporaryDirectory(prefix="s3rec-peer-") as tmp:
        tmp = Path(tmp)
        peers = {}
        if not args.skip_recbole:
            t0 = time.perf_counter()
            r = subprocess.run([args.s3rec_python, "-m", "s3rec", "data", "export", args.dataset, *data_dir,
                                "--out", str(tmp / "recbole" / args.dataset)], capture_output=True, text=True)
            if r.returncode != 0:
                fail(f"`s3rec data export {args.dataset}` failed", r.stderr)
            log(f"exported {args.dataset} for RecBole in {time.perf_counter() - t0:.1f} s")
            peers["recbole"] = [str(python), str(DRIVERS), "recbole", "--dataset", args.dataset,
                                "--data-path", str(tmp / "recbole"), *steps]
        if args.authors_dir:
            peers["authors"] = [str(python), str(DRIVERS), "authors", "--dataset", args.dataset,
                                "--authors-dir", str(args.authors_dir), "--data-dir",
                                str(Path(args.data_dir).resolve()), *steps]
        order = []
        for _ in range(args.rounds):
            order += ["s3rec", *peers]
        order.append("s3rec")
        for i, name in enumerate(order):
            if name == "s3rec":
                runs[name].append(child(f"[{i + 1}/{len(order)}] s3rec", s3rec_cmd, args.threads))
            else:
                work = tmp / f"work-{name}-{i}"  # RecBole writes log/, log_tensorboard/, saved/ here
                work.mkdir()
                runs[name].append(child(f"[{i + 1}/{len(order)}] {name}", peers[name] + ["--workdir", str(work)],
                                        args.threads, cwd=work))

    systems = {}
    for name, rs in runs.items():
        if not rs:
            continue
        ips = statistics.median(r["instances_per_second"] for r in rs)
        epoch = rs[0]["epoch_instances"]
        systems[name] = {
            "instances_per_second": ips, "instances_per_second_runs": [r["instances_per_second"] for r in rs],
            "batches": rs[0]["batches"], "batch_size": rs[0].get("batch_size", 100), "epoch_instances": epoch,
            "epoch_instances_counted_from": rs[0].get("epoch_instances_counted_from",
                                                      "len(Pretrainer.instances): every prefix of each user's "
                                                      "last 50 training items"),
            "estimated_epoch_seconds": epoch / ips, "setup_seconds": [r["setup_seconds"] for r in rs], "runs": rs}
    s3 = systems["s3rec"]
    ratios = {}
    for peer in ("recbole", "authors"):
        if peer in systems:
            ratios[f"s3rec_over_{peer}"] = {
                "per_instance": s3["instances_per_second"] / systems[peer]["instances_per_second"],
                "per_epoch": systems[peer]["estimated_epoch_seconds"] / s3["estimated_epoch_seconds"]}

    labels = {"s3rec": "s3rec", "recbole": "RecBole 1.2.1 S3Rec", "authors": "authors' code"}
    print(f"\n{args.dataset} pre-training, {args.batches} batches after {args.warmup} warm-up, "
          f"{args.threads} thread(s); order: {', '.join(order)}")
    print(f"{'system':22s} {'instances/s':>12s} {'epoch inst.':>12s} {'s/epoch':>9s} {'s3rec x/inst':>13s} "
          f"{'s3rec x/epoch':>14s}")
    for name, s in systems.items():
        ratio = ratios.get(f"s3rec_over_{name}")
        runs_txt = " (runs: " + ", ".join(f"{x:.0f}" for x in s["instances_per_second_runs"]) + ")" \
            if len(s["runs"]) > 1 else ""
        print(f"{labels[name]:22s} {s['instances_per_second']:12.0f} {s['epoch_instances']:12,d} "
              f"{s['estimated_epoch_seconds']:9.0f} "
              + (f"{ratio['per_instance']:13.2f} {ratio['per_epoch']:14.2f}" if ratio else f"{'':13s} {'':14s}")
              + runs_txt)

    import torch

    from s3rec.bench import write_record

    torch.set_num_threads(args.threads)  # so the record's machine line shows the threads the children had
    r = subprocess.run([args.s3rec_python, "-c", "import json, torch, numpy, s3rec; print(json.dumps({'s3rec': "
                        "s3rec.__version__, 'torch': torch.__version__, 'numpy': numpy.__version__}))"],
                       capture_output=True, text=True)
    s3rec_versions = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr[-300:]}

    command = "python benchmarks/peer_recbole.py " + shlex.join(sys.argv[1:])
    record = write_record(
        args.out, "peer_recbole", command=command.strip(),
        results={"dataset": args.dataset, "threads": args.threads, "warmup": args.warmup, "order": order,
                 "systems": systems, "ratios": ratios,
                 "ratios_defined_as": {"per_instance": "s3rec instances/s / peer instances/s",
                                       "per_epoch": "peer estimated s/epoch (its own epoch) / s3rec's"},
                 "versions": {"peers": versions, "s3rec": s3rec_versions}})
    log(f"wrote {args.out} ({record['date']})")


if __name__ == "__main__":
    main()
