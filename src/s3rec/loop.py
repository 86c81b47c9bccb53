"""What the two training loops share (:mod:`s3rec.pretraining` and :mod:`s3rec.train`).

The run folder (``config.json`` first, ``metrics.jsonl`` rewritten after every epoch), the optimizer,
the RNG state kept in ``checkpoint.pt`` and restored by ``--resume``, the progress bar, and the users
whose training parts take part under limited training data (the paper's Fig. 4).
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields as dataclass_fields
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .config import PretrainConfig, config_from_json
from .errors import ConfigError
from .fileio import atomic_write_text


def progress_bar(iterable, total, desc, enabled):
    """``iterable`` with a tqdm bar on stderr when ``enabled`` (and stderr is a terminal)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (logs stay readable)
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr, disable=None)


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


def rng_state(gen: torch.Generator) -> dict:
    """The RNG states a checkpoint keeps: torch's default generator, the data generator ``gen`` and CUDA's."""
    state = {"torch": torch.get_rng_state(), "data": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(gen: torch.Generator, state: dict) -> None:
    """Restore what :func:`rng_state` kept."""
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
    set_rng_state(gen, state["rng"])
    return state


def write_config(out: Path, cfg) -> None:
    """Create the run folder ``out`` and write its ``config.json`` (every setting of the run)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", cfg.to_json() + "\n")


def write_metrics(out: Path, history: list[dict]) -> None:
    """Rewrite ``metrics.jsonl``: one JSON line per finished epoch."""
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))


# what a training run writes in its folder (the temporary files of atomic writes too): all that
# --overwrite removes
RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "best.pt", "results.json", "test_ranks.npy",
             "environment.jsonl", "data.json", "error.txt")
RUN_PATTERNS = ("pretrain-epoch-*.pt", ".*.tmp")


def run_files(out: Path, cls) -> list[Path]:
    """The files ``--overwrite`` removes from ``out``: a run's own, when ``out`` is recognisably a run of
    this kind (its ``config.json`` holds the settings of a ``cls``, TrainConfig or PretrainConfig).
    Anything else is refused (:class:`ConfigError`); files a run does not write are never listed."""
    out = Path(out)
    if not out.exists() or not any(out.iterdir()):
        return []
    kind = "pre-training" if cls is PretrainConfig else "fine-tuning"
    try:
        data = json.loads((out / "config.json").read_text(encoding="utf-8"))
        ours = isinstance(data, dict) and "dataset" in data and set(data) <= {f.name for f in dataclass_fields(cls)}
    except (OSError, UnicodeDecodeError, ValueError):
        ours = False
    if not ours:
        raise ConfigError(f"{out} is not an s3rec {kind} run folder (no config.json of such a run): "
                          "nothing removed or written; choose another --out")
    listed = [*(out / name for name in RUN_FILES), *(p for pattern in RUN_PATTERNS for p in out.glob(pattern))]
    return [p for p in listed if p.is_file() or p.is_symlink()]


def clear_run_dir(out: Path, cls) -> None:
    """Remove a run's own files from ``out`` (:func:`run_files`), for ``--overwrite``."""
    for path in run_files(out, cls):
        path.unlink()
