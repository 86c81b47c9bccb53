"""Fine-tuning losses (pure functions of hidden states and the item table)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_next_item(h: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """The paper's loss: ``-log s(<h, e_pos>) - log(1 - s(<h, e_neg>))`` averaged over tokens.

    ``h [T, D]`` hidden states of the real (non-pad) positions, ``targets``/``negatives [T]``.
    (The released code adds 1e-24 inside the logs; log-sigmoid is the same up to float rounding and
    never returns -inf.)
    """
    pos = (h * table[targets]).sum(-1)
    neg = (h * table[negatives]).sum(-1)
    return -(F.logsigmoid(pos) + F.logsigmoid(-neg)).mean()


def ce_next_item(h: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, n_items: int) -> torch.Tensor:
    """Softmax cross-entropy over all items 1..n_items (padding and mask excluded), mean over tokens."""
    logits = h @ table[1 : n_items + 1].T  # [T, n_items]
    return F.cross_entropy(logits, targets - 1)
