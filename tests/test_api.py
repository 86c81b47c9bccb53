"""The public API (docs/api.md): its examples run, and it computes what the command line computes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import s3rec
from conftest import synthetic_sequences, write_dataset
from s3rec.cli import main
from s3rec.errors import ConfigError

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"


@pytest.fixture(autouse=True)
def _registry_restored(monkeypatch):
    """A model a test registers (the docs' example does) is gone after it: other tests see the built-ins."""
    from s3rec import models

    monkeypatch.setattr(models, "_REGISTERED", dict(models._REGISTERED))


@pytest.fixture
def lastfm_like(tmp_path, monkeypatch) -> Path:
    """A small synthetic dataset under the name the docs use (LastFM), as the data dir; cwd: tmp_path."""
    seqs = synthetic_sequences(n_items=150)
    attrs = {i: [1 + i % 5, 1 + (i * 7) % 9] for i in range(1, 151) if i % 4}
    folder = write_dataset(tmp_path / "data", "LastFM", seqs, attrs)
    monkeypatch.setenv("S3REC_DATA_DIR", str(folder))
    monkeypatch.chdir(tmp_path)
    return folder


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_docs_examples_run(lastfm_like, capsys):
    blocks = code_blocks(DOCS.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    namespace: dict = {"__name__": "docs_api"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"docs/api.md block {i + 1}", "exec"), namespace)
        except Exception as e:  # say which block
            raise AssertionError(f"docs/api.md code block {i + 1} failed: {type(e).__name__}: {e}\n{block}") from e
    out = capsys.readouterr().out
    assert "unknown setting 'epoch'" in out and "lr" in out
    assert namespace["pre"].dir == Path("runs/pretrain/LastFM-hidden_size=16-seed42")


def _test_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())["test"]


def test_api_pretrain_and_finetune_match_the_cli(lastfm_like, tmp_path):
    assert main(["pretrain", "--dataset", "LastFM", "--epochs", "1", "--seed", "3", "--set", "hidden_size=16",
                 "--out", str(tmp_path / "cli-pre"), "--quiet"]) == 0
    assert main(["train", "--dataset", "LastFM", "--init", str(tmp_path / "cli-pre" / "pretrain-epoch-1.pt"),
                 "--epochs", "2", "--seed", "3", "--set", "hidden_size=16", "--out", str(tmp_path / "cli-ft"),
                 "--quiet"]) == 0
    ds = s3rec.load_dataset("LastFM")
    pre = s3rec.pretrain(ds, epochs=1, seed=3, hidden_size=16)
    assert sorted(pre.checkpoints) == [1] and len(pre.losses) == 1
    run = s3rec.finetune(ds, init=pre, epochs=2, seed=3, hidden_size=16, out=tmp_path / "api-ft")
    cli_pre = [json.loads(line) for line in (tmp_path / "cli-pre" / "metrics.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k in ("AAP", "MIP", "MAP", "SP", "loss")} for r in cli_pre] == \
        [{k: v for k, v in r.items() if k in ("AAP", "MIP", "MAP", "SP", "loss")} for r in pre.losses]
    assert run.test == _test_metrics(tmp_path / "cli-ft")
    assert run.epochs == len(run.history) == 2
    # the same pre-training asked for again: reused, untouched
    stamp = pre.checkpoint.stat().st_mtime_ns
    assert s3rec.pretrain(ds, epochs=1, seed=3, hidden_size=16).checkpoint.stat().st_mtime_ns == stamp


def test_evaluate_uses_the_runs_protocol_unless_given(lastfm_like, tmp_path):
    run = s3rec.finetune("LastFM", protocol="full", epochs=1, hidden_size=16, out=tmp_path / "full")
    assert s3rec.evaluate(run) == run.test
    assert s3rec.evaluate(run.dir, protocol="sampled") != run.test
    assert main(["evaluate", str(run.checkpoint), "--protocol", "full", "--json"]) == 0


def test_settings_errors_are_the_command_lines(lastfm_like, tmp_path, capsys):
    for bad, cli in (({"lr": "fast"}, ["--set", "lr=fast"]), ({"epoch": 2}, ["--set", "epoch=2"])):
        with pytest.raises(ConfigError) as api_error:
            s3rec.finetune("LastFM", out=tmp_path / "x", **bad)
        assert main(["train", "--dataset", "LastFM", *cli, "--out", str(tmp_path / "y"), "--quiet"]) == 2
        assert capsys.readouterr().err.strip() == f"s3rec: error: {api_error.value}"
    assert not (tmp_path / "x").exists()


def test_an_occupied_run_folder_needs_resume_or_overwrite(lastfm_like, tmp_path):
    run = s3rec.finetune("LastFM", epochs=1, hidden_size=16, out=tmp_path / "r")
    with pytest.raises(s3rec.errors.S3RecError, match="not empty"):
        s3rec.finetune("LastFM", epochs=1, hidden_size=16, out=tmp_path / "r")
    assert s3rec.finetune("LastFM", epochs=1, hidden_size=16, out=tmp_path / "r", resume=True).test == run.test
    assert s3rec.Run.load(tmp_path / "r").test == run.test


def test_load_dataset_takes_a_folder(lastfm_like):
    ds = s3rec.load_dataset(lastfm_like)
    assert ds.name == "LastFM" and ds.stats()["users"] == ds.n_users == 40
    assert list(ds.split_input(0, "valid")) == list(ds.sequence(0)[:-2])


def test_register_model_refuses_what_is_not_a_model():
    with pytest.raises(ConfigError, match="not a subclass"):
        s3rec.register_model("nothing", object)
    from s3rec.models.sasrec import SASRec

    with pytest.raises(ConfigError, match="built-in"):
        s3rec.register_model("sasrec", SASRec)
