"""``--overwrite`` replaces a run's own files, never a folder that is not a run of that command."""

from __future__ import annotations

import json

import pytest

from s3rec.cli import main

SMALL = ["--quiet", "--set", "hidden_size=16", "--set", "batch_size=8"]
TRAIN = ["train", "--dataset", "Tiny", *SMALL, "--epochs", "1"]
PRE = ["pretrain", "--dataset", "Tiny", *SMALL, "--epochs", "1"]


def _own_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.tex").write_text("mine\n")
    (folder / "notes").mkdir()
    (folder / "notes" / "a.txt").write_text("also mine\n")


@pytest.mark.parametrize("verb", [TRAIN, PRE])
def test_a_folder_of_your_own_files_is_refused_and_kept(tiny_data, tmp_path, capsys, verb):
    mine = tmp_path / "mine"
    _own_files(mine)
    assert main([*verb, "--out", str(mine), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(mine) in err[0] and "not an s3rec" in err[0] and "nothing removed" in err[0]
    assert sorted(p.name for p in mine.rglob("*")) == ["a.txt", "notes", "thesis.tex"]


def test_a_run_of_the_other_command_is_refused(tiny_data, tmp_path, capsys):
    pre = tmp_path / "pre"
    assert main([*PRE, "--out", str(pre)]) == 0
    before = sorted(p.name for p in pre.iterdir())
    assert main([*TRAIN, "--out", str(pre), "--overwrite"]) == 2
    assert "not an s3rec fine-tuning run folder" in capsys.readouterr().err
    assert sorted(p.name for p in pre.iterdir()) == before


def test_overwrite_replaces_the_runs_files_and_keeps_yours(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out), "--set", "seed=1"]) == 0
    (out / "thesis.tex").write_text("mine\n")
    old = json.loads((out / "config.json").read_text())
    assert main([*TRAIN, "--out", str(out), "--set", "seed=2", "--overwrite"]) == 0
    assert (out / "thesis.tex").read_text() == "mine\n"
    assert old["seed"] == 1 and json.loads((out / "config.json").read_text())["seed"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # a new run, not an appended one


def test_a_pretraining_is_replaced_with_its_epoch_checkpoints(tiny_data, tmp_path):
    out = tmp_path / "pre"
    assert main([*PRE, "--out", str(out), "--set", "save_every=1", "--epochs", "2"]) == 0
    assert (out / "pretrain-epoch-2.pt").is_file()
    (out / "mine.txt").write_text("mine\n")
    assert main([*PRE, "--out", str(out), "--overwrite"]) == 0
    assert not (out / "pretrain-epoch-2.pt").exists() and (out / "pretrain-epoch-1.pt").is_file()
    assert (out / "mine.txt").read_text() == "mine\n"


def test_run_refuses_a_pretrain_folder_that_is_not_one(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    _own_files(out / "pretrain")
    argv = ["run", "--dataset", "Tiny", "--quiet", "--pretrain-epochs", "1", "--out", str(out), "--overwrite"]
    assert main(argv) == 2
    assert "not an s3rec pre-training run folder" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == ["a.txt", "notes", "pretrain", "thesis.tex"]


def test_a_run_that_failed_at_its_start_does_not_block_the_same_command(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    for path in out.iterdir():
        if path.name != "config.json":
            path.unlink()  # what a run that failed before its first epoch leaves
    assert main([*TRAIN, "--out", str(out)]) == 0
    assert (out / "results.json").is_file()
    (out / "thesis.tex").write_text("mine\n")  # anything more, and the folder is protected again
    (out / "results.json").unlink()
    assert main([*TRAIN, "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_a_lone_config_json_of_yours_is_not_taken_for_a_run(tiny_data, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"editor": "vim"}\n')
    assert main([*TRAIN, "--out", str(out)]) == 2
    assert "not an s3rec fine-tuning run folder" in capsys.readouterr().err
    assert (out / "config.json").read_text() == '{"editor": "vim"}\n'
