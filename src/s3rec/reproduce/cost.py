"""A simple, stated cost model for ``s3rec reproduce --dry-run``: seconds per epoch x epochs.

Base figures, from this project's 2-core CPU machine (docs/results.md, "Speed"):

- fine-tuning SASRec on Beauty: 2.29 s per epoch including the sampled validation (measured); other
  datasets scale with their number of interactions (assumed); other models by an assumed factor;
- pre-training: each public dataset's instances per second from `s3rec bench pretrain --dataset NAME
  --batches 200`, two threads (measured, PRETRAIN_RATE below); another dataset at 2,500 instances/s
  (assumed); other models' encoders (Fig. 3) by a measured factor;
- a window of ``max_len`` items other than the paper's 50 scales either by max_len / 50 (assumed;
  attention grows with its square, and LastFM's 200-item pre-training measured far more: 894 s for its
  first epoch, one thread beside four jobs, against a median of 30 s for the 50-item epochs on one
  thread with fewer beside it);
- an early-stopped fine-tuning run is assumed to last 50 epochs (patience 10; Beauty stops at 30-70),
  110 with a softmax-type loss (ce, sampled-softmax, gbce: Beauty's sampled-softmax runs stopped
  after 55-155 epochs).

Where the experiment's folder, or another experiment's beside it, already holds runs of the same
dataset, model, protocol, training fraction, loss and window, their measured median seconds per epoch
replace the assumed speed, and the median length of the finished ones the assumed length. A
pre-training that has begun is timed by its own epochs; one that has not, by the pre-trainings in the
shared folder with the same dataset, encoder shape and SP on or off (scaled by the training fraction).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from .plan import FinetuneRun, PretrainRun

INTERACTIONS = {"Beauty": 198_502, "Sports": 296_337, "Toys": 167_597, "Yelp": 316_354, "LastFM": 52_551}
PRETRAIN_INSTANCES = {"Beauty": 150_258, "Sports": 223_464, "Toys": 125_896, "Yelp": 247_854, "LastFM": 25_726}
USERS_ITEMS = {"Beauty": (22_363, 12_101), "Sports": (35_598, 18_357), "Toys": (19_412, 11_924),
               "Yelp": (30_431, 20_033), "LastFM": (1_090, 3_646)}
FINETUNE_BEAUTY_S = 2.29  # SASRec, seconds per epoch incl. sampled validation (measured)
# pre-training instances per second, two threads: Beauty and LastFM from benchmarks/results/peer_recbole.json
# and peer_authors_LastFM.json (2026-12-07, AMD EPYC 2 vCPUs), Toys, Sports and Yelp by `s3rec bench
# pretrain --dataset NAME --batches 200` (2026-12-07, Intel Xeon 2 vCPUs)
PRETRAIN_RATE = {"Beauty": 3_824.0, "LastFM": 1_999.0, "Toys": 2_958.0, "Sports": 2_589.0, "Yelp": 2_561.0}
OTHER_PRETRAIN_RATE = 2_500.0  # instances per second on another dataset (assumed)
# pre-training another model's encoder (``backbone``, Fig. 3), relative to S3-Rec's: `s3rec bench
# pretrain --dataset Beauty --batches 60 --set backbone=NAME`, one thread, measured side by side 2026-11-27
# (s3rec 1,290, gru4rec 1,320, gru4rec_f 785, sasrec_f 1,071 instances/s)
BACKBONE_FACTOR = {"s3rec": 1.0, "gru4rec": 1.0, "gru4rec_f": 1.64, "sasrec_f": 1.2}
EARLY_STOP_EPOCHS = 50  # assumed length of an early-stopped fine-tuning run
SOFTMAX_STOP_EPOCHS = 110  # the same with a softmax-type loss, which keeps improving for longer
SOFTMAX_LOSSES = ("ce", "sampled-softmax", "gbce")
# seconds per epoch relative to SASRec on Beauty (`benchmarks/model_epochs.py`, 2 threads, measured
# 2026-11-27; BERT4Rec's before it packed its sequences, an upper bound)
MODEL_FACTOR = {"poprec": 0.0, "fm": 0.58, "autoint": 7.7, "gru4rec": 1.37, "caser": 2.56, "sasrec": 1.0,
                "bert4rec": 26.7, "hgn": 0.70, "gru4rec_f": 2.59, "sasrec_f": 1.29, "fdsa": 2.35}
# a softmax over all items costs ~ items / CE_ITEMS times the BCE loss's epoch (SASRec on Beauty, full
# CE: ~10x; one measurement on a loaded machine, an assumption elsewhere)
CE_ITEMS = 1_350
FULL_FACTOR = 1.5  # a full-ranking validation instead of the sampled one (assumed)
PAPER_MAX_LEN = 50  # the window the measurements above were made with
AUTOINT_FULL_BEAUTY_S = 1800.0  # one AutoInt full-ranking pass over Beauty (measured 1,811 s, one thread)


def dataset_size(dataset: str, data_dir=None) -> int | None:
    """Interactions of a registered dataset, or counted from its file when it can be found."""
    if dataset in INTERACTIONS:
        return INTERACTIONS[dataset]
    from ..data.registry import locate
    from ..errors import S3RecError

    try:
        path = locate(dataset, data_dir).sequences
        with open(path, encoding="utf-8") as f:
            return sum(max(len(line.split()) - 1, 0) for line in f)
    except (S3RecError, OSError):
        return None


def _epoch_seconds(path: Path) -> list[float]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(float(json.loads(line)["seconds"]))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def epochs_done(run_dir: Path) -> int:
    return len(_epoch_seconds(run_dir / "metrics.jsonl"))


def speed_key(cfg) -> tuple:
    """What a fine-tuning run's speed and length are pooled by (a TrainConfig, or its dict)."""
    get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
    return (get("dataset"), get("model"), get("protocol"), float(get("train_fraction", 1.0)), get("loss"),
            int(get("max_len", PAPER_MAX_LEN)))


def finetune_epochs(run: FinetuneRun, lengths: dict | None = None) -> int:
    cfg = run.cfg
    if cfg.model == "poprec":
        return 0
    if cfg.patience >= cfg.epochs:
        return cfg.epochs
    known = (lengths or {}).get(speed_key(cfg))
    if known:
        return min(cfg.epochs, known)
    return min(cfg.epochs, SOFTMAX_STOP_EPOCHS if cfg.loss in SOFTMAX_LOSSES else EARLY_STOP_EPOCHS)


def finetune_epoch_seconds(run: FinetuneRun, interactions: int | None) -> float | None:
    cfg = run.cfg
    if interactions is None:
        return None
    base = FINETUNE_BEAUTY_S * interactions / INTERACTIONS["Beauty"] * MODEL_FACTOR.get(cfg.model, 1.5)
    base *= cfg.train_fraction  # limited training data: fewer training sequences (assumed proportional)
    base *= cfg.max_len / PAPER_MAX_LEN
    if cfg.loss == "ce" and cfg.model != "bert4rec" and run.dataset in USERS_ITEMS:  # (BERT4Rec's factor has it)
        base *= 1 + USERS_ITEMS[run.dataset][1] / CE_ITEMS
    if cfg.protocol != "sampled":
        base *= FULL_FACTOR
        if cfg.model in ("autoint", "fm") and run.dataset in USERS_ITEMS:
            u, i = USERS_ITEMS[run.dataset]
            factor = 1.0 if cfg.model == "autoint" else 0.05
            base += factor * AUTOINT_FULL_BEAUTY_S * (u * i) / (22_363 * 12_101)
    return base


def pretrain_epoch_seconds(run: PretrainRun, interactions: int | None) -> float | None:
    ds = run.cfg.dataset
    if ds in PRETRAIN_INSTANCES:
        base = PRETRAIN_INSTANCES[ds] / PRETRAIN_RATE[ds]
    elif interactions is not None:
        base = 0.76 * interactions / OTHER_PRETRAIN_RATE  # instances ~ 0.76 x interactions (Beauty's ratio)
    else:
        return None
    return (base * run.cfg.train_fraction * BACKBONE_FACTOR.get(run.cfg.backbone, 1.5)
            * run.cfg.max_len / PAPER_MAX_LEN)


def estimate_finetune(run: FinetuneRun, interactions: int | None, measured: dict,
                      lengths: dict | None = None) -> tuple[float | None, str]:
    """Seconds left for a fine-tuning run, and whether that rests on measured or assumed speed."""
    if run.cfg is None:
        return 0.0, "-"
    key = speed_key(run.cfg)
    left = max(finetune_epochs(run, lengths) - epochs_done(run.dir), 0)
    if key in measured and not run.method.checkpoint_from:
        return measured[key] * left, "measured"
    eval_s = finetune_epoch_seconds(run, interactions)
    if eval_s is None:
        return None, "unknown"
    if run.cfg.model == "poprec" or run.method.checkpoint_from:  # one evaluation, nothing trained
        return eval_s + 1.0, "assumed; test only"
    return eval_s * left, "assumed"


def pretrain_speed_key(cfg) -> tuple:
    """What a pre-training's speed is pooled by (a PretrainConfig, or its dict): the dataset, the encoder
    (backbone, window, hidden size, layers, heads), the device and precision, and whether SP runs (its
    extra encoder passes make an epoch ~1.5x longer: Beauty, two threads, medians 41 s without, 60 s
    with). The training fraction is not part of it (:func:`measured_pretrain_speeds` divides it out)."""
    get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
    return (str(get("dataset")), str(get("backbone", "s3rec")), int(get("max_len", PAPER_MAX_LEN)),
            int(get("hidden_size", 64)), int(get("n_layers", 2)), int(get("n_heads", 2)),
            str(get("device", "cpu")).split(":")[0], str(get("amp", "none")), float(get("sp_weight", 0.5)) > 0)


def measured_pretrain_speeds(pretrain_dir: Path | None) -> dict:
    """Median seconds per epoch, at the full training fraction, of the pre-trainings under ``pretrain_dir``
    (the shared folder), by :func:`pretrain_speed_key`."""
    by: dict[tuple, list[float]] = {}
    if pretrain_dir is None or not Path(pretrain_dir).is_dir():
        return {}
    for cfg_path in sorted(Path(pretrain_dir).glob("*/config.json")):
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            fraction = float(cfg.get("train_fraction", 1.0))
            key = pretrain_speed_key(cfg)
        except (OSError, ValueError, TypeError, AttributeError):  # not a pre-training's config: ignored
            continue
        secs = _epoch_seconds(cfg_path.parent / "metrics.jsonl")
        if secs and fraction > 0:
            by.setdefault(key, []).append(statistics.median(secs) / fraction)
    return {k: statistics.median(v) for k, v in by.items()}


def estimate_pretrain(run: PretrainRun, interactions: int | None, measured: dict | None = None) -> tuple[float | None, str]:
    """Seconds left for a pre-training: its own epochs' median where it has begun, else that of like
    pre-trainings (``measured``, from :func:`measured_pretrain_speeds`) scaled by the training fraction,
    else the assumed speed."""
    left = max(run.cfg.epochs - epochs_done(run.dir), 0)
    secs = _epoch_seconds(run.dir / "metrics.jsonl")
    if secs:
        return statistics.median(secs) * left, "measured"
    like = (measured or {}).get(pretrain_speed_key(run.cfg))
    if like is not None:
        return like * run.cfg.train_fraction * left, "measured on like pre-trainings"
    per = pretrain_epoch_seconds(run, interactions)
    return (None, "unknown") if per is None else (per * left, "assumed")


def _run_dirs(runs: list[FinetuneRun], others: Path | None) -> list[tuple[tuple, Path]]:
    """(speed key, folder) of this plan's runs, then of the runs in the experiment folders under ``others``."""
    out = [(speed_key(r.cfg), r.dir) for r in runs if r.cfg is not None]
    mine = {d for _, d in out}
    if others is not None and Path(others).is_dir():
        for cfg_path in sorted(Path(others).glob("*/*/config.json")):
            if cfg_path.parent in mine:
                continue
            try:
                cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(cfg, dict) and "model" in cfg:
                out.append((speed_key(cfg), cfg_path.parent))
    return out


def measured_finetune_speeds(runs: list[FinetuneRun], others: Path | None = None) -> dict:
    """Median seconds per epoch of the runs already under way, by :func:`speed_key`: this plan's, and
    with ``others`` (the folder holding the experiment folders) every experiment's beside it."""
    by: dict[tuple, list[float]] = {}
    for key, d in _run_dirs(runs, others):
        by.setdefault(key, []).extend(_epoch_seconds(d / "metrics.jsonl"))
    return {k: statistics.median(v) for k, v in by.items() if v}


def measured_finetune_lengths(runs: list[FinetuneRun], others: Path | None = None) -> dict:
    """Median number of epochs of the finished, trained runs, by :func:`speed_key` (as above)."""
    by: dict[tuple, list[int]] = {}
    for key, d in _run_dirs(runs, others):
        try:
            done = json.loads((d / "results.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(done, dict) and isinstance(done.get("epochs"), int) and not done.get("checkpoint_from"):
            by.setdefault(key, []).append(done["epochs"])
    return {k: int(statistics.median(v)) for k, v in by.items() if v}
