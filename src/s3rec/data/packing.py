"""Pack variable-length sequences into rows with block-diagonal attention: exact and cheap.

Padding a batch to ``max_len`` wastes most of the compute on these datasets (an average fine-tuning
input is ~6 items, a pre-training prefix ~7). Instead, several sequences share one row of length
``row_len``; the attention mask is block-diagonal (a token attends only within its own sequence,
and only to earlier tokens when causal), and every token keeps the position id it would have when
left-padded to ``max_len`` (the last item of a sequence is always at position ``max_len - 1``).
Each token's hidden state is then exactly what padding the sequence to ``max_len`` would give, so
summed losses and gradients are equal (proved in ``tests/test_packing.py``).

With ``packed=False`` every sequence gets its own row, right-aligned: the classic padded layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FINETUNE_MASK_VALUE = -10000.0  # the released code's additive mask value for causal fine-tuning
PRETRAIN_MASK_VALUE = -1e8  # and for bidirectional pre-training


@dataclass
class Layout:
    """Where each token of a batch of sequences sits in the packed ``[R, P]`` grid."""

    n_rows: int
    row_len: int
    lengths: torch.Tensor  # [B] tokens per sequence
    token_slot: torch.Tensor  # [T] flat slot (row * P + col) of each token, sequence-major
    token_seq: torch.Tensor  # [T] which sequence each token belongs to
    token_pos: torch.Tensor  # [T] index of the token inside its sequence (0-based)
    last_slot: torch.Tensor  # [B] flat slot of each sequence's last token
    positions: torch.Tensor  # [R, P] position ids (max_len - length + index; 0 on empty slots)
    mask: torch.Tensor  # [R, 1, P, P] additive attention mask
    group_rows: tuple[int, ...] = ()  # rows per group, when sequences were packed in groups

    def to(self, device) -> "Layout":
        if str(device) == "cpu":
            return self
        move = [t.to(device) for t in (self.lengths, self.token_slot, self.token_seq, self.token_pos,
                                       self.last_slot, self.positions, self.mask)]
        return Layout(self.n_rows, self.row_len, *move, self.group_rows)


def _assign_rows(lengths: list[int], row_len: int) -> tuple[list[int], list[int], int]:
    """Best-fit decreasing bin packing: (row, column offset) per sequence and the number of rows."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    free: list[list[int]] = [[] for _ in range(row_len + 1)]  # free[f] = rows with f free slots
    row = [0] * len(lengths)
    col = [0] * len(lengths)
    n_rows = 0
    for i in order:
        need = lengths[i]
        for f in range(need, row_len + 1):
            if free[f]:
                r = free[f].pop()
                break
        else:
            r, f = n_rows, row_len
            n_rows += 1
        row[i], col[i] = r, row_len - f
        free[f - need].append(r)
    return row, col, n_rows


def make_layout(
    lengths: torch.Tensor,
    max_len: int,
    causal: bool,
    mask_value: float,
    packed: bool = True,
    row_len: int | None = None,
    group_sizes: list[int] | None = None,
) -> Layout:
    """Lay out sequences of the given lengths (each 1..max_len) in rows of ``row_len`` slots.

    With ``group_sizes``, consecutive groups of sequences are packed into separate blocks of rows
    (group 0 first), so a model can treat the groups' rows differently.
    """
    row_len = row_len or max_len
    lengths = lengths.to(torch.long)
    B = len(lengths)
    group_rows: tuple[int, ...] = ()
    if packed:
        rows, cols, n_rows = [], [], 0
        sizes = group_sizes or [B]
        bounds = [0, *torch.cumsum(torch.tensor(sizes), 0).tolist()]
        all_lengths = lengths.tolist()
        for a, b in zip(bounds[:-1], bounds[1:]):
            r, c, n = _assign_rows(all_lengths[a:b], row_len)
            rows += [x + n_rows for x in r]
            cols += c
            n_rows += n
            group_rows += (n,)
        rows_t = torch.tensor(rows, dtype=torch.long)
        cols_t = torch.tensor(cols, dtype=torch.long)
    else:
        n_rows = B
        rows_t = torch.arange(B)
        cols_t = row_len - lengths
    starts = rows_t * row_len + cols_t  # [B] first slot of each sequence
    token_seq = torch.repeat_interleave(torch.arange(B), lengths)  # [T]
    seq_start = torch.cumsum(lengths, 0) - lengths
    token_pos = torch.arange(len(token_seq)) - seq_start[token_seq]
    token_slot = starts[token_seq] + token_pos
    last_slot = starts + lengths - 1

    seg = torch.full((n_rows * row_len,), -1, dtype=torch.long)  # sequence of each slot, -1 = empty
    seg[token_slot] = token_seq
    positions = torch.zeros(n_rows * row_len, dtype=torch.long)
    positions[token_slot] = max_len - lengths[token_seq] + token_pos
    seg = seg.view(n_rows, row_len)
    # Same sequence (empty slots count as one "sequence", so no softmax row is empty), and no
    # later key when causal.
    allowed = seg[:, :, None] == seg[:, None, :]  # [R, P(query), P(key)]
    if causal:
        allowed &= torch.ones(row_len, row_len, dtype=torch.bool).tril()
    mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill_(~allowed, mask_value).unsqueeze(1)
    if not packed and group_sizes:
        group_rows = tuple(group_sizes)
    return Layout(
        n_rows, row_len, lengths, token_slot, token_seq, token_pos, last_slot,
        positions.view(n_rows, row_len), mask, group_rows,
    )


def scatter_tokens(layout: Layout, values: torch.Tensor, fill: int = 0) -> torch.Tensor:
    """Place per-token values ``[T]`` into the ``[R, P]`` grid (empty slots get ``fill``)."""
    grid = torch.full((layout.n_rows * layout.row_len,), fill, dtype=values.dtype)
    grid[layout.token_slot] = values
    return grid.view(layout.n_rows, layout.row_len)
