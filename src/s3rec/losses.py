"""Fine-tuning losses (pure functions of hidden states and the item table).

Each is a mean over its terms (positions, or (state, target) pairs). Inside :func:`summed_terms` they
return the sum of their terms instead and record how many there were: distributed fine-tuning
(:func:`s3rec.train.train_epoch` under torchrun) adds the ranks' sums and counts, so that the summed
gradients are exactly those of the whole batch's mean, whatever each rank's share of the terms.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F


_counts: list[int] | None = None  # the term counts recorded inside summed_terms(), else None


@contextlib.contextmanager
def summed_terms():
    """Within: the losses return sums over their terms, not means; yields the list that receives each
    loss's number of terms (one entry per loss computed)."""
    global _counts
    outer, _counts = _counts, []
    try:
        yield _counts
    finally:
        _counts = outer


def batch_mean(terms: torch.Tensor) -> torch.Tensor:
    """``terms.mean()``; inside :func:`summed_terms` their sum, the count recorded."""
    if _counts is None:
        return terms.mean()
    _counts.append(len(terms))
    return terms.sum()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy`` (mean), or its sum inside :func:`summed_terms`."""
    if _counts is None:
        return F.cross_entropy(logits, targets)
    _counts.append(len(targets))
    return F.cross_entropy(logits, targets, reduction="sum")


def bce_next_item(h: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """The paper's loss: ``-log s(<h, e_pos>) - log(1 - s(<h, e_neg>))`` averaged over tokens.

    ``h [T, D]`` hidden states of the real (non-pad) positions, ``targets``/``negatives [T]``.
    (The released code adds 1e-24 inside the logs; log-sigmoid is the same up to float rounding and
    never returns -inf.)
    """
    pos = (h * table[targets]).sum(-1)
    neg = (h * table[negatives]).sum(-1)
    return batch_mean(-(F.logsigmoid(pos) + F.logsigmoid(-neg)))


def ce_next_item(h: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, n_items: int) -> torch.Tensor:
    """Softmax cross-entropy over all items 1..n_items (padding and mask excluded), mean over tokens:
    ``F.cross_entropy(h @ table[1:n_items+1].T, targets - 1)`` (:func:`linear_cross_entropy`)."""
    return linear_cross_entropy(h, table[1 : n_items + 1], targets - 1)


def linear_cross_entropy(h: torch.Tensor, weights: torch.Tensor, targets: torch.Tensor,
                         bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.cross_entropy(h @ weights.T + bias, targets)``, mean over the rows of ``h [T, D]``;
    ``weights [n, D]``, ``bias [n]`` or None, ``targets [T]`` in 0..n-1.

    Trained outside autocast it runs as :class:`LinearCrossEntropy` (the same loss and gradients up
    to float rounding, without the ``[T, n]`` logits in memory, and faster on a CPU:
    ``benchmarks/ce_loss.py``); otherwise (evaluation, or autocast's own precision rules) as the
    plain expression."""
    needs_grad = torch.is_grad_enabled() and (
        h.requires_grad or weights.requires_grad or (bias is not None and bias.requires_grad))
    if needs_grad and not _autocast_on(h.device.type):
        if _counts is None:
            return LinearCrossEntropy.apply(h, weights, targets, bias)
        _counts.append(len(targets))
        return LinearCrossEntropy.apply(h, weights, targets, bias, True)
    logits = h @ weights.T
    return cross_entropy(logits if bias is None else logits + bias, targets)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


class LinearCrossEntropy(torch.autograd.Function):
    """``F.cross_entropy(h @ weights.T + bias, targets)`` (mean) without keeping the ``[T, n]`` logits
    (use :func:`linear_cross_entropy`).

    The loss is the graph's last node in training, so its gradients are computed in the forward, block
    of rows by block: each block's logits are made, turned into ``softmax - one_hot`` in place (one
    exponential pass, which also gives the log-sum-exp) and multiplied straight into the gradients of
    ``h``, ``weights`` and ``bias``; the backward only scales them by the upstream gradient. On a CPU a
    block is about 2 MB of logits, so its exponentials and products run while it is still in cache, and
    the memory is one block instead of the whole ``[T, n]`` matrix (80 MB for a Beauty batch of 256
    users; gigabytes for a catalogue of 100k items); on a GPU a block is up to 1 GiB of logits (a whole
    batch on these datasets). The gradients are computed for the inputs that require them, whether or
    not a backward follows (:func:`linear_cross_entropy` uses the function only when one is wanted);
    they stay on the graph until it is freed, so that a second backward (``retain_graph``) works."""

    CACHE_ELEMENTS = 1 << 19  # logits per CPU block (2 MB of float32)
    GPU_BLOCK_ELEMENTS = 1 << 28  # logits per GPU block (1 GiB of float32): few, large kernels

    @staticmethod
    def _block(n_cols: int, device: torch.device) -> int:
        cells = LinearCrossEntropy.CACHE_ELEMENTS if device.type == "cpu" else LinearCrossEntropy.GPU_BLOCK_ELEMENTS
        return max(1, cells // max(n_cols, 1))

    @staticmethod
    def forward(ctx, h: torch.Tensor, weights: torch.Tensor, targets: torch.Tensor,
                bias: torch.Tensor | None = None, summed: bool = False) -> torch.Tensor:
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        want_b = bias is not None and ctx.needs_input_grad[3]
        n_rows = len(h)
        step = LinearCrossEntropy._block(len(weights), h.device)
        buf = h.new_empty(min(step, n_rows), len(weights))
        rows = torch.arange(min(step, n_rows), device=h.device)
        grad_h = torch.empty_like(h) if want_h else None
        grad_w = torch.zeros_like(weights) if want_w else None
        grad_b = h.new_zeros(len(weights)) if want_b else None
        total = h.new_zeros(())
        for i in range(0, n_rows, step):
            hb, tb = h[i : i + step], targets[i : i + step]
            p, r = buf[: len(hb)], rows[: len(hb)]
            if bias is None:
                torch.mm(hb, weights.T, out=p)
            else:
                torch.addmm(bias, hb, weights.T, out=p)
            top = p.amax(1, keepdim=True)
            target_logit = p.gather(1, tb[:, None])[:, 0] - top[:, 0]  # gather checks the targets' range
            p.sub_(top).exp_()
            norm = p.sum(1, keepdim=True)
            total += (norm[:, 0].log() - target_logit).sum()  # log-sum-exp - target logit, summed
            p.div_(norm)  # softmax
            p[r, tb] -= 1  # - one_hot
            if want_h:
                torch.mm(p, weights, out=grad_h[i : i + step])
            if want_w:
                grad_w.addmm_(p.T, hb)
            if want_b:
                grad_b += p.sum(0)
        ctx.grads = (grad_h, grad_w, grad_b)  # of the sum over rows; the mean's factor is in the backward
        ctx.n_rows = 1 if summed else n_rows  # ``summed``: the sum over rows, not the mean
        if summed:
            return total
        return total / n_rows if n_rows else total.new_tensor(float("nan"))  # an empty mean is nan

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        scale = grad / max(ctx.n_rows, 1)
        grad_h, grad_w, grad_b = ctx.grads
        return (None if grad_h is None else grad_h * scale, None if grad_w is None else grad_w * scale, None,
                None if grad_b is None else grad_b * scale, None)


SAMPLED_LOSSES = ("bce", "bpr")


def sampled_loss(kind: str, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """A loss over (positive, negative) score pairs ``pos, neg [N]``, averaged over the N pairs.

    ``bce``: ``-log s(pos) - log(1 - s(neg))`` (SASRec, Caser, AutoInt). ``bpr``: ``-log s(pos - neg)``
    (Rendle et al., UAI 2009; HGN's and GRU4Rec's pairwise loss with one sampled negative).
    """
    if kind == "bce":
        return batch_mean(-(F.logsigmoid(pos) + F.logsigmoid(-neg)))
    if kind == "bpr":
        return batch_mean(-F.logsigmoid(pos - neg))
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
    return batch_mean(-torch.log_softmax(logits, dim=1)[:, 0])


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
    return batch_mean(per_position / (len(negatives) + 1))

