"""evaluate(): every protocol's candidate set, checked user by user against a plain-loop oracle.

The fake model's hidden state at each slot is the one-hot vector of the item in that slot, so the
last-position state names the user's last input item, and the score of candidate c is exactly
``table[c, last]`` (no rounding anywhere). Integer-valued tables make ties frequent, which also
exercises the tie rule end to end.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from s3rec.errors import DivergedError
from torch import nn

import s3rec.evaluation as ev
from s3rec.data.batches import SequenceTensors
from s3rec.data.store import load_files
from s3rec.evaluation import PROTOCOLS, evaluate
from s3rec.metrics import metrics_from_ranks
from s3rec.models.base import dot_scores
from s3rec.models.encoder import EncoderConfig

from conftest import synthetic_sequences, write_dataset

HOLD = {"valid": 2, "test": 1}

# Tiny hand-made dataset (12 items). User 20 repeats: valid target 7 is in s[:-2] = [7, 8, 9] and
# test target 8 is in s[:-1] = [7, 8, 9, 7]. User 40 is longer than max_len = 4: its valid target 12
# occurs only outside the last-4 window of its input, so only the uncut history catches it.
TINY = {
    10: [1, 2, 3, 4, 5, 6],
    20: [7, 8, 9, 7, 8],
    30: [3, 10, 11],
    40: [12, 9, 1, 2, 3, 4, 12, 5],
    50: [11, 6, 2, 10, 1],
}


class FakeModel(nn.Module):
    """encode() -> one-hot of each slot's item; output_embeddings() -> a fixed table; the model contract
    (``user_states``: the last slot's state, ``score``: dot products with the table) over them."""

    packed_ok = True

    def __init__(self, n_items: int, max_len: int = 4, integer: bool = True, seed: int = 0):
        super().__init__()
        D = n_items + 2
        self.cfg = EncoderConfig(hidden_size=D, max_len=max_len)
        self.causal = True
        g = torch.Generator().manual_seed(seed)
        if integer:
            self.table = torch.randint(-2, 3, (n_items + 2, D), generator=g).float()
        else:
            self.table = torch.randn(n_items + 2, D, generator=g)
        self.child = nn.Linear(2, 2)  # so that train()/eval() has a submodule to reach
        self.training_seen: list[bool] = []
        self.nan_hidden = False

    def encode(self, batch):
        self.training_seen.append(self.training)
        h = torch.eye(self.cfg.hidden_size)[batch.items]  # [R, P, D]
        if self.nan_hidden:
            h = h * float("nan")
        return h

    def output_embeddings(self):
        return self.table

    def user_states(self, batch):
        h = self.encode(batch)
        return h.reshape(-1, h.shape[-1])[batch.layout.last_slot]

    def score(self, states, items=None):
        return dot_scores(states, self.output_embeddings(), items)


def loop_rank(scores: list[float], t: int) -> int:
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j == t))
    return order.index(t) + 1


def oracle(model: FakeModel, ds, split: str, protocol: str) -> tuple[list[int], int]:
    """Ranks per user, and how many targets repeat a history item, from plain loops."""
    n = ds.n_items
    rows = model.table.tolist()  # [n_items + 2][D]
    D = len(rows[0])
    ranks, in_hist = [], 0
    for k in range(ds.n_users):
        s = ds.sequence(k).tolist()
        history, target = s[: -HOLD[split]], s[-HOLD[split]]
        last = history[-1]
        h = [1.0 if d == last else 0.0 for d in range(D)]  # the hidden state at the last input slot

        def score(c: int) -> float:
            return sum(a * b for a, b in zip(rows[c], h))

        in_hist += target in history
        if protocol == "sampled":
            cands = [target] + ds.negatives[k].tolist()
            scores = [score(c) for c in cands]
            t = 0
        elif protocol == "full":
            cands = list(range(1, n + 1))
            scores = [-math.inf if c in history else score(c) for c in cands]
            t = cands.index(target)
        elif protocol == "full-unmasked":
            cands = list(range(1, n + 1))
            scores = [score(c) for c in cands]
            t = cands.index(target)
        else:  # full-original: padding 0 and mask n + 1 ranked too, history scored 0
            cands = list(range(0, n + 2))
            scores = [0.0 if c in history else score(c) for c in cands]
            t = cands.index(target)
        ranks.append(loop_rank(scores, t))
    return ranks, in_hist


def make_negatives(ds, width: int, seed: int = 0) -> np.ndarray:
    """Per user, ``width`` distinct items outside the user's whole sequence."""
    rng = np.random.default_rng(seed)
    out = np.zeros((ds.n_users, width), dtype=np.int64)
    for k in range(ds.n_users):
        pool = sorted(set(range(1, ds.n_items + 1)) - set(ds.sequence(k).tolist()))
        out[k] = rng.choice(pool, size=width, replace=False)
    return out


@pytest.fixture
def tiny(tmp_path):
    folder = write_dataset(tmp_path / "d", "Tiny", TINY)
    ds = load_files("Tiny", folder / "Tiny.txt", None)
    ds.negatives = make_negatives(ds, 4)
    return ds


@pytest.fixture
def rand_ds(tmp_path):
    """40 users, 30 items, with repeated items appended so that some targets are in the history."""
    seqs = synthetic_sequences(n_users=40, n_items=30, min_len=3, max_len=9, seed=3)
    rng = np.random.default_rng(5)
    for j, u in enumerate(list(seqs)[::3]):
        s = seqs[u]
        if j % 2:  # the test target repeats an earlier item
            s.append(s[int(rng.integers(0, len(s) - 1))])
        else:  # the valid target does
            s.insert(len(s) - 1, s[int(rng.integers(0, len(s) - 2))])
    folder = write_dataset(tmp_path / "r", "Rand", seqs)
    ds = load_files("Rand", folder / "Rand.txt", None)
    ds.negatives = make_negatives(ds, 10, seed=1)
    return ds


@pytest.fixture
def captured(monkeypatch):
    """The exact ranks evaluate() passes to metrics_from_ranks."""
    seen = []

    def spy(ranks):
        seen.append(ranks.clone())
        return metrics_from_ranks(ranks)

    monkeypatch.setattr(ev, "metrics_from_ranks", spy)
    return seen


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("split", ["valid", "test"])
def test_tiny_matches_oracle(tiny, captured, protocol, split):
    model = FakeModel(tiny.n_items, max_len=4)
    expected, in_hist = oracle(model, tiny, split, protocol)
    for chunk in (1, 2, 1024):
        captured.clear()
        metrics, info = evaluate(model, tiny, split, protocol, chunk=chunk)
        assert captured[0].tolist() == expected
        assert metrics == pytest.approx(metrics_from_ranks(torch.tensor(expected)), abs=1e-12)
        assert info["users"] == tiny.n_users and info["protocol"] == protocol and info["split"] == split
        if protocol == "full":
            assert info["targets_in_history"] == in_hist
        else:
            assert "targets_in_history" not in info


@pytest.mark.parametrize("integer", [True, False])
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("split", ["valid", "test"])
def test_random_matches_oracle(rand_ds, captured, protocol, split, integer):
    model = FakeModel(rand_ds.n_items, max_len=5, integer=integer, seed=11)
    expected, in_hist = oracle(model, rand_ds, split, protocol)
    st = SequenceTensors(rand_ds)
    for chunk in (7, 1024):
        captured.clear()
        _, info = evaluate(model, rand_ds, split, protocol, st=st, chunk=chunk)
        assert captured[0].tolist() == expected
        if protocol == "full":
            assert info["targets_in_history"] == in_hist
    if protocol == "full":
        assert in_hist > 0  # the fixture really has repeat targets


def test_tiny_hand_facts(tiny, captured):
    """Facts about the tiny set that do not depend on the oracle."""
    n = tiny.n_items
    model = FakeModel(n, max_len=4)
    rows = {int(u): k for k, u in enumerate(tiny.user_ids)}
    _, info = evaluate(model, tiny, "valid", "full")
    assert info["targets_in_history"] == 2  # users 20 (7) and 40 (12, outside the max_len window)
    assert captured[-1][rows[20]] == n and captured[-1][rows[40]] == n  # removed targets: certain misses
    _, info = evaluate(model, tiny, "test", "full")
    assert info["targets_in_history"] == 1  # user 20 (8)
    assert captured[-1][rows[20]] == n
    assert captured[-1][rows[40]] < n
    # sampled: 1 target + 4 negatives, so every rank is in 1..5
    evaluate(model, tiny, "test", "sampled")
    assert 1 <= int(captured[-1].min()) and int(captured[-1].max()) <= 5
    # full-original ranks n + 2 rows
    evaluate(model, tiny, "test", "full-original")
    assert int(captured[-1].max()) <= n + 2


def test_all_equal_scores_rank_target_last(tiny, captured):
    model = FakeModel(tiny.n_items)
    model.table = torch.ones_like(model.table)
    n = tiny.n_items
    width = tiny.negatives.shape[1] + 1
    evaluate(model, tiny, "test", "sampled")
    assert captured[-1].tolist() == [width] * tiny.n_users
    evaluate(model, tiny, "test", "full-unmasked")
    assert captured[-1].tolist() == [n] * tiny.n_users
    evaluate(model, tiny, "test", "full")  # history at -inf is below the target; the rest ties it
    expected = [n - len(set(s[:-1])) if s[-1] not in s[:-1] else n for s in map(list, TINY.values())]
    assert captured[-1].tolist() == expected


def test_full_original_ranks_padding_and_mask(tiny, captured):
    """Padding (0) and mask (n + 1) are candidates only in full-original."""
    n = tiny.n_items
    model = FakeModel(n)
    model.table = torch.zeros_like(model.table)
    model.table[0] = 5.0
    model.table[n + 1] = 5.0
    evaluate(model, tiny, "test", "full-original")
    # every item (history at 0 too) ties at 0, and padding and mask beat the target
    assert captured[-1].tolist() == [n + 2] * tiny.n_users
    for protocol in ("full", "full-unmasked"):
        evaluate(model, tiny, "test", protocol)
        assert int(captured[-1].max()) <= n


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nan_scores_raise(tiny, protocol):
    model = FakeModel(tiny.n_items)
    model.nan_hidden = True
    model.train()
    with pytest.raises(DivergedError):
        evaluate(model, tiny, "valid", protocol)
    assert model.training and model.child.training  # mode restored even on the error


def test_nan_in_padding_row_matters_only_for_full_original(tiny):
    model = FakeModel(tiny.n_items)
    model.table[0] = float("nan")
    with pytest.raises(DivergedError):
        evaluate(model, tiny, "test", "full-original")
    for protocol in ("sampled", "full", "full-unmasked"):
        evaluate(model, tiny, "test", protocol)


@pytest.mark.parametrize("chunk", [None, 2])
def test_one_nan_item_is_found_whatever_the_chunk_and_infinities_are_not_nan(tiny, chunk):
    """The NaN check looks at every score of every chunk, beside the full protocol's -inf history and
    huge scores whose sum would overflow (not NaN: no error)."""
    model = FakeModel(tiny.n_items)
    model.table[3] = 3e38
    model.table[4] = 3e38
    for protocol in ("full", "full-unmasked", "full-original"):
        evaluate(model, tiny, "test", protocol, chunk=chunk)
    model.table[3] = float("nan")
    for protocol in ("full", "full-unmasked", "full-original"):
        with pytest.raises(DivergedError):
            evaluate(model, tiny, "test", protocol, chunk=chunk)


@pytest.mark.parametrize("start_training", [True, False])
def test_eval_mode_during_and_restored_after(tiny, start_training):
    model = FakeModel(tiny.n_items)
    model.train(start_training)
    evaluate(model, tiny, "test", "full")
    assert model.training_seen and not any(model.training_seen)  # encode ran in eval mode
    assert model.training is start_training and model.child.training is start_training


def test_bad_arguments(tiny):
    model = FakeModel(tiny.n_items)
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate(model, tiny, "test", "nope")
    tiny.negatives = None
    with pytest.raises(ValueError, match="negatives"):
        evaluate(model, tiny, "test", "sampled")
    evaluate(model, tiny, "test", "full")  # the full protocols need no negatives
