"""The bad-input battery: every case ends in one line, exit 2, nothing written, no traceback.

Each case breaks one thing a user can get wrong (a data file, an import, a checkpoint, a setting, an
output path, a fetch, a recommend or a serve flag) and runs the command line in-process. The contract,
checked for every case the same way:

- the exit status is 2;
- standard error is exactly one line, ``s3rec: error: ...``, holding the words the case names (the
  file or flag at fault and the problem), and no ``Traceback``;
- every file under the test's folder (data, checkpoints, cache, outputs) is byte for byte as before,
  and no file or folder appeared.

The HTTP service's share of the battery (4xx answers with a JSON body) is at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import resource
import socket
import threading
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import snapshot, synthetic_sequences, write_dataset
from s3rec import httpserver
from s3rec.cli import main

N_ITEMS = 150
SEQS = synthetic_sequences(n_users=40, n_items=N_ITEMS, seed=5)
ATTRS = {i: [1 + i % 5, 1 + (i * 7) % 9] for i in range(1, N_ITEMS + 1)}
TINY = ["--set", "hidden_size=8", "--set", "n_layers=1", "--set", "n_heads=1", "--set", "max_len=10"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run folder of a 1-epoch fine-tuning on the synthetic dataset ``Good`` (made once, copied per case)."""
    root = tmp_path_factory.mktemp("trained")
    data = write_dataset(root / "data", "Good", SEQS, ATTRS)
    env = {"S3REC_CACHE_DIR": str(root / "cache")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        rc = main(["train", "--dataset", "Good", "--data-dir", str(data), "--epochs", "1", "--quiet",
                   "--out", str(root / "run"), *TINY])
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert rc == 0
    return root


# --- the cases: each ``make(w)`` prepares its inputs in the workspace ``w`` and returns the argv ----------------


class Workspace:
    """A fresh folder per case: ``data/`` holds a valid dataset ``Good``; ``ckpt`` is a trained best.pt."""

    def __init__(self, root: Path, trained: Path):
        self.root = root
        self.data = write_dataset(root / "data", "Good", SEQS, ATTRS)
        self.run = root / "run"
        self.run.mkdir()
        for name in ("best.pt", "config.json", "results.json"):
            (self.run / name).write_bytes((trained / "run" / name).read_bytes())
        self.ckpt = self.run / "best.pt"

    def file(self, name: str, content) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def torch_file(self, name: str, obj) -> Path:
        path = self.root / name
        torch.save(obj, path)
        return path

    def checkpoint_with(self, name: str, **changes) -> Path:
        obj = torch.load(self.ckpt, weights_only=True)
        for k, v in changes.items():
            if v is DROP:
                obj.pop(k)
            else:
                obj[k] = v
        return self.torch_file(name, obj)

    def dataset(self, name: str, seqs: dict, attrs_text: str | None = None) -> Path:
        write_dataset(self.data, name, seqs)
        if attrs_text is not None:
            (self.data / f"{name}_item2attributes.json").write_text(attrs_text)
        return self.data

    def train(self, *extra: str, dataset: str = "Good", out: str = "out") -> list[str]:
        return ["train", "--dataset", dataset, "--data-dir", str(self.data), "--epochs", "1", "--quiet",
                "--out", str(self.root / out), *TINY, *extra]


DROP = object()


class Evil:
    """Unpickling this runs code: weights-only loading must refuse it before anything runs."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_toml(depth: int) -> str:
    return "a = " + "[" * depth + "]" * depth + "\n"


CASES: dict[str, tuple] = {}


def case(id: str, *words: str):
    """Register ``make`` under ``id``; the error line must contain every one of ``words`` (``{root}`` is the
    workspace, so a case can demand the path it broke)."""

    def register(make):
        CASES[id] = (make, words)
        return make

    return register


# data files
@case("attributes-id-10e15", "Good_item2attributes.json")
def _(w):
    (w.data / "Good_item2attributes.json").write_text(json.dumps({"1": [10**15], **{str(i): [1] for i in range(2, N_ITEMS + 1)}}))
    return w.train()


@case("attributes-id-10e11", "Good_item2attributes.json")
def _(w):
    (w.data / "Good_item2attributes.json").write_text(json.dumps({"1": [10**11], **{str(i): [1] for i in range(2, N_ITEMS + 1)}}))
    return ["data", "stats", "Good", "--data-dir", str(w.data)]


@case("attributes-nested-100k", "Good_item2attributes.json")
def _(w):
    (w.data / "Good_item2attributes.json").write_text('{"1": ' + nested_json(100_000) + "}")
    return w.train()


@case("attributes-a-folder", "Good_item2attributes.json")
def _(w):
    (w.data / "Good_item2attributes.json").unlink()
    (w.data / "Good_item2attributes.json").mkdir()
    return w.train()


@case("attributes-symlink-loop", "Good_item2attributes.json")
def _(w):
    (w.data / "Good_item2attributes.json").unlink()
    os.symlink(w.data / "Good_item2attributes.json", w.data / "Good_item2attributes.json")
    return w.train()


@case("every-user-3-items", "Three")
def _(w):
    w.dataset("Three", {u: [3 * u - 2, 3 * u - 1, 3 * u] for u in range(1, 61)})
    return w.train(dataset="Three")


@case("small-catalogue-sampled", "--protocol full")
def _(w):
    w.dataset("Small", synthetic_sequences(n_users=20, n_items=35, min_len=5, max_len=9, seed=1))
    return w.train(dataset="Small")


@case("data-dir-missing", "nowhere")
def _(w):
    return ["train", "--dataset", "Good", "--data-dir", str(w.root / "nowhere"), "--quiet", "--out", str(w.root / "out")]


@case("data-dir-without-dataset-two-datasets", "--dataset")
def _(w):
    w.dataset("Other", SEQS)
    return ["train", "--data-dir", str(w.data), "--epochs", "1", "--quiet", "--out", str(w.root / "out"), *TINY]


@case("dataset-unknown", "Nope")
def _(w):
    return w.train(dataset="Nope")


# import
@case("import-delimiter-two-chars", "--delimiter")
def _(w):
    return ["data", "import", str(w.file("log.csv", "user,item,timestamp\n1,2,3\n")), "--delimiter", ";;",
            "--out", str(w.root / "imported")]


@case("import-missing-file", "nothere.csv")
def _(w):
    return ["data", "import", str(w.root / "nothere.csv"), "--out", str(w.root / "imported")]


@case("import-jsonl-nested-100k", "log.jsonl")
def _(w):
    return ["data", "import", str(w.file("log.jsonl", '{"user": 1, "item": ' + nested_json(100_000) + "}\n")),
            "--out", str(w.root / "imported")]


@case("import-missing-column", "log.csv", "item")
def _(w):
    return ["data", "import", str(w.file("log.csv", "user,thing,timestamp\n1,2,3\n")), "--out", str(w.root / "imported")]


@case("import-empty-file", "log.csv")
def _(w):
    return ["data", "import", str(w.file("log.csv", "")), "--out", str(w.root / "imported")]


@case("import-attributes-not-utf8", "attrs.csv")
def _(w):
    log = "user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u in range(1, 8) for t, i in enumerate(range(1, 8)))
    return ["data", "import", str(w.file("log.csv", log)), "--attributes", str(w.file("attrs.csv", b"item,attribute\n1,\xff\xfe\n")),
            "--k-core", "0", "--out", str(w.root / "imported")]


# checkpoints
@case("evaluate-text-file", "notes.pt")
def _(w):
    return ["evaluate", str(w.file("notes.pt", "hello\n")), "--data-dir", str(w.data)]


@case("evaluate-empty-file", "empty.pt")
def _(w):
    return ["evaluate", str(w.file("empty.pt", b"")), "--data-dir", str(w.data)]


@case("evaluate-random-zip", "junk.pt")
def _(w):
    with zipfile.ZipFile(w.root / "junk.pt", "w") as z:
        z.writestr("junk/data.pkl", b"\x80\x05garbage")
    return ["evaluate", str(w.root / "junk.pt"), "--data-dir", str(w.data)]


@case("evaluate-no-config", "noconfig.pt")
def _(w):
    return ["evaluate", str(w.checkpoint_with("noconfig.pt", config=DROP)), "--data-dir", str(w.data)]


@case("evaluate-n-items-a-string", "abc.pt")
def _(w):
    return ["evaluate", str(w.checkpoint_with("abc.pt", n_items="abc")), "--data-dir", str(w.data)]


@case("evaluate-model-a-list", "list.pt")
def _(w):
    return ["evaluate", str(w.checkpoint_with("list.pt", model=[1, 2, 3])), "--data-dir", str(w.data)]


@case("evaluate-config-not-json", "cfg.pt")
def _(w):
    return ["evaluate", str(w.checkpoint_with("cfg.pt", config="{not json")), "--data-dir", str(w.data)]


@case("evaluate-bare-tensor", "tensor.pt")
def _(w):
    return ["evaluate", str(w.torch_file("tensor.pt", torch.zeros(3))), "--data-dir", str(w.data)]


@case("evaluate-missing", "gone.pt")
def _(w):
    return ["evaluate", str(w.root / "gone.pt"), "--data-dir", str(w.data)]


@case("recommend-malicious-pickle", "evil.pt")
def _(w):
    (w.root / "evil.pt").write_bytes(pickle.dumps(Evil()))
    return ["recommend", str(w.root / "evil.pt"), "--data-dir", str(w.data)]


@case("recommend-text-file", "notes.pt")
def _(w):
    return ["recommend", str(w.file("notes.pt", "hello\n")), "--data-dir", str(w.data)]


@case("train-init-text-file", "notes.pt")
def _(w):
    return w.train("--init", str(w.file("notes.pt", "hello\n")))


@case("train-init-wrong-dataset", "item table")
def _(w):
    w.dataset("Bigger", synthetic_sequences(n_users=40, n_items=N_ITEMS + 20, seed=2))
    return w.train("--init", str(w.ckpt), dataset="Bigger")


@case("serve-text-file", "notes.pt")
def _(w):
    return ["serve", str(w.file("notes.pt", "hello\n")), "--data-dir", str(w.data), "--port", "0"]


# settings
@case("seed-overflow", "seed")
def _(w):
    return w.train("--set", "seed=99999999999999999999")


@case("seed-flag-overflow", "seed")
def _(w):
    return w.train("--seed", "99999999999999999999")


@case("fraction-seed-negative", "fraction_seed")
def _(w):
    return w.train("--set", "fraction_seed=-1")


@case("hidden-size-huge", "hidden_size")
def _(w):
    return w.train("--set", "hidden_size=4000000000")


@case("max-len-huge", "max_len")
def _(w):
    return w.train("--set", "max_len=4000000000")


@case("n-layers-huge", "n_layers")
def _(w):
    return w.train("--set", "n_layers=100000")


@case("unknown-setting-did-you-mean", "learning_rate", "lr")
def _(w):
    return w.train("--set", "learning_rate=0.001")


@case("lr-infinite", "lr")
def _(w):
    return w.train("--set", "lr=inf")


@case("lr-not-a-number", "lr")
def _(w):
    return w.train("--set", "lr=abc")


@case("set-without-equals", "hidden_size")
def _(w):
    return w.train("--set", "hidden_size")


@case("unknown-model", "sasrek")
def _(w):
    return w.train("--model", "sasrek")


@case("preset-not-utf8", "p.toml")
def _(w):
    return w.train("--preset", str(w.file("p.toml", b"lr = 0.001\n# \xff\xfe\n")))


@case("preset-nested-toml", "deep.toml")
def _(w):
    return w.train("--preset", str(w.file("deep.toml", deep_toml(100_000))))


@case("preset-missing", "nothere.toml")
def _(w):
    return w.train("--preset", str(w.root / "nothere.toml"))


@case("pretrain-mask-p-above-one", "mask_p")
def _(w):
    return ["pretrain", "--dataset", "Good", "--data-dir", str(w.data), "--epochs", "1", "--quiet",
            "--out", str(w.root / "out"), "--set", "mask_p=1.5"]


# output paths
@case("recommend-out-is-the-checkpoint", "best.pt")
def _(w):
    return ["recommend", str(w.ckpt), "--out", str(w.ckpt)]


@case("recommend-out-is-the-dataset", "Good.txt")
def _(w):
    return ["recommend", str(w.ckpt), "--data-dir", str(w.data), "--out", str(w.data / "Good.txt")]


@case("recommend-out-someone-elses-file", "mine.csv", "--force")
def _(w):
    return ["recommend", str(w.ckpt), "--out", str(w.file("mine.csv", "my,own,data\n"))]


@case("train-out-is-a-file", "mine.txt")
def _(w):
    w.file("mine.txt", "keep me\n")
    return w.train(out="mine.txt")


@case("train-overwrite-a-folder-of-mine", "config.json")
def _(w):
    w.file("mine/notes.txt", "keep me\n")
    return w.train("--overwrite", out="mine")


@case("import-out-over-existing-dataset", "--force")
def _(w):
    log = "user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u in range(1, 8) for t, i in enumerate(range(1, 8)))
    return ["data", "import", str(w.file("log.csv", log)), "--name", "Good", "--k-core", "0", "--out", str(w.data)]


# fetch
@case("fetch-url-not-a-url", "notaurl")
def _(w):
    return ["data", "fetch", "LastFM", "--url", "notaurl", "--dest", str(w.root / "dest")]


@case("fetch-unknown-dataset", "Nope")
def _(w):
    return ["data", "fetch", "Nope", "--dest", str(w.root / "dest")]


# recommend
@case("users-file-not-utf8", "users.txt")
def _(w):
    return ["recommend", str(w.ckpt), "--data-dir", str(w.data), "--users-file", str(w.file("users.txt", b"1\n\xff\xfe\n"))]


@case("users-file-unknown-user", "users.txt", "777")
def _(w):
    return ["recommend", str(w.ckpt), "--data-dir", str(w.data), "--users-file", str(w.file("users.txt", "1\n777\n"))]


@case("recommend-k-zero", "-k")
def _(w):
    return ["recommend", str(w.ckpt), "--data-dir", str(w.data), "-k", "0"]


@case("recommend-k-beyond-catalogue", "-k")
def _(w):
    return ["recommend", str(w.ckpt), "--data-dir", str(w.data), "-k", "100000"]


# serve flags
@case("serve-port-99999", "--port")
def _(w):
    return ["serve", str(w.ckpt), "--data-dir", str(w.data), "--port", "99999"]


@case("serve-port-negative", "--port")
def _(w):
    return ["serve", str(w.ckpt), "--data-dir", str(w.data), "--port", "-1"]


@case("serve-port-in-use", "cannot listen", "in use")
def _(w):
    w.busy = socket.socket()
    w.busy.bind(("127.0.0.1", 0))
    w.busy.listen()
    return ["serve", str(w.ckpt), "--data-dir", str(w.data), "--port", str(w.busy.getsockname()[1])]


@contextlib.contextmanager
def memory_cap(limit: int):
    """Cap this process's address space while a case runs: a case that tries to allocate by a huge
    setting fails with MemoryError (a traceback, so the case fails) instead of exhausting the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def started(self, *args, **kwargs):
    raise AssertionError("the service started instead of refusing its input")


@pytest.mark.parametrize("id", list(CASES))
def test_bad_input(id, trained, tmp_path, monkeypatch, capsys):
    make, words = CASES[id]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("S3REC_DATA_DIR", raising=False)
    monkeypatch.setenv("S3REC_CACHE_DIR", str(tmp_path / "cache"))
    w = Workspace(tmp_path / "w", trained)
    argv = make(w)
    (tmp_path / "cache").mkdir(exist_ok=True)
    monkeypatch.setattr(httpserver.Server, "serve_forever", started)  # a case that starts the service fails
    before = snapshot(tmp_path)
    capsys.readouterr()
    try:
        with memory_cap(8 << 30):
            rc = main(argv)
    except SystemExit as e:  # argparse's own checks
        rc = e.code
    finally:
        if hasattr(w, "busy"):
            w.busy.close()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, f"exit {rc}; stderr: {err}"
    assert "Traceback" not in err
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("s3rec: error:") or lines[0].startswith("s3rec "), lines[0]
    assert "error:" in lines[0]
    for word in words:
        assert word in lines[0], f"{word!r} not in: {lines[0]}"
    assert "weights_only" not in lines[0]
    assert snapshot(tmp_path) == before, "the command wrote or changed files"


def test_the_battery_is_large_enough():
    assert len(CASES) >= 40


# --- the HTTP service: every bad request gets a 4xx with a JSON body ---------------------------------------------


@pytest.fixture(scope="module")
def service(trained):
    from s3rec.recommend import Recommender
    from s3rec import serve

    rec = Recommender.load(trained / "run" / "best.pt", data_dir=str(trained / "data"))
    server = serve.make_server(rec, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def raw(port: int, data: bytes) -> tuple[int, dict]:
    """Send ``data`` on a fresh connection; the reply's status and its JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def request(method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
            .encode() + body)


SERVICE_CASES = {
    "delete-health": (request("DELETE", "/health"), 405),
    "put-recommend": (request("PUT", "/recommend", b'{"history": [1]}'), 405),
    "k-5000-digits": (request("POST", "/recommend", b'{"history": [1], "k": ' + b"9" * 5000 + b"}"), 400),
    "json-nested-100k": (request("POST", "/recommend", b'{"history": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), 400),
    "garbage-request-line": (b"\x00\x01garbage\r\n\r\n", 400),
    "unknown-path": (request("GET", "/nope"), 404),
    "body-not-json": (request("POST", "/recommend", b"not json"), 400),
    "unknown-item": (request("POST", "/recommend", b'{"history": ["no-such-item"]}'), 400),
    "long-request-line": (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    "many-headers": (request("GET", "/health", headers="".join(f"X-{i}: {i}\r\n" for i in range(150))), 431),
}


@pytest.mark.parametrize("id", list(SERVICE_CASES))
def test_bad_request(id, service):
    data, status = SERVICE_CASES[id]
    got, body = raw(service, data)
    if id == "unknown-item":
        assert 400 <= got < 500
    else:
        assert got == status
    assert isinstance(body.get("error"), str) and body["error"]
