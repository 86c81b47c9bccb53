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


SAMPLED_LOSSES = ("bce", "bpr")


def sampled_loss(kind: str, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """A loss over (positive, negative) score pairs ``pos, neg [N]``, averaged over the N pairs.

    ``bce``: ``-log s(pos) - log(1 - s(neg))`` (SASRec, Caser, AutoInt). ``bpr``: ``-log s(pos - neg)``
    (Rendle et al., UAI 2009; HGN's and GRU4Rec's pairwise loss with one sampled negative).
    """
    if kind == "bce":
        return -(F.logsigmoid(pos) + F.logsigmoid(-neg)).mean()
    if kind == "bpr":
        return -F.logsigmoid(pos - neg).mean()
    raise ValueError(f"unknown sampled loss {kind!r}; choose from {SAMPLED_LOSSES}")
