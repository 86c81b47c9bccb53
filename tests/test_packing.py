"""Packed rows with block-diagonal attention are exactly equivalent to padding every sequence to max_len.

The reference here is written independently, the way the released code builds a batch: left-pad
each input to max_len, positions 0..max_len-1, additive mask ``(1 - pad_mask * tril) * -10000``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import synthetic_sequences, write_dataset
from s3rec.data.batches import SequenceTensors, eval_batch, finetune_batch
from s3rec.data.packing import make_layout
from s3rec.data.store import load_files
from s3rec.losses import bce_next_item
from s3rec.models.encoder import EncoderConfig
from s3rec.models.sasrec import SASRec

MAX_LEN = 12


@pytest.fixture
def ds(tmp_path):
    seqs = synthetic_sequences(n_users=30, n_items=60, min_len=4, max_len=20, seed=3)
    folder = write_dataset(tmp_path, "T", seqs)
    return load_files("T", folder / "T.txt", None)


def _model(n_items, seed=0):
    torch.manual_seed(seed)
    return SASRec(n_items, EncoderConfig(hidden_size=16, n_heads=2, max_len=MAX_LEN, hidden_dropout=0.0, attn_dropout=0.0))


def padded_reference_hidden(model, inputs: list[list[int]]) -> torch.Tensor:
    """Authors-style padded forward: ``[B, max_len, D]`` hidden states."""
    ids = torch.tensor([[0] * (MAX_LEN - len(s)) + s for s in inputs])
    pad = (ids > 0).long()[:, None, None, :]  # [B, 1, 1, L]
    sub = torch.tril(torch.ones(MAX_LEN, MAX_LEN, dtype=torch.long))[None, None]
    mask = (1.0 - (pad * sub).float()) * -10000.0
    positions = torch.arange(MAX_LEN).expand_as(ids)
    return model(ids, positions, mask)


def _inputs(ds, users, lo, hi):
    out = []
    for k in users.tolist():
        s = ds.sequence(k).tolist()
        out.append(s[lo : len(s) - hi][-MAX_LEN:])
    return out


@pytest.mark.parametrize("packed", [True, False])
def test_finetune_loss_and_gradients_equal_padding(ds, packed):
    model = _model(ds.n_items)
    st = SequenceTensors(ds)
    users = torch.randperm(ds.n_users, generator=torch.Generator().manual_seed(1))[:16]
    batch = finetune_batch(st, users, torch.Generator().manual_seed(2), MAX_LEN, packed=packed)
    if packed:
        assert batch.layout.n_rows < len(users)  # rows really are shared
    loss = model.loss(batch)  # SASRec's default loss, "bce"
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    # reference: the same users, the same negatives (tokens are in sequence-major order)
    inputs = _inputs(ds, users, 0, 3)
    targets = _inputs(ds, users, 1, 2)
    h = padded_reference_hidden(model, inputs)  # [B, L, D]
    real = torch.tensor([[0] * (MAX_LEN - len(s)) + [1] * len(s) for s in inputs], dtype=torch.bool)
    h_tok = h[real]  # row-major == sequence-major order
    ref_targets = torch.tensor([t for seq in targets for t in seq])
    assert torch.equal(ref_targets, batch.targets)
    ref_loss = bce_next_item(h_tok, model.item_embeddings.weight, ref_targets, batch.negatives)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-6, msg=lambda m: f"{n}: {m}")


@pytest.mark.parametrize("split,hold", [("valid", 2), ("test", 1)])
def test_eval_last_hidden_equals_padding(ds, split, hold):
    model = _model(ds.n_items).eval()
    st = SequenceTensors(ds)
    users = torch.arange(ds.n_users)
    batch = eval_batch(st, users, split, MAX_LEN)
    with torch.no_grad():
        h = model.encode(batch)
        last = h.reshape(-1, h.shape[-1])[batch.layout.last_slot]
        ref = padded_reference_hidden(model, _inputs(ds, users, 0, hold))[:, -1]
    torch.testing.assert_close(last, ref, rtol=1e-5, atol=1e-5)


def test_layout_positions_and_mask():
    lengths = torch.tensor([3, 5, 2, 4])
    lay = make_layout(lengths, max_len=6, causal=True, mask_value=-1.0, packed=True, row_len=8)
    assert lay.n_rows == 2  # 5+3 and 4+2 fit in rows of 8
    # every token keeps the position it would have when left-padded to max_len
    pos = lay.positions.view(-1)[lay.token_slot]
    expected = torch.cat([torch.arange(6 - n, 6) for n in lengths.tolist()])
    assert torch.equal(pos, expected)
    # a token attends exactly to the earlier tokens of its own sequence
    m = lay.mask[:, 0]
    slot_seq = torch.full((lay.n_rows * 8,), -1)
    slot_seq[lay.token_slot] = lay.token_seq
    for a in lay.token_slot.tolist():
        for b in range(lay.n_rows * 8):
            same_row = a // 8 == b // 8
            allowed = same_row and slot_seq[a] == slot_seq[b] and b % 8 <= a % 8
            got = same_row and m[a // 8, a % 8, b % 8] == 0
            assert bool(got) == allowed
    # last slot of each sequence holds its last token
    assert torch.equal(lay.last_slot, lay.token_slot[torch.cumsum(lengths, 0) - 1])


def test_packing_is_compact():
    rng = np.random.default_rng(0)
    lengths = torch.tensor(np.minimum(rng.geometric(1 / 7, size=500), 50))  # like real prefix lengths
    lay = make_layout(lengths, 50, True, -1.0)
    lower_bound = int(np.ceil(lengths.sum().item() / 50))
    assert lay.n_rows <= lower_bound * 1.05 + 1
    # no slot is used twice
    assert len(torch.unique(lay.token_slot)) == len(lay.token_slot)


def test_packing_efficiency_counts():
    """benchmarks/packing_efficiency.py's counts on a layout worked out by hand: lengths 3, 2 and 4 in
    rows of 5 take two rows (4 and one empty slot, then 3 + 2)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "packing_efficiency.py"
    spec = importlib.util.spec_from_file_location("packing_efficiency", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    lay = make_layout(torch.tensor([3, 2, 4]), max_len=5, causal=False, mask_value=-1e8)
    use = bench.layout_use([lay, lay])
    assert (lay.n_rows, use["tokens"], use["slots"], use["batches"]) == (2, 18, 20, 2)
    assert use["slot_use"] == pytest.approx(0.9)
    assert use["attention_use"] == pytest.approx((9 + 4 + 16) / 50)
    assert bench.layout_use([lay], causal=True)["attention_use"] == pytest.approx((6 + 3 + 10) / 50)
