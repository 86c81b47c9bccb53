"""`s3rec data fetch` against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest

from conftest import shared_data_dir
from s3rec.cli import main
from s3rec.data import registry

LASTFM = registry.DATASETS["LastFM"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def serve(folder: Path):
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) in a thread; yields (base_url, request paths)."""
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            requests.append(self.path)
            super().do_GET()

        def log_message(self, format, *args):  # noqa: A002 - silence the request log
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache and no data folder: fetched files can only end up in $S3REC_CACHE_DIR/data."""
    c = tmp_path / "cache"
    monkeypatch.setenv("S3REC_CACHE_DIR", str(c))
    monkeypatch.delenv("S3REC_DATA_DIR", raising=False)
    monkeypatch.delenv("S3REC_DATA_URL", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):  # 127.0.0.1 must be reached directly
        monkeypatch.delenv(var, raising=False)
    return c


@pytest.fixture(scope="module")
def lastfm_source() -> Path:
    src = shared_data_dir()
    if not all((src / f).is_file() for f in LASTFM.files):
        pytest.skip(f"the public LastFM files are not in {src}")
    return src


def _one_line_error(stderr: str) -> str:
    """The error line; fails unless there is exactly one, it is the last line and there is no traceback."""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("s3rec: error:")]
    assert len(errors) == 1, stderr
    assert lines[-1] == errors[0], stderr
    return errors[0]


def _leftovers(folder: Path) -> list[str]:
    """Temporary or hidden files left in folder."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


def test_fetch_downloads_verifies_and_is_idempotent(cache, lastfm_source, capsys):
    with serve(lastfm_source) as (url, requests):
        assert main(["data", "fetch", "LastFM", "--url", url]) == 0
        out = capsys.readouterr().out
        dest = cache / "data"
        assert out.strip() == str(dest)
        assert sorted(requests) == sorted("/" + f for f in LASTFM.files)
        for fname, digest in LASTFM.sha256.items():
            assert _sha256(dest / fname) == digest
        assert _leftovers(dest) == []
        assert sorted(p.name for p in dest.iterdir()) == sorted(LASTFM.files)

        # A second fetch finds the verified copies in the cache and downloads nothing.
        n = len(requests)
        assert main(["data", "fetch", "lastfm", "--url", url]) == 0  # any case
        assert len(requests) == n
        assert "already present and verified" in capsys.readouterr().err

    # The cache alone is enough to use the dataset (no data folder is set).
    assert main(["data", "stats", "LastFM", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["dataset"] == "LastFM"
    assert stats["users"] == sum(1 for _ in open(lastfm_source / "LastFM.txt"))
    files = registry.locate("LastFM")
    assert files.folder == dest and files.negatives == dest / "LastFM_sample.txt"


def test_fetch_honours_data_url_env(cache, lastfm_source, monkeypatch, capsys):
    with serve(lastfm_source) as (url, requests):
        monkeypatch.setenv("S3REC_DATA_URL", url.rstrip("/"))  # the missing trailing slash is added
        assert main(["data", "fetch", "LastFM"]) == 0
        assert len(requests) == len(LASTFM.files)
    for fname, digest in LASTFM.sha256.items():
        assert _sha256(cache / "data" / fname) == digest


def test_fetch_replaces_a_bad_copy_in_the_cache(cache, lastfm_source):
    dest = cache / "data"
    dest.mkdir(parents=True)
    (dest / "LastFM.txt").write_text("1 2 3 4\n")  # a stale or truncated copy
    shutil.copy(lastfm_source / "LastFM_sample.txt", dest)  # already right: kept, not downloaded again
    with serve(lastfm_source) as (url, requests):
        assert main(["data", "fetch", "LastFM", "--url", url]) == 0
    assert sorted(requests) == ["/LastFM.txt", "/LastFM_item2attributes.json"]
    for fname, digest in LASTFM.sha256.items():
        assert _sha256(dest / fname) == digest
    assert _leftovers(dest) == []


def test_fetch_rejects_a_corrupted_file(cache, lastfm_source, tmp_path, capsys):
    served = tmp_path / "serve"
    served.mkdir()
    for f in LASTFM.files:
        shutil.copy(lastfm_source / f, served / f)
    data = bytearray((served / "LastFM.txt").read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit of one byte
    (served / "LastFM.txt").write_bytes(bytes(data))

    with serve(served) as (url, requests):
        assert main(["data", "fetch", "LastFM", "--url", url]) == 2
        assert "/LastFM.txt" in requests
    err = _one_line_error(capsys.readouterr().err)
    assert "SHA-256" in err and "LastFM.txt" in err
    assert LASTFM.sha256["LastFM.txt"] in err  # says what was expected
    dest = cache / "data"
    assert not (dest / "LastFM.txt").exists()
    assert _leftovers(dest) == []
    # Nothing in the cache would make the dataset look available.
    assert main(["data", "stats", "LastFM"]) == 2
    assert "s3rec data fetch" in _one_line_error(capsys.readouterr().err)


def test_fetch_404_leaves_nothing(cache, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with serve(empty) as (url, requests):
        assert main(["data", "fetch", "LastFM", "--url", url]) == 2
        assert requests == ["/LastFM.txt"]  # stops at the first failure
    err = _one_line_error(capsys.readouterr().err)
    assert f"{url}LastFM.txt" in err
    assert "not found" in err.lower() or "404" in err
    dest = cache / "data"
    assert not dest.exists() or list(dest.iterdir()) == []


def test_fetch_unreachable_server(cache, capsys):
    # A port that was free a moment ago: nothing listens there.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["data", "fetch", "LastFM", "--url", f"http://127.0.0.1:{port}/"]) == 2
    assert "could not download" in _one_line_error(capsys.readouterr().err)
    dest = cache / "data"
    assert not dest.exists() or list(dest.iterdir()) == []


def test_fetch_unregistered_name(cache, capsys):
    assert main(["data", "fetch", "NoSuchData", "--url", "http://127.0.0.1:9/"]) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert "not a registered dataset" in err and "LastFM" in err
    assert not (cache / "data").exists()


def test_stats_without_data_says_how_to_get_it(cache, capsys):
    assert main(["data", "stats", "Beauty"]) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert "s3rec data fetch Beauty" in err
    assert "S3REC_DATA_DIR" in err
