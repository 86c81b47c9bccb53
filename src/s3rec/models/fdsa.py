"""FDSA: feature-level deeper self-attention, with separate item and feature streams.

Zhang et al., "Feature-level Deeper Self-Attention Network for Sequential Recommendation",
IJCAI 2019. Two causal self-attention streams over the same positions:

- items: item embedding + position embedding, LayerNorm, dropout, self-attention blocks;
- features: each item's attributes combined by the paper's vanilla attention
  (``f = sum_j softmax_j(<w_f, a_j>) a_j`` over the item's distinct attribute embeddings a_j, its
  Eq. 2 with the item's attributes as its features; zeros for an item without attributes) +
  position embedding (shared), LayerNorm, dropout, its own self-attention blocks.

The two outputs are concatenated and a fully connected layer maps them to d; an item's score is the
dot product with its embedding (the paper's Eq. 10-11).

Hyper-parameters: the paper tunes blocks, heads and dropout per dataset without fixing values for
these data; the S3-Rec setting of its self-attention models is used (the shared settings: 2 blocks,
2 heads per stream, d = 64, dropout 0.5, Adam lr 1e-3, BCE with one negative per position).
Blocks are this project's post-LN encoder blocks. Accepts packed rows like SASRec.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.batches import SequenceBatch
from .base import AttributeMixin, ModelData, NoParams, Model, SlotStates, dot_scores
from .encoder import INIT_STD, LAYER_NORM_EPS, Dropout, Encoder, EncoderConfig, init_weights


class FDSA(AttributeMixin, SlotStates, Model):
    """Separate causal self-attention streams over items and attention-pooled attributes (Zhang et al., IJCAI 2019)."""

    causal = True
    packed_ok = True

    def __init__(self, data: ModelData, cfg: EncoderConfig, params: NoParams | None = None, loss: str = "bce"):
        super().__init__()
        self.setup(data, cfg, None, loss)
        d = cfg.hidden_size
        self.item_embeddings = nn.Embedding(data.n_items + 2, d, padding_idx=0)
        self.attribute_embeddings = nn.Embedding(data.n_attributes + 1, d, padding_idx=0)
        self.feature_attention = nn.Parameter(torch.empty(d))
        self.position_embeddings = nn.Embedding(cfg.max_len, d)
        self.item_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.feature_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.dropout = Dropout(cfg.hidden_dropout)
        self.item_encoder = Encoder(cfg)
        self.feature_encoder = Encoder(cfg)
        self.merge = nn.Linear(2 * d, d)
        self.apply(init_weights)
        nn.init.normal_(self.feature_attention, 0.0, INIT_STD)
        self.register_attributes(data)

    def encode(self, batch: SequenceBatch) -> torch.Tensor:
        """Merged state of every slot of the (packed) batch ``[R, P, d]``."""
        pos = self.position_embeddings(batch.layout.positions)
        mask = batch.layout.mask
        xi = self.dropout(self.item_norm(self.item_embeddings(batch.items) + pos))
        feats = self.attention_attributes(self.attribute_embeddings.weight, self.feature_attention)[batch.items]
        xf = self.dropout(self.feature_norm(feats + pos))
        return self.merge(torch.cat([self.item_encoder(xi, mask), self.feature_encoder(xf, mask)], -1))

    def score(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        return dot_scores(states, self.item_embeddings.weight, items)

    def output_table(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.item_embeddings.weight, None

    def loss(self, batch: SequenceBatch) -> torch.Tensor:
        return self.next_item_loss(self.position_states(batch), batch.targets, batch.negatives, self.loss_kind)
