"""Distributed fine-tuning (torchrun, gloo on CPU): the ranks' shares of a batch hold exactly its
tokens and negatives, their summed gradients and weights equal one process's, evaluation gathers the
same ranks, and a torchrun run gives one process's results and resumes exactly after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from s3rec import losses
from s3rec.config import TrainConfig
from s3rec.data import registry
from s3rec.data.batches import SequenceTensors, finetune_batch
from s3rec.distributed import World
from s3rec.evaluation import evaluate_ranks
from s3rec.train import build, train_epoch, train_users

# dropout off: the negatives are the only randomness left, and the ranks draw the whole batch's
MODELS = {"sasrec": {}, "gru4rec": {}, "caser": {}, "sasrec-ce": {"loss": "ce"}}
BATCH = 13  # Tiny has 40 users with a training input: the last batch is one user, rank 1's share empty


def _cfg(name: str) -> TrainConfig:
    model = name.split("-")[0]
    return TrainConfig(dataset="Tiny", model=model, hidden_size=16, batch_size=BATCH, hidden_dropout=0.0,
                       attn_dropout=0.0, **MODELS[name]).resolved()


def test_shares_hold_the_whole_batch(tiny_data):
    st = SequenceTensors(registry.load("Tiny"))
    users = torch.arange(2, 13)
    whole = finetune_batch(st, users, torch.Generator().manual_seed(5))
    shares = [finetune_batch(st, users, torch.Generator().manual_seed(5), share=(r, 3)) for r in range(3)]
    assert [s.users.tolist() for s in shares] == [users[r::3].tolist() for r in range(3)]
    lengths = whole.layout.lengths
    first = torch.cumsum(lengths, 0) - lengths
    for r, s in enumerate(shares):  # each user's targets and negatives, token for token
        for j, i in enumerate(range(r, len(users), 3)):
            a, b = first[i], first[i] + lengths[i]
            c = (torch.cumsum(s.layout.lengths, 0) - s.layout.lengths)[j]
            assert torch.equal(s.targets[c : c + lengths[i]], whole.targets[a:b])
            assert torch.equal(s.negatives[c : c + lengths[i]], whole.negatives[a:b])


def test_summed_terms_give_sums_and_counts():
    pos, neg = torch.randn(6), torch.randn(6)
    mean = losses.sampled_loss("bce", pos, neg)
    with losses.summed_terms() as counts:
        total = losses.sampled_loss("bce", pos, neg)
    assert counts == [6]
    torch.testing.assert_close(total / 6, mean)
    h, w, t = torch.randn(5, 4, requires_grad=True), torch.randn(9, 4, requires_grad=True), torch.randint(0, 9, (5,))
    mean = losses.linear_cross_entropy(h, w, t)
    with losses.summed_terms() as counts:
        total = losses.linear_cross_entropy(h, w, t)
    assert counts == [5]
    torch.testing.assert_close(total / 5, mean)
    (g_mean,) = torch.autograd.grad(mean, h)
    (g_sum,) = torch.autograd.grad(total, h)
    torch.testing.assert_close(g_sum / 5, g_mean)


def _rank_epoch(rank: int, size: int, init_file: str, out: str, data_dir: str) -> None:
    os.environ["S3REC_DATA_DIR"] = data_dir
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        world = World(rank, size)
        ds = registry.load("Tiny")
        st = SequenceTensors(ds)
        saved = {}
        for name in MODELS:
            cfg = _cfg(name)
            model, optimizer = build(cfg, ds)
            world.broadcast_parameters(model)
            train_epoch(model, optimizer, st, train_users(ds), cfg, torch.Generator().manual_seed(3), world=world)
            ranks, _ = evaluate_ranks(model, ds, "test", "full", st=st, world=world)
            saved[name] = {"weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
                           "grads": {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None},
                           "ranks": ranks}
        torch.save(saved, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_take_one_process_steps(tiny_data, tmp_path):
    ds = registry.load("Tiny")
    st = SequenceTensors(ds)
    users = train_users(ds)
    assert len(users) % BATCH == 1, "the last batch should leave rank 1 an empty share"
    mp.spawn(_rank_epoch, args=(2, str(tmp_path / "init"), str(tmp_path), str(tiny_data)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name in MODELS:
        cfg = _cfg(name)
        model, optimizer = build(cfg, ds)
        train_epoch(model, optimizer, st, users, cfg, torch.Generator().manual_seed(3))
        want_ranks, _ = evaluate_ranks(model, ds, "test", "full", st=st)
        grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
        for r in (0, 1):  # the last step's summed gradient (its batch: one user, rank 1's share empty)
            assert ranks[r][name]["grads"].keys() == grads.keys(), name
            for k, g in grads.items():
                torch.testing.assert_close(ranks[r][name]["grads"][k], g, rtol=1e-5, atol=1e-6, msg=f"{name} {k}")
        for k, w in model.state_dict().items():
            assert torch.equal(ranks[0][name]["weights"][k], ranks[1][name]["weights"][k]), f"{name} {k}"
            torch.testing.assert_close(ranks[0][name]["weights"][k], w, rtol=1e-5, atol=1e-5, msg=f"{name} {k}")
        for r in (0, 1):  # every rank has every user's rank, in dataset order
            assert torch.equal(ranks[r][name]["ranks"], want_ranks), name


TRAIN = ["train", "--dataset", "Tiny", "--quiet", "--set", "hidden_size=16", "--set", f"batch_size={BATCH}"]
NO_DROPOUT = ["--set", "hidden_dropout=0", "--set", "attn_dropout=0"]


def _torchrun(args: list[str], data_dir, cwd, **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    env = {**os.environ, "S3REC_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "s3rec", *TRAIN, *args]
    if popen:
        return subprocess.Popen(cmd, env=env, cwd=cwd, **popen)
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children first."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                children.append(int(entry))
    return [d for c in children for d in (*_descendants(c), c)]


def _results(out) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_torchrun_training_equals_one_process_and_resumes_exactly(tiny_data, tmp_path, capsys):
    from s3rec.cli import main

    epochs = ["--epochs", "6", "--set", "patience=100", *NO_DROPOUT]
    one = tmp_path / "one"
    assert main([*TRAIN, *epochs, "--protocol", "full", "--out", str(one)]) == 0
    two = tmp_path / "two"
    res = _torchrun([*epochs, "--protocol", "full", "--out", str(two)], tiny_data, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count('"best_epoch"') == 1  # rank 0 alone prints the results
    a, b = _results(one), _results(two)
    assert b["world_size"] == 2 and a["best_epoch"] == b["best_epoch"]
    for split in ("valid", "test"):
        for k, v in a[split].items():
            assert b[split][k] == pytest.approx(v, abs=1e-4), (split, k)
    assert np.array_equal(np.load(two / "test_ranks.npy"), np.load(one / "test_ranks.npy"))

    # with dropout on (each rank its own draws): killed after 2 epochs, resumed, as one uninterrupted run
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    on = ["--epochs", "5", "--set", "patience=100"]
    assert _torchrun([*on, "--out", str(whole)], tiny_data, tmp_path).returncode == 0
    proc = _torchrun([*on, "--out", str(killed)], tiny_data, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = killed / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    for pid in [*_descendants(proc.pid), proc.pid]:  # the ranks run in sessions of their own
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists()
    before = (killed / "checkpoint.pt").read_bytes()  # one process may not continue a two-rank run
    assert main([*TRAIN, *on, "--resume", "--out", str(killed)]) == 2
    assert "fine-tuned by 2 process(es) and this is 1" in capsys.readouterr().err
    assert (killed / "checkpoint.pt").read_bytes() == before
    res = _torchrun([*on, "--resume", "--out", str(killed)], tiny_data, tmp_path)
    assert res.returncode == 0, res.stderr
    a, b = _results(whole), _results(killed)
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    lines = lambda p: [json.loads(x)["loss"] for x in (p / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert lines(whole) == lines(killed)
