"""Speed benchmarks behind ``s3rec bench``: whole epochs, end to end, timed with wall clock."""

from __future__ import annotations

import platform
import statistics
import time

import torch

from .data.batches import SequenceTensors
from .evaluate import evaluate
from .train import build, train_epoch, train_users


def bench_train(cfg, ds, epochs: int = 3, log=None) -> dict:
    """Median seconds per fine-tuning epoch (training + validation), after one warm-up epoch."""
    model, optimizer = build(cfg, ds)
    gen = torch.Generator().manual_seed(cfg.seed)
    st = SequenceTensors(ds)
    users = train_users(ds)
    train_s, valid_s = [], []
    for e in range(epochs + 1):
        t0 = time.perf_counter()
        train_epoch(model, optimizer, st, users, cfg, gen)
        t1 = time.perf_counter()
        evaluate(model, ds, "valid", cfg.protocol, cfg.device, st)
        t2 = time.perf_counter()
        if e > 0:
            train_s.append(t1 - t0)
            valid_s.append(t2 - t1)
        if log:
            log(f"{'warm-up' if e == 0 else f'epoch {e}'}: train {t1 - t0:.2f} s, valid {t2 - t1:.2f} s")
    total = [a + b for a, b in zip(train_s, valid_s)]
    return {
        "median_seconds_per_epoch": statistics.median(total),
        "median_train_seconds": statistics.median(train_s),
        "median_valid_seconds": statistics.median(valid_s),
        "epochs_timed": epochs,
        "seconds_per_epoch": total,
        "dataset": ds.name,
        "model": cfg.model,
        "protocol": cfg.protocol,
        "packed": cfg.packed,
        "device": cfg.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
