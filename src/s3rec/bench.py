"""Speed benchmarks behind ``s3rec bench``: whole epochs, end to end, timed with wall clock."""

from __future__ import annotations

import statistics
import time

import torch

from .data.batches import SequenceTensors, finetune_batch
from .evaluation import evaluate
from .provenance import machine_description
from .train import build, train_epoch, train_users


def write_record(path, benchmark: str, command: str, **fields) -> dict:
    """Write a benchmark's record (``benchmarks/results/NAME.json``) atomically and return it: its name,
    the UTC date, :func:`machine_description`, the command that re-makes it, then ``fields``."""
    import datetime
    import json

    from .fileio import atomic_write_text

    record = {"benchmark": benchmark,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine_description(), "command": command, **fields}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")  # makes the folder too
    return record


def step_fixture(cfg, ds, steps: int, batch_users: int = 256):
    """``(model, optimizer, batches)`` for timing fine-tuning steps: the model built from ``cfg`` (seed 0),
    in training mode, and the first ``steps`` batches of ``batch_users`` users of a seeded permutation of
    the training users, laid out as the model asks."""
    torch.manual_seed(0)
    model, optimizer = build(cfg, ds)
    model.train()
    st = SequenceTensors(ds)
    gen = torch.Generator().manual_seed(0)
    users = train_users(ds)
    order = users[torch.randperm(len(users), generator=gen)]
    n = min(steps, (len(users) + batch_users - 1) // batch_users)
    batches = [finetune_batch(st, order[i * batch_users : (i + 1) * batch_users], gen, cfg.max_len,
                              cfg.negative_sampler, model.packed_ok, model.causal) for i in range(n)]
    return model, optimizer, batches


def time_steps(model, optimizer, batches) -> float:
    """Mean seconds per fine-tuning step (forward, backward, optimizer) over ``batches``."""
    t0 = time.perf_counter()
    for b in batches:
        loss = model.loss(b)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - t0) / len(batches)


def bench_train(cfg, ds, epochs: int = 3, log=None) -> dict:
    """Median seconds per fine-tuning epoch (training + validation), after one warm-up epoch (for a
    model that is not trainable, PopRec, the training part is 0 and only validation is timed)."""
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
        "packed": cfg.packed and model.packed_ok,
        "trainable": model.trainable,
        "model_params": cfg.resolved().model_params,
        "device": cfg.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": machine_description(),
    }


def bench_pretrain(cfg, ds, batches: int = 200, warmup: int = 20, log=None) -> dict:
    """Pre-training instances per second: instances / end-to-end wall time (batch building, the four
    objectives, backward and the optimizer step) over ``batches`` consecutive batches of a random
    permutation, after ``warmup`` batches."""
    from .pretraining import Pretrainer

    t_setup = time.perf_counter()
    trainer = Pretrainer(cfg, ds)
    setup = time.perf_counter() - t_setup
    gen = torch.Generator().manual_seed(cfg.seed)
    order = []
    while len(order) < warmup + batches:
        order += trainer.epoch_order(gen)
    for batch in trainer.batches(order[:warmup], gen):
        trainer.train(batch)
    if cfg.device.startswith("cuda"):
        torch.cuda.synchronize()
    timed = order[warmup : warmup + batches]
    t0 = time.perf_counter()
    for batch in trainer.batches(timed, gen):  # as the epoch loop does (prefetching when on)
        trainer.train(batch)
    if cfg.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    n = sum(len(i) for i in timed)
    if log:
        log(f"{ds.name}: {n} instances in {seconds:.2f} s")
    return {
        "instances_per_second": n / seconds,
        "instances": n,
        "batches": len(timed),
        "seconds": seconds,
        "setup_seconds": setup,
        "epoch_instances": len(trainer.instances),
        "estimated_epoch_seconds": len(trainer.instances) / (n / seconds),
        "dataset": ds.name,
        "packed": cfg.packed,
        "amp": cfg.amp,
        "compile": cfg.compile,
        "prefetch": trainer.prefetch,
        "device": cfg.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": machine_description(),
    }
