"""The shared Transformer encoder of S3-Rec and SASRec (docs/semantics.md, #model).

Post-LayerNorm (BERT-style) blocks: multi-head self-attention with biased Q/K/V/output projections
and attention-probability dropout, then dropout + residual + LayerNorm; then a GELU (erf) FFN
d -> 4d -> d, dropout + residual + LayerNorm. LayerNorm eps is 1e-12 (TF style).

Module names follow the authors' released code, so their state_dicts load key for key.
The encoder takes an additive attention mask ``[R, 1, L, L]`` (or broadcastable): 0 where a query
may attend to a key, a large negative value elsewhere. Rows may pack several sequences
(block-diagonal masks); see :mod:`s3rec.data.packing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-12
INIT_STD = 0.02


def random_bits(n: int, dtype: torch.dtype, device) -> torch.Tensor:
    """``n`` uniformly random integers of ``dtype`` (``torch.uint8`` or ``torch.int16``), every bit
    pattern equally likely, cut from full-range 64-bit draws: one generator call gives 8 bytes (4
    int16), where ``rand`` spends one call per float. Seeded by the default generator, like ``rand``."""
    per = 8 // torch.empty((), dtype=dtype).element_size()
    words = torch.empty((n + per - 1) // per, dtype=torch.int64, device=device).random_(-(2**63), None)
    return words.view(dtype)[:n]


def keep_scale(x: torch.Tensor, p: float) -> torch.Tensor:
    """An inverted-dropout multiplier shaped like ``x``: ``1/(1-p)`` with probability ``1-p``, else 0.

    Drawn from random bytes (``uint8``) when ``256 p`` is a whole number (the paper's 0.5, 0.25, ...),
    which is exact; otherwise from random ``int16``, which rounds the drop probability to a multiple
    of 1/65536 (0.2 becomes 0.1999969; the multiplier uses the rounded value, so the expectation stays
    ``x``; a p below 2^-17 rounds to no dropout, one within 2^-17 of 1 to dropping everything).
    ``rand`` itself has a 2^-24 grid. The bytes take a quarter (uint8) or half (int16) of ``rand``'s
    generator calls, which were up to a fifth of a pre-training step on CPU (``benchmarks/dropout_mask.py``)."""
    if float(p * 256).is_integer():
        threshold, dtype = int(p * 256), torch.uint8
    else:
        q = round(p * 65536)
        threshold, dtype = q - 32768, torch.int16  # int16 is signed: -32768..32767
        p = q / 65536
    if p >= 1.0:  # also p within 2^-17 of 1, which rounds to 1
        return torch.zeros_like(x)
    n = x.numel()
    keep = random_bits(n, dtype, x.device).view(x.shape) >= threshold
    return keep.to(x.dtype).mul_(1.0 / (1.0 - p))


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout, as ``F.dropout`` computes it (each element zeroed with probability ``p``,
    the rest scaled by ``1/(1-p)``), with the mask drawn from random bytes (:func:`keep_scale`),
    cheaper on CPU than the ``bernoulli_`` of ``F.dropout`` and than ``rand``."""
    if not training or p == 0.0:
        return x
    if torch.compiler.is_compiling():
        return F.dropout(x, p, True)
    return x * keep_scale(x, p)


class Dropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


@dataclass(frozen=True)
class EncoderConfig:
    """The encoder's settings (defaults: the paper's). :data:`ENCODER_SHAPE` of them fix the weights'
    shapes and meaning, which a pre-training and the fine-tuning that loads it must share; the dropout
    rates may differ."""

    hidden_size: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 50
    hidden_dropout: float = 0.5
    attn_dropout: float = 0.5
    pre_ln: bool = False  # LayerNorm before each sub-layer (+ a final one) instead of after (the authors')

    def n_parameters(self, n_items: int = 0) -> int:
        """The parameters of a :class:`SequenceEncoder` of this shape for ``n_items`` items (what a
        model's size is estimated from before it is built; the item table has ``n_items + 2`` rows)."""
        d = self.hidden_size
        layer = 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 2 * 2 * d  # attention, FFN, 2 LayerNorms
        return self.n_layers * layer + (n_items + 2 + self.max_len) * d + 2 * d * (1 + self.pre_ln)


# the settings of EncoderConfig that a pre-training and the fine-tuning from it must share
ENCODER_SHAPE = ("hidden_size", "n_layers", "n_heads", "max_len", "pre_ln")


class SelfAttention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        if cfg.hidden_size % cfg.n_heads:
            raise ValueError(f"hidden_size {cfg.hidden_size} is not a multiple of n_heads {cfg.n_heads}")
        d = cfg.hidden_size
        self.n_heads = cfg.n_heads
        self.query, self.key, self.value, self.dense = (nn.Linear(d, d) for _ in range(4))
        self.attn_dropout = cfg.attn_dropout
        self.out_dropout = Dropout(cfg.hidden_dropout)
        self.LayerNorm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.pre_ln = cfg.pre_ln

    def context(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention-weighted values, heads merged: ``[R, L, D]`` (before the output projection).
        Pre-LN blocks attend over the normalised input."""
        if self.pre_ln:
            x = self.LayerNorm(x)
        R, L, D = x.shape
        H = self.n_heads

        def heads(t):  # [R, L, D] -> [R, H, L, D/H]
            return t.view(R, L, H, D // H).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        return self.attend(q, k, v, mask).transpose(1, 2).reshape(R, L, D)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``softmax(q k^T / sqrt(d) + mask) v`` per row and head, with dropout on the probabilities when
        training: q ``[R, H, Q, D/H]``, k and v ``[R, H, L, D/H]``, mask ``[R, 1, Q, L]`` -> ``[R, H, Q, D/H]``."""
        if self.training and self.attn_dropout > 0:
            scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1])) + mask  # [R, H, Q, L]
            probs = dropout(torch.softmax(scores, dim=-1), self.attn_dropout, True)
            return probs @ v
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def output(self, ctx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.pre_ln:
            return x + self.out_dropout(self.dense(ctx))
        return self.LayerNorm(self.out_dropout(self.dense(ctx)) + x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.context(x, mask), x)

    def forward_queries(self, x: torch.Tensor, mask: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """The block's attention output at the given flat slots only: ``[S, D]``, every row of ``x``
        holding at least one of them. Keys and values are computed at every slot (the queries read
        them all); queries, attention, the output projection, residual and LayerNorm only at ``slots``:
        each row's queries are gathered into a ``[R, H, Q, D/H]`` block (Q: the most queries in a row,
        the rest padding), so the scores are ``[R, H, Q, L]`` instead of ``[R, H, L, L]``."""
        R, L, D = x.shape
        H = self.n_heads
        xin = self.LayerNorm(x) if self.pre_ln else x
        k = self.key(xin).view(R, L, H, D // H).transpose(1, 2)
        v = self.value(xin).view(R, L, H, D // H).transpose(1, 2)
        order = torch.argsort(slots)
        s = slots[order]  # ascending, so grouped by row
        row = torch.div(s, L, rounding_mode="floor")
        counts = torch.bincount(row, minlength=R)
        j = torch.arange(len(s), device=s.device) - (torch.cumsum(counts, 0) - counts)[row]  # rank in its row
        Q = int(counts.max())
        q = self.query(xin.reshape(-1, D)[s])
        q = q.new_zeros(R, Q, D).index_put((row, j), q)
        qmask = mask.new_zeros(R, Q, L).index_put((row, j), mask[row, 0, s - row * L])
        ctx = self.attend(q.view(R, Q, H, D // H).transpose(1, 2), k, v, qmask.unsqueeze(1))  # [R, H, Q, D/H]
        ctx = ctx.transpose(1, 2)[row, j].reshape(-1, D)  # [S, D] in the order of s
        ctx = ctx.new_empty(ctx.shape).index_copy(0, order, ctx)  # back in the order of slots
        return self.output(ctx, x.reshape(-1, D)[slots])


class FeedForward(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        d = cfg.hidden_size
        self.dense_1 = nn.Linear(d, 4 * d)
        self.dense_2 = nn.Linear(4 * d, d)
        self.dropout = Dropout(cfg.hidden_dropout)
        self.LayerNorm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.pre_ln = cfg.pre_ln

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_ln:
            return x + self.dropout(self.dense_2(F.gelu(self.dense_1(self.LayerNorm(x)))))
        return self.LayerNorm(self.dropout(self.dense_2(F.gelu(self.dense_1(x)))) + x)


class Block(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.attention = SelfAttention(cfg)
        self.intermediate = FeedForward(cfg)

    def forward(self, x, mask):
        return self.intermediate(self.attention(x, mask))

    def forward_queries(self, x, mask, slots):
        return self.intermediate(self.attention.forward_queries(x, mask, slots))


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.layer = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        # pre-LN blocks leave the residual stream unnormalised: one LayerNorm after the last block
        self.final_LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=LAYER_NORM_EPS) if cfg.pre_ln else None

    def _final(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.final_LayerNorm is None else self.final_LayerNorm(x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, full_rows=None, query_slots=None):
        """``[R, L, D]`` hidden states; or, with ``query_slots``, the last block computed only for the
        first ``full_rows`` rows (``[full_rows, L, D]``) and at ``query_slots`` (``[S, D]``, flat
        slots in rows >= full_rows): exact for those outputs, and cheaper when the other positions'
        outputs are never read."""
        if query_slots is None:
            for block in self.layer:
                x = block(x, mask)
            return self._final(x)
        for block in self.layer[:-1]:
            x = block(x, mask)
        last = self.layer[-1]
        # query_slots lie in the rows after the first full_rows (the caller packs them apart)
        rest = last.forward_queries(x[full_rows:], mask[full_rows:], query_slots - full_rows * x.shape[1])
        return self._final(last(x[:full_rows], mask[:full_rows])), self._final(rest)


def init_weights(module: nn.Module) -> None:
    """Linear and Embedding weights N(0, 0.02) (padding rows included), biases 0, LayerNorm 1 / 0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class SequenceEncoder(nn.Module):
    """Item + position embeddings, LayerNorm, dropout, then the Transformer encoder.

    ``forward(items [R, L], positions [R, L], mask [R, 1, L, L]) -> hidden [R, L, D]``.
    The item table has ``n_items + 2`` rows (0 = padding, n_items + 1 = mask) and doubles as the
    output table when scoring.
    """

    def __init__(self, n_items: int, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.n_items = n_items
        self.item_embeddings = nn.Embedding(n_items + 2, cfg.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(cfg.max_len, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=LAYER_NORM_EPS)
        self.dropout = Dropout(cfg.hidden_dropout)
        self.item_encoder = Encoder(cfg)
        self.apply(init_weights)

    def forward(self, items: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, full_rows=None, query_slots=None):
        x = self.item_embeddings(items) + self.position_embeddings(positions)  # [R, L, D]
        x = self.dropout(self.LayerNorm(x))
        return self.item_encoder(x, mask, full_rows, query_slots)
