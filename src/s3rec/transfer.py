"""Weight transfer from a pre-training to a fine-tuning: read a pre-training, pick the weights a model
takes from it, check them, load them.

Two layouts of pre-trained weights exist (both our ``pretrain-epoch-K.pt`` and the authors' bare
state_dicts are read by :func:`read_pretrained`):

- S3-Rec's own pre-training (:class:`~s3rec.models.s3rec.S3RecPretrain`, the authors' key names):
  the encoder part (:data:`ENCODER_PREFIXES`: embeddings, LayerNorm, encoder) is what fine-tuning
  takes; SASRec (``init_from = "encoder"``) loads it whole, every other model its item embeddings.
- A pre-trained backbone (:class:`~s3rec.models.heads.BackbonePretrain`, ``backbone = NAME``, the
  paper's Fig. 3): the registered model's own weights under :data:`BACKBONE_PREFIX`. Fine-tuned as
  that same model it loads them all, strictly, and the encoder shape must match
  (:data:`~s3rec.models.encoder.ENCODER_SHAPE`); any other model takes its item embeddings.

The ``--init`` file is read once (:func:`read_init`): the weights to load and the digest of the whole
pre-trained model (what its pre-training recorded for that epoch) travel together as
:class:`InitWeights`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint
from .errors import CheckpointError
from .models.encoder import ENCODER_SHAPE

# the state_dict entries of an S3-Rec pre-training that fine-tuning loads: embeddings, LayerNorm and encoder
ENCODER_PREFIXES = ("item_embeddings.", "position_embeddings.", "LayerNorm.", "item_encoder.")
# where a BackbonePretrain keeps its backbone's weights (its ``backbone`` attribute)
BACKBONE_PREFIX = "backbone."


@dataclass(frozen=True)
class InitWeights:
    """Weights to fine-tune from, read once from ``path``: ``state`` (what the model loads, see
    :func:`init_for_finetuning`) and ``digest`` (:func:`pretrained_digest` of the whole file's model)."""

    state: dict
    digest: str
    path: str


def read_pretrained(path: str | Path) -> tuple[dict, dict]:
    """A pre-trained state_dict from our checkpoint (a pre-training or a fine-tuning, checked whole by
    :func:`s3rec.checkpoint.read`) or the authors' plain layout; returns ``(state_dict, facts)``.
    Loaded with ``weights_only=True``; anything else is an error."""
    obj = checkpoint.load(path)
    if "format" in obj:
        _, obj = checkpoint.checked(obj, path, tuple(checkpoint.KINDS))
        state, facts = obj["model"], {"kind": obj["kind"], "dataset": obj["dataset"], "epoch": obj["epoch"],
                                      "config": obj["config"]}
    elif "item_embeddings.weight" in obj:  # the released code saves a bare state_dict
        if not checkpoint.is_state_dict(obj):
            raise CheckpointError(f"{path}: the state_dict holds non-tensor entries")
        state, facts = obj, {"kind": "authors", "dataset": None, "epoch": None}
    else:
        raise CheckpointError(f"{path}: neither an s3rec checkpoint nor an S3-Rec state_dict (no item_embeddings.weight)")
    return state, facts


def pretrained_digest(path: str | Path) -> str:
    """:func:`checkpoint.weights_digest` of the whole pre-trained model in ``path`` (the digest its
    pre-training recorded for that epoch in ``metrics.jsonl``)."""
    return checkpoint.weights_digest(read_pretrained(path)[0])


def encoder_state(state: dict) -> dict:
    """The part of an S3-Rec pre-training state_dict that fine-tuning loads."""
    return {k: v for k, v in state.items() if k.startswith(ENCODER_PREFIXES)}


def backbone_state(state: dict) -> dict:
    """The backbone's own weights, still under :data:`BACKBONE_PREFIX` (empty for S3-Rec's layout)."""
    return {k: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}


def read_init(path: str | Path, ds, cfg=None) -> InitWeights:
    """Read ``path`` once: the weights to fine-tune from (:func:`init_for_finetuning`) and their digest."""
    state, facts = read_pretrained(path)
    return InitWeights(_finetuning_weights(state, facts, path, ds, cfg), checkpoint.weights_digest(state), str(path))


def init_for_finetuning(path: str | Path, ds, cfg=None) -> dict:
    """The weights to fine-tune from, checked against the dataset (and against ``cfg``, the
    fine-tuning TrainConfig, for a pre-trained backbone).

    - An S3-Rec pre-training (ours or the authors'): its embeddings, LayerNorm and encoder (SASRec
      loads them all; other models take the item embeddings).
    - A pre-trained backbone fine-tuned as that same model: all its weights, under
      :data:`BACKBONE_PREFIX`, which makes :func:`load_pretrained` load them strictly; the encoder
      shape must match (:data:`~s3rec.models.encoder.ENCODER_SHAPE`). Fine-tuned as any other model: its item
      embeddings only.
    """
    return read_init(path, ds, cfg).state


def _finetuning_weights(state: dict, facts: dict, path, ds, cfg) -> dict:
    enc = backbone_state(state)
    if enc:
        table = BACKBONE_PREFIX + "item_embeddings.weight"
        if table not in enc:
            raise CheckpointError(f"{path}: the pre-trained backbone has no item embedding table")
        saved = json.loads(facts.get("config") or "{}")
        name = saved.get("backbone", "")
        if cfg is not None and name == cfg.model:
            diff = [f"{k} {saved.get(k)} vs {getattr(cfg, k)}" for k in ENCODER_SHAPE if saved.get(k) != getattr(cfg, k)]
            if diff:
                raise CheckpointError(f"{path}: pre-trained {name} does not match the fine-tuning settings: {', '.join(diff)}")
        else:
            enc = {"item_embeddings.weight": enc[table]}
    else:
        enc = encoder_state(state)
        if "item_embeddings.weight" not in enc or not any(k.startswith("item_encoder.") for k in enc):
            raise CheckpointError(f"{path}: holds no encoder weights to fine-tune from")
    rows = enc[next(k for k in enc if k.endswith("item_embeddings.weight"))].shape[0]
    if rows != ds.n_items + 2:
        raise CheckpointError(
            f"{path}: item table has {rows} rows, but {ds.name} needs {ds.n_items + 2} (n_items + 2): "
            "a checkpoint from another dataset?"
        )
    return enc


def load_pretrained(model: torch.nn.Module, state: dict, source: str) -> None:
    """Start ``model`` from pre-trained weights (as :func:`init_for_finetuning` gives them).

    A pre-training of this model itself (keys under :data:`BACKBONE_PREFIX`) loads whole and
    strictly; a model whose ``init_from`` is ``"encoder"`` (SASRec) loads the whole S3-Rec encoder,
    every tensor checked; any other takes only the item embedding table: the paper's treatment of
    the models whose architecture is not the encoder's (Caser, AutoInt in Fig. 3)."""
    if any(k.startswith(BACKBONE_PREFIX) for k in state):
        n = len(BACKBONE_PREFIX)
        checkpoint.load_model_state(model, {k[n:]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}, source)
        return
    if getattr(model, "init_from", "item_embeddings") == "encoder":
        checkpoint.load_model_state(model, state, source)
        return
    own = model.state_dict().get("item_embeddings.weight")
    given = state.get("item_embeddings.weight")
    if own is None:
        raise CheckpointError(f"{source}: model {type(model).__name__} has no item embedding table to initialise")
    if given is None or given.shape != own.shape:
        shape = None if given is None else tuple(given.shape)
        raise CheckpointError(f"{source}: item embeddings {shape} do not fit {type(model).__name__}'s {tuple(own.shape)}")
    model.load_state_dict({"item_embeddings.weight": given}, strict=False)
