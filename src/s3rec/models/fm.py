"""FM: a factorization machine over (user, item, item attributes), non-sequential.

Rendle, "Factorization Machines", ICDM 2010. Three fields: the user (one-hot), the candidate item
(one-hot) and the item's attributes (multi-valued: the field's embedding and first-order weight are
the **mean** over the item's distinct attributes, i.e. the attribute multi-hot normalised to sum 1,
as AutoInt and the usual FM implementations pool multi-valued fields; an item without attributes
has a zero attribute field). Score = w0 + sum of the fields' first-order weights + the sum of the
pairwise inner products of the three field embeddings (Rendle's Eq. 1 over fields).

Trained on (user, next item) positives of the fine-tuning batch against its sampled negatives
(one per positive) with the run's ``loss`` (BCE by default: log loss, as for CTR models).

Full-protocol scoring decomposes: with e_u, e_i the user and item embeddings and m_i the pooled
attribute embedding, score(u, i) = [w0 + w_u] + <e_u, e_i + m_i> + [w_i + w̄_attr(i) + <e_i, m_i>]:
a dot product plus a per-item bias, so every item is scored for every user by one matrix product.

Hyper-parameters: the factor size is the shared ``hidden_size`` (64, S3-Rec's setting for all
baselines); FM has none of its own. Adam, lr 1e-3 (the trainer's), no dropout.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.batches import SequenceBatch
from .base import AttributeMixin, ModelData, NoParams, Model, dot_scores
from .encoder import EncoderConfig, init_weights


class FM(AttributeMixin, Model):
    """Factorization machine over user, item and mean-pooled item attributes (Rendle, ICDM 2010)."""

    causal = False
    uses_users = True
    defaults = {"hidden_dropout": 0.0, "attn_dropout": 0.0}

    def __init__(self, data: ModelData, cfg: EncoderConfig, params: NoParams | None = None, loss: str = "bce"):
        super().__init__()
        self.setup(data, cfg, None, loss)
        d = cfg.hidden_size
        self.user_embeddings = nn.Embedding(data.n_users, d)
        self.user_bias = nn.Embedding(data.n_users, 1)
        self.item_embeddings = nn.Embedding(data.n_items + 2, d, padding_idx=0)
        self.item_bias = nn.Embedding(data.n_items + 2, 1, padding_idx=0)
        self.attribute_embeddings = nn.Embedding(data.n_attributes + 1, d, padding_idx=0)
        self.attribute_bias = nn.Embedding(data.n_attributes + 1, 1, padding_idx=0)
        self.global_bias = nn.Parameter(torch.zeros(1))
        self.apply(init_weights)
        for bias in (self.user_bias, self.item_bias, self.attribute_bias):
            nn.init.zeros_(bias.weight)
        self.register_attributes(data)

    def item_side(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``q [n_items + 2, D]`` (e_i + m_i) and ``b [n_items + 2]`` (the item-only terms)."""
        e = self.item_embeddings.weight
        m = self.mean_attributes(self.attribute_embeddings.weight)
        w_attr = self.mean_attributes(self.attribute_bias.weight).squeeze(1)
        return e + m, self.item_bias.weight.squeeze(1) + w_attr + (e * m).sum(-1)

    def user_states(self, batch: SequenceBatch) -> torch.Tensor:
        """``[B, D + 1]``: the user embedding and the user's constant term w0 + w_u."""
        u = batch.users
        return torch.cat([self.user_embeddings(u), self.global_bias + self.user_bias(u)], 1)

    def score(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        q, b = self.item_side()
        return dot_scores(states[:, :-1], q, items, b) + states[:, -1:]

    def loss(self, batch: SequenceBatch) -> torch.Tensor:
        lay = batch.layout
        u = batch.users[lay.token_seq]  # the user of every positive (one per token)
        states = torch.cat([self.user_embeddings(u), self.global_bias + self.user_bias(u)], 1)
        return self.next_item_loss(states, batch.targets, batch.negatives, self.loss_kind)
