"""The CUDA path: pre-training steps and fine-tuning on the GPU compute what the CPU computes.

Skipped where no GPU is present (CI has none); ``benchmarks/gpu_check.sh`` runs this file first."""

from __future__ import annotations

import pytest
import torch

from conftest import pretrain_terms_and_grads, synthetic_sequences, write_dataset
from s3rec.config import PretrainConfig
from s3rec.data.store import load_files
from s3rec.pretraining import Pretrainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def ds(tmp_path):
    seqs = synthetic_sequences(n_users=40, n_items=90, min_len=3, max_len=18, seed=5)
    attrs = {i: [1 + i % 7, 1 + (i * 3) % 13] for i in range(1, 91)}
    folder = write_dataset(tmp_path, "G", seqs, attrs)
    return load_files("G", folder / "G.txt", folder / "G_item2attributes.json")


@pytest.mark.parametrize("compile", ["none", "default", "reduce-overhead"])
def test_gpu_step_equals_the_cpu_step(ds, compile):
    kw = dict(dataset="G", hidden_size=32, max_len=10, batch_size=25, hidden_dropout=0.0, attn_dropout=0.0)
    cpu = Pretrainer(PretrainConfig(**kw), ds)
    warnings = []
    gpu = Pretrainer(PretrainConfig(**kw, device="cuda", compile=compile), ds, log=warnings.append)
    gpu.model.load_state_dict(cpu.model.state_dict())
    gen = torch.Generator().manual_seed(1)
    for idx in cpu.epoch_order(gen)[:3]:
        batch = cpu.batch(idx, gen)
        want_t, want_g = pretrain_terms_and_grads(cpu, batch)
        got_t, got_g = pretrain_terms_and_grads(gpu, batch)
        for k in want_t:
            torch.testing.assert_close(got_t[k], want_t[k], rtol=1e-4, atol=1e-3)
        for n in want_g:
            torch.testing.assert_close(got_g[n], want_g[n], rtol=1e-3, atol=1e-4)
    assert warnings == []


def test_gpu_training_steps_run_with_prefetch_and_bf16(ds):
    cfg = PretrainConfig(dataset="G", hidden_size=32, max_len=10, batch_size=25, device="cuda", amp="bf16")
    trainer = Pretrainer(cfg, ds)
    assert trainer.prefetch  # auto: on for CUDA
    gen = torch.Generator().manual_seed(2)
    sums = None
    for values in map(trainer.train, trainer.batches(trainer.epoch_order(gen), gen)):
        assert all(v.device.type == "cuda" for v in values.values())
        sums = values if sums is None else {k: sums[k] + v for k, v in values.items()}
    assert all(torch.isfinite(v) for v in sums.values())


def test_fine_tuning_on_the_gpu(ds, tmp_path):
    from s3rec.config import TrainConfig
    from s3rec.train import finetune

    cfg = TrainConfig(dataset="G", max_len=10, epochs=2, device="cuda")
    summary = finetune(cfg, ds, tmp_path / "ft", progress=False, log=lambda m: None)
    assert 0.0 <= summary["test"]["MRR"] <= 1.0
