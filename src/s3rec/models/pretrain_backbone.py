"""The S3-Rec objectives on another recommender's encoder (the paper's Fig. 3, "pre-training other models").

``BackbonePretrain`` wraps a freshly built registered model (the *backbone*: ``gru4rec``,
``gru4rec_f`` or ``sasrec_f``) and adds what S3-Rec's pre-training adds to its own encoder: the
four heads (``aap_norm``, ``mip_norm``, ``map_norm``, ``sp_norm``) and, when the backbone has none,
an attribute embedding table. The objectives are exactly S3-Rec's (:func:`~s3rec.models.s3rec.objective_terms`),
read from the backbone's per-token hidden states (``position_states``, the states its fine-tuning
scores with), so after pre-training the backbone's weights are the model that fine-tunes: every
parameter of it is carried over, nothing else.

How each model is adapted (all three are unidirectional, so every pre-training sequence is read left
to right, as SASRec's unidirectional pre-training in the same figure):

- GRU4Rec: the GRU's state at a masked position has read the sequence up to and including the mask
  token; MIP/MAP predict the masked item and its attributes from it, AAP the attributes of an unmasked
  item from the state after it, SP compares the state after the last token of the segment-masked
  sequence with those of the segment and the negative segment. Its attribute table exists only for
  pre-training (AAP/MAP need one) and is dropped when fine-tuning.
- GRU4Rec_F: as GRU4Rec, over the merged state of its item and feature GRUs; the mask token has no
  attributes, so its feature input is zero (the masked item's attributes never leak into the input).
  AAP/MAP score against the attribute table its feature GRU reads.
- SASRec_F: its fused [item; mean attribute] input, causal self-attention; the attribute table is the
  one its input uses. Masked positions carry no attributes, as for GRU4Rec_F.

Parameter names: the backbone's own under ``backbone.`` (what fine-tuning loads), the heads and the
extra attribute table at the top level.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.pretrain import PretrainBatch
from .base import Recommender
from .encoder import init_weights
from .s3rec import LossWeights, objective_terms

# the registered models that can be pre-trained as a backbone (``PretrainConfig.backbone``); "s3rec"
# is S3-Rec's own bidirectional encoder, which SASRec and S3-Rec fine-tune from
PRETRAIN_BACKBONES = ("s3rec", "gru4rec", "gru4rec_f", "sasrec_f")
BACKBONE_PREFIX = "backbone."


class BackbonePretrain(nn.Module):
    """A registered recommender + S3-Rec's four pre-training heads."""

    def __init__(self, backbone: Recommender, n_attributes: int, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.hidden_size = hidden_size
        if not isinstance(getattr(backbone, "attribute_embeddings", None), nn.Embedding):
            self.attribute_embeddings = nn.Embedding(n_attributes + 1, hidden_size, padding_idx=0)
            init_weights(self.attribute_embeddings)
        self.aap_norm, self.mip_norm, self.map_norm, self.sp_norm = (nn.Linear(hidden_size, hidden_size) for _ in range(4))
        for module in (self.aap_norm, self.mip_norm, self.map_norm, self.sp_norm):
            init_weights(module)

    @property
    def attribute_table(self) -> torch.Tensor:
        own = self._modules.get("attribute_embeddings")
        return (own if own is not None else self.backbone.attribute_embeddings).weight

    def slot_states(self, batch: PretrainBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The backbone's per-token states placed in the batch's flat slot grid ``[R * P, D]``, and
        the SP sequences' last states ``[3B, D]`` (None without SP)."""
        lay = batch.layout
        tokens = self.backbone.position_states(batch)  # [T, D], sequence-major
        h = tokens.new_zeros(lay.n_rows * lay.row_len, tokens.shape[-1])
        h = h.index_copy(0, lay.token_slot, tokens)
        return h, None if batch.sp_last is None else h[batch.sp_last.reshape(-1)]

    def losses(self, batch: PretrainBatch, attr_targets: torch.Tensor | None, weights: LossWeights) -> dict:
        h, h_sp = self.slot_states(batch)
        return objective_terms(self, h, h_sp, batch, attr_targets, weights,
                               self.backbone.item_embeddings.weight, self.attribute_table)


def backbone_state(state: dict) -> dict:
    """The backbone's own weights from a ``BackbonePretrain`` state_dict (empty for S3-Rec's)."""
    n = len(BACKBONE_PREFIX)
    return {k[n:]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}
