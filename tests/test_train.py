"""Training end to end through the CLI: run files, determinism, resume after a kill, re-evaluation."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import kill_after_epochs
from s3rec import checkpoint
from s3rec.cli import main
from s3rec.metrics import METRIC_NAMES

TRAIN = ["train", "--dataset", "Tiny", "--quiet", "--set", "hidden_size=16", "--set", "batch_size=8"]


def _run(out, *extra):
    assert main([*TRAIN, "--out", str(out), *extra]) == 0
    return json.loads((out / "results.json").read_text())


def test_train_writes_the_run_files(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    res = _run(out, "--epochs", "3")
    assert set(res) >= {"valid", "test", "best_epoch", "epochs", "seconds"}
    env = res["environment"]  # provenance: what made this run
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["machine"] and env["python"]
    assert env["commit"] is None or len(env["commit"].split("+")[0]) == 40
    assert list(res["test"]) == METRIC_NAMES and list(res["valid"]) == METRIC_NAMES
    assert 1 <= res["best_epoch"] <= res["epochs"] == 3
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3]
    assert all(set(x) == {"epoch", "loss", "valid", "seconds"} and x["loss"] > 0 for x in lines)
    assert lines[res["best_epoch"] - 1]["valid"] == res["valid"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hidden_size"] == 16 and cfg["dataset"] == "Tiny" and cfg["protocol"] == "sampled"
    # the sampled protocol made the negatives file beside the (writable) data
    assert (tiny_data / "Tiny_sample.txt").is_file()
    # the checkpoint carries its config and loads without unpickling objects
    state = torch.load(out / "best.pt", weights_only=True)
    assert json.loads(state["config"])["hidden_size"] == 16
    # re-evaluating the best checkpoint reproduces the test metrics
    capsys.readouterr()
    assert main(["evaluate", str(out / "best.pt"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["metrics"] == pytest.approx(res["test"], abs=1e-12)


def test_evaluate_defaults_to_the_runs_own_protocol(tiny_data, tmp_path, capsys):
    out = tmp_path / "full"
    res = _run(out, "--epochs", "1", "--protocol", "full")
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0  # the run folder, no --protocol
    again = json.loads(capsys.readouterr().out)
    assert again["protocol"] == "full" and again["metrics"] == pytest.approx(res["test"], abs=1e-12)
    assert main(["evaluate", str(out), "--protocol", "sampled", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] != again["metrics"]


def test_same_seed_same_result_and_other_seed_differs(tiny_data, tmp_path):
    a = _run(tmp_path / "a", "--epochs", "2")
    b = _run(tmp_path / "b", "--epochs", "2")
    c = _run(tmp_path / "c", "--epochs", "2", "--seed", "7")
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    assert a["test"] != c["test"]


def test_existing_run_directory_is_protected(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    _run(out, "--epochs", "1")
    assert main([*TRAIN, "--out", str(out), "--epochs", "1"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*TRAIN, "--out", str(out), "--epochs", "1", "--overwrite"]) == 0
    # resuming a finished run just reports it
    assert main([*TRAIN, "--out", str(out), "--resume"]) == 0


def test_resume_after_kill_gives_the_same_result(tiny_data, tmp_path):
    epochs = ["--epochs", "8", "--set", "patience=100"]
    reference = _run(tmp_path / "whole", *epochs)

    out = tmp_path / "killed"
    done = kill_after_epochs([*TRAIN, *epochs], out, 3)
    assert not (out / "results.json").exists()
    assert 3 <= done < 8
    metrics = out / "metrics.jsonl"

    resumed = _run(out, "--resume")
    assert resumed["test"] == reference["test"]
    assert resumed["valid"] == reference["valid"]
    assert resumed["best_epoch"] == reference["best_epoch"] and resumed["epochs"] == 8
    history = [json.loads(x) for x in metrics.read_text().splitlines()]
    ref_history = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [h["loss"] for h in history] == [h["loss"] for h in ref_history]


def test_resume_rejects_different_settings(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    _run(out, "--epochs", "2", "--set", "patience=100")
    (out / "results.json").unlink()  # pretend it was interrupted
    assert main([*TRAIN, "--out", str(out), "--resume", "--set", "lr=0.5"]) == 2
    assert "lr" in capsys.readouterr().err


def test_evaluate_rejects_a_corrupt_checkpoint(tiny_data, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(bad), "--dataset", "Tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.pt" in err[0]


class Evil:
    """An arbitrary object: loading a checkpoint must never unpickle it."""


def test_checkpoints_refuse_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    with pytest.raises(Exception, match="not a loadable checkpoint"):
        checkpoint.load(path)


def test_full_protocol_and_ce_loss_run(tiny_data, tmp_path):
    res = _run(tmp_path / "full", "--epochs", "2", "--protocol", "full", "--loss", "ce")
    assert res["protocol"] == "full" and "targets_in_history" in res["test_info"]


def test_resume_repairs_a_best_checkpoint_that_ran_ahead(tiny_data, tmp_path):
    out = tmp_path / "run"
    res = _run(out, "--epochs", "3", "--set", "patience=100")
    best_epoch = torch.load(out / "best.pt", weights_only=True)["epoch"]
    # a kill between writing checkpoint.pt and best.pt leaves a stale or foreign best.pt behind
    stale = torch.load(out / "best.pt", weights_only=True)
    stale["model"] = {k: torch.zeros_like(v) for k, v in stale["model"].items()}
    stale["epoch"] = 99
    checkpoint.save(out / "best.pt", {k: v for k, v in stale.items() if k != "format"})
    (out / "results.json").unlink()
    again = _run(out, "--resume")
    assert again["test"] == res["test"]
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == best_epoch


def test_unavailable_device_is_a_one_line_error(tiny_data, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main([*TRAIN, "--out", str(tmp_path / "r"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda" in err[0]


def test_negative_sampling_gives_up_when_no_item_is_left(tmp_path):
    from conftest import write_dataset
    from s3rec.data.batches import SequenceTensors, sample_negatives
    from s3rec.data.store import load_files
    from s3rec.errors import S3RecError

    folder = write_dataset(tmp_path, "Full", {1: [1, 2, 3, 4], 2: [2, 3, 4, 1]})
    st = SequenceTensors(load_files("Full", folder / "Full.txt", None))
    with pytest.raises(S3RecError, match="every item"):
        sample_negatives(st, torch.tensor([0]), torch.Generator())


def test_min_epochs_holds_off_early_stopping(tiny_data, tmp_path):
    from s3rec.data.registry import min_finetune_epochs

    # lr ~ 0: the validation score never improves after epoch 1, so patience 1 stops at epoch 2 ...
    frozen = ["--epochs", "20", "--set", "patience=1", "--set", "lr=1e-12"]
    res = _run(tmp_path / "a", *frozen)
    assert res["epochs"] == 2 and res["min_epochs"] == 0  # Tiny is not registered: no minimum
    # ... unless a minimum holds it off: then it stops at the first epoch allowed
    res = _run(tmp_path / "b", *frozen, "--set", "min_epochs=6")
    assert res["epochs"] == 6 and res["best_epoch"] == 1 and res["min_epochs"] == 6
    # the registered defaults: LastFM's small validation set needs 50, the others none (the released code)
    assert min_finetune_epochs("LastFM") == 50 and min_finetune_epochs("lastfm") == 50
    assert {min_finetune_epochs(d) for d in ("Beauty", "Sports", "Toys", "Yelp", "Tiny")} == {0}
