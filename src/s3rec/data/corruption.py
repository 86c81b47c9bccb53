"""S3-Rec pre-training instances and their random corruption, vectorised (docs/semantics.md, #pre-training).

Instances: for each user take the training part s[:-2], keep its last ``max_len`` items and make one
instance from every prefix of it. Each epoch visits the instances in a fresh random permutation,
``batch_size`` at a time, with fresh corruption:

- item masking: every position but the last is replaced by ``mask_id`` with probability ``mask_p``;
  the last position is always masked. Each masked position gets one negative item, uniform over
  the items not in the prefix (never padding or the mask id; ``sampler="original"`` reproduces the
  released code, which can draw the mask id);
- a segment: for a prefix of length m >= 2, a length uniform in {1..m//2} and a start uniform in
  {0..m-len} (both ends inclusive); a negative segment of the same length from a uniformly random
  span of the pool (all users' training parts concatenated; ``segment_pool="full"`` uses the full
  sequences as the released code does, leaking validation and test items). For m < 2 all three
  SP sequences are the prefix itself.

All sequences of a batch (the masked prefixes and the three SP sequences of every instance) are
packed into one bidirectional, block-diagonal layout, so the whole batch is one encoder pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .batches import SequenceTensors, draw_outside
from .packing import PRETRAIN_MASK_VALUE, Layout, make_layout, scatter_tokens

SEGMENT_POOLS = ("train", "full")


@dataclass
class Instances:
    """Every prefix of every user's (cut) training part: ``items[start : start + length]``."""

    start: torch.Tensor  # [N] flat index into SequenceTensors.items
    length: torch.Tensor  # [N] prefix length m (1..max_len)

    def __len__(self) -> int:
        return len(self.start)


def make_instances(st: SequenceTensors, max_len: int = 50, users: torch.Tensor | None = None) -> Instances:
    """The instances of every user, or of the given user rows only (limited training data)."""
    start, end = st.split_bounds("valid", max_len, users)  # the valid input is s[:-2]
    n = end - start
    owner = torch.repeat_interleave(torch.arange(len(n)), n)
    length = torch.arange(int(n.sum())) - (torch.cumsum(n, 0) - n)[owner] + 1
    return Instances(start[owner], length)


def segment_pool(st: SequenceTensors, which: str = "train", users: torch.Tensor | None = None) -> torch.Tensor:
    """All users' training parts s[:-2] (uncut), concatenated; ``"full"``: the whole sequences.
    ``users``: only these user rows' (limited training data)."""
    if which not in SEGMENT_POOLS:
        raise ValueError(f"unknown segment pool {which!r}; choose from {SEGMENT_POOLS}")
    lo, hi = (st.offsets[:-1], st.offsets[1:]) if users is None else (st.offsets[users], st.offsets[users + 1])
    if which == "train":
        hi = hi - 2
    n = hi - lo
    owner = torch.repeat_interleave(torch.arange(len(n)), n)
    idx = torch.arange(int(n.sum())) - (torch.cumsum(n, 0) - n)[owner] + lo[owner]
    return st.items[idx]


@dataclass
class PretrainBatch:
    layout: Layout
    items: torch.Tensor  # [R, P] packed input ids
    n_instances: int
    # the masked prefixes (present when AAP, MIP or MAP is on); their tokens come first in the layout
    main_tokens: int  # T: number of tokens of the masked prefixes
    masked: torch.Tensor | None = None  # [T] bool: MIP/MAP positions (AAP uses the others)
    targets: torch.Tensor | None = None  # [T] original item at each position
    negatives: torch.Tensor | None = None  # [n_masked] MIP negative of each masked position, in order
    # SP: slots of the last token of the segment-masked, positive and negative sequences
    sp_last: torch.Tensor | None = None  # [3, B]
    # the segment draws, kept for inspection and tests: length (0 when m < 2), start, negative start
    segments: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def main_rows(self) -> int:
        """Rows holding the masked prefixes; the SP sequences fill the rows after them."""
        return self.layout.group_rows[0] if self.main_tokens else 0

    def to(self, device) -> "PretrainBatch":
        if str(device) == "cpu":
            return self
        opt = lambda t: None if t is None else t.to(device)  # noqa: E731
        return PretrainBatch(self.layout.to(device), self.items.to(device), self.n_instances, self.main_tokens,
                             opt(self.masked), opt(self.targets), opt(self.negatives), opt(self.sp_last), self.segments)


def _uniform_below(n: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Integers uniform in {0, ..., n-1}, elementwise (n >= 1)."""
    u = torch.rand(n.shape, generator=gen, dtype=torch.float64)
    return torch.minimum((u * n).long(), n - 1)


def pretrain_batch(
    st: SequenceTensors,
    inst: Instances,
    idx: torch.Tensor,
    pool: torch.Tensor,
    gen: torch.Generator,
    mask_p: float = 0.2,
    sampler: str = "exclude-mask",
    with_items: bool = True,
    with_segments: bool = True,
    max_len: int = 50,
    packed: bool = True,
    causal: bool = False,
) -> PretrainBatch:
    """Corrupt the instances ``idx`` and pack everything the requested objectives need.

    ``causal=True`` gives every sequence a causal (left-to-right) mask instead of S3-Rec's
    bidirectional one: the objectives applied to a unidirectional encoder (the paper's Fig. 3)."""
    mask_id = st.n_items + 1
    start, m = inst.start[idx], inst.length[idx]
    B = len(idx)
    seq = torch.repeat_interleave(torch.arange(B), m)  # [T] instance of each token
    pos = torch.arange(len(seq)) - (torch.cumsum(m, 0) - m)[seq]  # [T] index inside the prefix
    items = st.items[start[seq] + pos]  # [T] the prefix tokens
    lengths, values = [], []
    out = {}
    if with_items:
        last = pos == m[seq] - 1
        masked = (torch.rand(len(seq), generator=gen) < mask_p) | last
        keys = torch.unique(seq * (st.n_items + 2) + items)
        negatives = draw_outside(keys, seq[masked], st.n_items, gen, sampler)  # outside the prefix
        lengths.append(m)
        values.append(torch.where(masked, mask_id, items))
        out.update(masked=masked, targets=items, negatives=negatives)
    if with_segments:
        two = m >= 2
        seg_len = torch.where(two, 1 + _uniform_below((m // 2).clamp(min=1), gen), 0)  # {1..m//2}
        seg_start = _uniform_below(m - seg_len + 1, gen)  # {0..m-len}
        neg_start = _uniform_below(len(pool) - seg_len + 1, gen)  # any span of the pool
        off = pos - seg_start[seq]
        in_seg = (off >= 0) & (off < seg_len[seq])
        single = ~two[seq]  # m < 2: all three sequences are the prefix itself
        neg_items = pool[(neg_start[seq] + off).clamp(0, len(pool) - 1)]
        masked_seg = torch.where(in_seg, mask_id, items)
        pos_seg = torch.where(in_seg | single, items, mask_id)
        neg_seg = torch.where(single, items, torch.where(in_seg, neg_items, mask_id))
        lengths += [m, m, m]
        values += [masked_seg, pos_seg, neg_seg]
        out["segments"] = (seg_len, seg_start, neg_start)
    # the masked prefixes and the SP sequences are packed in separate rows (see S3RecPretrain.losses)
    sizes = [B] * len(lengths)
    groups = [sizes[0], sum(sizes[1:])] if with_items and with_segments else [sum(sizes)]
    layout = make_layout(torch.cat(lengths), max_len, causal=causal, mask_value=PRETRAIN_MASK_VALUE, packed=packed,
                         group_sizes=groups)
    packed_items = scatter_tokens(layout, torch.cat(values))
    T = len(seq) if with_items else 0
    sp_last = None
    if with_segments:
        k = 1 if with_items else 0
        sp_last = layout.last_slot.view(-1, B)[k : k + 3]  # [3, B]
    return PretrainBatch(layout, packed_items, B, T, sp_last=sp_last, **out)
