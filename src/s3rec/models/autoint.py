"""AutoInt: feature interactions learned by multi-head self-attention over feature fields, non-sequential.

Song et al., "AutoInt: Automatic Feature Interaction Learning via Self-Attentive Neural Networks",
CIKM 2019. The fields are those of :mod:`s3rec.models.fm`: the user, the candidate item and the
item's attributes (multi-valued: the mean of the item's distinct attribute embeddings, the paper's
Eq. 5 for multi-valued fields; zeros for an item without attributes). Each interacting layer does,
per head h, ``e_m^h = sum_k softmax_k(<W_Q^h e_m, W_K^h e_k>) W_V^h e_k`` over the three fields, then
``e_m = ReLU(concat_h e_m^h + W_Res e_m)`` (Eqs. 5-8; no scaling, no biases); the output is
``w^T concat_m e_m + b`` (Eq. 9). Trained like FM: (user, next item) positives of the fine-tuning
batch against its sampled negatives, BCE (the paper's log loss) by default.

Hyper-parameters (the paper's defaults, Sec. 5.1.3: "three interacting layers, d' = 32 hidden units,
two heads", with residual connections; dropout "not necessary" on its large datasets; the
embedding size here is S3-Rec's 64 rather than the paper's 16): ``att_layers = 3``,
``att_heads = 2``, ``att_head_size = 32`` (d' per head). Adam, lr 1e-3 (the paper's optimiser;
the trainer's rate).

Scoring many pairs (the full protocol scores every item for every user: 270 million pairs on Beauty)
is exact and batched: the first layer's projections of each field are computed once per user and
once per item, and pairs are then processed in chunks of about :data:`PAIR_CHUNK`. The layers after
the first depend on the pair and cannot be factored (ReLU), so this stays ~1e5 multiply-adds per pair:
one full-protocol test pass over Beauty took 1,811 s (30 minutes) on one thread of a 2-core AMD
EPYC with another job on the other core (2026-11-27; the sampled protocol's validation: ~12 s on
two threads). A GPU (``--device cuda``) is the way to run it often.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.batches import SequenceBatch
from .base import AttributeMixin, ModelData, Model
from .encoder import EncoderConfig, init_weights

PAIR_CHUNK = 1024  # (user, item) pairs per step when scoring many pairs (small: the steps stay in cache)
FIELDS = 3  # user, item, attributes


@dataclass(frozen=True)
class AutoIntParams:
    att_layers: int = 3  # interacting layers (Song et al. 2019, Sec. 5.1.3)
    att_heads: int = 2  # attention heads per layer (ibid.)
    att_head_size: int = 32  # d', hidden units per head (ibid.)

    def checks(self) -> list[tuple[bool, str]]:
        return [(1 <= self.att_layers <= 256, "att_layers must be in 1..256"),
                (1 <= self.att_heads <= 256, "att_heads must be in 1..256"),
                (1 <= self.att_head_size <= 16384, "att_head_size must be in 1..16384")]


class AutoInt(AttributeMixin, Model):
    """Self-attentive feature interactions over user, item and mean-pooled attributes (Song et al., CIKM 2019)."""

    causal = False
    uses_users = True
    losses = ("bce", "bpr")
    defaults = {"hidden_dropout": 0.0, "attn_dropout": 0.0}
    Params = AutoIntParams

    def __init__(self, data: ModelData, cfg: EncoderConfig, params: AutoIntParams = AutoIntParams(), loss: str = "bce"):
        super().__init__()
        self.setup(data, cfg, params, loss)
        d = cfg.hidden_size
        self.user_embeddings = nn.Embedding(data.n_users, d)
        self.item_embeddings = nn.Embedding(data.n_items + 2, d, padding_idx=0)
        self.attribute_embeddings = nn.Embedding(data.n_attributes + 1, d, padding_idx=0)
        self.apply(init_weights)
        width = params.att_heads * params.att_head_size
        # per layer one fused projection: W_Query, W_Key, W_Value and W_Res, each d_in -> H * d'
        self.layers = nn.ModuleList(nn.Linear(d if k == 0 else width, 4 * width, bias=False)
                                    for k in range(params.att_layers))
        self.output = nn.Linear(FIELDS * width, 1)
        for lin in (*self.layers, self.output):
            nn.init.xavier_uniform_(lin.weight)
        nn.init.zeros_(self.output.bias)
        self.register_attributes(data)

    def interact(self, first: torch.Tensor) -> torch.Tensor:
        """Scores ``[P]`` of pairs from their first-layer projections ``first [P, 3, 4 * H * d']``."""
        P = first.shape[0]
        H, dh = self.params.att_heads, self.params.att_head_size
        x = first  # (the first layer's projections are given)
        for k, layer in enumerate(self.layers):
            proj = first if k == 0 else layer(x)
            q, key, v, res = proj.view(P, FIELDS, 4, H * dh).unbind(2)  # each [P, 3, H * d']
            # <q_m, k_j> per head for every (query field m, key field j): [P, 3, 3, H]; written with
            # broadcasting rather than batched 3 x 3 matmuls, which are ~3x slower on CPU at this size
            logits = (q[:, :, None] * key[:, None]).view(P, FIELDS, FIELDS, H, dh).sum(-1)
            att = torch.softmax(logits, dim=2)  # over the key fields
            ctx = (att.unsqueeze(-1) * v.reshape(P, 1, FIELDS, H, dh)).sum(2)  # [P, 3, H, d']
            x = torch.relu(ctx.reshape(P, FIELDS, H * dh) + res)
        return self.output(x.reshape(P, -1)).squeeze(-1)

    def _pairs(self, pu: torch.Tensor, pi: torch.Tensor, pa: torch.Tensor) -> torch.Tensor:
        """Scores of pairs given each pair's first-layer projections (user, item, attributes) ``[P, 4Hd']``."""
        return self.interact(torch.stack([pu, pi, pa], 1))

    def user_states(self, batch: SequenceBatch) -> torch.Tensor:
        """``[B, D]``: the user's embedding (AutoInt ignores the history)."""
        return self.user_embeddings(batch.users)

    def score(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        first = self.layers[0]
        pu = first(states)  # [B, 4Hd']: the user field's first-layer projections, once per user
        pooled = self.mean_attributes(self.attribute_embeddings.weight)  # [n_items + 2, d]
        B = states.shape[0]
        n = pooled.shape[0]
        if items is not None:  # [B, C] candidates
            C = items.shape[1]
            flat = items.reshape(-1)
            if B * C < n:  # few pairs (a training batch): project only the candidates
                item_proj, attr_proj, rows = first(self.item_embeddings(flat)), first(pooled[flat]), None
            else:  # once per item
                item_proj, attr_proj, rows = first(self.item_embeddings.weight), first(pooled), flat
            users = torch.arange(B, device=items.device).repeat_interleave(C)
            parts = []
            for a in range(0, B * C, PAIR_CHUNK):
                sel = slice(a, a + PAIR_CHUNK) if rows is None else rows[a : a + PAIR_CHUNK]
                parts.append(self._pairs(pu[users[a : a + PAIR_CHUNK]], item_proj[sel], attr_proj[sel]))
            return torch.cat(parts).view(B, C) if parts else states.new_zeros(B, C)
        item_proj = first(self.item_embeddings.weight)  # [n_items + 2, 4Hd'], once per item
        attr_proj = first(pooled)
        out = states.new_empty(B, n)
        per_user = max(1, PAIR_CHUNK // n)  # users per step (all items each) ...
        per_item = min(n, PAIR_CHUNK)  # ... or items per step (one user)
        for a in range(0, B, per_user):
            b = min(a + per_user, B)
            for c in range(0, n, per_item):
                e = min(c + per_item, n)
                pu_rep = pu[a:b, None].expand(b - a, e - c, -1).reshape((b - a) * (e - c), -1)
                pairs = self._pairs(pu_rep, item_proj[c:e].repeat(b - a, 1), attr_proj[c:e].repeat(b - a, 1))
                out[a:b, c:e] = pairs.view(b - a, e - c)
        return out

    def loss(self, batch: SequenceBatch) -> torch.Tensor:
        states = self.user_embeddings(batch.users[batch.layout.token_seq])  # the user of every positive
        return self.next_item_loss(states, batch.targets, batch.negatives, self.loss_kind)
