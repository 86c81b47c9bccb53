"""Safe checkpoints: written atomically, loaded with ``weights_only=True`` (no arbitrary unpickling).

A checkpoint is a plain dict of tensors, numbers and strings. The config travels with the weights as
a JSON string, so a checkpoint rebuilds its own model. Every reader goes through :func:`read`, which
checks the whole payload once (format, kind, settings, sizes, weights) and names the file in a
one-line :class:`~s3rec.errors.CheckpointError` for anything that is not a checkpoint of ours.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from pathlib import Path

import torch

from .errors import CheckpointError, ConfigError
from .fileio import atomic_path

FORMAT = "s3rec-checkpoint-v1"
# the kinds of checkpoint s3rec writes: what each holds
KINDS = {"finetune": "a fine-tuned model", "pretrain": "a pre-training"}


def save(path: str | Path, payload: dict) -> None:
    payload = {"format": FORMAT, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path: str | Path) -> dict:
    """The dict a checkpoint file holds, loaded weights-only: any file PyTorch cannot read that way
    (text, random bytes, an unrelated zip, a pickle of Python objects) is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    with open(path, "rb") as f:  # an unreadable file is the OSError it is
        head = f.read(1)
    if not head:
        raise CheckpointError(f"{path}: not a loadable checkpoint (the file is empty)")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the verdict below is what counts
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's readers fail in many ways (KeyError, IndexError, ...) on foreign bytes
        # a refused global, or a bare pickle (protocol >= 2 starts with 0x80), holds Python objects
        # (unpickling them could run code): say so, and never relay PyTorch's advice to load it unsafely
        objects = isinstance(e, pickle.UnpicklingError) and "global" in str(e).lower() or head == b"\x80"
        why = "it holds Python objects that cannot be loaded safely" if objects else "not a file saved by PyTorch"
        raise CheckpointError(f"{path}: not a loadable checkpoint ({why})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


def _is_int(v, least: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


def is_state_dict(v) -> bool:
    """Whether ``v`` is a non-empty dict of named tensors (a model's ``state_dict``)."""
    return isinstance(v, dict) and bool(v) and all(isinstance(k, str) and torch.is_tensor(t) for k, t in v.items())


# the fields every checkpoint of ours holds: (name, check, what it must be)
FIELDS = (
    ("config", lambda v: isinstance(v, str), "the run's settings as JSON text"),
    ("dataset", lambda v: isinstance(v, str) and v != "", "a dataset name"),
    ("n_items", lambda v: _is_int(v, 1), "an integer >= 1"),
    ("n_attributes", lambda v: _is_int(v, 0), "an integer >= 0"),
    ("epoch", lambda v: _is_int(v, 0), "an integer >= 0"),
    ("model", is_state_dict, "a dict of named tensors (the weights)"),
)


def _shown(v) -> str:
    text = repr(v)
    return f"{type(v).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def payload_problem(obj: dict, kinds) -> str | None:
    """What is wrong with a loaded checkpoint dict (None: nothing) for a reader of ``kinds``."""
    if obj.get("format") != FORMAT:
        return f"not an s3rec checkpoint (format {obj.get('format')!r}, expected {FORMAT!r})"
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        return f"unknown checkpoint kind {kind!r} (expected {' or '.join(map(repr, KINDS))})"
    if kind not in kinds:
        return f"{KINDS[kind]} checkpoint (kind {kind!r}), not {' or '.join(KINDS[k] for k in kinds)}"
    for name, ok, want in FIELDS:
        if name not in obj:
            return f"not a complete s3rec checkpoint: no {name!r} field"
        if not ok(obj[name]):
            return f"field {name!r} must be {want}, got {_shown(obj[name])}"
    return None


def read(path: str | Path, kinds=("finetune",), extra: tuple[str, ...] = ()) -> tuple:
    """A checkpoint file of one of ``kinds``, checked whole: ``(settings, payload)`` (see :func:`checked`)."""
    return checked(load(path), path, kinds, extra)


def checked(obj: dict, path, kinds=("finetune",), extra: tuple[str, ...] = ()) -> tuple:
    """``(settings, obj)`` for a loaded checkpoint dict of one of ``kinds``, or a one-line error naming
    ``path``: the settings its ``config`` holds (a TrainConfig or PretrainConfig, read for the CPU: the
    device to run on is the reader's choice). ``extra``: further fields that must be dicts
    (``optimizer``, ``rng`` to resume)."""
    from .config import PretrainConfig, TrainConfig, config_from_json

    problem = payload_problem(obj, kinds)
    missing = [k for k in extra if not isinstance(obj.get(k), dict)]
    if problem is None and missing:
        problem = f"not a complete training checkpoint: no {missing[0]!r} state"
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    try:
        cfg = config_from_json(obj["config"], PretrainConfig if obj["kind"] == "pretrain" else TrainConfig, device="cpu")
    except ConfigError as e:
        raise CheckpointError(f"{path}: its settings are not valid: {e}") from None
    return cfg, obj


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
