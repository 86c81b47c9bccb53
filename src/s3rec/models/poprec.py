"""PopRec: recommend the most popular items (the paper's simplest baseline)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.batches import SequenceBatch
from ..errors import ConfigError
from .base import ModelData, Model
from .encoder import EncoderConfig

COUNTS = ("history", "train")


@dataclass(frozen=True)
class PopRecParams:
    # history: count everything before the target being ranked (s[:-2] for validation, s[:-1] for
    # test and for recommendations), the data every sequential model reads as input at that split.
    # train: count only the training parts s[:-2], also at test time (the paper's wording).
    count: str = "history"

    def checks(self) -> list[tuple[bool, str]]:
        return [(self.count in COUNTS, f"count must be one of {COUNTS}")]


class PopRec(Model):
    """Ranks items by their number of interactions over all users. Nothing is trained: the counts are
    taken from the data when the model is built and kept as buffers. ``count=history`` (default) counts
    everything that precedes the target being ranked: s[:-2] when validating, s[:-1] when testing (each
    user's validation item is then known history, as it is for the sequential models); no validation or
    test target is ever counted where it is ranked. ``count=train`` counts s[:-2] for both splits.
    Items with equal counts tie (and ties count against the target).
    """

    causal = False
    trainable = False
    losses = ("bce", "bpr", "ce")  # accepted and ignored: there is no training
    Params = PopRecParams

    def __init__(self, data: ModelData, cfg: EncoderConfig, params: PopRecParams = PopRecParams(), loss: str = "bce"):
        super().__init__()
        self.cfg = cfg
        self.params = params
        self.n_items = data.n_items
        self.register_buffer("popularity", data.popularity.clone().float())
        self.register_buffer("popularity_history", data.popularity_history.clone().float())

    def loss(self, batch: SequenceBatch) -> torch.Tensor:
        raise ConfigError("PopRec is not trained: it counts the training interactions when it is built")

    def user_states(self, batch: SequenceBatch) -> torch.Tensor:
        """Every user is the same to PopRec; the state ``[B, 2]`` picks the counts: ``[1, 0]`` the
        training parts, ``[0, 1]`` the histories s[:-1] (test inputs and given histories)."""
        use_history = self.params.count == "history" and batch.split != "valid"
        states = torch.zeros(len(batch.layout.lengths), 2, device=self.popularity.device)
        states[:, int(use_history)] = 1.0
        return states

    def score(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        table = torch.stack([self.popularity, self.popularity_history])  # [2, n_items + 2]
        if items is None:
            return states @ table  # [B, n_items + 2]; exact: states are one-hot
        return (states[:, :, None] * table[:, items].transpose(0, 1)).sum(1)  # [B, C]
