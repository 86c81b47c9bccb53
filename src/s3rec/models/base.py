"""The contract between a model and the drivers (``train.py``, ``evaluate.py``), and shared helpers.

Every registered model is a :class:`Model`:

- class attributes: ``causal`` (its state at a position depends only on the items up to it; its
  batches get causal masks), ``packed_ok`` (it reads packed rows with block-diagonal masks; the
  others are given one right-aligned row per sequence, ``packed=False``), ``trainable`` (False:
  fitted from the data at build time, no training loop: PopRec), ``uses_users`` (it needs the user
  row: ``batch.users`` must be rows of the dataset it was built on), ``losses`` (the values of the
  ``loss`` setting it supports), ``defaults`` (its paper's values of shared settings such as ``lr``
  and dropout) and ``Params`` (a frozen dataclass of its own hyper-parameters, paper defaults);
- ``cfg``: an :class:`EncoderConfig` (at least ``hidden_size`` and ``max_len`` are meaningful);
- ``loss(batch) -> Tensor``: the scalar training loss of a fine-tuning batch
  (:func:`s3rec.data.batches.finetune_batch`: per user the input s[:-3] cut to ``max_len``, the
  next item s[1:-2] at every position and one negative per position);
- ``user_states(batch) -> [B, S]``: one state per sequence of an evaluation batch, from its history
  only (the batch holds no targets);
- ``score(states, items=None)``: ``[B, C]`` scores of candidate ids ``items [B, C]``, or
  ``[B, n_items + 2]`` for every row when ``items`` is None (row 0 is padding and row
  ``n_items + 1`` the mask id: callers exclude them);
- causal models also give ``position_states(batch) -> [T, S]``: the state after each token
  (sequence-major token order), so that ``user_states`` is its value at each sequence's last token.

Models are built by ``cls.from_config(data, cfg)`` from a :class:`ModelData` (what they may need
from the dataset: sizes, the item attributes, popularity) and a ``TrainConfig``. Data-derived
tensors are buffers, so a checkpoint rebuilds its model without the dataset
(:meth:`ModelData.from_state`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.batches import SequenceBatch
from ..errors import ConfigError
from ..losses import cross_entropy, linear_cross_entropy, sampled_loss


@dataclass(frozen=True)
class NoParams:
    """A model without hyper-parameters of its own."""

    def checks(self) -> list[tuple[bool, str]]:
        return []


@dataclass
class ModelData:
    """What a model may take from its dataset when it is built.

    ``attr_offsets [n_items + 3]`` / ``attr_ids [nnz]``: each item's distinct attribute ids in CSR form,
    indexed by item id (padding 0 and the mask id have none; duplicates in the source file are
    dropped). ``popularity [n_items + 2]``: interactions per item in the training parts s[:-2];
    ``popularity_history [n_items + 2]``: the same over s[:-1] (what precedes every test target).
    """

    n_users: int
    n_items: int
    n_attributes: int
    attr_offsets: torch.Tensor
    attr_ids: torch.Tensor
    popularity: torch.Tensor
    popularity_history: torch.Tensor

    @classmethod
    def from_dataset(cls, ds) -> "ModelData":
        rows = np.repeat(np.arange(ds.n_items + 2), np.diff(ds.attr_offsets))
        keys = np.unique(rows.astype(np.int64) * (ds.n_attributes + 1) + ds.attributes)  # sorted, distinct
        item, attr = keys // (ds.n_attributes + 1), keys % (ds.n_attributes + 1)
        offsets = np.zeros(ds.n_items + 3, dtype=np.int64)
        np.cumsum(np.bincount(item, minlength=ds.n_items + 2), out=offsets[1:])
        pos = np.arange(len(ds.items)) - np.repeat(ds.offsets[:-1], ds.lengths)
        train = pos < np.repeat(ds.lengths - 2, ds.lengths)  # the training part s[:-2] of every user
        pop = np.bincount(ds.items[train], minlength=ds.n_items + 2).astype(np.float32)
        history = pos < np.repeat(ds.lengths - 1, ds.lengths)  # s[:-1]
        pop_history = np.bincount(ds.items[history], minlength=ds.n_items + 2).astype(np.float32)
        return cls(ds.n_users, ds.n_items, ds.n_attributes, torch.from_numpy(offsets),
                   torch.from_numpy(attr.astype(np.int64)), torch.from_numpy(pop), torch.from_numpy(pop_history))

    @classmethod
    def from_state(cls, n_items: int, n_attributes: int, state: dict) -> "ModelData":
        """The sizes and data a checkpoint's model was built with, read back from its state_dict."""
        n_users = int(state["user_embeddings.weight"].shape[0]) if "user_embeddings.weight" in state else 0
        offsets = state.get("attr_offsets", torch.zeros(n_items + 3, dtype=torch.long))
        ids = state.get("attr_ids", torch.zeros(0, dtype=torch.long))
        pop = state.get("popularity", torch.zeros(n_items + 2))
        return cls(n_users, n_items, n_attributes, offsets, ids, pop, state.get("popularity_history", pop))


class Model(nn.Module):
    """Base class of the registered models (see the module docstring for the contract)."""

    causal: bool = True
    packed_ok: bool = False
    trainable: bool = True
    uses_users: bool = False
    decoupled_weight_decay: bool = False  # True: AdamW on the matrices (BERT's optimiser), else Adam + L2
    # what it takes from an S3-Rec pre-training (``--init``, :func:`s3rec.transfer.load_pretrained`):
    # "item_embeddings" (the paper's Fig. 3 treatment of Caser, AutoInt, ...) or "encoder" (SASRec: all of it)
    init_from: str = "item_embeddings"
    losses: tuple[str, ...] = ("bce", "bpr", "ce")
    defaults: dict = {}
    Params = NoParams

    @classmethod
    def from_config(cls, data: ModelData, cfg) -> "Model":
        return cls(data, cfg.encoder(), cfg.params(), cfg.loss)

    def setup(self, data: ModelData, cfg, params, loss: str) -> None:
        """The common start of a model's ``__init__`` (after ``nn.Module.__init__``): check that the
        model supports ``loss`` and keep the settings (``cfg``, ``params``, ``loss_kind``, ``n_items``)."""
        check_loss(type(self), loss)
        self.cfg = cfg
        self.params = params
        self.loss_kind = loss
        self.n_items = data.n_items

    def loss(self, batch: SequenceBatch) -> torch.Tensor:
        raise NotImplementedError

    def user_states(self, batch: SequenceBatch) -> torch.Tensor:
        raise NotImplementedError

    def score(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def output_table(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """``(table [n_items + 2, S], bias [n_items + 2] or None)`` when :meth:`score` is
        :func:`dot_scores` over them, so that the "ce" loss can run fused
        (:func:`s3rec.losses.linear_cross_entropy`); None for any other scoring."""
        return None

    def full_softmax_loss(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Softmax cross-entropy of ``targets [N]`` (ids 1..n_items) over every item, mean over the N."""
        out = self.output_table()
        if out is None:
            return cross_entropy(self.score(states, None)[:, 1 : self.n_items + 1], targets - 1)
        table, bias = out
        items = slice(1, self.n_items + 1)
        return linear_cross_entropy(states, table[items], targets - 1, None if bias is None else bias[items])

    def next_item_loss(self, states: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                       kind: str) -> torch.Tensor:
        """The loss of predicting ``targets [N]`` from ``states [N, S]``: "bce"/"bpr" against one
        ``negatives [N]`` each, "ce" as softmax over all items 1..n_items. Mean over the N."""
        if kind == "ce":
            return self.full_softmax_loss(states, targets)
        s = self.score(states, torch.stack([targets, negatives], 1))  # [N, 2]
        return sampled_loss(kind, s[:, 0], s[:, 1])

    def window_loss(self, states: torch.Tensor, batch: SequenceBatch, T: int, kind: str) -> torch.Tensor:
        """Caser's and HGN's instances: the state after each token ``states [N, S]`` predicts the next
        ``T`` items of its sequence (fewer near the end), each against the batch's negative drawn for
        that target. Mean over the (state, target) pairs."""
        idx, valid = following(batch, T)  # [N, T]
        targets, negatives = batch.targets[idx], batch.negatives[idx]
        if kind == "ce":
            rows = valid.nonzero()[:, 0]
            return self.full_softmax_loss(states[rows], targets[valid])
        s = self.score(states, torch.cat([targets, negatives], 1))  # [N, 2T]
        return sampled_loss(kind, s[:, :T][valid], s[:, T:][valid])


class SlotStates:
    """``position_states`` and ``user_states`` for a model whose ``encode(batch)`` gives a hidden
    state for every slot of the batch's grid, ``[R, P, D]`` (list it before :class:`Model`)."""

    def position_states(self, batch: SequenceBatch) -> torch.Tensor:
        h = self.encode(batch)
        return h.reshape(-1, h.shape[-1])[batch.layout.token_slot]

    def user_states(self, batch: SequenceBatch) -> torch.Tensor:
        h = self.encode(batch)
        return h.reshape(-1, h.shape[-1])[batch.layout.last_slot]


def check_loss(cls, loss: str) -> None:
    if loss not in cls.losses:
        raise ConfigError(f"model {cls.__name__} supports loss {', '.join(cls.losses)}, not {loss!r}")


# ---- scoring helpers -------------------------------------------------------------------------


def dot_scores(states: torch.Tensor, table: torch.Tensor, items: torch.Tensor | None,
               bias: torch.Tensor | None = None) -> torch.Tensor:
    """``<state, table[i]> (+ bias[i])`` for candidate ids ``items [B, C]`` or for every row.

    For every row, the item block 1..n_items is one product with ``table[1:n_items + 1]`` (the
    padding and mask columns apart), the way evaluation always computed it, so full-protocol scores
    are bit-identical to it.
    """
    if items is not None:
        out = torch.einsum("ucd,ud->uc", table[items], states)
        return out if bias is None else out + bias[items]
    n = table.shape[0] - 2
    out = states.new_empty(states.shape[0], n + 2)
    out[:, 1 : n + 1] = states @ table[1 : n + 1].T
    out[:, 0] = states @ table[0]
    out[:, n + 1] = states @ table[n + 1]
    return out if bias is None else out + bias


# ---- token layouts ---------------------------------------------------------------------------


def token_items(batch: SequenceBatch) -> torch.Tensor:
    """The item id of every token ``[T]``, sequence-major (whatever the batch's layout)."""
    return batch.items.reshape(-1)[batch.layout.token_slot]


def last_tokens(batch: SequenceBatch) -> torch.Tensor:
    """Index (into the token order) of each sequence's last token ``[B]``."""
    return torch.cumsum(batch.layout.lengths, 0) - 1


def to_grid(batch: SequenceBatch, values: torch.Tensor, width: int, right: bool = True, fill: int = 0) -> torch.Tensor:
    """Per-token ``values [T]`` as one row per sequence ``[B, width]``: right-aligned (left-padded with
    ``fill``, the last token in the last column) or, with ``right=False``, left-aligned."""
    lay = batch.layout
    col = lay.token_pos + (width - lay.lengths[lay.token_seq] if right else 0)
    grid = values.new_full((len(lay.lengths), width), fill)
    grid[lay.token_seq, col] = values
    return grid


def windows(batch: SequenceBatch, L: int) -> torch.Tensor:
    """The ``L`` most recent items up to and including each token ``[T, L]`` (left-padded with 0)."""
    lay = batch.layout
    width = int(lay.lengths.max()) + L - 1 if len(lay.lengths) else L
    grid = to_grid(batch, token_items(batch), width)  # [B, width]
    col = width - lay.lengths[lay.token_seq] + lay.token_pos  # each token's column
    idx = col[:, None] + torch.arange(1 - L, 1, device=col.device)
    return grid[lay.token_seq[:, None], idx]


def following(batch: SequenceBatch, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each token, the token indices of itself and the next ``k - 1`` tokens of its sequence
    ``[T, k]`` (clamped) and whether each exists ``[T, k]``. With ``batch.targets`` this gives the
    next k items after each position."""
    lay = batch.layout
    step = torch.arange(k, device=lay.token_pos.device)
    valid = lay.token_pos[:, None] + step < lay.lengths[lay.token_seq][:, None]
    idx = (torch.arange(len(lay.token_pos), device=step.device)[:, None] + step).clamp_(max=max(len(lay.token_pos) - 1, 0))
    return idx, valid


# ---- models over windows of recent items ------------------------------------------------------

WINDOW_MAX = 256  # the largest window L (and number of next items T) a window model takes


class WindowModel(Model):
    """A model that reads only the last ``params.L`` items before each position (Caser, HGN): it
    defines ``window_states(win [N, L], users [N]) -> [N, S]`` and the output tables ``W2`` (``[n_items
    + 2, S]``) and ``b2`` (``[n_items + 2, 1]``); it is trained to predict the ``params.T`` items that
    follow each window (:meth:`Model.window_loss`)."""

    def position_states(self, batch: SequenceBatch) -> torch.Tensor:
        return self.window_states(windows(batch, self.params.L), batch.users[batch.layout.token_seq])

    def user_states(self, batch: SequenceBatch) -> torch.Tensor:
        return self.window_states(windows(batch, self.params.L)[last_tokens(batch)], batch.users)

    def score(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        return dot_scores(states, self.W2.weight, items, self.b2.weight.squeeze(1))

    def output_table(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.W2.weight, self.b2.weight.squeeze(1)

    def loss(self, batch: SequenceBatch) -> torch.Tensor:
        return self.window_loss(self.position_states(batch), batch, self.params.T, self.loss_kind)


# ---- item attributes -------------------------------------------------------------------------


class AttributeMixin:
    """Registers the item attributes (CSR) as buffers and pools attribute embeddings per item."""

    def register_attributes(self, data: ModelData) -> None:
        self.register_buffer("attr_offsets", data.attr_offsets.clone())
        self.register_buffer("attr_ids", data.attr_ids.clone())

    def mean_attributes(self, table: torch.Tensor) -> torch.Tensor:
        """``[n_items + 2, D]``: the mean of each item's distinct attribute rows of ``table``
        (zeros for an item without attributes)."""
        return F.embedding_bag(self.attr_ids, table, self.attr_offsets, mode="mean", include_last_offset=True)

    def attention_attributes(self, table: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``[n_items + 2, D]``: each item's attribute rows of ``table`` weighted by
        ``softmax_j(<w, a_j>)`` over its own attributes (FDSA's vanilla attention; zeros for none)."""
        n_bags = len(self.attr_offsets) - 1
        item = torch.repeat_interleave(torch.arange(n_bags, device=table.device), torch.diff(self.attr_offsets))
        a = table[self.attr_ids]  # [nnz, D]
        s = a @ w  # [nnz]
        # the largest score of each item, for a stable softmax (a constant: no gradient needed)
        top = torch.full((n_bags,), float("-inf"), device=table.device).scatter_reduce(0, item, s.detach(), "amax")
        e = torch.exp(s - top[item])
        total = torch.zeros(n_bags, device=table.device).index_add_(0, item, e)
        weights = e / total[item]
        return torch.zeros(n_bags, table.shape[1], device=table.device, dtype=table.dtype).index_add_(0, item, weights[:, None] * a)
