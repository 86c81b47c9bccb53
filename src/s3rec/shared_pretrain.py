"""Pre-train once, share it between fine-tunings: "ensure this pre-training exists".

Every caller that fine-tunes from a pre-training it does not own (``s3rec train --preset`` with a
``pretrained = true`` preset, ``s3rec tune --pretrain``, ``s3rec reproduce``, :func:`s3rec.pretrain`
with a shared folder) asks :func:`ensure_pretrained` for it. One identity, one folder, one lock:

- **identity**: the dataset, the seed and the settings that differ from the defaults and change what
  epoch k computes (:data:`NOT_IDENTITY` are left out: the device, how often checkpoints are kept,
  the run's length, since without a learning-rate schedule epoch k is the same whatever the total;
  ``fraction_seed`` counts only when ``train_fraction`` drops users). The folder is
  ``ROOT/DATASET-TAG-seedSEED`` (:func:`pretrain_id`), TAG the readable list of those settings
  (``default`` when none, a hash when long), so one pre-training lands in one folder whoever asks.
  The data's digest (:func:`data_fingerprint`) is recorded in the folder (``data.json``): another
  dataset's files under the same name are refused, never trained on top of.
- **lock**: ``FOLDER/.lock`` (:func:`s3rec.fileio.try_lock`: released when its process dies).
- **reuse, resume, run**: the checkpoints asked for exist: reused untouched; else, under the lock, the
  run is resumed from its ``checkpoint.pt`` (extended to the longest epoch asked for) or started.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import PretrainConfig
from .errors import ConfigError
from .fileio import atomic_write_text, try_lock

# settings that never change what a pre-training's epoch k computes, or are named apart (dataset, seed)
NOT_IDENTITY = ("dataset", "seed", "epochs", "device", "init", "save_every")
LOCK_FILE = ".lock"
DATA_FILE = "data.json"


class PretrainingBusy(Exception):
    """Another process holds the pre-training's lock (only with ``wait=False``)."""


@dataclass
class PretrainResult:
    """A pre-training run: its folder, the checkpoints kept (epoch -> path) and its per-epoch losses."""

    dir: Path
    config: PretrainConfig
    checkpoints: dict[int, Path] = field(default_factory=dict)
    losses: list[dict] = field(default_factory=list)  # metrics.jsonl: one row per epoch

    @property
    def checkpoint(self) -> Path:
        """The last epoch's checkpoint (what a fine-tuning starts from)."""
        return self.checkpoints[max(self.checkpoints)]

    @classmethod
    def read(cls, run_dir: Path, cfg: PretrainConfig) -> PretrainResult:
        run_dir = Path(run_dir)
        kept = {int(p.stem.rsplit("-", 1)[1]): p for p in run_dir.glob("pretrain-epoch-*.pt")
                if p.stem.rsplit("-", 1)[1].isdigit()}
        return cls(run_dir, cfg, dict(sorted(kept.items())), _history(run_dir))


def _history(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if path.is_file() else []


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def identity(cfg: PretrainConfig) -> dict:
    """The settings that name a pre-training besides its dataset and seed (sorted)."""
    if cfg.init:
        raise ConfigError("a pre-training continued from a checkpoint (init) has no shared folder")
    defaults = PretrainConfig().to_dict()
    out = {k: v for k, v in sorted(cfg.to_dict().items()) if k not in NOT_IDENTITY and v != defaults[k]}
    if out.get("train_fraction", 1.0) == 1.0:
        out.pop("fraction_seed", None)  # which users are dropped matters only when some are
    return out


def pretrain_id(cfg: PretrainConfig) -> str:
    """``DATASET-TAG-seedSEED``: the shared folder's name for a pre-training with these settings."""
    tag = ",".join(f"{k}={_fmt(v)}" for k, v in identity(cfg).items()) or "default"
    if len(tag) > 80 or any(c in tag for c in "/\\ "):
        tag = "h" + hashlib.sha1(tag.encode()).hexdigest()[:10]
    return f"{cfg.dataset}-{tag}-seed{cfg.seed}"


def data_fingerprint(ds) -> str:
    """A short digest of a dataset's sequences and item attributes (what a pre-training reads)."""
    h = hashlib.sha256()
    for arr in (ds.offsets, ds.items, ds.attr_offsets, ds.attributes):
        h.update(arr.astype("int64").tobytes())
    h.update(f"{ds.n_items},{ds.n_attributes}".encode())
    return h.hexdigest()[:12]


def lock_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOCK_FILE


def pretraining_lock(run_dir: Path, wait: bool = True, on_wait=None):
    """The pre-training's lock (a ``with`` block yielding whether it is held; see :func:`try_lock`)."""
    return try_lock(lock_path(run_dir), wait=wait, on_wait=on_wait)


def _check_data(run_dir: Path, ds) -> None:
    """Refuse a folder made from other data under the same name; record this data's digest."""
    path = Path(run_dir) / DATA_FILE
    digest = data_fingerprint(ds)
    if path.is_file():
        try:
            seen = json.loads(path.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            seen = None
        if seen and seen != digest:
            raise ConfigError(f"{run_dir} holds a pre-training of other data named {ds.name} (data {seen}, this "
                              f"data {digest}): use another pre-training folder")
    elif Path(run_dir).is_dir():
        atomic_write_text(path, json.dumps({"dataset": ds.name, "fingerprint": digest}) + "\n")


def _missing(run_dir: Path, epochs) -> list[int]:
    return [k for k in epochs if not (Path(run_dir) / f"pretrain-epoch-{k}.pt").is_file()]


def ensure_pretrained(cfg: PretrainConfig, ds, run_dir: Path, epochs=None, *, wait: bool = True, lock: bool = True,
                      progress: bool = True, log=lambda m: print(m, file=sys.stderr, flush=True)) -> PretrainResult:
    """The pre-training ``cfg`` on ``ds`` in ``run_dir`` with the checkpoints of ``epochs`` (default:
    ``cfg.epochs``): reused when they exist, else (holding the folder's lock, waiting for it unless
    ``wait=False``, which raises :class:`PretrainingBusy`) resumed or run to the longest. ``lock=False``:
    the caller holds :func:`pretraining_lock` already. A run that went past an epoch asked for without
    keeping its checkpoint is an error."""
    run_dir = Path(run_dir)
    epochs = sorted(set(epochs or [cfg.epochs]))
    if not epochs or epochs[0] < 1:
        raise ConfigError(f"pre-training epochs must be >= 1, got {epochs}")
    if not _missing(run_dir, epochs):
        _check_data(run_dir, ds)
        return PretrainResult.read(run_dir, cfg)
    if not lock:
        return _run(cfg, ds, run_dir, epochs, progress, log)
    run_dir.mkdir(parents=True, exist_ok=True)
    with pretraining_lock(run_dir, wait, lambda: log(f"waiting for the pre-training another process runs in "
                                                     f"{run_dir}")) as held:
        if not held:
            raise PretrainingBusy(f"pre-training {run_dir.name} is running in another process")
        return _run(cfg, ds, run_dir, epochs, progress, log)


def _run(cfg, ds, run_dir: Path, epochs: list[int], progress: bool, log) -> PretrainResult:
    import dataclasses

    from .pretraining import pretrain

    _check_data(run_dir, ds)
    if _missing(run_dir, epochs):  # again: another process may have made them while this one waited
        done = len(_history(run_dir))
        skipped = [k for k in _missing(run_dir, epochs) if k <= done]
        if skipped:
            raise ConfigError(f"{run_dir} went past epoch {skipped[0]} without keeping its checkpoint (kept every "
                              f"{cfg.save_every} epochs): use another pre-training folder")
        cfg = dataclasses.replace(cfg, epochs=max(epochs[-1], done))
        pretrain(cfg, ds, run_dir, resume=True, progress=progress, log=log)
        _check_data(run_dir, ds)
        missing = _missing(run_dir, epochs)
        if missing:
            raise RuntimeError(f"pre-training finished without the checkpoints of epochs {missing} "
                               f"(kept every {cfg.save_every} epochs)")
    return PretrainResult.read(run_dir, cfg)
