"""PopRec: recommend the most popular items (the paper's simplest baseline)."""

from __future__ import annotations

import torch

from ..data.batches import SequenceBatch
from ..errors import ConfigError
from .base import ModelData, Recommender
from .encoder import EncoderConfig


class PopRec(Recommender):
    """Ranks items by their number of interactions in the training parts s[:-2] of all users
    (validation and test items are never counted). Nothing is trained: the counts are taken from the
    data when the model is built and kept as the ``popularity`` buffer. Items with equal counts tie
    (and ties count against the target). No hyper-parameters.
    """

    causal = False
    trainable = False
    losses = ("bce", "bpr", "ce")  # accepted and ignored: there is no training

    def __init__(self, data: ModelData, cfg: EncoderConfig, params=None, loss: str = "bce"):
        super().__init__()
        self.cfg = cfg
        self.n_items = data.n_items
        self.register_buffer("popularity", data.popularity.clone().float())

    def loss(self, batch: SequenceBatch) -> torch.Tensor:
        raise ConfigError("PopRec is not trained: it counts the training interactions when it is built")

    def user_states(self, batch: SequenceBatch) -> torch.Tensor:
        """Every user is the same to PopRec: a constant state ``[B, 1]``."""
        return torch.ones(len(batch.layout.lengths), 1, device=self.popularity.device)

    def score(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        if items is None:
            return states * self.popularity  # [B, n_items + 2]
        return states * self.popularity[items]
