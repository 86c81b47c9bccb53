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
from .config import TrainConfig, config_from_json
from .data.batches import SequenceTensors, finetune_batch
from .data.registry import min_finetune_epochs
from .data.store import Dataset
from .errors import ConfigError
from .evaluate import SELECTION_METRIC, evaluate, evaluate_ranks
from .fileio import atomic_path, atomic_write_text
from .metrics import metrics_from_ranks
from .models import ModelData, build_model
from .models.sasrec import encoder_loss
from .provenance import environment


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (logs stay readable)
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr, disable=None)


def build(cfg: TrainConfig, ds: Dataset):
    """The model (seeded) and its optimizer (None for a model that is not trainable)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, ModelData.from_dataset(ds), cfg).to(cfg.device)
    decoupled = getattr(model, "decoupled_weight_decay", False)
    optimizer = adam(model.parameters(), cfg.lr, cfg.weight_decay, decoupled) if model.trainable else None
    return model, optimizer


def adam(params, lr: float, weight_decay: float = 0.0, decoupled: bool = False) -> torch.optim.Optimizer:
    """Adam (betas 0.9/0.999), fused where this torch supports it: the same update, ~10x cheaper than
    the default per-tensor loop on CPU. ``weight_decay`` is an L2 term added to the gradients (0 for
    SASRec), or with ``decoupled`` BERT's decoupled weight decay (AdamW) on the matrices only (biases
    and LayerNorm parameters, the 1-D tensors, are not decayed)."""
    params = list(params)
    kind = torch.optim.Adam
    if decoupled:
        kind = torch.optim.AdamW
        params = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    try:
        return kind(params, lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):  # older torch without fused CPU Adam
        return kind(params, lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay, foreach=True)


def kept_users(n_users: int, fraction: float = 1.0, seed: int = 0) -> np.ndarray:
    """The user rows that keep their training parts under limited training data, sorted: the first
    ``round(fraction * n_users)`` (at least 1) of a random permutation of all rows drawn with numpy's
    PCG64 ``seed``. Deterministic, and nested: a smaller fraction keeps a subset of a larger one's
    users (same seed). ``fraction = 1``: every row."""
    if fraction >= 1:
        return np.arange(n_users)
    n_keep = max(1, round(fraction * n_users))
    return np.sort(np.random.default_rng(seed).permutation(n_users)[:n_keep])


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


def train_epoch(model, optimizer, st: SequenceTensors, users: torch.Tensor, cfg: TrainConfig, gen, progress=False, desc=""):
    """One pass over the users in a fresh random order; returns the mean batch loss (0 for a model
    that is not trainable: nothing happens)."""
    if not model.trainable:
        return 0.0
    model.train()
    order = users[torch.randperm(len(users), generator=gen)]
    n_batches = (len(order) + cfg.batch_size - 1) // cfg.batch_size
    total = 0.0
    for b in _progress(range(n_batches), n_batches, desc, progress):
        batch = finetune_batch(
            st, order[b * cfg.batch_size : (b + 1) * cfg.batch_size], gen, cfg.max_len, cfg.negative_sampler,
            cfg.packed and model.packed_ok, model.causal,
        ).to(cfg.device)
        loss = model.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
    return total / max(n_batches, 1)


def batch_loss(model, batch, loss: str, n_items: int) -> torch.Tensor:
    """The fine-tuning loss of an encoder model (SASRec) with the given loss kind (see
    :func:`s3rec.models.sasrec.encoder_loss`; models compute theirs with ``model.loss(batch)``)."""
    return encoder_loss(model, batch, loss, n_items)


def _rng_state(gen: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "data": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gen: torch.Generator, state: dict) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def restore_training_state(path: Path, cfg, model, optimizer, gen: torch.Generator, may_differ=("device",)) -> dict:
    """Load a run's latest checkpoint into the model, optimizer and RNGs (for ``--resume``); the
    run's settings must equal ``cfg`` except for ``may_differ``. Returns the checkpoint dict."""
    state = checkpoint.load(path)
    saved = config_from_json(state["config"], type(cfg)).to_dict()
    diff = sorted(k for k, v in cfg.to_dict().items() if saved[k] != v and k not in may_differ)
    if diff:
        raise ConfigError(f"--resume: settings differ from the run in {path.parent}: {', '.join(diff)}")
    checkpoint.load_model_state(model, state["model"], str(path))
    optimizer.load_state_dict(state["optimizer"])
    _set_rng_state(gen, state["rng"])
    return state


def _fmt(metrics: dict, keys=("HR@10", "NDCG@10", "MRR")) -> str:
    return " ".join(f"{k} {metrics[k]:.4f}" for k in dict.fromkeys(keys))


def finetune(
    cfg: TrainConfig,
    ds: Dataset,
    out: Path,
    resume: bool = False,
    progress: bool = True,
    log=lambda msg: print(msg, file=sys.stderr),
    init_state: dict | None = None,
    evaluate_test: bool = True,
) -> dict:
    """Train, early-stop on validation, reload the best weights, evaluate test once; return results.

    A model that is not trainable (PopRec) is validated once (epoch 0) and tested. With
    ``evaluate_test=False`` (hyper-parameter search) test is never looked at: ``results["test"]`` is
    None and no ``test_ranks.npy`` is written."""
    t_start = time.time()
    started_in = environment(cfg.device)  # the code and machine that run it (HEAD may move meanwhile)
    cfg = cfg.resolved()  # config.json records every hyper-parameter of the model
    out = Path(out)
    ckpt_path = out / "checkpoint.pt"
    model, optimizer = build(cfg, ds)
    if init_state is not None:
        model.load_pretrained(init_state, "--init")
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    best = {"score": float("-inf"), "epoch": 0, "valid": {}}
    best_weights: dict | None = None
    elapsed_before = 0.0
    init_digest = ""  # which pre-trained weights this run started from (pretrain.pretrained_digest)
    if resume and ckpt_path.is_file():
        state = restore_training_state(ckpt_path, cfg, model, optimizer, gen)
        init_digest = str(state.get("init_weights_sha256", ""))  # "" in checkpoints from before it was kept
        history = json.loads(state["history"])
        best = json.loads(state["best"])
        best_weights = state["best_model"]
        elapsed_before = float(state["seconds"])
        log(f"resuming {out} after epoch {len(history)}")
        # checkpoint.pt is the commit point: best.pt may be from an epoch that a kill undid
        checkpoint.save(out / "best.pt", {**checkpoint.weights_payload("finetune", cfg, ds, model, best["epoch"]),
                                          "model": best_weights})
    elif cfg.init and init_state is not None:
        from .pretrain import pretrained_digest  # (pretrain imports this module)

        init_digest = pretrained_digest(cfg.init)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", cfg.to_json() + "\n")

    st = SequenceTensors(ds)
    users = train_users(ds, cfg.train_fraction, cfg.fraction_seed)
    valid_rows = validation_users(ds.n_users, cfg.valid_users)
    metric = SELECTION_METRIC[cfg.protocol]
    since_best = len(history) - best["epoch"]
    epoch = len(history)
    if not model.trainable and not history:
        valid, _ = evaluate(model, ds, "valid", cfg.protocol, cfg.device, st, users=valid_rows)
        best = {"score": valid[metric], "epoch": 0, "valid": valid}
        best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        log(f"{cfg.model} is not trained; valid {_fmt(valid, ('HR@10', 'NDCG@10', metric))}")
        checkpoint.save(out / "best.pt", {**checkpoint.weights_payload("finetune", cfg, ds, model, 0), "model": best_weights})
    min_epochs = cfg.min_epochs if cfg.min_epochs >= 0 else min_finetune_epochs(ds.name)
    while model.trainable and epoch < cfg.epochs and (since_best < cfg.patience or epoch < min_epochs):
        epoch += 1
        t0 = time.time()
        loss = train_epoch(model, optimizer, st, users, cfg, gen, progress, f"epoch {epoch}")
        valid, _ = evaluate(model, ds, "valid", cfg.protocol, cfg.device, st, users=valid_rows)
        seconds = time.time() - t0
        history.append({"epoch": epoch, "loss": loss, "valid": valid, "seconds": round(seconds, 3)})
        improved = valid[metric] > best["score"]
        if improved:
            best = {"score": valid[metric], "epoch": epoch, "valid": valid}
            best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        since_best = epoch - best["epoch"]
        log(
            f"epoch {epoch:3d} loss {loss:.4f} valid {_fmt(valid, ('HR@10', 'NDCG@10', metric))} "
            f"(best {best['score']:.4f} @ {best['epoch']}) {seconds:.1f}s"
        )
        checkpoint.save(
            ckpt_path,
            {
                **checkpoint.weights_payload("finetune", cfg, ds, model, epoch),
                "optimizer": optimizer.state_dict(),
                "rng": _rng_state(gen),
                "history": json.dumps(history),
                "best": json.dumps(best),
                "best_model": best_weights,
                "seconds": elapsed_before + time.time() - t_start,
                "init_weights_sha256": init_digest,
            },
        )
        if improved:  # after the commit point, so best.pt never runs ahead of checkpoint.pt
            checkpoint.save(out / "best.pt", {**checkpoint.weights_payload("finetune", cfg, ds, model, epoch),
                                              "model": best_weights})
        atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))

    if model.trainable and epoch < cfg.epochs and since_best >= cfg.patience:
        log(f"early stop: no better validation {metric} for {cfg.patience} epochs")
    test, info = None, None
    if evaluate_test:
        checkpoint.load_model_state(model, best_weights, str(ckpt_path))
        ranks, info = evaluate_ranks(model, ds, "test", cfg.protocol, cfg.device, st)
        test = metrics_from_ranks(ranks)
        save_ranks(out / "test_ranks.npy", ranks)  # per-user test ranks, for paired significance tests
    results = {
        "valid": best["valid"],
        "test": test,
        "best_epoch": best["epoch"],
        "epochs": len(history),
        "min_epochs": min_epochs,
        "seconds": round(elapsed_before + time.time() - t_start, 3),
        "dataset": ds.name,
        "model": cfg.model,
        "protocol": cfg.protocol,
        "test_info": info,
        "environment": started_in,
    }
    if cfg.init:
        results["init_weights_sha256"] = init_digest or None  # None: started before digests were kept
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def save_ranks(path: Path, ranks: torch.Tensor) -> None:
    """Write the 1-based target ranks (one per user, dataset row order) as an int32 ``.npy``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, ranks.cpu().numpy().astype(np.int32))


def model_from_checkpoint(path: Path, device="cpu", dataset: str | None = None, data_dir=None):
    """Rebuild a fine-tuned model from a checkpoint written by :func:`finetune`: ``(model, cfg, state)``.

    Checkpoints are self-contained (what a model took from its dataset, such as item attributes or
    popularity, is among its weights), so ``dataset`` and ``data_dir`` are accepted for callers that
    have them and are not needed here."""
    state = checkpoint.load(path)
    if state.get("kind") != "finetune":
        raise ConfigError(f"{path}: not a fine-tuned model checkpoint (kind {state.get('kind')!r})")
    cfg = config_from_json(state["config"])
    data = ModelData.from_state(int(state["n_items"]), int(state["n_attributes"]), state["model"])
    model = build_model(cfg.model, data, cfg)
    checkpoint.load_model_state(model, state["model"], str(path))
    return model.to(device), cfg, state
