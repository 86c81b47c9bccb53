"""Fine-tuning batches against a plain-loop oracle written from docs/semantics.md (#data's split, #fine-tuning)."""

from __future__ import annotations

import collections

import pytest
import torch

from conftest import synthetic_sequences, write_dataset
from s3rec.data.batches import SequenceTensors, finetune_batch, sample_negatives
from s3rec.data.store import load_files
from s3rec.train import train_users

MAX_LEN = 8


def _load(tmp_path, seqs, name="B"):
    folder = write_dataset(tmp_path, name, seqs)
    return load_files(name, folder / f"{name}.txt", None)


def test_batch_matches_plain_loop_oracle(tmp_path):
    ds = _load(tmp_path, synthetic_sequences(n_users=25, n_items=40, min_len=3, max_len=15, seed=5))
    st = SequenceTensors(ds)
    users = train_users(ds)
    assert all(len(ds.sequence(k)) > 3 for k in users.tolist())
    assert len(users) < ds.n_users  # users with exactly 3 items have no fine-tuning input
    batch = finetune_batch(st, users, torch.Generator().manual_seed(0), MAX_LEN)
    lay = batch.layout
    flat_items = batch.items.view(-1)
    flat_pos = lay.positions.view(-1)
    for i, k in enumerate(users.tolist()):
        s = ds.sequence(k).tolist()
        inp = s[:-3][-MAX_LEN:]  # fine-tuning input
        tgt = s[1:-2][-MAX_LEN:]  # the next item at every position
        sel = lay.token_seq == i
        slots = lay.token_slot[sel]
        assert flat_items[slots].tolist() == inp
        assert batch.targets[sel].tolist() == tgt
        assert flat_pos[slots].tolist() == list(range(MAX_LEN - len(inp), MAX_LEN))
        assert lay.last_slot[i] == slots[-1]
        negs = batch.negatives[sel].tolist()
        assert all(1 <= n <= ds.n_items and n not in s for n in negs)
    # empty slots hold padding
    used = torch.zeros_like(flat_items, dtype=torch.bool)
    used[lay.token_slot] = True
    assert (flat_items[~used] == 0).all()


def test_negatives_uniform_outside_the_whole_sequence(tmp_path):
    seqs = {1: [1, 2, 3, 4, 5], 2: [6, 7, 8, 9, 10], 3: [1, 6, 2, 7, 3]}
    ds = _load(tmp_path, seqs)
    st = SequenceTensors(ds)
    users = torch.zeros(30000, dtype=torch.long)  # user row 0: items 1..5 are excluded
    negs = sample_negatives(st, users, torch.Generator().manual_seed(0))
    counts = collections.Counter(negs.tolist())
    assert set(counts) == {6, 7, 8, 9, 10}  # never own items, padding or mask_id (11)
    for c in counts.values():
        assert abs(c / len(negs) - 0.2) < 0.015


def test_original_sampler_can_draw_the_mask_id(tmp_path):
    ds = _load(tmp_path, {1: [1, 2, 3, 4], 2: [5, 1, 2, 3]})
    st = SequenceTensors(ds)
    negs = sample_negatives(st, torch.zeros(2000, dtype=torch.long), torch.Generator().manual_seed(0), "original")
    assert set(negs.tolist()) == {5, ds.mask_id}  # the released code's defect, kept as an option
    fixed = sample_negatives(st, torch.zeros(2000, dtype=torch.long), torch.Generator().manual_seed(0))
    assert set(fixed.tolist()) == {5}


def test_unknown_sampler_rejected(tmp_path):
    ds = _load(tmp_path, {1: [1, 2, 3, 4], 2: [5, 1, 2, 3]})
    with pytest.raises(ValueError):
        sample_negatives(SequenceTensors(ds), torch.zeros(2, dtype=torch.long), torch.Generator(), "bogus")
