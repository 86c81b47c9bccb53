"""SASRec: the shared encoder run causally and trained from scratch for next-item prediction.

This is also the fine-tuning model of S3-Rec (the pre-trained weights load into it).
Scores are dot products of a position's hidden state with the item embedding table.
"""

from __future__ import annotations

import torch

from ..data.batches import SequenceBatch
from .encoder import EncoderConfig, SequenceEncoder


class SASRec(SequenceEncoder):
    """Self-attentive sequential recommendation (Kang & McAuley, ICDM 2018), S3-Rec's variant:
    post-LN blocks, GELU, learned absolute positions, shared input/output item embeddings."""

    causal = True

    def __init__(self, n_items: int, n_attributes: int, cfg: EncoderConfig):
        super().__init__(n_items, cfg)

    def encode(self, batch: SequenceBatch) -> torch.Tensor:
        """Hidden state of every slot of the packed batch: ``[R, P, D]``."""
        return self(batch.items, batch.layout.positions, batch.layout.mask)

    def output_embeddings(self) -> torch.Tensor:
        """``[n_items + 2, D]``: row i scores item i (0 = padding, n_items + 1 = mask)."""
        return self.item_embeddings.weight
