"""Distributed pre-training (torchrun, gloo on CPU): the summed gradient of the shares equals one
process's gradient of the whole batch; a torchrun run writes its files once and resumes exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from s3rec.cli import main
from s3rec.config import PretrainConfig
from s3rec.data import registry
from s3rec.data.corruption import pretrain_batch
from s3rec.distributed import World
from s3rec.models.heads import weighted_total
from s3rec.pretraining import Pretrainer

# dropout off: the only randomness left is the corruption, which the test hands to each share
CFG = PretrainConfig(dataset="Tiny", hidden_size=16, batch_size=20, hidden_dropout=0.0, attn_dropout=0.0)
BATCH = torch.arange(3, 14)  # 11 instances: the shares are 6 and 5
LONE = torch.tensor([20])  # then a batch of one: rank 1's share is empty


def _draws(rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(100 + rank)


def _rank_step(rank: int, size: int, init_file: str, out: str, data_dir: str) -> None:
    os.environ["S3REC_DATA_DIR"] = data_dir
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        trainer = Pretrainer(CFG, registry.load("Tiny"), World(rank, size))
        grads = []
        for step, batch in enumerate((BATCH, LONE)):
            trainer.step(batch, _draws(rank + 10 * step))
            grads.append({k: p.grad.clone() for k, p in trainer.model.named_parameters() if p.grad is not None})
        torch.save({"weights": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
                    "grads": grads}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_shares_add_up_to_one_process_step(tiny_data, tmp_path):
    mp.spawn(_rank_step, args=(2, str(tmp_path / "init"), str(tmp_path), str(tiny_data)), nprocs=2, join=True)
    # one process: the same shares with the same draws, their summed losses, one Adam step per batch
    ref = Pretrainer(CFG, registry.load("Tiny"))
    want_grads = []
    for step, whole in enumerate((BATCH, LONE)):
        total = 0
        for rank in (0, 1):
            share = whole[rank::2]
            if not len(share):
                continue
            batch = pretrain_batch(ref.st, ref.instances, share, ref.pool, _draws(rank + 10 * step), CFG.mask_p,
                                   CFG.negative_sampler, True, True, CFG.max_len, CFG.packed, CFG.unidirectional)
            total = total + weighted_total(ref.model.losses(batch, ref.attrs, ref.weights), ref.weights)
        ref.optimizer.zero_grad()
        total.backward()
        want_grads.append({k: p.grad.clone() for k, p in ref.model.named_parameters() if p.grad is not None})
        ref.optimizer.step()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for step, want in enumerate(want_grads):  # the summed gradient itself, not only Adam's step
        for r in (0, 1):
            assert ranks[r]["grads"][step].keys() == want.keys()
            for name, g in want.items():
                torch.testing.assert_close(ranks[r]["grads"][step][name], g, rtol=1e-5, atol=1e-6, msg=name)
    for name, want in ref.model.state_dict().items():
        assert torch.equal(ranks[0]["weights"][name], ranks[1]["weights"][name]), name  # the ranks stay in step
        torch.testing.assert_close(ranks[0]["weights"][name], want, rtol=1e-5, atol=1e-6, msg=name)


def test_one_process_world_changes_nothing():
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    assert World().sum_gradients([p, q])
    assert q.grad is None and torch.equal(p.grad, torch.full((2,), 3.0))
    assert World().share(torch.arange(5)).tolist() == [0, 1, 2, 3, 4]
    assert World(0, 2).share(torch.arange(5)).tolist() == [0, 2, 4]
    assert World(1, 2).share(torch.arange(5)).tolist() == [1, 3]


def _torchrun(args: list[str], data_dir, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "S3REC_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "s3rec", "pretrain", "--dataset", "Tiny", "--quiet", "--set", "hidden_size=16",
           "--set", "batch_size=20", *args]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_torchrun_pretraining_writes_once_and_resumes_exactly(tiny_data, tmp_path, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    res = _torchrun(["--epochs", "3", "--out", str(straight)], tiny_data, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count('"checkpoint"') == 1  # rank 0 alone prints the summary
    assert "2 ranks" in res.stderr
    rows = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    res = _torchrun(["--epochs", "2", "--out", str(resumed)], tiny_data, tmp_path)
    assert res.returncode == 0, res.stderr
    res = _torchrun(["--epochs", "3", "--resume", "--out", str(resumed)], tiny_data, tmp_path)
    assert res.returncode == 0, res.stderr
    a = torch.load(straight / "pretrain-epoch-3.pt", weights_only=True)["model"]
    b = torch.load(resumed / "pretrain-epoch-3.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the draws depend on the number of ranks: one process may not continue a two-rank run
    before = (resumed / "checkpoint.pt").read_bytes()
    assert main(["pretrain", "--dataset", "Tiny", "--set", "hidden_size=16", "--set", "batch_size=20", "--epochs", "4", "--resume",
                 "--out", str(resumed), "--quiet"]) == 2
    assert "pre-trained by 2 process(es) and this is 1" in capsys.readouterr().err
    assert (resumed / "checkpoint.pt").read_bytes() == before


def test_only_pretraining_and_training_run_under_torchrun(tiny_data, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["run", "--dataset", "Tiny", "--pretrain-epochs", "1"]) == 2
    assert "only `s3rec pretrain` and `s3rec train` are distributed" in capsys.readouterr().err
