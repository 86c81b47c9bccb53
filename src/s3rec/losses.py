"""Fine-tuning losses (pure functions of hidden states and the item table)."""

from __future__ import annotations

import math

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


def uniform_negatives(n: int, n_items: int, device=None) -> torch.Tensor:
    """``n`` item ids drawn uniformly (with replacement) from 1..n_items with torch's global RNG
    (which runs save and restore), shared by every position of a batch."""
    return torch.randint(1, n_items + 1, (n,), device=device)


def _shared_negative_logits(h: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor):
    """``(pos [T], neg [T, N])``: scores of each position's target and of the shared negatives, with a
    negative that equals the position's target (an accidental hit) set to -inf."""
    pos = (h * table[targets]).sum(-1)
    neg = h @ table[negatives].T
    return pos, neg.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))


def sampled_softmax_next_item(h: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                              n_items: int) -> torch.Tensor:
    """Sampled softmax cross-entropy: the target against ``negatives [N]`` drawn uniformly from the
    n_items items, with the log-probability correction ``+ log(n_items / N)`` on the negatives' logits,
    so that ``exp(pos) + (n_items / N) * sum(exp(neg))`` estimates the full softmax's normaliser
    (Bengio & Senecal 2008; Klenitskiy & Vasilev, RecSys 2023). Accidental hits are excluded. Mean
    over positions."""
    pos, neg = _shared_negative_logits(h, table, targets, negatives)
    logits = torch.cat([pos[:, None], neg + math.log(n_items / len(negatives))], 1)
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()


def gbce_beta(n_negatives: int, n_items: int, t: float) -> float:
    """gBCE's exponent ``beta = alpha * (t * (1 - 1/alpha) + 1/alpha)``, ``alpha = N / (n_items - 1)``
    (the negative sampling rate): t = 0 gives beta = 1 (plain BCE), t = 1 the fully calibrated beta = alpha."""
    alpha = n_negatives / max(n_items - 1, 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce_next_item(h: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                   n_items: int, t: float) -> torch.Tensor:
    """Generalised BCE (gSASRec; Petrov & Macdonald, RecSys 2023): binary cross-entropy over the target
    and ``negatives [N]`` with the positive's probability raised to ``beta`` (:func:`gbce_beta`), which
    counters the overconfidence that negative sampling causes. ``-(beta * log s(pos) + sum log(1 - s(neg)))``
    divided by ``N + 1`` (the mean over the N + 1 logits, as the authors compute it), mean over positions.
    Accidental hits are excluded."""
    pos, neg = _shared_negative_logits(h, table, targets, negatives)
    beta = gbce_beta(len(negatives), n_items, t)
    per_position = -(beta * F.logsigmoid(pos) + F.logsigmoid(-neg).sum(1))
    return (per_position / (len(negatives) + 1)).mean()

