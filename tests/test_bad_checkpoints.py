"""Files that are not checkpoints of ours, in every command and function that reads one.

``s3rec evaluate``, ``recommend``, ``serve``, ``train --init`` and ``pretrain --init`` (and
``s3rec.api.evaluate``, ``Recommender.load``, ``finetune(init=...)``) check the whole payload once
(:func:`s3rec.checkpoint.read`): each bad file below gives one line ``s3rec: error: FILE: ...``, exit
status 2, no traceback, nothing written. A pickle of Python objects is refused without running it,
and the message never passes on PyTorch's advice to load with ``weights_only=False``.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import socketserver
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import one_error_line, snapshot, synthetic_sequences, write_dataset
from s3rec import checkpoint
from s3rec.cli import main
from s3rec.errors import CheckpointError

TINY = ["--set", "hidden_size=8", "--set", "n_layers=1", "--set", "n_heads=1", "--set", "max_len=10"]
MARKER = "ran-code"  # what the malicious pickles would create


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder with the dataset ``Tiny`` (data/) and a 1-epoch fine-tuning of it (run/best.pt)."""
    root = tmp_path_factory.mktemp("trained")
    seqs = synthetic_sequences(n_items=150)
    write_dataset(root / "data", "Tiny", seqs, {i: [1 + i % 5] for i in range(1, 151)})
    old = os.environ.get("S3REC_CACHE_DIR")
    os.environ["S3REC_CACHE_DIR"] = str(root / "cache")
    try:
        assert main(["train", "--dataset", "Tiny", "--data-dir", str(root / "data"), "--epochs", "1", "--quiet",
                     "--protocol", "full", "--out", str(root / "run"), *TINY]) == 0
    finally:
        os.environ.pop("S3REC_CACHE_DIR") if old is None else os.environ.__setitem__("S3REC_CACHE_DIR", old)
    return root


class Evil:
    """Unpickling this would run code (it creates MARKER in the working folder)."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


@functools.lru_cache(maxsize=1)
def _loaded(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _good(trained: Path) -> dict:
    return dict(_loaded(trained / "run" / "best.pt"))


def _with(trained: Path, **changes) -> dict:
    obj = _good(trained)
    for k, v in changes.items():
        if v is None:
            obj.pop(k)
        else:
            obj[k] = v
    return obj


def _config_with(trained: Path, **changes) -> str:
    return json.dumps({**json.loads(_good(trained)["config"]), **changes})


def _junk_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("junk/data.pkl", b"\x80\x05garbage")


# name -> a function writing the bad file at ``path`` (``t``: the trained folder)
BAD = {
    "text": lambda t, p: p.write_text("hello\n"),
    "empty": lambda t, p: p.write_bytes(b""),
    "random-bytes": lambda t, p: p.write_bytes(bytes(range(7, 256)) * 4),
    "unrelated-zip": lambda t, p: _junk_zip(p),
    "no-config": lambda t, p: torch.save(_with(t, config=None), p),
    "no-model": lambda t, p: torch.save(_with(t, model=None), p),
    "n-items-a-string": lambda t, p: torch.save(_with(t, n_items="abc"), p),
    "n-items-zero": lambda t, p: torch.save(_with(t, n_items=0), p),
    "n-items-a-bool": lambda t, p: torch.save(_with(t, n_items=True), p),
    "n-attributes-negative": lambda t, p: torch.save(_with(t, n_attributes=-1), p),
    "epoch-a-float": lambda t, p: torch.save(_with(t, epoch=1.5), p),
    "dataset-not-a-string": lambda t, p: torch.save(_with(t, dataset=7), p),
    "model-a-list": lambda t, p: torch.save(_with(t, model=[1, 2, 3]), p),
    "model-of-strings": lambda t, p: torch.save(_with(t, model={"item_embeddings.weight": "x"}), p),
    "model-empty": lambda t, p: torch.save(_with(t, model={}), p),
    "config-not-json": lambda t, p: torch.save(_with(t, config="{not json"), p),
    "config-a-json-list": lambda t, p: torch.save(_with(t, config="[1, 2]"), p),
    "config-a-number": lambda t, p: torch.save(_with(t, config=5), p),
    "config-unknown-model": lambda t, p: torch.save(_with(t, config=_config_with(t, model="nosuch")), p),
    "config-bad-value": lambda t, p: torch.save(_with(t, config=_config_with(t, hidden_size="big")), p),
    "config-infinite-lr": lambda t, p: torch.save(_with(t, config=_config_with(t, lr=float("inf"))), p),
    "kind-unknown": lambda t, p: torch.save(_with(t, kind="weights"), p),
    "kind-a-number": lambda t, p: torch.save(_with(t, kind=3), p),
    "no-format": lambda t, p: torch.save(_with(t, format=None), p),
    "a-bare-list": lambda t, p: torch.save([1, 2, 3], p),
    "a-bare-tensor": lambda t, p: torch.save(torch.zeros(3), p),
    "malicious-torch-save": lambda t, p: torch.save({"model": Evil()}, p),
    "malicious-pickle": lambda t, p: p.write_bytes(pickle.dumps(Evil())),
    "malicious-pickle-protocol-0": lambda t, p: p.write_bytes(pickle.dumps(Evil(), protocol=0)),
}
# a pre-training's checkpoint is fine for --init but not for evaluate / recommend / serve
NOT_FOR_INIT = {"pretrain-kind": lambda t, p: torch.save(_with(t, kind="pretrain"), p)}


def refuse_to_serve(self, *args, **kwargs):
    raise AssertionError("the service started on a bad checkpoint")


@pytest.fixture
def work(trained, tmp_path, monkeypatch):
    """A fresh folder: a copy of the dataset (data/), the bad file goes in it; the cwd for the command."""
    data = tmp_path / "data"
    data.mkdir()
    for f in (trained / "data").iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("S3REC_DATA_DIR", raising=False)
    monkeypatch.setenv("S3REC_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    monkeypatch.setattr(socketserver.BaseServer, "serve_forever", refuse_to_serve)
    return tmp_path


def argv_for(command: str, path: Path, work: Path) -> list[str]:
    data = ["--data-dir", str(work / "data")]
    return {
        "evaluate": ["evaluate", str(path), *data],
        "recommend": ["recommend", str(path), *data, "-k", "3"],
        "serve": ["serve", str(path), *data, "--port", "0"],
        "train-init": ["train", "--dataset", "Tiny", *data, "--epochs", "1", "--quiet", "--protocol", "full",
                       "--init", str(path), "--out", str(work / "out"), *TINY],
        "pretrain-init": ["pretrain", "--dataset", "Tiny", *data, "--epochs", "1", "--quiet", "--init", str(path),
                          "--out", str(work / "out"), *TINY],
    }[command]


def assert_one_line_error(capsys, rc: int, *words: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    line = one_error_line(err, *words)
    assert "weights_only" not in line
    return line


# every bad file through `evaluate`; the cases through every other reader too (they share
# one loader, s3rec.checkpoint.read, which the API functions call as well)
EVERYWHERE = ("text", "empty", "random-bytes", "no-config", "n-items-a-string", "model-a-list", "config-not-json",
              "a-bare-tensor", "malicious-pickle")
CASES = [(name, "evaluate") for name in [*BAD, *NOT_FOR_INIT]]
CASES += [(name, cmd) for name in EVERYWHERE for cmd in ("recommend", "serve", "train-init", "pretrain-init")]
CASES += [(name, cmd) for name in NOT_FOR_INIT for cmd in ("recommend", "serve")]


@pytest.mark.parametrize("name,command", CASES)
def test_a_bad_checkpoint_is_one_line_naming_the_file(name, command, trained, work, capsys):
    path = work / f"{name}.pt"
    {**BAD, **NOT_FOR_INIT}[name](trained, path)
    before = snapshot(work)
    capsys.readouterr()
    rc = main(argv_for(command, path, work))
    line = assert_one_line_error(capsys, rc, str(path))
    assert snapshot(work) == before, "the command wrote or changed files"
    assert not (work / MARKER).exists(), "a pickle ran code"
    if name.startswith("malicious"):
        assert "cannot be loaded safely" in line


def test_the_messages_say_what_is_wrong(trained, work):
    def message(name: str) -> str:
        path = work / f"{name}.pt"
        {**BAD, **NOT_FOR_INIT}[name](trained, path)
        with pytest.raises(CheckpointError) as e:
            checkpoint.read(path)
        return str(e.value)

    assert "the file is empty" in message("empty")
    assert "not a file saved by PyTorch" in message("text")
    assert "no 'config' field" in message("no-config")
    assert "'n_items' must be an integer >= 1, got str 'abc'" in message("n-items-a-string")
    assert "'model' must be a dict of named tensors" in message("model-a-list")
    assert "not valid JSON" in message("config-not-json")
    assert "unknown model 'nosuch'" in message("config-unknown-model")
    assert "a pre-training checkpoint (kind 'pretrain'), not a fine-tuned model" in message("pretrain-kind")
    assert "expected a dict checkpoint, got Tensor" in message("a-bare-tensor")
    assert "Python objects that cannot be loaded safely" in message("malicious-pickle")


def test_the_api_raises_checkpoint_errors_and_writes_nothing(trained, work):
    from s3rec.api import evaluate, evaluate_checkpoint, finetune
    from s3rec.recommend import Recommender

    path = work / "bad.pt"
    BAD["n-items-a-string"](trained, path)
    data = work / "data"
    before = snapshot(work)
    for call in (lambda: evaluate(path, data_dir=data), lambda: evaluate_checkpoint(path, data_dir=data),
                 lambda: Recommender.load(path, data_dir=data),
                 lambda: finetune("Tiny", init=path, protocol="full", out=work / "out", data_dir=data, epochs=1,
                                  hidden_size=8, n_layers=1, n_heads=1, max_len=10)):
        with pytest.raises(CheckpointError, match="bad.pt"):
            call()
    assert snapshot(work) == before


def test_a_huge_item_count_is_refused_before_anything_is_built(trained, work, capsys):
    path = work / "huge.pt"
    torch.save(_with(trained, n_items=10**12), path)  # a model of 10^12 items would be allocated
    rc = main(["evaluate", str(path), "--data-dir", str(work / "data")])
    assert_one_line_error(capsys, rc, str(path), "10000000000", "150")


def test_a_corrupt_resume_checkpoint_is_one_line(trained, work, capsys):
    run = work / "run"
    run.mkdir()
    for f in ("config.json", "best.pt"):
        (run / f).write_bytes((trained / "run" / f).read_bytes())
    (run / "checkpoint.pt").write_bytes((trained / "run" / "best.pt").read_bytes())  # no optimizer, no rng
    rc = main(["train", "--dataset", "Tiny", "--data-dir", str(work / "data"), "--quiet", "--out", str(run),
               "--resume"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err  # after the run's start line, the one error line
    assert err.strip().splitlines()[-1].startswith(f"s3rec: error: {run / 'checkpoint.pt'}: ")
    assert "no 'optimizer' state" in err


def test_a_checkpoint_trained_elsewhere_loads_on_the_cpu(trained, work, capsys):
    """The device a run used is recorded, not required: a CUDA run is evaluated on a CPU-only machine."""
    path = work / "cuda.pt"
    torch.save(_with(trained, config=_config_with(trained, device="cuda:7")), path)
    assert main(["evaluate", str(path), "--data-dir", str(work / "data"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]


def test_good_checkpoints_still_load(trained, work):
    cfg, state = checkpoint.read(trained / "run" / "best.pt")
    assert cfg.model == "sasrec" and state["n_items"] == 150 and state["kind"] == "finetune"
    from s3rec.transfer import read_pretrained

    weights, facts = read_pretrained(trained / "run" / "best.pt")  # a fine-tuned SASRec as --init
    assert facts["kind"] == "finetune" and "item_embeddings.weight" in weights
    bare = work / "authors.pt"
    torch.save(dict(weights), bare)  # the released code's layout: a bare state_dict
    assert read_pretrained(bare)[1]["kind"] == "authors"
    torch.save({**weights, "extra": "text"}, bare)
    with pytest.raises(CheckpointError, match="non-tensor"):
        read_pretrained(bare)
