"""The S3-Rec pre-training loop: random batches of prefixes, four objectives, one Adam step per batch.

A pre-training run directory holds ``config.json``, ``metrics.jsonl`` (per epoch: the four loss
terms per instance, the weighted total, instances per second), ``checkpoint.pt`` (the full state
after the last finished epoch, for ``--resume``) and ``pretrain-epoch-K.pt`` every ``save_every``
epochs and at the end (weights + config, the files fine-tuning starts from), and
``environment.jsonl``: one line per start or resume (the first epoch it ran, s3rec version and commit,
Python, torch, machine; :mod:`s3rec.provenance`).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path

import torch

from . import checkpoint
from .config import PretrainConfig, check_fits
from .data.batches import SequenceTensors
from .data.corruption import Instances, make_instances, pretrain_batch, segment_pool
from .data.registry import registered
from .data.store import Dataset
from .distributed import World
from .errors import ConfigError, DivergedError
from .fileio import atomic_write_text
from .loop import (RunLog, adam, kept_users, progress_bar, restore_training_state, rng_state, write_config,
                   write_metrics)
from .models import build_model
from .models.attributes import ItemAttributes
from .models.base import ModelData
from .models.heads import OBJECTIVES, BackbonePretrain, LossWeights, weighted_total
from .models.s3rec import S3RecPretrain
from .provenance import environment

DEFAULT_EPOCHS = 100


def default_epochs(dataset: str) -> int:
    """The released checkpoints' schedule: 150 for Beauty, Toys and LastFM; 100 for Sports and Yelp."""
    info = registered(dataset)
    return info.pretrain_epochs if info else DEFAULT_EPOCHS


CHANCE = math.log(2.0)  # -log sigmoid(0): SP's value when the positive and negative scores are equal
STUCK_EPOCHS = 10


def sp_stuck(history: list[dict], window: int = STUCK_EPOCHS, tol: float = 1e-4) -> bool:
    """Whether SP has sat at chance (ln 2 per instance) for the last ``window`` epochs.

    SP is ``-log sigmoid(sigmoid(<z, p>) - sigmoid(<z, n>))`` (the paper's form): when both scores'
    sigmoids saturate (Beauty's 40% limited-data pre-training: 5-95% of the logits in [-101, -39]),
    the term is ln 2 with next to no gradient; that run stayed there from epoch 2 to 47."""
    tail = history[-window:]
    return len(tail) == window and all(_sp_at_chance(h, tol) for h in tail)


def _sp_at_chance(row: dict, tol: float) -> bool:
    return "sp" in row and abs(row["sp"] - CHANCE) < tol


def sp_chance_spans(history: list[dict], tol: float = 1e-4) -> list[tuple[int, int]]:
    """The runs of consecutive epochs (first, last) whose SP term was within ``tol`` of ln 2, its
    value at chance (as :func:`sp_stuck` counts it); a long one means SP was not training."""
    spans: list[tuple[int, int]] = []
    for h in history:
        if not _sp_at_chance(h, tol):
            continue
        if spans and spans[-1][1] == h["epoch"] - 1:
            spans[-1] = (spans[-1][0], h["epoch"])
        else:
            spans.append((h["epoch"], h["epoch"]))
    return spans


def loss_weights(cfg: PretrainConfig) -> LossWeights:
    return LossWeights(cfg.aap_weight, cfg.mip_weight, cfg.map_weight, cfg.sp_weight)


def pretrain_model(cfg: PretrainConfig, ds: Dataset) -> torch.nn.Module:
    """S3-Rec's encoder with its heads, or ``cfg.backbone`` (a registered model) with the same heads."""
    if cfg.backbone == "s3rec":
        return S3RecPretrain(ds.n_items, ds.n_attributes, cfg.encoder())
    backbone = build_model(cfg.backbone, ModelData.from_dataset(ds), cfg.backbone_config())
    return BackbonePretrain(backbone, ds.n_attributes, cfg.hidden_size)


class Pretrainer:
    """Everything one pre-training step needs, built once per dataset."""

    def __init__(self, cfg: PretrainConfig, ds: Dataset, world: World = World(), log=lambda msg: None):
        self.cfg = cfg
        self.ds = ds
        self.world = world
        self.weights = loss_weights(cfg)
        check_fits(cfg.encoder(), cfg.device, ds.n_items)  # before the instances are built
        self.st = SequenceTensors(ds)
        # limited training data: only the kept users' training parts (every user when train_fraction = 1)
        kept = None if cfg.train_fraction == 1 else torch.from_numpy(kept_users(ds.n_users, cfg.train_fraction, cfg.fraction_seed))
        self.instances: Instances = make_instances(self.st, cfg.max_len, kept)
        self.pool = segment_pool(self.st, cfg.segment_pool, kept)
        # the attribute targets only AAP and MAP read
        needs_attrs = self.weights.active("aap") or self.weights.active("map")
        self.attrs = ItemAttributes.of(ds, cfg.device) if needs_attrs else None
        self.with_items = any(self.weights.active(n) for n in ("aap", "mip", "map"))
        self.with_segments = self.weights.active("sp")
        torch.manual_seed(cfg.seed)
        self.model = pretrain_model(cfg, ds).to(cfg.device)
        self.params = list(self.model.parameters())
        self.optimizer = adam(self.params, cfg.lr)
        self.device = torch.device(cfg.device)
        self.prefetch = cfg.prefetch == "on" or (cfg.prefetch == "auto" and self.device.type == "cuda")
        self.losses = self.model.losses if cfg.compile == "none" else compiled(self.model.losses, cfg.compile, log)

    def epoch_order(self, gen: torch.Generator) -> list[torch.Tensor]:
        """The epoch's batches: a fresh random permutation cut into ``batch_size`` pieces.

        (Sorting the epoch into length buckets would not be the same optimisation, and with packed
        rows it is not even faster: measured 2,511 vs 2,730 instances/s on Beauty.)"""
        return list(torch.randperm(len(self.instances), generator=gen).split(self.cfg.batch_size))

    def batch(self, idx: torch.Tensor, gen: torch.Generator):
        """The corrupted, packed batch of the instances ``idx`` (on the CPU), as :meth:`step` trains on it."""
        cfg = self.cfg
        return pretrain_batch(self.st, self.instances, idx, self.pool, gen, cfg.mask_p, cfg.negative_sampler,
                              self.with_items, self.with_segments, cfg.max_len, cfg.packed, cfg.unidirectional)

    def prepare(self, idx: torch.Tensor, gen: torch.Generator):
        """This rank's share of the batch ``idx``, corrupted, packed and on the device (None when the
        share is empty: a batch smaller than the world leaves some ranks nothing). Reads only ``gen``,
        never the default generator, so it may run ahead on another thread (:meth:`batches`)."""
        idx = self.world.share(idx)
        if not len(idx):
            return None
        return self.batch(idx, gen).to(self.device)

    def batches(self, order: list[torch.Tensor], gen: torch.Generator):
        """:meth:`prepare` of each batch of ``order``, in order; with prefetching on (``cfg.prefetch``;
        "auto": on CUDA only), the next batch is built on a background thread while the current one
        trains. The same batches either way (only this loop draws from ``gen``)."""
        if not self.prefetch:
            for idx in order:
                yield self.prepare(idx, gen)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="s3rec-prefetch") as pool:
            ahead = pool.submit(self.prepare, order[0], gen) if order else None
            for i in range(len(order)):
                batch = ahead.result()
                if i + 1 < len(order):
                    ahead = pool.submit(self.prepare, order[i + 1], gen)
                yield batch

    def step(self, idx: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """One Adam step on the batch ``idx`` (:meth:`prepare` then :meth:`train`)."""
        return self.train(self.prepare(idx, gen))

    def train(self, batch) -> dict[str, torch.Tensor]:
        """One Adam step on a prepared batch; returns the summed loss terms of this rank's share (all
        of it in one process) as 0-d tensors on the device: nothing here waits for the device (the
        epoch loop adds them up and reads them once, at the end of the epoch)."""
        cfg = self.cfg
        self.optimizer.zero_grad(set_to_none=True)
        if batch is None:  # this rank's share was empty: it adds nothing but joins the gradient sum
            values = {k: torch.zeros((), device=self.device) for k in OBJECTIVES if self.weights.active(k)}
        else:
            amp = (torch.autocast(self.device.type, dtype=torch.bfloat16)
                   if cfg.amp == "bf16" else contextlib.nullcontext())
            with amp:
                terms = self.losses(batch, self.attrs, self.weights)
                loss = weighted_total(terms, self.weights)
            loss.backward()
            values = {k: v.detach().float() for k, v in terms.items()}
        finite = self.world.sum_gradients(self.params)  # the same answer on every rank
        self.optimizer.step()
        if not finite:  # under torchrun: every rank decides on the summed gradients, so all stop together
            raise DivergedError("pre-training diverged (non-finite gradients); try a smaller lr")
        return values


def compiled(fn, mode: str, log):
    """``fn`` under ``torch.compile`` (dynamic shapes: packed batches change shape every step), falling
    back to ``fn`` itself, with one warning, when compiling fails (no C++ compiler for the CPU
    backend, no Triton for the GPU one, an operator it cannot trace): the same computation either way."""
    try:
        fast = torch.compile(fn, dynamic=True, mode=None if mode == "default" else mode)
    except Exception as e:  # noqa: BLE001 (torch.compile raises many kinds; all mean "run eager")
        log(f"warning: torch.compile is not available ({type(e).__name__}: {e}); running eagerly")
        return fn
    chosen = None  # fast once a first call has compiled, fn once one has failed

    def call(*args, **kwargs):
        nonlocal chosen
        if chosen is None:
            try:
                out = fast(*args, **kwargs)
            except Exception as e:  # noqa: BLE001
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                log(f"warning: torch.compile failed ({type(e).__name__}: {first[:200]}); running eagerly")
                chosen = fn
            else:
                chosen = fast
                return out
        return chosen(*args, **kwargs)

    return call


def check_finite(values: dict[str, float]) -> None:
    """Raise :class:`DivergedError` when an epoch's summed loss terms are not all finite."""
    if not all(math.isfinite(v) for v in values.values()):
        raise DivergedError(f"pre-training diverged (loss terms {values}); try a smaller lr")


def pretrain(
    cfg: PretrainConfig,
    ds: Dataset,
    out: Path,
    resume: bool = False,
    progress: bool = True,
    log=lambda msg: print(msg, file=sys.stderr),
    init_state: dict | None = None,
    world: World = World(),
) -> dict:
    """Pre-train for ``cfg.epochs`` (or the dataset's default); returns a summary.

    ``world``: this process's rank among torchrun's (:mod:`s3rec.distributed`); rank 0 alone logs
    and writes ``out``. ``log``: a callable for each line, or a :class:`s3rec.loop.RunLog`
    (``--quiet``, TensorBoard); the lines also go to the run folder's ``log.txt``."""
    if not world.main:
        log, progress = (lambda msg: None), False
    log = RunLog.of(log)
    with log.recording():
        return _pretrain(cfg, ds, out, resume, progress, log, init_state, world)


def _pretrain(cfg: PretrainConfig, ds: Dataset, out: Path, resume: bool, progress: bool, log: RunLog,
              init_state: dict | None, world: World) -> dict:
    t_start = time.time()
    out = Path(out)
    epochs = cfg.epochs or default_epochs(ds.name)
    trainer = Pretrainer(cfg, ds, world, log)
    if init_state is not None:
        checkpoint.load_model_state(trainer.model, init_state, cfg.init or "--init")
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    elapsed_before = 0.0
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        # a longer (or shorter) schedule is fine: without a learning-rate schedule, epoch k is the same
        # whatever the total, so `--epochs 150 --resume` extends a 50-epoch run exactly
        state = restore_training_state(ckpt_path, cfg, trainer.model, trainer.optimizer, gen,
                                       ("device", "epochs", "save_every", "compile", "prefetch"))
        history = json.loads(state["history"])
        elapsed_before = float(state["seconds"])
        ranks = int(state.get("world_size", 1))  # checkpoints before it was recorded: one process
        if ranks != world.size:
            raise ConfigError(f"--resume: {out} was pre-trained by {ranks} process(es) and this is {world.size}: "
                              f"resume it with the same number (torchrun --nproc_per_node {ranks}; 1: no "
                              "torchrun), since each rank's corruption and dropout draws depend on it")
        if len(history) > epochs:
            raise ConfigError(f"--resume: {out} already has {len(history)} epochs, more than --epochs {epochs}")
        log(f"resuming {out} after epoch {len(history)}")
    world.broadcast_parameters(trainer.model)
    if world.main:
        write_config(out, cfg)
        log.open(out, append=resume)
        # one line per start or resume: a run continued on another machine says so
        starts = out / "environment.jsonl"
        if len(history) < epochs:  # resuming a finished run trains nothing: no line
            earlier = starts.read_text(encoding="utf-8") if resume and starts.is_file() else ""
            atomic_write_text(starts, earlier + json.dumps({"from_epoch": len(history) + 1, **environment(cfg.device)})
                              + "\n")
    n_inst = len(trainer.instances)
    log(f"{ds.name}: {n_inst} pre-training instances per epoch, {epochs} epochs, "
        f"weights {' '.join(f'{n}={getattr(trainer.weights, n)}' for n in OBJECTIVES)}"
        + (f", {world.size} ranks" if world.active else ""))
    warned_sp = False
    for epoch in range(len(history) + 1, epochs + 1):
        t0 = time.time()
        sums = dict.fromkeys(OBJECTIVES, 0.0)
        batches = trainer.epoch_order(gen)
        draws = world.epoch_generator(cfg.seed, epoch) if world.active else gen
        for batch in progress_bar(trainer.batches(batches, draws), len(batches), f"pretrain {epoch}/{epochs}", progress):
            for k, v in trainer.train(batch).items():
                sums[k] += v
        sums = world.sum_floats({k: float(v) for k, v in sums.items()})  # the epoch's one wait for the device
        check_finite(sums)  # the same sums on every rank: all ranks stop together
        seconds = time.time() - t0
        terms = {k: sums[k] / n_inst for k in OBJECTIVES if trainer.weights.active(k)}
        total = weighted_total(terms, trainer.weights)
        row = {"epoch": epoch, **terms, "loss": total, "instances_per_second": round(n_inst / seconds, 1),
               "seconds": round(seconds, 3)}
        history.append(row)
        log.epoch(f"pretrain {epoch:3d}/{epochs} " + " ".join(f"{k} {v:.4f}" for k, v in terms.items())
            + f" total {total:.4f} ({row['instances_per_second']:.0f} inst/s, {seconds:.1f}s)")
        if not world.main:
            continue
        payload = checkpoint.weights_payload("pretrain", cfg, ds, trainer.model, epoch)
        if epoch % cfg.save_every == 0 or epoch == epochs:
            checkpoint.save(out / f"pretrain-epoch-{epoch}.pt", payload)
            row["weights_sha256"] = checkpoint.weights_digest(payload["model"])  # what fine-tunings record
        checkpoint.save(ckpt_path, {
            **payload,
            "optimizer": trainer.optimizer.state_dict(),
            "rng": rng_state(gen),
            "history": json.dumps(history),
            "seconds": elapsed_before + time.time() - t_start,
            "world_size": world.size,
        })
        write_metrics(out, history)
        log.scalars(epoch, {**{f"pretrain/{k}": v for k, v in terms.items()}, "loss/pretrain": total,
                            "lr": trainer.optimizer.param_groups[0]["lr"],
                            "instances_per_second": row["instances_per_second"]})
        if not warned_sp and sp_stuck(history):
            warned_sp = True
            log(f"warning: SP has been {CHANCE:.4f} (chance) for {STUCK_EPOCHS} epochs: its positive and "
                "negative segment scores are saturated and the paper's sigmoid-of-sigmoids loss gives "
                "them next to no gradient, so SP is not training (it may recover later; this is the "
                "paper's objective; see docs/pretraining.md)")
    world.barrier()  # the other ranks return once rank 0 has written the last epoch
    final = out / f"pretrain-epoch-{epochs}.pt"
    return {"checkpoint": str(final), "epochs": epochs, "instances": n_inst,
            "seconds": round(elapsed_before + time.time() - t_start, 3)}
