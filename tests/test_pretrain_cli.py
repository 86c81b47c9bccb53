"""Pre-training and S3-Rec end to end through the CLI: run files, resume after a kill, --init, errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import kill_after_epochs, shared_data_dir, shared_reference_dir
from s3rec.cli import main
from s3rec.data import registry
from s3rec.pretraining import Pretrainer, sp_stuck
from s3rec.transfer import init_for_finetuning, pretrained_digest, read_pretrained

SMALL = ["--set", "hidden_size=16", "--set", "batch_size=20"]
PRE = ["pretrain", "--dataset", "Tiny", "--quiet", *SMALL]
FT = ["train", "--dataset", "Tiny", "--quiet", "--set", "hidden_size=16", "--set", "batch_size=8", "--epochs", "2"]


def test_pretrain_writes_checkpoints_and_log(tiny_data, tmp_path):
    out = tmp_path / "pre"
    assert main([*PRE, "--epochs", "3", "--set", "save_every=2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("pretrain-epoch-*.pt")) == ["pretrain-epoch-2.pt", "pretrain-epoch-3.pt"]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all({"aap", "mip", "map", "sp", "loss", "instances_per_second"} <= set(r) for r in rows)
    state, facts = read_pretrained(out / "pretrain-epoch-3.pt")
    assert facts["kind"] == "pretrain" and facts["epoch"] == 3
    assert {"aap_norm.weight", "sp_norm.bias", "attribute_embeddings.weight"} <= set(state)


def test_ablation_drops_the_term_from_the_log(tiny_data, tmp_path):
    out = tmp_path / "pre"
    assert main([*PRE, "--epochs", "1", "--set", "sp_weight=0", "--out", str(out)]) == 0
    row = json.loads((out / "metrics.jsonl").read_text())
    assert "sp" not in row and "aap" in row


def test_pretrain_resume_after_kill_gives_the_same_weights(tiny_data, tmp_path):
    args = [*PRE, "--epochs", "6", "--set", "save_every=6"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    out = tmp_path / "killed"
    assert 2 <= kill_after_epochs(args, out, 2) < 6
    assert main([*args, "--out", str(out), "--resume"]) == 0
    a = torch.load(tmp_path / "whole" / "pretrain-epoch-6.pt", weights_only=True)["model"]
    b = torch.load(out / "pretrain-epoch-6.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_finetune_from_pretraining_and_run(tiny_data, tmp_path, capsys):
    pre = tmp_path / "pre"
    assert main([*PRE, "--epochs", "2", "--out", str(pre)]) == 0
    ckpt = pre / "pretrain-epoch-2.pt"
    out = tmp_path / "ft"
    assert main([*FT, "--init", str(ckpt), "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["init"] == str(ckpt)
    # the fine-tuned model started from the pre-trained embeddings, not from random ones
    scratch = tmp_path / "scratch"
    assert main([*FT, "--out", str(scratch)]) == 0
    assert json.loads((out / "results.json").read_text())["test"] != json.loads((scratch / "results.json").read_text())["test"]
    capsys.readouterr()
    assert main(["run", "--dataset", "Tiny", "--pretrain-epochs", "1", "--quiet", "--out", str(tmp_path / "run"),
                 "--pretrain-set", "hidden_size=16", "--set", "epochs=2", "--set", "batch_size=8"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["pretrain_epochs"] == 1 and "MRR" in res["test"]
    assert (tmp_path / "run" / "pretrain" / "pretrain-epoch-1.pt").is_file()
    assert (tmp_path / "run" / "finetune" / "results.json").is_file()


def test_missing_or_mismatched_init_is_an_error(tiny_data, tmp_path, capsys):
    assert main([*FT, "--init", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "a")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    # a checkpoint of another size: an error, never a silent start from random weights
    pre = tmp_path / "pre"
    assert main([*PRE, "--epochs", "1", "--out", str(pre)]) == 0
    assert main([*FT[:-4], "--set", "hidden_size=32", "--epochs", "1", "--init", str(pre / "pretrain-epoch-1.pt"),
                 "--out", str(tmp_path / "b")]) == 2
    assert "incompatible" in capsys.readouterr().err
    # a state_dict without an encoder
    junk = tmp_path / "junk.pt"
    torch.save({"weight": torch.zeros(3)}, junk)
    assert main([*FT, "--init", str(junk), "--out", str(tmp_path / "c")]) == 2
    assert "junk.pt" in capsys.readouterr().err


@pytest.mark.slow
def test_the_authors_lastfm_checkpoint_loads():
    path = shared_reference_dir() / "official_LastFM-epochs-150.pt"
    ds = registry.load("LastFM", shared_data_dir())
    enc = init_for_finetuning(path, ds)
    assert enc["item_embeddings.weight"].shape == (ds.n_items + 2, 64)
    # and the full state (heads included) continues pre-training key for key
    from s3rec.config import PretrainConfig
    from s3rec.pretraining import Pretrainer

    state, facts = read_pretrained(path)
    assert facts["kind"] == "authors"
    trainer = Pretrainer(PretrainConfig(dataset="LastFM"), ds)
    trainer.model.load_state_dict(state, strict=True)
    with pytest.raises(Exception, match="needs"):
        init_for_finetuning(path, registry.load("Beauty", shared_data_dir()))


def test_resume_with_more_epochs_extends_the_schedule_exactly(tiny_data, tmp_path):
    assert main([*PRE, "--epochs", "4", "--out", str(tmp_path / "four"), "--set", "save_every=2"]) == 0
    out = tmp_path / "two"
    assert main([*PRE, "--epochs", "2", "--out", str(out), "--set", "save_every=2"]) == 0
    assert main([*PRE, "--epochs", "4", "--out", str(out), "--set", "save_every=2", "--resume"]) == 0
    a = torch.load(tmp_path / "four" / "pretrain-epoch-4.pt", weights_only=True)["model"]
    b = torch.load(out / "pretrain-epoch-4.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_each_start_and_resume_of_a_pretraining_records_its_environment(tiny_data, tmp_path):
    out = tmp_path / "pre"
    assert main([*PRE, "--epochs", "2", "--out", str(out)]) == 0
    assert main([*PRE, "--epochs", "3", "--out", str(out), "--resume"]) == 0
    starts = [json.loads(x) for x in (out / "environment.jsonl").read_text().splitlines()]
    assert [s["from_epoch"] for s in starts] == [1, 3]
    import s3rec
    assert all(s["s3rec"] == s3rec.__version__ and s["torch"] == torch.__version__ and s["machine"] for s in starts)
    # resuming a finished run trains nothing and adds no line
    assert main([*PRE, "--epochs", "3", "--out", str(out), "--resume"]) == 0
    assert len((out / "environment.jsonl").read_text().splitlines()) == 2
    # a new run (--overwrite) starts a new record, not an appended one
    assert main([*PRE, "--epochs", "1", "--out", str(out), "--overwrite"]) == 0
    assert len((out / "environment.jsonl").read_text().splitlines()) == 1


def test_resume_with_fewer_epochs_than_done_is_an_error(tiny_data, tmp_path, capsys):
    out = tmp_path / "pre"
    assert main([*PRE, "--epochs", "2", "--out", str(out)]) == 0
    assert main([*PRE, "--epochs", "1", "--out", str(out), "--resume"]) == 2
    assert "already has 2 epochs" in capsys.readouterr().err


def test_run_resume_takes_unstated_settings_from_the_run(tiny_data, tmp_path, capsys):
    args = ["run", "--dataset", "Tiny", "--pretrain-epochs", "1", "--quiet", "--out", str(tmp_path / "run"),
            "--pretrain-set", "hidden_size=16", "--set", "epochs=2", "--set", "batch_size=8"]
    assert main(args) == 0
    (tmp_path / "run" / "finetune" / "results.json").unlink()
    capsys.readouterr()
    assert main(["run", "--dataset", "Tiny", "--quiet", "--out", str(tmp_path / "run"), "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["pretrain_epochs"] == 1


def test_non_contiguous_attribute_ids_are_rejected(tmp_path, capsys):
    from conftest import synthetic_sequences, write_dataset

    folder = write_dataset(tmp_path / "d", "Gap", synthetic_sequences(n_items=30), {1: [1, 2], 2: [5]})
    assert main(["data", "stats", "Gap", "--data-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "not contiguous" in err and "Gap_item2attributes.json:1:" in err


def test_sp_stuck_needs_a_full_window_at_chance():
    chance = [{"epoch": i, "sp": math.log(2)} for i in range(1, 11)]
    assert sp_stuck(chance)
    assert not sp_stuck(chance[:9])  # too few epochs
    assert not sp_stuck([*chance[:9], {"epoch": 10, "sp": 0.69}])  # one epoch off chance
    assert not sp_stuck([{"epoch": i, "mip": math.log(2)} for i in range(1, 11)])  # SP off (ablation)


def test_a_saturated_sp_is_reported_once(tiny_data, tmp_path, capsys, monkeypatch):
    # stand-in for a run whose SP scores have saturated (every epoch's SP term at ln 2)
    real_train = Pretrainer.train
    monkeypatch.setattr(Pretrainer, "train",
                        lambda self, batch: {**real_train(self, batch), "sp": math.log(2) * batch.n_instances})
    assert main([*PRE, "--epochs", "12", "--set", "save_every=12", "--out", str(tmp_path / "pre")]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: SP has been 0.6931 (chance) for 10 epochs") == 1


def test_sp_saturation_script_prints_the_quantiles(tiny_data, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "pre"
    assert main([*PRE, "--epochs", "1", "--out", str(out)]) == 0
    script = Path(__file__).parents[1] / "scripts" / "sp_saturation.py"
    res = subprocess.run([sys.executable, str(script), str(out), "1", "--instances", "30"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    row = res.stdout.strip().splitlines()[-1].strip("| ").split(" | ")
    assert row[0] == "1"
    for cell in row[1:]:
        lo, mid, hi = map(float, cell.split(" / "))
        assert lo <= mid <= hi


def test_the_weights_a_pretraining_hands_on_are_recorded_on_both_sides(tiny_data, tmp_path):
    """Each saved pre-training epoch records its weights' digest; a fine-tuning records the digest of the
    weights it started from, and keeps it when it resumes without the pre-training's file."""
    pre = tmp_path / "pre"
    assert main([*PRE, "--epochs", "3", "--set", "save_every=2", "--out", str(pre)]) == 0
    rows = [json.loads(x) for x in (pre / "metrics.jsonl").read_text().splitlines()]
    assert "weights_sha256" not in rows[0]  # epoch 1 was not saved
    two, three = pretrained_digest(pre / "pretrain-epoch-2.pt"), pretrained_digest(pre / "pretrain-epoch-3.pt")
    assert rows[1]["weights_sha256"] == two != three == rows[2]["weights_sha256"]
    out = tmp_path / "ft"
    args = [*FT, "--init", str(pre / "pretrain-epoch-2.pt"), "--out", str(out)]
    assert main(args) == 0
    assert json.loads((out / "results.json").read_text())["init_weights_sha256"] == two
    assert torch.load(out / "checkpoint.pt", weights_only=True)["init_weights_sha256"] == two
    # killed after its first epoch, resumed without the pre-training's file: the digest travels in checkpoint.pt
    killed = tmp_path / "killed"
    longer = [*FT[:-1], "8", "--init", str(pre / "pretrain-epoch-3.pt")]
    assert kill_after_epochs(longer, killed, 1) < 8
    (pre / "pretrain-epoch-3.pt").unlink()
    assert main([*longer, "--out", str(killed), "--resume"]) == 0
    assert json.loads((killed / "results.json").read_text())["init_weights_sha256"] == three
    scratch = tmp_path / "scratch"
    assert main([*FT, "--out", str(scratch)]) == 0
    assert "init_weights_sha256" not in json.loads((scratch / "results.json").read_text())


def test_the_weights_digest_depends_on_the_weights_only():
    from s3rec.checkpoint import weights_digest

    w = torch.arange(6.0).reshape(3, 2).t()  # not contiguous
    a = {"w": w, "b": torch.zeros(3), "step": torch.tensor(7), "on": torch.tensor([True, False])}
    same = {"on": torch.tensor([True, False]), "step": torch.tensor(7), "b": torch.zeros(3), "w": w.contiguous()}
    assert weights_digest(a) == weights_digest(same)
    assert weights_digest(a) != weights_digest({**a, "b": torch.tensor([0.0, 0.0, 1e-7])})
    assert weights_digest(a) != weights_digest({**a, "w": w.reshape(3, 2)})  # same values, other shape
    assert weights_digest(a) != weights_digest({**a, "b": torch.zeros(3).view(torch.int32)})  # same bytes, other dtype
    assert weights_digest(a) != weights_digest({**a, "on": torch.tensor([False, True])})
    assert weights_digest({"x": torch.ones(2, dtype=torch.bfloat16)}) != weights_digest({"x": torch.ones(2)})
