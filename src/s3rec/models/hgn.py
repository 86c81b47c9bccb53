"""HGN: hierarchical gating network over the last L items, plus user and item-item terms.

Ma, Kang, Liu, "Hierarchical Gating Networks for Sequential Recommendation", KDD 2019, and the
authors' released code (allenjack/HGN). For the L most recent item embeddings E [L, d] and the user
embedding u:

- feature gating: ``E_f = E * sigmoid(E W_g1 + u W_g2 + b_g)`` (per dimension);
- instance gating: ``g = sigmoid(E_f w_g3 + u W_g4)`` (one weight per position, W_g4 is d x L) and
  the gated average ``s = sum_l g_l E_f[l] / sum_l g_l`` (padding positions excluded: a deviation
  from the released code, which counts their gates in the denominator);
- item-item product: the window's raw embeddings summed, ``sum_l E[l]``.

The score of item j is ``<u + s + sum_l E[l], W2_j> + b2_j`` with output embeddings W2 and biases b2
(the paper's Eq. 9, as the released code computes it). Training instances as Caser's: the window
up to each position predicts the next T items, each against the batch's sampled negative for that
target, with the BPR loss (the paper's).

Hyper-parameters (the released code's defaults): ``L = 5``, ``T = 3``, Adam lr 1e-3, no dropout;
d = 64 (S3-Rec's size, the paper's is 50). Weight decay 0, not the released code's L2 of 1e-3 (added
to the gradients inside Adam), chosen on Beauty's validation split: with 1e-3 HGN hardly learns (the
BPR loss stays near 0.64; validation MRR peaks at 0.171 at epoch 4 and early stopping ends the run at
epoch 14), with 1e-4 validation MRR is 0.264 after 13 epochs and levelling off, with 0 it is 0.313
after 13 and 0.327 after 28 (2026-11-27, seed 42). ``--set weight_decay=0.001`` restores it. Initialisation as the released
code: embeddings N(0, 1/d), b2 zero, gate vectors Xavier-uniform. The shared settings ``n_layers``,
``n_heads`` and the dropouts are not used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import WINDOW_MAX, ModelData, WindowModel
from .encoder import EncoderConfig


@dataclass(frozen=True)
class HGNParams:
    L: int = 5  # window of recent items (HGN released code)
    T: int = 3  # next items predicted from each window (ibid.)

    def checks(self) -> list[tuple[bool, str]]:
        return [(1 <= self.L <= WINDOW_MAX and 1 <= self.T <= WINDOW_MAX, f"L and T must be in 1..{WINDOW_MAX}")]


class HGN(WindowModel):
    """Feature gating, instance gating and item-item product over the last L items (Ma et al., KDD 2019)."""

    causal = True
    uses_users = True
    defaults = {"hidden_dropout": 0.0, "attn_dropout": 0.0, "weight_decay": 0.0, "loss": "bpr"}
    Params = HGNParams

    def __init__(self, data: ModelData, cfg: EncoderConfig, params: HGNParams = HGNParams(), loss: str = "bpr"):
        super().__init__()
        self.setup(data, cfg, params, loss)
        d, L = cfg.hidden_size, params.L
        self.user_embeddings = nn.Embedding(data.n_users, d)
        self.item_embeddings = nn.Embedding(data.n_items + 2, d, padding_idx=0)
        self.feature_gate_item = nn.Linear(d, d)
        self.feature_gate_user = nn.Linear(d, d)
        self.instance_gate_item = nn.Parameter(torch.empty(d, 1))
        self.instance_gate_user = nn.Parameter(torch.empty(d, L))
        self.W2 = nn.Embedding(data.n_items + 2, d)
        self.b2 = nn.Embedding(data.n_items + 2, 1)
        for emb in (self.user_embeddings, self.item_embeddings, self.W2):
            nn.init.normal_(emb.weight, 0.0, 1.0 / d)
        with torch.no_grad():
            self.item_embeddings.weight[0].zero_()
        nn.init.zeros_(self.b2.weight)
        nn.init.xavier_uniform_(self.instance_gate_item)
        nn.init.xavier_uniform_(self.instance_gate_user)

    def window_states(self, win: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """``[N, d]`` states ``u + s + sum_l E[l]`` of windows ``win [N, L]`` and their users ``[N]``."""
        E = self.item_embeddings(win)  # [N, L, d]
        u = self.user_embeddings(users)  # [N, d]
        Ef = E * torch.sigmoid(self.feature_gate_item(E) + self.feature_gate_user(u).unsqueeze(1))
        g = torch.sigmoid((Ef @ self.instance_gate_item).squeeze(2) + u @ self.instance_gate_user)  # [N, L]
        g = g * (win != 0)
        s = (Ef * g.unsqueeze(2)).sum(1) / g.sum(1, keepdim=True).clamp_min(1e-12)
        return u + s + E.sum(1)
