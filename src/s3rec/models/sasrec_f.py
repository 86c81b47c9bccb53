"""SASRec_F: SASRec whose input at each position is the item's embedding concatenated with its
attribute representation.

The S3-Rec paper's attribute-aware SASRec baseline ("item and attribute representations
concatenated as input"; Zhou et al., CIKM 2020, Sec. 5.1.3). At each position the item embedding
and the mean of the item's distinct attribute embeddings (zeros for an item without attributes)
are concatenated and mapped back to d by a linear layer; the learned position embedding is added,
then LayerNorm, dropout and the causal encoder exactly as in :class:`s3rec.models.sasrec.SASRec`.
Scores: dot product of the state with the item embedding table (the item part only).

Hyper-parameters: those of SASRec (the shared settings: 2 blocks, 2 heads, d = 64, dropout 0.5,
Adam lr 1e-3, BCE with one negative per position), as the S3-Rec paper trains its SASRec variants.
Accepts packed rows (block-diagonal causal masks) like SASRec.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.batches import SequenceBatch
from .base import AttributeMixin, ModelData, NoParams, Model, SlotStates, dot_scores
from .encoder import LAYER_NORM_EPS, Dropout, Encoder, EncoderConfig, init_weights


class SASRecF(AttributeMixin, SlotStates, Model):
    """Causal self-attention over [item embedding; mean attribute embedding] inputs (S3-Rec's SASRec_F)."""

    causal = True
    packed_ok = True

    def __init__(self, data: ModelData, cfg: EncoderConfig, params: NoParams | None = None, loss: str = "bce"):
        super().__init__()
        self.setup(data, cfg, None, loss)
        d = cfg.hidden_size
        self.item_embeddings = nn.Embedding(data.n_items + 2, d, padding_idx=0)
        self.attribute_embeddings = nn.Embedding(data.n_attributes + 1, d, padding_idx=0)
        self.fuse = nn.Linear(2 * d, d)
        self.position_embeddings = nn.Embedding(cfg.max_len, d)
        self.LayerNorm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.dropout = Dropout(cfg.hidden_dropout)
        self.item_encoder = Encoder(cfg)
        self.apply(init_weights)
        self.register_attributes(data)

    def encode(self, batch: SequenceBatch) -> torch.Tensor:
        """Hidden state of every slot of the (packed) batch ``[R, P, d]``."""
        attrs = self.mean_attributes(self.attribute_embeddings.weight)[batch.items]
        x = self.fuse(torch.cat([self.item_embeddings(batch.items), attrs], -1))
        x = self.dropout(self.LayerNorm(x + self.position_embeddings(batch.layout.positions)))
        return self.item_encoder(x, batch.layout.mask)

    def score(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        return dot_scores(states, self.item_embeddings.weight, items)

    def output_table(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.item_embeddings.weight, None

    def loss(self, batch: SequenceBatch) -> torch.Tensor:
        return self.next_item_loss(self.position_states(batch), batch.targets, batch.negatives, self.loss_kind)
