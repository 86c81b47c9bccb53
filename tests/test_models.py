"""The encoder models (``encode``/``output_embeddings``): shapes, no peeking at the future, learns a planted
pattern. Every registered model passes the contract-level battery in ``test_baselines.py``."""

from __future__ import annotations

import pytest
import torch

from conftest import cycle_sequences, write_dataset
from s3rec.config import TrainConfig, with_overrides
from s3rec.data.batches import SequenceTensors, eval_batch
from s3rec.data.store import load_files
from s3rec.evaluation import evaluate
from s3rec.models.sasrec import SASRec
from s3rec.models.encoder import EncoderConfig
from s3rec.train import build, train_epoch, train_users

CFG = EncoderConfig(hidden_size=16, n_heads=2, max_len=10, hidden_dropout=0.0, attn_dropout=0.0)
ENCODER_MODELS = {"sasrec": SASRec}


@pytest.fixture
def cycle(tmp_path):
    folder = write_dataset(tmp_path, "C", cycle_sequences(n_users=80, n_items=20, length=12))
    return load_files("C", folder / "C.txt", None)


@pytest.mark.parametrize("name", ENCODER_MODELS)
def test_shapes(name, cycle):
    model = ENCODER_MODELS[name](cycle.n_items, CFG).eval()
    batch = eval_batch(SequenceTensors(cycle), torch.arange(cycle.n_users), "test", CFG.max_len)
    h = model.encode(batch)
    assert h.shape == (batch.layout.n_rows, batch.layout.row_len, CFG.hidden_size)
    assert model.output_embeddings().shape == (cycle.n_items + 2, CFG.hidden_size)


@pytest.mark.parametrize("name", [n for n, cls in ENCODER_MODELS.items() if cls.causal])
def test_causal_models_never_look_at_the_future(name):
    model = ENCODER_MODELS[name](30, CFG).eval()
    items = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10, 11, 12]])
    later = items.clone()
    later[0, 6:] = torch.tensor([20, 21, 22, 23])
    positions = torch.arange(10)[None]
    mask = torch.zeros(1, 1, 10, 10).masked_fill_(~torch.ones(10, 10, dtype=torch.bool).tril(), -10000.0)
    with torch.no_grad():
        a, b = model(items, positions, mask), model(later, positions, mask)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


@pytest.mark.parametrize("name", ENCODER_MODELS)
def test_learns_a_deterministic_cycle(name, cycle):
    cfg = with_overrides(TrainConfig(), {"model": name, "hidden_size": 16, "max_len": 10, "batch_size": 16,
                                          "hidden_dropout": 0.1, "attn_dropout": 0.1, "lr": 0.01})
    model, opt = build(cfg, cycle)
    st = SequenceTensors(cycle)
    gen = torch.Generator().manual_seed(0)
    for _ in range(15):
        train_epoch(model, opt, st, train_users(cycle), cfg, gen)
    metrics, _ = evaluate(model, cycle, "test", "full", st=st)  # BCE never pushes history items down
    assert metrics["HR@1"] > 0.9  # chance is 1/9 (20 items, 11 in the history)
