"""Caser: convolutional sequence embedding over the last L items, plus a user embedding.

Tang & Wang, "Personalized Top-N Sequential Recommendation via Convolutional Sequence Embedding",
WSDM 2018, and the authors' released code (graytowne/caser_pytorch). The L most recent item
embeddings form an L x d "image": ``n_v`` vertical filters (L x 1, no activation) and, for every
height h in 1..L, ``n_h`` horizontal filters (h x d, ReLU, max-pooled over time) are concatenated,
dropped out, and a fully connected layer with ReLU gives z (size d). The state is [z; P_u] (the
user embedding P_u); an item is scored by ``<W2_i, [z; P_u]> + b2_i`` with its own output
embedding W2 (size 2d) and bias.

Training instances (the paper's Markov window): the L items up to each position predict the next
T items (fewer at the end of the sequence), each against the batch's sampled negative for that
target, binary cross-entropy (the paper's loss; it draws 3 negatives per instance, here one per
target). Windows at the start of a sequence are left-padded with the zero padding item (the
released code pads short sequences the same way). Evaluation uses the last L items of the history.

Hyper-parameters (the released code's defaults, which the paper reports for its datasets):
``L = 5``, ``T = 3``, ``n_v = 4``, ``n_h = 16``, dropout 0.5 (``hidden_dropout``), Adam lr 1e-3 with
L2 weight decay 1e-6; d = 64 (S3-Rec's size, the paper's is 50). Initialisation as the released code:
item and user embeddings N(0, 1/d), W2 N(0, 1/2d), b2 zero. The shared settings ``n_layers``,
``n_heads`` and ``attn_dropout`` are not used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import WINDOW_MAX, ModelData, WindowModel
from .encoder import Dropout, EncoderConfig

FILTERS_MAX = 4096  # the most vertical (n_v) or horizontal (n_h per height) filters


@dataclass(frozen=True)
class CaserParams:
    L: int = 5  # window of recent items (caser_pytorch default)
    T: int = 3  # next items predicted from each window (ibid.)
    n_v: int = 4  # vertical filters (ibid.)
    n_h: int = 16  # horizontal filters per height (ibid.)

    def checks(self) -> list[tuple[bool, str]]:
        return [(1 <= self.L <= WINDOW_MAX and 1 <= self.T <= WINDOW_MAX, f"L and T must be in 1..{WINDOW_MAX}"),
                (1 <= self.n_v <= FILTERS_MAX and 1 <= self.n_h <= FILTERS_MAX, f"n_v and n_h must be in 1..{FILTERS_MAX}")]


class Caser(WindowModel):
    """Horizontal + vertical convolutions over the last L item embeddings, user embedding (Tang & Wang, WSDM 2018)."""

    causal = True
    uses_users = True
    defaults = {"hidden_dropout": 0.5, "attn_dropout": 0.0, "weight_decay": 1e-6, "loss": "bce"}
    Params = CaserParams

    def __init__(self, data: ModelData, cfg: EncoderConfig, params: CaserParams = CaserParams(), loss: str = "bce"):
        super().__init__()
        self.setup(data, cfg, params, loss)
        d, L = cfg.hidden_size, params.L
        self.user_embeddings = nn.Embedding(data.n_users, d)
        self.item_embeddings = nn.Embedding(data.n_items + 2, d, padding_idx=0)
        self.conv_v = nn.Conv2d(1, params.n_v, (L, 1))
        self.conv_h = nn.ModuleList(nn.Conv2d(1, params.n_h, (h, d)) for h in range(1, L + 1))
        self.fc1 = nn.Linear(params.n_v * d + params.n_h * L, d)
        self.dropout = Dropout(cfg.hidden_dropout)
        self.W2 = nn.Embedding(data.n_items + 2, 2 * d)
        self.b2 = nn.Embedding(data.n_items + 2, 1)
        nn.init.normal_(self.user_embeddings.weight, 0.0, 1.0 / d)
        nn.init.normal_(self.item_embeddings.weight, 0.0, 1.0 / d)
        with torch.no_grad():
            self.item_embeddings.weight[0].zero_()
        nn.init.normal_(self.W2.weight, 0.0, 1.0 / (2 * d))
        nn.init.zeros_(self.b2.weight)

    def window_states(self, win: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """``[N, 2d]`` states [z; P_u] of windows ``win [N, L]`` of item ids and their users ``[N]``."""
        E = self.item_embeddings(win).unsqueeze(1)  # [N, 1, L, d]
        out_v = self.conv_v(E).flatten(1)  # [N, n_v * d]
        out_h = [F.relu(conv(E).squeeze(3)).amax(2) for conv in self.conv_h]  # each [N, n_h]
        z = F.relu(self.fc1(self.dropout(torch.cat([out_v, *out_h], 1))))
        return torch.cat([z, self.user_embeddings(users)], 1)
