"""The fine-tuning loop: short and explicit. Resumable, deterministic on CPU, early-stopped on validation.

It drives any registered model through the contract of :mod:`s3rec.models.base`: ``model.loss(batch)``
on fine-tuning batches laid out as the model asks (``causal``, ``packed_ok``), and evaluation through
``user_states``/``score``. A model that is not ``trainable`` (PopRec) is fitted when it is built: it is
validated and tested once, with the same run files.

A run directory holds ``config.json``, ``metrics.jsonl`` (one line per epoch), ``checkpoint.pt`` (the
full state after the last finished epoch: weights, optimizer, RNG states, history), ``best.pt`` (the
best weights by validation, with their config) and, when finished, ``test_ranks.npy`` (the 1-based
test rank of every user's target, dataset row order, int32: for paired significance tests) and then
``results.json`` (written last: its presence means the run finished; its ``environment`` says which
s3rec version and commit, Python, torch and machine made it: :mod:`s3rec.provenance`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .config import TrainConfig, check_fits
from .data.batches import SequenceTensors, finetune_batch
from .data.registry import min_finetune_epochs
from .data.store import Dataset, check_trainable
from .distributed import World
from .errors import CheckpointError, ConfigError
from .evaluation import SELECTION_METRIC, evaluate, evaluate_ranks
from .fileio import atomic_path, atomic_write_text
from .losses import summed_terms
from .loop import (RunLog, adam, kept_users, progress_bar, restore_training_state, rng_state, write_config,
                   write_metrics)
from .metrics import metrics_from_ranks
from .models import ModelData, build_model
from .provenance import environment
from .transfer import InitWeights, load_pretrained


def build(cfg: TrainConfig, ds: Dataset):
    """The model (seeded) and its optimizer (None for a model that is not trainable)."""
    check_fits(cfg.encoder(), cfg.device, ds.n_items)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, ModelData.from_dataset(ds), cfg).to(cfg.device)
    decoupled = getattr(model, "decoupled_weight_decay", False)
    optimizer = adam(model.parameters(), cfg.lr, cfg.weight_decay, decoupled) if model.trainable else None
    return model, optimizer


VALID_SAMPLE_SEED = 0


def validation_users(n_users: int, n: int) -> torch.Tensor | None:
    """The fixed validation subsample of ``n`` users (sorted rows; numpy PCG64 seed 0, the same for
    every run and seed, so runs stay comparable), or None for every user (``n`` 0 or >= n_users)."""
    if n <= 0 or n >= n_users:
        return None
    return torch.from_numpy(np.sort(np.random.default_rng(VALID_SAMPLE_SEED).permutation(n_users)[:n]))


def train_users(ds: Dataset, fraction: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Users with a non-empty fine-tuning input (at least 4 items), among the :func:`kept_users`."""
    rows = kept_users(ds.n_users, fraction, seed)
    return torch.from_numpy(rows[ds.lengths[rows] > 3])


def train_epoch(model, optimizer, st: SequenceTensors, users: torch.Tensor, cfg: TrainConfig, gen, progress=False, desc="",
                world: World = World()):
    """One pass over the users in a fresh random order; returns the mean batch loss (0 for a model
    that is not trainable: nothing happens).

    ``world`` (under torchrun): every rank walks the same order (``gen`` is the same on every rank),
    trains on its share of each batch's users (:meth:`World.share`, with the whole batch's negatives)
    and the ranks add their losses' sums, term counts and gradients before the same step, which is the
    step of the whole batch's mean loss."""
    if not model.trainable:
        return 0.0
    model.train()
    order = users[torch.randperm(len(users), generator=gen)]
    n_batches = (len(order) + cfg.batch_size - 1) // cfg.batch_size
    total = 0.0
    params = [p for p in model.parameters() if p.requires_grad]
    for b in progress_bar(range(n_batches), n_batches, desc, progress):
        batch = finetune_batch(
            st, order[b * cfg.batch_size : (b + 1) * cfg.batch_size], gen, cfg.max_len, cfg.negative_sampler,
            cfg.packed and model.packed_ok, model.causal, (world.rank, world.size),
        ).to(cfg.device)
        optimizer.zero_grad(set_to_none=True)
        if not world.active:
            loss = model.loss(batch)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            continue
        with summed_terms() as counts:
            summed = model.loss(batch) if len(batch.users) else None  # a batch smaller than the world
        # a loss must be exactly one of the losses' means (s3rec.losses) to be split over ranks; every
        # rank learns whether some rank's was not, so that all stop together
        sums = world.sum_floats({"terms": float(counts[0] if len(counts) == 1 else 0),
                                 "loss": float(summed.detach()) if summed is not None else 0.0,
                                 "unsplittable": float(summed is not None and len(counts) != 1)})
        if sums["unsplittable"]:
            raise RuntimeError(f"{cfg.model}: its loss is not one mean of s3rec.losses (it made {len(counts)}), so "
                               "it cannot be split over ranks")
        if summed is not None:
            (summed / sums["terms"]).backward()
        world.sum_gradients(params)
        optimizer.step()
        total += sums["loss"] / sums["terms"]
    return total / max(n_batches, 1)


def _fmt(metrics: dict, keys=("HR@10", "NDCG@10", "MRR")) -> str:
    return " ".join(f"{k} {metrics[k]:.4f}" for k in dict.fromkeys(keys))


def finetune(
    cfg: TrainConfig,
    ds: Dataset,
    out: Path,
    resume: bool = False,
    progress: bool = True,
    log=lambda msg: print(msg, file=sys.stderr),
    init: InitWeights | None = None,
    evaluate_test: bool = True,
    world: World = World(),
) -> dict:
    """Train, early-stop on validation, reload the best weights, evaluate test once; return results.

    ``init``: the pre-trained weights of ``cfg.init`` as :func:`s3rec.transfer.read_init` read them
    (None: a random start, or a resumed run, which has its own).

    A model that is not trainable (PopRec) is validated once (epoch 0) and tested. With
    ``evaluate_test=False`` (hyper-parameter search) test is never looked at: ``results["test"]`` is
    None and no ``test_ranks.npy`` is written.

    ``log``: a callable for each line, or a :class:`s3rec.loop.RunLog` (``--quiet``, TensorBoard); the
    lines also go to the run folder's ``log.txt``.

    ``world``: this process's rank among torchrun's (:mod:`s3rec.distributed`): the ranks train on
    shares of each batch (:func:`train_epoch`) and evaluate shares of the users; rank 0 alone logs and
    writes ``out``; a resumed run must have as many ranks."""
    if not world.main:
        log, progress = (lambda msg: None), False
    log = RunLog.of(log)
    with log.recording():
        return _finetune(cfg, ds, out, resume, progress, log, init, evaluate_test, world)


def _finetune(cfg: TrainConfig, ds: Dataset, out: Path, resume: bool, progress: bool, log: RunLog,
              init: InitWeights | None, evaluate_test: bool, world: World) -> dict:
    if cfg.model_class().trainable:
        check_trainable(ds)  # before the run folder is made
    t_start = time.time()
    started_in = environment(cfg.device)  # the code and machine that run it (HEAD may move meanwhile)
    cfg = cfg.resolved()  # config.json records every hyper-parameter of the model
    out = Path(out)
    ckpt_path = out / "checkpoint.pt"
    model, optimizer = build(cfg, ds)
    if init is not None:
        load_pretrained(model, init.state, "--init")
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    best = {"score": float("-inf"), "epoch": 0, "valid": {}}
    best_weights: dict | None = None
    elapsed_before = 0.0
    init_digest = ""  # which pre-trained weights this run started from (transfer.pretrained_digest)
    if resume and ckpt_path.is_file():
        state = restore_training_state(ckpt_path, cfg, model, optimizer, gen)
        init_digest = str(state.get("init_weights_sha256", ""))  # "" in checkpoints from before it was kept
        history = json.loads(state["history"])
        best = json.loads(state["best"])
        best_weights = state["best_model"]
        elapsed_before = float(state["seconds"])
        ranks = int(state.get("world_size", 1))
        if ranks != world.size:
            raise ConfigError(f"--resume: {out} was fine-tuned by {ranks} process(es) and this is {world.size}: "
                              f"resume it with the same number (torchrun --nproc_per_node {ranks}; 1: no "
                              "torchrun), since each rank's dropout draws depend on it")
        log(f"resuming {out} after epoch {len(history)}")
        # checkpoint.pt is the commit point: best.pt may be from an epoch that a kill undid
        if world.main:
            checkpoint.save(out / "best.pt", {**checkpoint.weights_payload("finetune", cfg, ds, model, best["epoch"]),
                                              "model": best_weights})
    elif cfg.init and init is not None:
        init_digest = init.digest
    world.broadcast_parameters(model)  # the same seed built them; this makes sure
    if world.main:
        write_config(out, cfg)
        log.open(out, append=resume)

    st = SequenceTensors(ds)
    users = train_users(ds, cfg.train_fraction, cfg.fraction_seed)
    valid_rows = validation_users(ds.n_users, cfg.valid_users)
    metric = SELECTION_METRIC[cfg.protocol]
    since_best = len(history) - best["epoch"]
    epoch = len(history)
    if not model.trainable and not history:
        valid, _ = evaluate(model, ds, "valid", cfg.protocol, cfg.device, st, users=valid_rows, world=world)
        best = {"score": valid[metric], "epoch": 0, "valid": valid}
        best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        log(f"{cfg.model} is not trained; valid {_fmt(valid, ('HR@10', 'NDCG@10', metric))}")
        if world.main:
            checkpoint.save(out / "best.pt", {**checkpoint.weights_payload("finetune", cfg, ds, model, 0),
                                              "model": best_weights})
    min_epochs = cfg.min_epochs if cfg.min_epochs >= 0 else min_finetune_epochs(ds.name)
    while model.trainable and epoch < cfg.epochs and (since_best < cfg.patience or epoch < min_epochs):
        epoch += 1
        t0 = time.time()
        if world.active:
            world.seed_dropout(cfg.seed, epoch)
        loss = train_epoch(model, optimizer, st, users, cfg, gen, progress, f"epoch {epoch}", world)
        valid, _ = evaluate(model, ds, "valid", cfg.protocol, cfg.device, st, users=valid_rows, world=world)
        seconds = time.time() - t0
        history.append({"epoch": epoch, "loss": loss, "valid": valid, "seconds": round(seconds, 3)})
        improved = valid[metric] > best["score"]
        if improved:
            best = {"score": valid[metric], "epoch": epoch, "valid": valid}
            best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        since_best = epoch - best["epoch"]
        log.epoch(
            f"epoch {epoch:3d} loss {loss:.4f} valid {_fmt(valid, ('HR@10', 'NDCG@10', metric))} "
            f"(best {best['score']:.4f} @ {best['epoch']}) {seconds:.1f}s"
        )
        if not world.main:
            continue
        checkpoint.save(
            ckpt_path,
            {
                **checkpoint.weights_payload("finetune", cfg, ds, model, epoch),
                "optimizer": optimizer.state_dict(),
                "rng": rng_state(gen),
                "history": json.dumps(history),
                "best": json.dumps(best),
                "best_model": best_weights,
                "seconds": elapsed_before + time.time() - t_start,
                "init_weights_sha256": init_digest,
                "world_size": world.size,
            },
        )
        if improved:  # after the commit point, so best.pt never runs ahead of checkpoint.pt
            checkpoint.save(out / "best.pt", {**checkpoint.weights_payload("finetune", cfg, ds, model, epoch),
                                              "model": best_weights})
        write_metrics(out, history)
        log.scalars(epoch, {"loss/train": loss, **{f"valid/{k}": v for k, v in valid.items()},
                            "lr": optimizer.param_groups[0]["lr"], "seconds/epoch": seconds})

    if model.trainable and epoch < cfg.epochs and since_best >= cfg.patience:
        log(f"early stop: no better validation {metric} for {cfg.patience} epochs")
    test, info = None, None
    if evaluate_test:
        checkpoint.load_model_state(model, best_weights, str(ckpt_path))
        ranks, info = evaluate_ranks(model, ds, "test", cfg.protocol, cfg.device, st, world=world)
        test = metrics_from_ranks(ranks)
        if world.main:
            save_ranks(out / "test_ranks.npy", ranks)  # per-user test ranks, for paired significance tests
    results = {
        "valid": best["valid"],
        "test": test,
        "best_epoch": best["epoch"],
        "epochs": len(history),
        "min_epochs": min_epochs,
        "seconds": round(elapsed_before + time.time() - t_start, 3),
        "dataset": ds.name,
        "data_dir": str(ds.folder) if ds.folder else None,  # where `s3rec evaluate RUN` finds it again
        "model": cfg.model,
        "protocol": cfg.protocol,
        "test_info": info,
        "environment": started_in,
    }
    if cfg.init:
        results["init_weights_sha256"] = init_digest or None  # None: started before digests were kept
    if world.active:
        results["world_size"] = world.size
    if world.main:
        atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    world.barrier()  # the other ranks return once rank 0 has written the results
    return results


def save_ranks(path: Path, ranks: torch.Tensor) -> None:
    """Write the 1-based target ranks (one per user, dataset row order) as an int32 ``.npy``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, ranks.cpu().numpy().astype(np.int32))


def model_from_checkpoint(path: Path, device="cpu"):
    """Rebuild a fine-tuned model from a checkpoint written by :func:`finetune`: ``(model, cfg, state)``
    (the file checked whole by :func:`s3rec.checkpoint.read`)."""
    cfg, state = checkpoint.read(path)
    return model_from_state(cfg, state, path, device), cfg, state


def model_from_state(cfg: TrainConfig, state: dict, path, device="cpu", ds: Dataset | None = None):
    """The model of a fine-tuned checkpoint as :func:`s3rec.checkpoint.read` gave it; with ``ds``, checked
    to be for a dataset of as many items before anything is built.

    Checkpoints are self-contained: what a model took from its dataset, such as item attributes or
    popularity, is among its weights."""
    if ds is not None and ds.n_items != state["n_items"]:
        raise CheckpointError(f"{path} was trained on {state['n_items']} items; {ds.name} has {ds.n_items}")
    data = ModelData.from_state(state["n_items"], state["n_attributes"], state["model"])
    model = build_model(cfg.model, data, cfg)
    checkpoint.load_model_state(model, state["model"], str(path))
    return model.to(device)
