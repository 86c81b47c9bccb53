"""Safe checkpoints: written atomically, loaded with ``weights_only=True`` (no arbitrary unpickling).

A checkpoint is a plain dict of tensors, numbers and strings. The config travels with the weights as
a JSON string, so a checkpoint rebuilds its own model.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch

from .errors import CheckpointError
from .fileio import atomic_path

FORMAT = "s3rec-checkpoint-v1"


def save(path: str | Path, payload: dict) -> None:
    payload = {"format": FORMAT, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a loadable checkpoint ({first})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


def load_model_state(model: torch.nn.Module, state: dict, source: str) -> None:
    """Load a state_dict strictly: any missing, unexpected or mis-shaped tensor is an error."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if shape:
            parts.append(f"shape mismatch {shape[:3]}")
        raise CheckpointError(f"{source}: incompatible with the model: " + "; ".join(parts))
    model.load_state_dict(state)


def weights_payload(kind: str, cfg, ds, model: torch.nn.Module, epoch: int) -> dict:
    """What every model checkpoint holds: kind, config, dataset facts, epoch and the weights."""
    return {
        "kind": kind,
        "config": cfg.to_json(),
        "dataset": ds.name,
        "n_items": ds.n_items,
        "n_attributes": ds.n_attributes,
        "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def weights_digest(state: dict) -> str:
    """SHA-256 of a state_dict's tensors (names, dtypes, shapes and bytes, in name order): the same
    weights give the same digest whatever file or config holds them. A pre-training records it for each
    ``pretrain-epoch-K.pt`` and a fine-tuning for the weights it started from, so a report can tell
    which run of a pre-training a fine-tuning used."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
