"""S3-Rec pre-training: the shared encoder run bidirectionally, attribute embeddings and four heads.

Each objective returns its own summed loss term (SPEC section 3); :func:`weighted_total` applies
the weights in one place. Parameter names follow the released code, so the authors' checkpoints
load key for key, and fine-tuning takes the encoder part (:data:`ENCODER_PREFIXES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.pretrain import PretrainBatch
from .encoder import EncoderConfig, SequenceEncoder, init_weights

OBJECTIVES = ("aap", "mip", "map", "sp")
# the state_dict entries that fine-tuning loads: embeddings, LayerNorm and encoder
ENCODER_PREFIXES = ("item_embeddings.", "position_embeddings.", "LayerNorm.", "item_encoder.")


@dataclass(frozen=True)
class LossWeights:
    aap: float = 0.2
    mip: float = 1.0
    map: float = 1.0
    sp: float = 0.5

    def active(self, name: str) -> bool:
        return getattr(self, name) != 0.0


class S3RecPretrain(SequenceEncoder):
    """Encoder + ``attribute_embeddings [n_attributes + 1, D]`` + heads ``{aap,mip,map,sp}_norm``."""

    causal = False
    partial_last_layer = True  # exact; False computes every position of the last block (for tests)

    def __init__(self, n_items: int, n_attributes: int, cfg: EncoderConfig):
        super().__init__(n_items, cfg)
        d = cfg.hidden_size
        self.attribute_embeddings = nn.Embedding(n_attributes + 1, d, padding_idx=0)
        self.aap_norm, self.mip_norm, self.map_norm, self.sp_norm = (nn.Linear(d, d) for _ in range(4))
        for module in (self.attribute_embeddings, self.aap_norm, self.mip_norm, self.map_norm, self.sp_norm):
            init_weights(module)

    def slot_states(self, batch: PretrainBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(h, h_sp)``: the hidden state of every slot of the masked-prefix rows, flat ``[S, D]``,
        and of the SP sequences' last tokens ``[3B, D]`` (segment-masked, positive, negative; None
        without SP)."""
        lay = batch.layout
        if batch.sp_last is not None and self.partial_last_layer:
            # SP reads only the last position of its sequences: skip the rest of the last block there
            h, h_sp = self(batch.items, lay.positions, lay.mask, batch.main_rows, batch.sp_last.reshape(-1))
            return h.reshape(-1, h.shape[-1]), h_sp
        h = self(batch.items, lay.positions, lay.mask).reshape(-1, self.cfg.hidden_size)  # [R * P, D]
        return h, None if batch.sp_last is None else h[batch.sp_last.reshape(-1)]

    def losses(self, batch: PretrainBatch, attr_targets: torch.Tensor | None, weights: LossWeights) -> dict:
        """The four summed loss terms of a batch (only the active ones are computed).

        ``attr_targets [T, n_attributes + 1]``: the multi-hot attributes of each prefix token.
        """
        h, h_sp = self.slot_states(batch)
        return objective_terms(self, h, h_sp, batch, attr_targets, weights,
                               self.item_embeddings.weight, self.attribute_embeddings.weight)


def objective_terms(heads: nn.Module, h: torch.Tensor, h_sp: torch.Tensor | None, batch: PretrainBatch,
                    attr_targets: torch.Tensor | None, weights: LossWeights, E: torch.Tensor, A: torch.Tensor) -> dict:
    """The four objectives (SPEC section 3) on an encoder's hidden states, whatever the encoder.

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
            out["aap"] = F.binary_cross_entropy_with_logits(logits, attr_targets[keep], reduction="sum")
        hmask = hm[masked]
        if weights.active("mip"):
            z = heads.mip_norm(hmask)  # [M, D]
            pos = torch.sigmoid((z * E[batch.targets[masked]]).sum(-1))
            neg = torch.sigmoid((z * E[batch.negatives]).sum(-1))
            out["mip"] = -F.logsigmoid(pos - neg).sum()
        if weights.active("map"):
            logits = heads.map_norm(hmask) @ A.T
            out["map"] = F.binary_cross_entropy_with_logits(logits, attr_targets[masked], reduction="sum")
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


def weighted_total(terms: dict, weights: LossWeights) -> torch.Tensor:
    """The joint loss: ``0.2*AAP + 1.0*MIP + 1.0*MAP + 0.5*SP`` by default (sums, not means)."""
    return sum(getattr(weights, name) * value for name, value in terms.items())


def encoder_state(state: dict) -> dict:
    """The part of a pre-training state_dict that fine-tuning loads."""
    return {k: v for k, v in state.items() if k.startswith(ENCODER_PREFIXES)}
