"""Vectorised fine-tuning and evaluation batches over the CSR store (all torch, no Python loops
over tokens).

Fine-tuning: one instance per user, input s[:-3] (last ``max_len`` items) predicting s[1:-2] at
every position, one negative per position drawn uniformly from the items outside the user's whole
sequence. Users are visited in a random order per epoch, ``batch_size`` at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .packing import FINETUNE_MASK_VALUE, Layout, make_layout, scatter_tokens
from ..errors import S3RecError
from .store import SPLIT_HOLDOUT, Dataset

NEGATIVE_SAMPLERS = ("exclude-mask", "original")


class SequenceTensors:
    """The dataset's CSR arrays as torch tensors, plus a sorted key table for membership tests."""

    def __init__(self, ds: Dataset):
        self.n_items = ds.n_items
        self.offsets = torch.from_numpy(ds.offsets)
        self.items = torch.from_numpy(ds.items)
        users = torch.repeat_interleave(torch.arange(ds.n_users), torch.from_numpy(ds.lengths))
        # keys of (user, item) pairs: user * (n_items + 2) + item, sorted and unique
        self.user_item_keys = torch.unique(users * (ds.n_items + 2) + self.items)

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Whether each ``items[i]`` is anywhere in the whole sequence of ``users[i]``."""
        keys = users * (self.n_items + 2) + items
        pos = torch.searchsorted(self.user_item_keys, keys).clamp_(max=len(self.user_item_keys) - 1)
        return self.user_item_keys[pos] == keys

    def split_bounds(self, split: str, max_len: int, users: torch.Tensor | None = None):
        """[start, end) into ``items`` of each user's input for the split, cut to the last max_len."""
        lo, hi = (self.offsets[:-1], self.offsets[1:]) if users is None else (self.offsets[users], self.offsets[users + 1])
        end = hi - SPLIT_HOLDOUT[split]
        return torch.maximum(lo, end - max_len), end


def draw_outside(
    keys: torch.Tensor, owners: torch.Tensor, n_items: int, gen: torch.Generator, sampler: str = "exclude-mask",
    max_rounds: int = 1000,
) -> torch.Tensor:
    """One item per entry of ``owners``, uniform over the items its owner does not hold (batched
    rejection sampling). ``keys``: sorted ``owner * (n_items + 2) + item`` of every held item.

    Draws come from 1..n_items; ``sampler="original"`` reproduces the released code, which draws
    from 1..n_items + 1 and so can return the mask id.
    """
    if sampler not in NEGATIVE_SAMPLERS:
        raise ValueError(f"unknown negative sampler {sampler!r}; choose from {NEGATIVE_SAMPLERS}")
    high = n_items + (2 if sampler == "original" else 1)
    base = owners * (n_items + 2)
    out = torch.randint(1, high, base.shape, generator=gen)

    def inside(idx):
        k = base[idx] + out[idx]
        pos = torch.searchsorted(keys, k).clamp_(max=len(keys) - 1)
        return keys[pos] == k

    bad = inside(slice(None))
    for _ in range(max_rounds):
        if not bad.any():
            return out
        idx = bad.nonzero().squeeze(1)
        out[idx] = torch.randint(1, high, idx.shape, generator=gen)
        bad[idx] = inside(idx)
    raise S3RecError("could not draw a negative item outside a sequence in 1000 rounds: "
                     "some sequence contains (nearly) every item of the dataset")


def sample_negatives(
    st: SequenceTensors, users: torch.Tensor, gen: torch.Generator, sampler: str = "exclude-mask"
) -> torch.Tensor:
    """One negative per entry of ``users``: uniform over items not in that user's whole sequence."""
    return draw_outside(st.user_item_keys, users, st.n_items, gen, sampler)


@dataclass
class SequenceBatch:
    """Packed input sequences plus per-token targets and negatives (fine-tuning) or nothing (eval)."""

    layout: Layout
    items: torch.Tensor  # [R, P] item ids (0 on empty slots)
    users: torch.Tensor  # [B] user rows
    targets: torch.Tensor | None = None  # [T] next item at every token
    negatives: torch.Tensor | None = None  # [T]
    split: str | None = None  # "valid" / "test" for evaluation inputs; None for training or a given history

    def to(self, device) -> "SequenceBatch":
        if str(device) == "cpu":
            return self
        opt = lambda t: None if t is None else t.to(device)  # noqa: E731
        return SequenceBatch(self.layout.to(device), self.items.to(device), self.users.to(device),
                             opt(self.targets), opt(self.negatives), self.split)


def _tokens(start: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Flat ``items`` index of every token, in the layout's sequence-major order."""
    return start[layout.token_seq] + layout.token_pos


def finetune_batch(
    st: SequenceTensors,
    users: torch.Tensor,
    gen: torch.Generator,
    max_len: int = 50,
    sampler: str = "exclude-mask",
    packed: bool = True,
    causal: bool = True,
    share: tuple[int, int] = (0, 1),
) -> SequenceBatch:
    """The fine-tuning batch of the given users (each must have a non-empty training input).

    ``share = (rank, size)``: only the users ``rank, rank + size, ...`` of them (one rank's share
    under distributed fine-tuning), with the negatives that the whole batch's tokens draw, so that the
    ranks' shares together hold exactly the whole batch's (every rank draws them all from the same
    ``gen``)."""
    start, end = st.split_bounds("train", max_len, users)
    rank, size = share
    negatives = None
    if size > 1:
        seq = torch.repeat_interleave(torch.arange(len(users)), end - start)  # the whole batch's tokens
        negatives = sample_negatives(st, users[seq], gen, sampler)[seq % size == rank]
        keep = torch.arange(rank, len(users), size)
        users, start, end = users[keep], start[keep], end[keep]
    layout = make_layout(end - start, max_len, causal, FINETUNE_MASK_VALUE, packed=packed)
    src = _tokens(start, layout)
    items = scatter_tokens(layout, st.items[src])
    targets = st.items[src + 1]
    if negatives is None:
        negatives = sample_negatives(st, users[layout.token_seq], gen, sampler)
    return SequenceBatch(layout, items, users, targets, negatives)


def eval_batch(
    st: SequenceTensors, users: torch.Tensor, split: str, max_len: int = 50, packed: bool = True, causal: bool = True
) -> SequenceBatch:
    """Inputs for scoring the validation (s[:-2]) or test (s[:-1]) target of the given users."""
    start, end = st.split_bounds(split, max_len, users)
    layout = make_layout(end - start, max_len, causal, FINETUNE_MASK_VALUE, packed=packed)
    items = scatter_tokens(layout, st.items[_tokens(start, layout)])
    return SequenceBatch(layout, items, users, split=split)
