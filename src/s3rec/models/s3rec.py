"""S3-Rec pre-training: the shared encoder run bidirectionally, with the pre-training heads on it.

The heads and the four objectives are :mod:`s3rec.models.heads`'s (the same on every backbone).
Parameter names follow the released code, so the authors' checkpoints load key for key, and
fine-tuning takes the encoder part (:data:`s3rec.transfer.ENCODER_PREFIXES`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.corruption import PretrainBatch
from .encoder import EncoderConfig, SequenceEncoder
from .heads import PretrainHeads


class S3RecPretrain(SequenceEncoder, PretrainHeads):
    """Encoder + ``attribute_embeddings [n_attributes + 1, D]`` + heads ``{aap,mip,map,sp}_norm``."""

    causal = False
    partial_last_layer = True  # exact; False computes every position of the last block (for tests)

    def __init__(self, n_items: int, n_attributes: int, cfg: EncoderConfig):
        super().__init__(n_items, cfg)
        self.attribute_embeddings = nn.Embedding(n_attributes + 1, cfg.hidden_size, padding_idx=0)
        self.add_heads(cfg.hidden_size, self.attribute_embeddings)

    @property
    def item_table(self) -> torch.Tensor:
        return self.item_embeddings.weight

    @property
    def attribute_table(self) -> torch.Tensor:
        return self.attribute_embeddings.weight

    def slot_states(self, batch: PretrainBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        lay = batch.layout
        if batch.sp_last is not None and self.partial_last_layer:
            # SP reads only the last position of its sequences: skip the rest of the last block there
            h, h_sp = self(batch.items, lay.positions, lay.mask, batch.main_rows, batch.sp_last.reshape(-1))
            return h.reshape(-1, h.shape[-1]), h_sp
        h = self(batch.items, lay.positions, lay.mask).reshape(-1, self.cfg.hidden_size)  # [R * P, D]
        return h, None if batch.sp_last is None else h[batch.sp_last.reshape(-1)]
