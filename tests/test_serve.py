"""The HTTP service: request validation (pure), then on loopback with raw sockets: every bad request's
status and JSON answer, limits, keep-alive, slow and stalled clients, the connection cap, the CLI's port errors."""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import random
import re
import select
import socket
import struct
import threading
import time
from http import HTTPStatus

import pytest
from conftest import synthetic_sequences, write_dataset

from s3rec.httpserver import Limits, Server, parse_head
from s3rec.serve import MAX_K, RequestError, json_depth_exceeds, make_server, parse_request


def _err(body, **kw) -> RequestError:
    with pytest.raises(RequestError) as e:
        parse_request(body if isinstance(body, bytes) else json.dumps(body).encode(), **kw)
    return e.value


def test_valid_request_defaults():
    assert parse_request(b'{"history": ["a", 2]}') == {"history": ["a", 2], "k": 10, "exclude_history": True, "user": None}
    assert parse_request(b'{"user": "u1", "k": 3}')["user"] == "u1"


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b"{not json", HTTPStatus.BAD_REQUEST, "not valid JSON"),
        (b"\xff\xfe", HTTPStatus.BAD_REQUEST, "not valid JSON"),
        ([1, 2], HTTPStatus.BAD_REQUEST, "JSON object"),
        ({}, HTTPStatus.BAD_REQUEST, "give a 'history'"),
        ({"history": []}, HTTPStatus.BAD_REQUEST, "empty"),
        ({"history": "abc"}, HTTPStatus.BAD_REQUEST, "list of item ids"),
        ({"history": [1.5]}, HTTPStatus.BAD_REQUEST, "list of item ids"),
        ({"history": [True]}, HTTPStatus.BAD_REQUEST, "list of item ids"),
        ({"history": [1], "k": 0}, HTTPStatus.BAD_REQUEST, "'k'"),
        ({"history": [1], "k": "5"}, HTTPStatus.BAD_REQUEST, "'k'"),
        ({"history": [1], "k": MAX_K + 1}, HTTPStatus.BAD_REQUEST, "'k'"),
        ({"history": [1], "exclude_history": "yes"}, HTTPStatus.BAD_REQUEST, "exclude_history"),
        ({"history": [1], "user": [1]}, HTTPStatus.BAD_REQUEST, "'user'"),
        ({"history": [1], "extra": 1}, HTTPStatus.BAD_REQUEST, "unknown field"),
        (b'{"history": [1], "k": ' + b"5" * 5000 + b"}", HTTPStatus.BAD_REQUEST, "number too long"),
        (b'{"history": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", HTTPStatus.BAD_REQUEST, "deeper than 16"),
        (b"[" * 17 + b"]" * 17, HTTPStatus.BAD_REQUEST, "deeper than 16"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(body, status, words):
    e = _err(body)
    assert e.status == status and words in str(e)


def test_json_depth_counts_brackets_outside_strings_only():
    assert json_depth_exceeds(b"[" * 3 + b"]" * 3, 2) and not json_depth_exceeds(b"[[]]", 2)
    assert not json_depth_exceeds(b'["[[[[", "\\"[[[[", {"a": []}]', 3)  # 3 deep
    assert parse_request(b'{"history": ["' + b"[" * 40 + b'"]}')["history"] == ["[" * 40]  # an id of brackets


def test_too_long_history_and_k_above_catalogue():
    assert _err({"history": [1] * 11}, max_history=10).status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert "1..20" in str(_err({"history": [1], "k": 21}, n_items=20))


# --- the service on loopback: raw-socket requests, limits, slow and stalled clients -------------------



@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    """An untrained SASRec on a tiny synthetic dataset (the service's answers do not depend on training)."""
    from s3rec.config import TrainConfig
    from s3rec.data import registry
    from s3rec.recommend import Recommender
    from s3rec.train import build

    folder = write_dataset(tmp_path_factory.mktemp("data"), "Tiny", synthetic_sequences(n_items=60))
    ds = registry.load("Tiny", folder)
    cfg = TrainConfig(dataset="Tiny")
    return Recommender(build(cfg, ds)[0], cfg, ds, None)


@contextlib.contextmanager
def running(rec, **limits):
    """The service on a free loopback port (``rec``: a Recommender, or a routes dict for httpserver alone)."""
    if isinstance(rec, dict):
        server = Server(rec, "127.0.0.1", 0, Limits(**limits))
    else:
        server = make_server(rec, "127.0.0.1", 0, limits=Limits(**limits))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def read_response(sock: socket.socket, timeout: float = 5.0, head_only: bool = False) -> tuple[int, dict, bytes]:
    """One answer: asserts a well-formed status line; returns (status, lower-case headers, body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    m = re.fullmatch(r"HTTP/1\.1 (\d{3}) [A-Za-z][A-Za-z -]*", status_line)
    assert m, status_line
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    n = int(headers["content-length"])
    while len(rest) < n and not head_only:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(m[1]), headers, rest


def raw(port: int, data: bytes, half_close: bool = False) -> tuple[int, dict, dict]:
    """Send raw bytes on a fresh connection; the answer must be HTTP/1.1 with a JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        status, headers, body = read_response(s)
    assert headers["content-type"] == "application/json"
    return status, headers, json.loads(body)


def post(body: bytes, extra: str = "") -> bytes:
    return (f"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


GARBAGE = random.Random(0).randbytes(300)
TOO_DEEP = b'{"history": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize(
    "data, half_close, status",
    [
        (b"GARBAGE\r\n\r\n", False, 400),
        (GARBAGE + b"\r\n\r\n", False, 400),
        (GARBAGE, True, 400),  # random bytes, then the client stops sending
        (b"\x00\x01\x02 / HTTP/1.1\r\nHost: x\r\n\r\n", False, 400),
        (b"GET /health\r\n", False, 400),  # HTTP/0.9: answered in HTTP/1.1 all the same
        (b"GET /health HTTP/0.9\r\n\r\n", False, 400),
        (b"GET /health HTTP/2.0\r\n\r\n", False, 505),
        (b"GET health HTTP/1.1\r\nHost: x\r\n\r\n", False, 400),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", False, 414),
        (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", False, 431),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", False, 431),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", False, 400),
        (b"GET /health HTTP/1.1\r\nHost: x\r\n folded: header\r\n\r\n", False, 400),
        (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", False, 404),
        (b"GET /health HTTP/1.1\r\n\r\n", False, 400),  # HTTP/1.1 without Host (RFC 9112 3.2)
        (post(b"{}").replace(b"/recommend", b"/nope"), False, 404),
        (b"POST /recommend HTTP/1.1\r\nHost: x\r\n\r\n", False, 411),
        (b"POST /recommend HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", False, 411),
        (b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", False, 400),
        (b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", False, 400),
        (b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n{", False, 413),
        (b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", False, 413),
        (b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{", True, 400),  # body cut short
        (post(b'{"history": ["1"], "k": ' + b"7" * 5000 + b"}"), False, 400),  # int() digit limit
        (post(b'{"history": [' + b"1" * 5000 + b"]}"), False, 400),
        (post(TOO_DEEP), False, 400),
        (post(b'{"history": ' + b"[" * 20 + b"1" + b"]" * 20 + b"}"), False, 400),
        (post(b'{"history": ["1"], "k": 1e400}'), False, 400),
        (post(b"\xff\xfe\x00"), False, 400),
    ],
)
def test_every_bad_request_gets_a_json_answer_with_its_status(rec, data, half_close, status):
    with running(rec) as server:
        port = server.server_address[1]
        got, headers, body = raw(port, data, half_close)
        assert got == status and body["error"], (data[:60], got, body)
        assert raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")[2] == {"status": "ok"}  # still answering


@pytest.mark.parametrize(
    "request_line, allow",
    [(b"PUT /recommend", "POST"), (b"GET /recommend", "POST"), (b"HEAD /recommend", "POST"),
     (b"DELETE /health", "GET, HEAD"), (b"POST /info", "GET, HEAD"), (b"BREW /health", "GET, HEAD")],
)
def test_a_wrong_method_on_a_known_path_gets_405_with_allow(rec, request_line, allow):
    with running(rec) as server, socket.create_connection(server.server_address, timeout=5) as s:
        s.sendall(request_line + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = read_response(s, head_only=request_line.startswith(b"HEAD"))
        assert status == 405 and headers["allow"] == allow and headers["content-type"] == "application/json"
        if not request_line.startswith(b"HEAD"):
            assert "error" in json.loads(body)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection stays usable
        assert read_response(s)[0] == 200


def test_head_keep_alive_pipelining_expect_and_query(rec):
    with running(rec) as server, socket.create_connection(server.server_address, timeout=5) as s:
        s.sendall(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")  # headers, no body
        assert b"Content-Type: application/json" in head
        body = json.dumps({"history": ["1", "2"], "k": 3}).encode()
        s.sendall(b"GET /health?probe=1 HTTP/1.1\r\nHost: x\r\n\r\n" + post(body))  # two requests in one send
        assert read_response(s)[0] == 200
        status, _, answer = read_response(s)
        assert status == 200 and len(json.loads(answer)["items"]) == 3
        s.sendall(post(b"", f"Expect: 100-continue\r\n").replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode()))
        assert s.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        assert read_response(s)[0] == 200
        s.sendall(b"GET /health HTTP/1.0\r\n\r\n")  # HTTP/1.0 without keep-alive: answered, then closed
        status, headers, _ = read_response(s)
        assert status == 200 and headers["connection"] == "close" and s.recv(10) == b""


def _stall(port: int, data: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(data)
    return s


def _http_threads() -> int:
    return sum(t.name.startswith("s3rec-http") for t in threading.enumerate())


def test_health_keeps_answering_8_clients_x_200_requests_and_a_stalled_connection(rec):
    with running(rec, timeout=5.0) as server:
        port = server.server_address[1]
        stalled = _stall(port, b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"hist")
        failures, latencies = [], []

        def client():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            for _ in range(200):
                t0 = time.perf_counter()
                c.request("GET", "/health")
                r = c.getresponse()
                if r.status != 200 or json.loads(r.read()) != {"status": "ok"}:
                    failures.append(r.status)
                latencies.append(time.perf_counter() - t0)
            c.close()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not failures and len(latencies) == 1600
        assert time.perf_counter() - t0 < 20 and max(latencies) < 2.0  # nobody waited for the stalled one
        assert _http_threads() <= server.limits.max_connections
        stalled.close()


def test_stalled_and_byte_by_byte_clients_are_cut_off_and_their_threads_freed(rec):
    with running(rec, timeout=2.0) as server:
        port = server.server_address[1]
        base = _http_threads()
        head = b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n"
        stalled = [_stall(port, head + b'{"history": [') for _ in range(50)]
        t0 = time.perf_counter()
        assert raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200  # not held up by the 50
        assert time.perf_counter() - t0 < 1.0  # well before their 2 s are up
        assert server.active_connections <= 51 and _http_threads() - base <= 51

        # Each byte arrives well within any per-read timeout; the whole request does not.
        trickle = socket.create_connection(("127.0.0.1", port), timeout=5)
        t0, answered = time.perf_counter(), False
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
            if select.select([trickle], [], [], 0.05)[0]:
                answered = True
                break
            trickle.send(bytes([byte]))
        assert answered and 1.8 < time.perf_counter() - t0 < 5.0
        status, _, body = read_response(trickle)
        assert status == 408 and "within 2 s" in json.loads(body)["error"]
        trickle.close()

        for s in stalled[:5]:  # the stalled ones were answered 408 too
            assert read_response(s)[0] == 408
        deadline = time.monotonic() + 5
        while (server.active_connections or _http_threads() > base) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.active_connections == 0 and _http_threads() == base  # every connection's thread ended
        for s in stalled:
            s.close()
        assert raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200


def test_connections_beyond_the_cap_wait_their_turn(rec):
    with running(rec, timeout=1.0, max_connections=4) as server:
        port = server.server_address[1]
        stalled = [_stall(port, b"GET /health HTTP/1.1\r\nHost: x\r\n") for _ in range(6)]
        most, done = [0], threading.Event()

        def watch():
            while not done.is_set():
                most[0] = max(most[0], _http_threads())
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        time.sleep(0.2)
        t0 = time.perf_counter()
        status, _, body = raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # waits in the backlog, not refused
        assert status == 200 and 0.5 < time.perf_counter() - t0 < 4
        done.set()
        watcher.join()
        assert most[0] == 4  # never more threads than the cap, though 7 clients were connected
        for s in stalled:
            s.close()


def test_idle_keep_alive_connection_is_closed_after_the_timeout(rec):
    with running(rec, timeout=0.5) as server, socket.create_connection(server.server_address, timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s)[0] == 200
        t0 = time.perf_counter()
        assert s.recv(10) == b""  # closed without an answer: no request had begun
        assert 0.3 < time.perf_counter() - t0 < 3


def test_port_in_use_and_out_of_range(rec, monkeypatch, capsys):
    from s3rec.cli import main
    from s3rec.errors import S3RecError

    with running(rec) as server:
        port = server.server_address[1]
        with pytest.raises(S3RecError, match="in use"):
            make_server(rec, "127.0.0.1", port)
        monkeypatch.setattr("s3rec.cli.tools._recommender", lambda args: rec)
        assert main(["serve", "run/best.pt", "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("s3rec: error: cannot listen on 127.0.0.1:") and "in use" in err and "\n" not in err
    for flag, bad in [("--port", "99999"), ("--port", "-1"), ("--port", "http"), ("--timeout", "0"),
                      ("--timeout", "nan"), ("--timeout", "1e300"), ("--max-connections", "0"),
                      ("--max-connections", "100000")]:
        with pytest.raises(SystemExit) as e:
            main(["serve", "run/best.pt", flag, bad])
        assert e.value.code == 2
        assert f"argument {flag}" in capsys.readouterr().err.strip().splitlines()[-1]


def test_header_and_json_scans_take_linear_time_whatever_the_spaces_or_quotes():
    """Were quadratic regex backtracking (seconds for one 16 KB header, hours for one 1 MB body), holding the GIL."""
    t0 = time.perf_counter()
    head = parse_head(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a" + b" " * 16_000 + b"b \t\r\nX-B:" + b" \t" * 8000, Limits())
    assert head.headers == {"host": "x", "x-a": "a" + " " * 16_000 + "b", "x-b": ""}
    with pytest.raises(RequestError, match="not valid JSON"):  # an open string of escaped quotes, then brackets
        parse_request(b'"' + b'\\"' * 300_000 + b"[" * 17)
    assert time.perf_counter() - t0 < 2.0


def test_transfer_encoding_or_an_unread_body_closes_the_connection_after_one_answer(rec):
    """Nothing after such a head is read as a request (request smuggling); an empty Content-Length on a 404
    or 405 kept the connection open."""
    smuggled = b"0\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    for head, expected in [
        (b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(smuggled), 411),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"GET /nope HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 404),
        (b"PUT /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 00\r\n\r\n", 405),
    ]:
        with running(rec) as server, socket.create_connection(server.server_address, timeout=5) as s:
            s.sendall(head + smuggled)
            status, headers, _ = read_response(s)
            assert status == expected and headers["connection"] == "close" and s.recv(100) == b""  # one answer only


def test_a_handler_answer_that_cannot_be_sent_gets_a_500_and_the_connection_goes_on():
    routes = {"/set": {"GET": lambda body: (200, {"items": {1, 2}})},  # a set: not JSON
              "/odd": {"GET": lambda body: (299, {})}}  # no such status
    with running(routes) as server, socket.create_connection(server.server_address, timeout=5) as s:
        for path in (b"/set", b"/odd"):
            s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = read_response(s)
            assert status == 500 and "internal error" in json.loads(body)["error"]
            assert headers["connection"] == "keep-alive"


class _OutOfFds:
    """A listening socket whose accept() fails as when the process has no file descriptor left."""

    def __init__(self, sock):
        self.sock, self.calls = sock, 0

    def fileno(self):
        return self.sock.fileno()

    def accept(self):
        self.calls += 1
        raise OSError(errno.EMFILE, "Too many open files")


def test_accept_waits_while_out_of_file_descriptors_then_serves_the_waiting_client():
    with running({"/health": {"GET": lambda body: (200, {"status": "ok"})}}) as server:
        real = server.socket
        server.socket = failing = _OutOfFds(real)
        with socket.create_connection(server.server_address, timeout=5) as s:  # waits in the backlog
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.5)
            server.socket = real
            assert read_response(s)[0] == 200
        assert 2 <= failing.calls <= 30  # every poll interval (0.05 s), not a busy loop (was > 10,000)


def _answers(out: bytes) -> list[int]:
    """The statuses of the well-formed answers that make up ``out`` (a body unless HEAD's, then JSON)."""
    statuses = []
    while out:
        head, sep, out = out.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        assert sep and re.fullmatch(r"HTTP/1\.1 \d{3} [A-Za-z][A-Za-z -]*", status_line), head[:200]
        statuses.append(int(status_line[9:12]))
        if statuses[-1] == 100:
            continue
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        assert headers["content-type"] == "application/json" and "date" in headers
        if out and not out.startswith(b"HTTP/1.1 "):  # not a HEAD answer: the body follows
            n = int(headers["content-length"])
            json.loads(out[:n])
            out = out[n:]
    return statuses


def test_random_and_mutated_requests_always_get_well_formed_answers(rec):
    rng = random.Random(29)
    seeds = [b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", post(b'{"history": ["1", "2"], "k": 3}'), b"HEAD /info HTTP/1.0\r\n\r\n",
             post(b'{"user": "1"}', "Expect: 100-continue\r\n") + b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n"]
    pieces = [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b"\x00", b"\xff", b"Content-Length: ", b"-1", b"99999999999",
              b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n", b"HEAD", b"[" * 40, b'"\\', b"\r\n\r\n"]
    with running(rec, timeout=1.0) as server:
        port, base = server.server_address[1], _http_threads()
        for _ in range(400):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                at = rng.randint(0, len(data))
                data[at : at + rng.randint(0, 3)] = rng.choice(pieces) if rng.random() < 0.7 else rng.randbytes(4)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(data)
                if rng.random() < 0.1:  # the client resets the connection
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    continue
                s.shutdown(socket.SHUT_WR)
                out = b"".join(iter(lambda: s.recv(65536), b""))
            assert _answers(out) or not data.strip(b"\r\n"), bytes(data[:200])
        deadline = time.monotonic() + 5
        while (server.active_connections or _http_threads() > base) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.active_connections == 0 and _http_threads() == base
        assert raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200
