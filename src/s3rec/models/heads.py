"""S3-Rec's pre-training heads and objectives, on any backbone (as BERT's pre-training heads sit on BertModel).

:class:`PretrainHeads` is what S3-Rec's pre-training adds to an encoder: the four heads
(``aap_norm``, ``mip_norm``, ``map_norm``, ``sp_norm``: one linear map each) and the objectives
(docs/semantics.md, #pre-training: each returns its summed loss term, :func:`weighted_total` weighs them in one place),
read from the states a backbone gives (:meth:`PretrainHeads.slot_states`) against its item and
attribute tables. Two pre-training models carry them: :class:`~s3rec.models.s3rec.S3RecPretrain`
(S3-Rec's own encoder, under the released code's key names, so the authors' checkpoints load key
for key) and :class:`BackbonePretrain` (a registered model, below). The heads' keys are the same in
both, at the top level of the state_dict.

The paper's Fig. 3, "pre-training other models":

``BackbonePretrain`` wraps a freshly built registered model (the *backbone*: ``gru4rec``,
``gru4rec_f`` or ``sasrec_f``) and adds what S3-Rec's pre-training adds to its own encoder: the
four heads (``aap_norm``, ``mip_norm``, ``map_norm``, ``sp_norm``) and, when the backbone has none,
an attribute embedding table. The objectives are exactly S3-Rec's (:func:`objective_terms`),
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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.corruption import PretrainBatch
from .attributes import ItemAttributes, multi_hot_bce
from .base import Model
from .encoder import init_weights

OBJECTIVES = ("aap", "mip", "map", "sp")
# the registered models that can be pre-trained as a backbone (``PretrainConfig.backbone``); "s3rec"
# is S3-Rec's own bidirectional encoder, which SASRec and S3-Rec fine-tune from
PRETRAIN_BACKBONES = ("s3rec", "gru4rec", "gru4rec_f", "sasrec_f")


@dataclass(frozen=True)
class LossWeights:
    aap: float = 0.2
    mip: float = 1.0
    map: float = 1.0
    sp: float = 0.5

    def active(self, name: str) -> bool:
        return getattr(self, name) != 0.0


def weighted_total(terms: dict, weights: LossWeights):
    """The joint loss: ``0.2*AAP + 1.0*MIP + 1.0*MAP + 0.5*SP`` by default (sums, not means), of
    tensors (a batch's terms) or floats (an epoch's per-instance means)."""
    return sum(getattr(weights, name) * value for name, value in terms.items())


class PretrainHeads(nn.Module):
    """The base of a pre-training model: a backbone's states, S3-Rec's four heads and objectives.

    A subclass builds its backbone, then calls :meth:`add_heads`, and gives :meth:`slot_states`,
    ``item_table`` and ``attribute_table``."""

    def add_heads(self, hidden_size: int, *init_first: nn.Module) -> None:
        """The heads ``{aap,mip,map,sp}_norm``, initialised after the modules ``init_first``."""
        self.aap_norm, self.mip_norm, self.map_norm, self.sp_norm = (nn.Linear(hidden_size, hidden_size) for _ in range(4))
        for module in (*init_first, self.aap_norm, self.mip_norm, self.map_norm, self.sp_norm):
            init_weights(module)

    def slot_states(self, batch: PretrainBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(h, h_sp)``: the state of every slot of the masked-prefix rows, flat ``[S, D]``, and of
        the SP sequences' last tokens ``[3B, D]`` (segment-masked, positive, negative; None without SP)."""
        raise NotImplementedError

    def losses(self, batch: PretrainBatch, attrs: ItemAttributes | None, weights: LossWeights) -> dict:
        """The four summed loss terms of a batch (only the active ones are computed).

        ``attrs``: every item's attributes, AAP's and MAP's targets (None when both are off).
        """
        h, h_sp = self.slot_states(batch)
        return objective_terms(self, h, h_sp, batch, attrs, weights, self.item_table, self.attribute_table)


def objective_terms(heads: nn.Module, h: torch.Tensor, h_sp: torch.Tensor | None, batch: PretrainBatch,
                    attrs: ItemAttributes | None, weights: LossWeights, E: torch.Tensor, A: torch.Tensor) -> dict:
    """The four objectives (docs/semantics.md, #pre-training) on an encoder's hidden states, whatever the encoder.

    ``heads``: holds ``aap_norm``, ``mip_norm``, ``map_norm``, ``sp_norm``; ``h [S, D]``: the state of
    every slot of the masked-prefix rows (indexed by the layout's ``token_slot``); ``h_sp [3B, D]``: the
    SP sequences' last states; ``E`` / ``A``: the item / attribute embedding tables (row 0 included).
    """
    out = {}
    if batch.main_tokens:
        hm = h[batch.layout.token_slot[: batch.main_tokens]]  # [T, D] the masked prefixes
        masked = batch.masked
        if weights.active("aap"):
            keep = ~masked  # unmasked, non-pad positions
            logits = heads.aap_norm(hm[keep]) @ A.T
            out["aap"] = multi_hot_bce(logits, *attrs.pairs(batch.targets[keep]))
        hmask = hm[masked]
        if weights.active("mip"):
            z = heads.mip_norm(hmask)  # [M, D]
            # one gather of the item table for positives and negatives (one scatter in the backward)
            items = E[torch.cat([batch.targets[masked], batch.negatives])]  # [2M, D]
            pos, neg = torch.sigmoid((z.repeat(2, 1) * items).sum(-1)).chunk(2)
            out["mip"] = -F.logsigmoid(pos - neg).sum()
        if weights.active("map"):
            logits = heads.map_norm(hmask) @ A.T
            out["map"] = multi_hot_bce(logits, *attrs.pairs(batch.targets[masked]))
    if h_sp is not None:
        pos, neg = sp_logits(heads, h_sp)
        out["sp"] = -F.logsigmoid(torch.sigmoid(pos) - torch.sigmoid(neg)).sum()
    return out


def sp_logits(heads: nn.Module, h_sp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SP's scores ``(<W_sp(c), p>, <W_sp(c), n>)`` ``[B]`` each, from the last states ``h_sp [3B, D]``
    of the segment-masked, positive and negative sequences."""
    c, p, n = h_sp.view(3, -1, h_sp.shape[-1])  # [B, D] each
    z = heads.sp_norm(c)
    return (z * p).sum(-1), (z * n).sum(-1)



class BackbonePretrain(PretrainHeads):
    """A registered recommender (under ``backbone.``) + S3-Rec's four pre-training heads."""

    def __init__(self, backbone: Model, n_attributes: int, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.hidden_size = hidden_size
        if not isinstance(getattr(backbone, "attribute_embeddings", None), nn.Embedding):
            self.attribute_embeddings = nn.Embedding(n_attributes + 1, hidden_size, padding_idx=0)
            init_weights(self.attribute_embeddings)
        self.add_heads(hidden_size)

    @property
    def item_table(self) -> torch.Tensor:
        return self.backbone.item_embeddings.weight

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
