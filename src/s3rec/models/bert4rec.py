"""BERT4Rec: a bidirectional Transformer encoder trained with the Cloze objective.

Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder Representations from
Transformer", CIKM 2019. The encoder is this project's (:class:`SequenceEncoder`: item + learned
position embeddings, LayerNorm, post-LN blocks with GELU; the BERT layout the paper uses) run with a
bidirectional mask over the real items. The output layer is the paper's Eq. 7 as the released code
computes it: ``LayerNorm(GELU(W h + b))`` scored against the shared item embeddings plus an output
bias per item.

Training (Cloze): each user's training sequence s[:-2] (the fine-tuning input plus its last target,
cut to the last ``max_len`` items) has every item replaced by the mask token with probability
``mask_p`` (at least one per sequence: the last one when none was drawn), and the masked items are
predicted, by default with softmax cross-entropy over all items (``loss = ce``, the paper's).
With ``mask_last_rows`` each sequence also contributes a copy with only its last item masked
("we also produce samples that only mask the last item", Sec. 3.6). Prediction appends the mask
token to the history (its last ``max_len - 1`` items) and reads the state there.

Hyper-parameters (the paper's, Sec. 4.3 and 4.6): 2 layers, 2 heads, d = 64, dropout 0.1 on hidden
units and attention, weight decay 0.01 decoupled from the gradient as in the released code's BERT
optimiser (AdamW; matrices only, not biases or LayerNorm; an L2 term of 0.01 inside Adam instead
slows learning visibly on Beauty), the linear learning-rate decay and warm-up not reproduced,
``mask_p = 0.6`` (the paper's best proportion for Beauty, the
sparsest of its datasets and the closest to the S3-Rec datasets; 0.4 for Steam, 0.2 for MovieLens),
sequence length 50 (S3-Rec's; the paper uses 50 for Beauty). Learning rate: Adam lr 1e-3, not the
paper's 1e-4: the paper trains 400,000 steps of batch 256 (about 4,600 epochs of Beauty), while every
model here gets at most 200 epochs with early stopping (a Beauty epoch took ~52 s on one CPU thread
with another job beside it, 2026-11-27), a budget the paper's rate was not chosen for; 1e-3 is also RecBole's default.
``--set lr=0.0001`` restores the paper's value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batches import SequenceBatch
from ..data.packing import FINETUNE_MASK_VALUE, Layout, make_layout, scatter_tokens
from .base import ModelData, Model, dot_scores, token_items
from .encoder import LAYER_NORM_EPS, EncoderConfig, SequenceEncoder, init_weights


@dataclass(frozen=True)
class BERT4RecParams:
    mask_p: float = 0.6  # Cloze mask proportion (Sun et al. 2019, Sec. 4.6: best on Beauty)
    mask_last_rows: bool = True  # also train on copies with only the last item masked (ibid., Sec. 3.6)

    def checks(self) -> list[tuple[bool, str]]:
        return [(0.0 < self.mask_p <= 1.0, "mask_p must be in (0, 1]")]


class BERT4Rec(Model):
    """Bidirectional self-attention, Cloze objective, mask token appended at prediction (Sun et al., CIKM 2019)."""

    causal = False
    packed_ok = True  # (it re-lays out every batch itself, always packed)
    decoupled_weight_decay = True  # the released code's AdamWeightDecayOptimizer (BERT's)
    defaults = {"lr": 1e-3, "hidden_dropout": 0.1, "attn_dropout": 0.1, "weight_decay": 0.01, "loss": "ce"}
    Params = BERT4RecParams

    def __init__(self, data: ModelData, cfg: EncoderConfig, params: BERT4RecParams = BERT4RecParams(), loss: str = "ce"):
        super().__init__()
        self.setup(data, cfg, params, loss)
        self.mask_id = data.n_items + 1
        d = cfg.hidden_size
        self.encoder = SequenceEncoder(data.n_items, cfg)
        self.head = nn.Linear(d, d)
        self.head_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.output_bias = nn.Parameter(torch.zeros(data.n_items + 2))
        init_weights(self.head)

    def transform(self, h: torch.Tensor) -> torch.Tensor:
        return self.head_norm(F.gelu(self.head(h)))

    def cloze_layout(self, batch: SequenceBatch, tokens: torch.Tensor, first: torch.Tensor | None = None,
                     append: int | None = None) -> tuple[Layout, torch.Tensor, torch.Tensor]:
        """Re-lay out each sequence of ``batch`` as ``[first] + its tokens + [append]`` cut to the last
        ``max_len`` items, packed with bidirectional block-diagonal attention (exact: each token sees
        what it would see left-padded to ``max_len``). ``tokens [T]`` per token of ``batch``;
        ``first [B]`` one item per sequence or None; ``append`` an item id or None. Returns the
        layout, its token values ``[T']`` and, for each kept token of ``batch``, its new index (-1:
        cut)."""
        lay, L = batch.layout, self.cfg.max_len
        pre = int(first is not None)
        ext = lay.lengths + pre + int(append is not None)
        m = ext.clamp(max=L)
        drop = ext - m  # items cut from the front
        start = torch.cumsum(m, 0) - m
        values = tokens.new_empty(int(m.sum()))
        new_pos = lay.token_pos + pre - drop[lay.token_seq]
        index = torch.where(new_pos >= 0, start[lay.token_seq] + new_pos, -1)
        values[index[index >= 0]] = tokens[index >= 0]
        if first is not None:
            keep = drop == 0
            values[start[keep]] = first[keep]
        if append is not None:
            values[start + m - 1] = append
        layout = make_layout(m.cpu(), L, False, FINETUNE_MASK_VALUE, packed=True).to(tokens.device)
        return layout, values, index

    def hidden_tokens(self, layout: Layout, values: torch.Tensor) -> torch.Tensor:
        """Bidirectional hidden states ``[T, d]`` of the tokens ``values [T]`` laid out by ``layout``."""
        h = self.encoder(scatter_tokens(layout, values), layout.positions, layout.mask)
        return h.reshape(-1, h.shape[-1])[layout.token_slot]

    def user_states(self, batch: SequenceBatch) -> torch.Tensor:
        """The state at a mask token appended to each history (its last ``max_len - 1`` items)."""
        layout, values, _ = self.cloze_layout(batch, token_items(batch), append=self.mask_id)
        last = torch.cumsum(layout.lengths, 0) - 1
        return self.transform(self.hidden_tokens(layout, values)[last])

    def score(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        return dot_scores(states, self.encoder.item_embeddings.weight, items, self.output_bias)

    def output_table(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.encoder.item_embeddings.weight, self.output_bias

    def loss(self, batch: SequenceBatch) -> torch.Tensor:
        """Cloze loss over each user's training part s[:-2] (its last ``max_len`` items): the batch's
        input's first item followed by the targets of all its tokens."""
        lay = batch.layout
        first_tokens = torch.cumsum(lay.lengths, 0) - lay.lengths
        layout, seq, index = self.cloze_layout(batch, batch.targets, first=token_items(batch)[first_tokens])
        kept = index >= 0
        neg = seq.new_empty(len(seq))
        neg[index[kept]] = batch.negatives[kept]
        starts = torch.cumsum(layout.lengths, 0) - layout.lengths
        last = starts + layout.lengths - 1
        has_first = lay.lengths < self.cfg.max_len  # the prepended item was kept: it borrows the last negative
        neg[starts[has_first]] = neg[last[has_first]]
        masked = torch.rand(seq.shape, device=seq.device) < self.params.mask_p
        counts = torch.zeros(len(layout.lengths), dtype=torch.long, device=seq.device)
        counts.index_add_(0, layout.token_seq, masked.long())
        masked[last[counts == 0]] = True  # at least one masked item per sequence: the last one
        variants = [masked]
        if self.params.mask_last_rows:
            last_only = torch.zeros_like(masked)
            last_only[last] = True
            variants.append(last_only)
        states, targets, negatives = [], [], []
        for m in variants:
            x = torch.where(m, torch.full_like(seq, self.mask_id), seq)
            states.append(self.transform(self.hidden_tokens(layout, x)[m]))
            targets.append(seq[m])
            negatives.append(neg[m])
        return self.next_item_loss(torch.cat(states), torch.cat(targets), torch.cat(negatives), self.loss_kind)
