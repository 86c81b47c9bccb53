"""The pre-training step's optional paths (``compile``, ``prefetch``) compute what the eager step does."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import pretrain_terms_and_grads, synthetic_sequences, write_dataset
from s3rec import pretraining
from s3rec.config import PretrainConfig
from s3rec.data.store import load_files
from s3rec.pretraining import Pretrainer, pretrain

MAX_LEN = 10


@pytest.fixture
def ds(tmp_path):
    seqs = synthetic_sequences(n_users=30, n_items=80, min_len=3, max_len=18, seed=11)
    attrs = {i: [1 + i % 6, 1 + (i * 5) % 11] for i in range(1, 81) if i % 5}
    folder = write_dataset(tmp_path, "P", seqs, attrs)
    return load_files("P", folder / "P.txt", folder / "P_item2attributes.json")


def _cfg(**kw):
    return PretrainConfig(dataset="P", hidden_size=16, max_len=MAX_LEN, batch_size=20, hidden_dropout=0.0,
                          attn_dropout=0.0, **kw)


def test_compiled_losses_and_gradients_equal_the_eager_ones(ds):
    """torch.compile (inductor, dynamic shapes) over three batches of different shapes: the same four
    terms and gradients as the eager step, and it really compiled (no fall-back warning)."""
    warnings = []
    eager = Pretrainer(_cfg(), ds)
    fast = Pretrainer(_cfg(compile="default"), ds, log=warnings.append)
    fast.model.load_state_dict(eager.model.state_dict())
    gen = torch.Generator().manual_seed(3)
    for idx in eager.epoch_order(gen)[:3]:
        batch = eager.batch(idx, gen)
        want_terms, want_grads = pretrain_terms_and_grads(eager, batch)
        got_terms, got_grads = pretrain_terms_and_grads(fast, batch)
        for k in want_terms:
            torch.testing.assert_close(got_terms[k], want_terms[k], rtol=1e-5, atol=1e-4, msg=lambda m: f"{k}: {m}")
        assert got_grads.keys() == want_grads.keys()
        for n in want_grads:
            torch.testing.assert_close(got_grads[n], want_grads[n], rtol=1e-4, atol=1e-5, msg=lambda m: f"{n}: {m}")
    assert warnings == []


def test_compile_falls_back_to_eager_with_one_warning(ds, monkeypatch):
    def broken(fn, **kw):
        def call(*a, **k):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    warnings = []
    eager = Pretrainer(_cfg(), ds)
    fallback = Pretrainer(_cfg(compile="default"), ds, log=warnings.append)
    gen = torch.Generator().manual_seed(3)
    for idx in eager.epoch_order(gen)[:2]:
        batch = eager.batch(idx, gen)
        want, _ = pretrain_terms_and_grads(eager, batch)
        got, _ = pretrain_terms_and_grads(fallback, batch)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert len(warnings) == 1 and "torch.compile failed (RuntimeError: InvalidCxxCompiler" in warnings[0]
    assert "running eagerly" in warnings[0] and "more detail" not in warnings[0]


def test_prefetching_gives_the_same_run(ds, tmp_path):
    """Batches built a step ahead on a thread: the same batches, so the same losses and weights."""
    runs = {}
    for mode in ("off", "on"):
        out = tmp_path / mode
        cfg = PretrainConfig(dataset="P", hidden_size=16, max_len=MAX_LEN, batch_size=20, epochs=2, prefetch=mode)
        pretrain(cfg, ds, out, progress=False, log=lambda m: None)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        weights = torch.load(out / "pretrain-epoch-2.pt", weights_only=True)["model"]
        runs[mode] = ([{k: v for k, v in r.items() if k not in ("seconds", "instances_per_second")} for r in rows],
                      weights)
    assert runs["on"][0] == runs["off"][0]
    for k, v in runs["off"][1].items():
        assert torch.equal(runs["on"][1][k], v), k


def test_auto_prefetches_on_cuda_only(ds):
    assert not Pretrainer(_cfg(), ds).prefetch
    assert Pretrainer(_cfg(prefetch="on"), ds).prefetch


def test_an_epoch_with_a_non_finite_loss_stops_the_run(ds, tmp_path, monkeypatch):
    real_train = Pretrainer.train
    monkeypatch.setattr(Pretrainer, "train", lambda self, b: {**real_train(self, b), "mip": torch.tensor(float("nan"))})
    with pytest.raises(pretraining.DivergedError, match="diverged"):
        pretrain(_cfg(epochs=1), ds, tmp_path / "run", progress=False, log=lambda m: None)
    assert not (tmp_path / "run" / "pretrain-epoch-1.pt").exists()
