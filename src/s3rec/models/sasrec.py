"""SASRec: the shared encoder run causally and trained from scratch for next-item prediction.

This is also the fine-tuning model of S3-Rec (the pre-trained weights load into it).
Scores are dot products of a position's hidden state with the item embedding table.
"""

from __future__ import annotations

import torch

from ..data.batches import SequenceBatch
from ..losses import (bce_next_item, ce_next_item, gbce_next_item, sampled_loss, sampled_softmax_next_item,
                      uniform_negatives)
from .base import ModelData, Model, SlotStates, check_loss, dot_scores
from .encoder import EncoderConfig, SequenceEncoder


def encoder_loss(model, batch: SequenceBatch, loss: str, n_items: int) -> torch.Tensor:
    """The fine-tuning loss of an encoder model (``encode`` + ``output_embeddings``) on a batch:
    every real position predicts its next item (docs/semantics.md, #fine-tuning)."""
    h = model.encode(batch)  # [R, P, D]
    h = h.reshape(-1, h.shape[-1])[batch.layout.token_slot]  # [T, D] real tokens only
    table = model.output_embeddings()
    if loss == "ce":
        return ce_next_item(h, table, batch.targets, n_items)
    if loss == "bpr":
        return sampled_loss("bpr", (h * table[batch.targets]).sum(-1), (h * table[batch.negatives]).sum(-1))
    if loss in ("sampled-softmax", "gbce"):
        negatives = uniform_negatives(model.n_negatives, n_items, h.device)
        if loss == "gbce":
            return gbce_next_item(h, table, batch.targets, negatives, n_items, model.gbce_t)
        return sampled_softmax_next_item(h, table, batch.targets, negatives, n_items)
    return bce_next_item(h, table, batch.targets, batch.negatives)


class SASRec(SequenceEncoder, SlotStates, Model):
    """Self-attentive sequential recommendation (Kang & McAuley, ICDM 2018), S3-Rec's variant:
    post-LN blocks, GELU, learned absolute positions, shared input/output item embeddings.

    Hyper-parameters are the shared settings (docs/semantics.md, #model: 2 blocks, 2 heads, d = 64, dropout 0.5,
    Adam lr 1e-3, the BCE loss with one negative per position), which are S3-Rec's released code's.
    """

    causal = True
    packed_ok = True
    losses = ("bce", "bpr", "ce", "sampled-softmax", "gbce")
    init_from = "encoder"  # S3-Rec fine-tuning: the embeddings, LayerNorm and encoder, every tensor checked

    def __init__(self, n_items: int, cfg: EncoderConfig, loss: str = "bce",
                 n_negatives: int = 256, gbce_t: float = 0.75):
        super().__init__(n_items, cfg)
        check_loss(type(self), loss)
        self.loss_kind = loss
        self.n_negatives = n_negatives  # for the sampled-softmax and gbce losses
        self.gbce_t = gbce_t

    @classmethod
    def from_config(cls, data: ModelData, cfg) -> "SASRec":
        return cls(data.n_items, cfg.encoder(), cfg.loss, cfg.n_negatives, cfg.gbce_t)

    def encode(self, batch: SequenceBatch) -> torch.Tensor:
        """Hidden state of every slot of the packed batch: ``[R, P, D]``."""
        return self(batch.items, batch.layout.positions, batch.layout.mask)

    def output_embeddings(self) -> torch.Tensor:
        """``[n_items + 2, D]``: row i scores item i (0 = padding, n_items + 1 = mask)."""
        return self.item_embeddings.weight

    def loss(self, batch: SequenceBatch) -> torch.Tensor:
        return encoder_loss(self, batch, self.loss_kind, self.n_items)

    def score(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        return dot_scores(states, self.output_embeddings(), items)
