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
    """Softmax cross-entropy over all items 1..n_items (padding and mask excluded), mean over tokens:
    ``F.cross_entropy(h @ table[1:n_items+1].T, targets - 1)`` (:func:`linear_cross_entropy`)."""
    return linear_cross_entropy(h, table[1 : n_items + 1], targets - 1)


def linear_cross_entropy(h: torch.Tensor, weights: torch.Tensor, targets: torch.Tensor,
                         bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.cross_entropy(h @ weights.T + bias, targets)``, mean over the rows of ``h [T, D]``;
    ``weights [n, D]``, ``bias [n]`` or None, ``targets [T]`` in 0..n-1.

    Trained outside autocast it runs as :class:`LinearCrossEntropy` (the same loss and gradients up
    to float rounding, a training step ~1.3x faster on a CPU: ``benchmarks/ce_loss.py``); otherwise
    (evaluation, or autocast's own precision rules) as the plain expression."""
    needs_grad = h.requires_grad or weights.requires_grad or (bias is not None and bias.requires_grad)
    if needs_grad and not _autocast_on(h.device.type):
        return LinearCrossEntropy.apply(h, weights, targets, bias)
    logits = h @ weights.T
    return F.cross_entropy(logits if bias is None else logits + bias, targets)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


class LinearCrossEntropy(torch.autograd.Function):
    """``F.cross_entropy(h @ weights.T + bias, targets)`` (mean) with fewer passes over the ``[T, n]``
    logits (use :func:`linear_cross_entropy`).

    The forward keeps the logits and their log-sum-exp; the backward turns the logits into
    ``softmax - one_hot`` in place and multiplies them straight into the gradients, instead of
    materialising log-softmax, a zero-filled gradient and log-softmax's backward as separate ``[T, n]``
    tensors. On a CPU the rows are taken in blocks of about 2 MB of logits, so that each block's
    exponentials and products run while it is still in cache. Same memory as the plain loss (one
    ``[T, n]`` buffer kept for the backward); first-order gradients only, and one backward per
    forward (the backward consumes the kept logits: a second one through ``retain_graph`` raises
    torch's "modified by an inplace operation" error instead of computing wrong gradients)."""

    CACHE_ELEMENTS = 1 << 19  # logits per CPU block (2 MB of float32)

    @staticmethod
    def _block(n_rows: int, n_cols: int, device: torch.device) -> int:
        if device.type != "cpu":
            return max(n_rows, 1)
        return max(1, LinearCrossEntropy.CACHE_ELEMENTS // max(n_cols, 1))

    @staticmethod
    def forward(ctx, h: torch.Tensor, weights: torch.Tensor, targets: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        n_rows = len(h)
        logits = h.new_empty(n_rows, len(weights))
        lse = h.new_empty(n_rows)
        step = LinearCrossEntropy._block(n_rows, len(weights), h.device)
        for i in range(0, n_rows, step):
            block = logits[i : i + step]
            if bias is None:
                torch.mm(h[i : i + step], weights.T, out=block)
            else:
                torch.addmm(bias, h[i : i + step], weights.T, out=block)
            torch.logsumexp(block, 1, out=lse[i : i + step])
        loss = (lse - logits.gather(1, targets[:, None]).squeeze(1)).mean()
        ctx.save_for_backward(h, weights, targets, logits, lse)
        ctx.with_bias = bias is not None
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        h, weights, targets, logits, lse = ctx.saved_tensors
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        want_b = ctx.with_bias and ctx.needs_input_grad[3]
        n_rows = len(h)
        grad_h = torch.empty_like(h) if want_h else None
        grad_w = torch.zeros_like(weights) if want_w else None
        grad_b = h.new_zeros(len(weights)) if want_b else None
        step = LinearCrossEntropy._block(n_rows, len(weights), h.device)
        rows = torch.arange(min(step, n_rows), device=h.device)
        for i in range(0, n_rows, step):
            p = logits[i : i + step]  # the saved buffer is not needed again: overwritten in place
            p.sub_(lse[i : i + step, None]).exp_()  # softmax
            p[rows[: len(p)], targets[i : i + step]] -= 1  # - one_hot
            if want_h:
                torch.mm(p, weights, out=grad_h[i : i + step])
            if want_w:
                grad_w.addmm_(p.T, h[i : i + step])
            if want_b:
                grad_b += p.sum(0)
        scale = grad / max(n_rows, 1)
        return (grad_h * scale if want_h else None, grad_w * scale if want_w else None, None,
                grad_b * scale if want_b else None)


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

