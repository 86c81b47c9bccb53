"""GRU4Rec and GRU4Rec_F: recurrent next-item models over the item sequence (and its attributes).

GRU4Rec: Hidasi, Karatzoglou, Baltrunas, Tikk, "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016. Item embeddings (d = 64, S3-Rec's size) feed a GRU; the hidden state after each
item, with dropout, scores every item by a dot product with the item embedding table. Every
position predicts its next item (the fine-tuning batch's targets).

GRU4Rec_F: Hidasi, Quadrana, Karatzoglou, Tikk, "Parallel Recurrent Neural Network Architectures
for Feature-rich Session-based Recommendations", RecSys 2016 (p-RNN, the "parallel" architecture):
one GRU over the item embeddings and one over the items' feature vectors, here the mean of each
item's distinct attribute embeddings; their hidden states are concatenated and a linear layer maps
them back to d to score the items.

Hyper-parameters (shared settings): one GRU layer (``n_layers = 1``, the paper's best: "a single
layer of GRU units"), hidden size = d, dropout 0.5 on the hidden state (``hidden_dropout``, the
released code's ``dropout_p_hidden`` default), pairwise BPR loss against the batch's sampled
negative (``loss = bpr``: the paper's BPR/TOP1 use in-batch negatives, which these batches do not
provide). Adam, lr 1e-3 (the paper uses Adagrad; one optimiser for all models here).

Sequences are read from the tokens of any batch layout and run through the GRU left-aligned and
packed (``pack_padded_sequence``), so padding never enters the recurrence.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..data.batches import SequenceBatch
from .base import AttributeMixin, ModelData, NoParams, Model, dot_scores, last_tokens, token_items
from .encoder import Dropout, EncoderConfig, init_weights

GRU_DEFAULTS = {"n_layers": 1, "hidden_dropout": 0.5, "attn_dropout": 0.0, "loss": "bpr"}


def run_gru(gru: nn.GRU, batch: SequenceBatch, x: torch.Tensor) -> torch.Tensor:
    """The GRU's output after every token ``[T, H]`` for per-token inputs ``x [T, E]``."""
    lay = batch.layout
    B, width = len(lay.lengths), int(lay.lengths.max())
    grid = x.new_zeros(B, width, x.shape[-1])
    grid[lay.token_seq, lay.token_pos] = x  # left-aligned
    packed = pack_padded_sequence(grid, lay.lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = gru(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=width)
    return out[lay.token_seq, lay.token_pos]


class GRU4Rec(Model):
    """GRU over item embeddings, next-item prediction at every position (Hidasi et al., ICLR 2016)."""

    causal = True
    defaults = GRU_DEFAULTS

    def __init__(self, data: ModelData, cfg: EncoderConfig, params: NoParams | None = None, loss: str = "bpr"):
        super().__init__()
        self.setup(data, cfg, None, loss)
        d = cfg.hidden_size
        self.item_embeddings = nn.Embedding(data.n_items + 2, d, padding_idx=0)
        self.gru = nn.GRU(d, d, num_layers=cfg.n_layers, batch_first=True)
        self.dropout = Dropout(cfg.hidden_dropout)
        init_weights(self.item_embeddings)

    def position_states(self, batch: SequenceBatch) -> torch.Tensor:
        return self.dropout(run_gru(self.gru, batch, self.item_embeddings(token_items(batch))))

    def user_states(self, batch: SequenceBatch) -> torch.Tensor:
        return self.position_states(batch)[last_tokens(batch)]

    def score(self, states: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        return dot_scores(states, self.item_embeddings.weight, items)

    def output_table(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.item_embeddings.weight, None

    def loss(self, batch: SequenceBatch) -> torch.Tensor:
        return self.next_item_loss(self.position_states(batch), batch.targets, batch.negatives, self.loss_kind)


class GRU4RecF(AttributeMixin, GRU4Rec):
    """p-RNN: parallel GRUs over item embeddings and mean-pooled attribute embeddings, hidden states
    concatenated and mapped to d (Hidasi et al., RecSys 2016)."""

    def __init__(self, data: ModelData, cfg: EncoderConfig, params: NoParams | None = None, loss: str = "bpr"):
        super().__init__(data, cfg, params, loss)
        d = cfg.hidden_size
        self.attribute_embeddings = nn.Embedding(data.n_attributes + 1, d, padding_idx=0)
        self.feature_gru = nn.GRU(d, d, num_layers=cfg.n_layers, batch_first=True)
        self.merge = nn.Linear(2 * d, d)
        init_weights(self.attribute_embeddings)
        init_weights(self.merge)
        self.register_attributes(data)

    def position_states(self, batch: SequenceBatch) -> torch.Tensor:
        items = token_items(batch)
        h_item = run_gru(self.gru, batch, self.item_embeddings(items))
        h_attr = run_gru(self.feature_gru, batch, self.mean_attributes(self.attribute_embeddings.weight)[items])
        return self.merge(self.dropout(torch.cat([h_item, h_attr], -1)))

