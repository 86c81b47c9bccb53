"""A small, bounded HTTP/1.1 server for a JSON service (standard library only).

Every request that can be answered gets a well-formed HTTP/1.1 answer with a JSON body (none for
``HEAD``): 400 for a malformed request line (HTTP/0.9 included), headers or framing, 404 for an
unknown path, 405 with an ``Allow`` header for a wrong method on a known path, 408 for a request not
received in time, 411 without a ``Content-Length``, 413/414/431 for a body, request line or header
section over its limit, 505 for HTTP/2 and later, and 500 (the service goes on) for a handler's bug.

Resources are bounded (:class:`Limits`): at most ``max_connections`` connections are served at once,
one thread each; further connections wait in the listen backlog until one ends. Each request must
arrive whole (request line, headers and body) within ``timeout`` seconds of the moment the server
starts waiting for it, whatever the pace of its bytes, so an idle keep-alive connection or a client
that sends byte by byte, or stops half way, holds its thread for at most that long.
"""

from __future__ import annotations

import errno
import json
import re
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Callable

# A handler gets the request body (b"" when there is none) and returns (status, JSON payload).
Handler = Callable[[bytes], "tuple[int, dict]"]
Routes = dict[str, dict[str, Handler]]  # path -> {method: handler}; HEAD is answered wherever GET is

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_HTTP09_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+)")
_HEADER = re.compile(rb"(" + _TOKEN + rb"):([^\x00-\x08\x0a-\x1f\x7f]*)")  # the value's spaces: strip()
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_VERSIONED = re.compile(rb" HTTP/[^ ]*\r?\n")  # a request line that headers follow
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)  # accept() fails until one frees
_LINGER = 1.0  # seconds, at most, to read what a client still sends after an answer that closes,
_LINGER_GAP = 0.2  # until it pauses this long


@dataclass(frozen=True)
class Limits:
    max_request_line: int = 8192  # bytes -> 414
    max_header_bytes: int = 16384  # the header lines together -> 431
    max_headers: int = 64  # -> 431
    max_body: int = 1 << 20  # bytes -> 413
    timeout: float = 10.0  # seconds to receive one whole request, idle wait included; also to send an answer
    max_connections: int = 64  # served at once (one thread each); more wait in the listen backlog
    backlog: int = 128


class HTTPError(Exception):
    """An answer other than the handler's: ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: tuple[str, ...] = ()):
        super().__init__(message)
        self.status, self.headers = int(status), headers


class _NoRequest(Exception):
    """The connection ended, or its time ran out, before a request began: nothing to answer."""


@dataclass
class _Request:
    method: str
    target: str
    version: tuple[int, int]
    headers: dict[str, str]

    @property
    def path(self) -> str:
        target = self.target
        if target.startswith(("http://", "https://")):  # absolute form: drop the scheme and authority
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        return target.split("?", 1)[0].split("#", 1)[0]

    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        return "close" not in tokens if self.version >= (1, 1) else "keep-alive" in tokens


class _Connection:
    """One client socket: reads against the current request's deadline, writes with a timeout."""

    def __init__(self, sock: socket.socket, limits: Limits):
        self.sock, self.limits, self.buf, self.deadline = sock, limits, bytearray(), 0.0

    def _recv(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def read_head(self) -> bytes:
        """The request line and headers (up to the blank line); the rest stays in the buffer."""
        lim, scanned = self.limits, 0
        while True:
            while self.buf.startswith((b"\r\n", b"\n")):  # empty lines before a request are ignored
                del self.buf[: 2 if self.buf[0] == 13 else 1]
            end = _HEAD_END.search(self.buf, max(0, scanned - 3))  # a slow sender's bytes are scanned once
            scanned = len(self.buf)
            line_end = self.buf.find(b"\n")
            if (line_end < 0 and len(self.buf) > lim.max_request_line) or line_end > lim.max_request_line:
                raise HTTPError(HTTPStatus.REQUEST_URI_TOO_LONG,
                                f"request line over {lim.max_request_line} bytes")
            head_end = end.start() if end else len(self.buf)
            if head_end - max(line_end, 0) > lim.max_header_bytes:
                raise HTTPError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                                f"headers over {lim.max_header_bytes} bytes")
            if line_end >= 0 and not end and not _VERSIONED.search(self.buf, 0, line_end + 1):
                end = _LINE_END.search(self.buf)  # HTTP/0.9 or garbage: no headers follow, answer now
            if end:
                head = bytes(self.buf[: end.start()])
                del self.buf[: end.end()]
                return head
            started = bool(self.buf)
            try:
                self._recv()
            except TimeoutError:
                if started:
                    raise HTTPError(HTTPStatus.REQUEST_TIMEOUT,
                                    f"the request did not arrive within {lim.timeout:g} s") from None
                raise _NoRequest from None
            except EOFError:
                if started:
                    raise HTTPError(HTTPStatus.BAD_REQUEST, "incomplete request: the connection ended") from None
                raise _NoRequest from None

    def read_body(self, length: int) -> bytes:
        while len(self.buf) < length:
            try:
                self._recv()
            except TimeoutError:
                raise HTTPError(HTTPStatus.REQUEST_TIMEOUT,
                                f"the body did not arrive within {self.limits.timeout:g} s") from None
            except EOFError:
                raise HTTPError(HTTPStatus.BAD_REQUEST,
                                f"incomplete body: {len(self.buf)} of {length} bytes") from None
        body = bytes(self.buf[:length])
        del self.buf[:length]
        return body

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.limits.timeout)
        self.sock.sendall(data)

    def close(self, linger: bool) -> None:
        """Close; after an answer, first read (boundedly) what the client still sends, so that closing
        with unread bytes does not reset the connection before the client has read the answer."""
        try:
            if linger:
                self.sock.shutdown(socket.SHUT_WR)
                end, seen = time.monotonic() + min(_LINGER, self.limits.timeout), 0
                while seen < self.limits.max_body and time.monotonic() < end:
                    self.sock.settimeout(max(0.01, min(_LINGER_GAP, end - time.monotonic())))
                    chunk = self.sock.recv(1 << 16)
                    if not chunk:
                        break
                    seen += len(chunk)
        except OSError:
            pass
        finally:
            self.sock.close()


def parse_head(head: bytes, limits: Limits) -> _Request:
    """The request line and headers, validated; raises :class:`HTTPError` for what is malformed."""
    first, _, rest = head.partition(b"\n")
    first = first.rstrip(b"\r")
    m = _REQUEST_LINE.fullmatch(first)
    if not m:
        if _HTTP09_LINE.fullmatch(first):
            raise HTTPError(HTTPStatus.BAD_REQUEST, "HTTP/0.9 requests are not supported: send HTTP/1.1")
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"malformed request line {first[:80]!r}")
    version = (int(m[3]), int(m[4]))
    if version < (1, 0):
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"HTTP/{version[0]}.{version[1]} requests are not supported: send HTTP/1.1")
    if version >= (2, 0):
        raise HTTPError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"HTTP/{version[0]}.{version[1]} is not supported: send HTTP/1.1")
    headers: dict[str, str] = {}
    lines = rest.split(b"\n") if rest else []
    if len(lines) > limits.max_headers:
        raise HTTPError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"{len(lines)} headers; at most {limits.max_headers}")
    for raw in lines:
        h = _HEADER.fullmatch(raw.rstrip(b"\r"))
        if not h:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"malformed header line {raw[:80]!r}")
        name, value = h[1].decode("ascii").lower(), h[2].strip(b" \t").decode("latin-1")
        if name in headers and name in ("content-length", "host", "transfer-encoding") and headers[name] != value:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"conflicting {name} headers")
        headers[name] = f"{headers[name]}, {value}" if name in headers and name != "content-length" else value
    if version >= (1, 1) and "host" not in headers:  # RFC 9112 3.2: a server must answer 400
        raise HTTPError(HTTPStatus.BAD_REQUEST, "an HTTP/1.1 request must send a Host header")
    target = m[2].decode("ascii")
    if not target.startswith(("/", "http://", "https://")):
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"malformed request target {target[:80]!r}")
    return _Request(m[1].decode("ascii"), target, version, headers)


def body_length(req: _Request, limits: Limits) -> int:
    if "transfer-encoding" in req.headers:
        raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "chunked or encoded bodies are not accepted: send a Content-Length")
    text = req.headers.get("content-length")
    if text is None:
        return -1
    if not (text.isascii() and text.isdigit()):
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"Content-Length {text[:40]!r} is not a number of bytes")
    if len(text) > 12 or int(text) > limits.max_body:
        raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"body of {text[:40]} bytes; at most {limits.max_body} are accepted")
    return int(text)


_PHRASES = {int(s): s.phrase for s in HTTPStatus}
_date = (0, "")  # (second, its Date header value): formatted once a second


def http_date() -> str:
    global _date
    second, text = _date
    now = int(time.time())
    if now != second:
        text = formatdate(now, usegmt=True)
        _date = (now, text)
    return text


def response_bytes(status: int, payload: dict, keep_alive: bool, headers: tuple[str, ...] = (), body: bool = True) -> bytes:
    content = json.dumps(payload).encode()
    lines = [f"HTTP/1.1 {int(status)} {_PHRASES[int(status)]}", "Server: s3rec", f"Date: {http_date()}",
             "Content-Type: application/json", f"Content-Length: {len(content)}",
             "Connection: " + ("keep-alive" if keep_alive else "close"), *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (content if body else b"")


class Server:
    """Serves ``routes`` on ``(host, port)`` (``port=0``: a free one, see ``server_address``) until
    :meth:`shutdown`. The same calls as :mod:`socketserver`: ``serve_forever``, ``shutdown``,
    ``server_close``."""

    def __init__(self, routes: Routes, host: str = "127.0.0.1", port: int = 8080, limits: Limits = Limits(),
                 log: Callable[[str], None] | None = None):
        self.routes, self.limits, self.log = routes, limits, log
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=limits.backlog)  # OSError: in use, ...
        self.server_address = self.socket.getsockname()[:2]
        self._slots = threading.Semaphore(limits.max_connections)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def serve_forever(self, poll_interval: float = 0.2) -> None:
        self._stopped.clear()
        try:
            while not self._stop.is_set():
                if not self._slots.acquire(timeout=poll_interval):
                    continue  # every slot busy: the connection waits in the backlog
                try:
                    ready = select.select([self.socket], [], [], poll_interval)[0]
                    sock, addr = self.socket.accept() if ready else (None, None)
                except OSError as e:  # the client already left, or the server was closed
                    sock = None
                    if e.errno in _OUT_OF_RESOURCES:  # the connection stays in the backlog: retry later, not at once
                        self._stop.wait(poll_interval)
                if sock is None:
                    self._slots.release()
                    continue
                with self._lock:
                    self._open.add(sock)
                try:
                    threading.Thread(target=self._serve_connection, args=(sock, addr), daemon=True,
                                     name=f"s3rec-http-{addr[1]}").start()
                except RuntimeError:  # the system refuses another thread: drop this connection
                    with self._lock:
                        self._open.discard(sock)
                    sock.close()
                    self._slots.release()
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop accepting, end the open connections and wait for :meth:`serve_forever` to return."""
        self._stop.set()
        self._stopped.wait()
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def server_close(self) -> None:
        self.socket.close()

    def _serve_connection(self, sock: socket.socket, addr) -> None:
        conn, linger = _Connection(sock, self.limits), False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            keep = True
            while keep and not self._stop.is_set():
                conn.deadline = time.monotonic() + self.limits.timeout
                keep = self._one_request(conn, addr)
                linger = not keep
        except _NoRequest:
            linger = False
        except OSError:  # the client went away or stopped reading our answer
            linger = False
        finally:
            conn.close(linger)
            with self._lock:
                self._open.discard(sock)
            self._slots.release()

    def _one_request(self, conn: _Connection, addr) -> bool:
        """Read, answer and log one request; whether the connection stays open."""
        req, status, payload, extra, keep = None, 200, {}, (), False
        try:
            req = parse_head(conn.read_head(), self.limits)
            keep = req.keep_alive()
            methods = self.routes.get(req.path)
            if methods is None:
                raise HTTPError(HTTPStatus.NOT_FOUND, f"no such endpoint: {req.method} {req.path[:200]} "
                                f"(try {', '.join(self._endpoints())})")
            method = "GET" if req.method == "HEAD" and "GET" in methods else req.method
            if method not in methods:
                allow = sorted(methods) + (["HEAD"] if "GET" in methods else [])
                raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{req.path} accepts {', '.join(allow)}, not {req.method}",
                                (f"Allow: {', '.join(allow)}",))
            length = body_length(req, self.limits)
            if length < 0 and method == "POST":
                raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
            if length > 0 and req.version >= (1, 1) and req.headers.get("expect", "").lower() == "100-continue":
                conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = conn.read_body(max(length, 0))
            try:
                status, payload = methods[method](body)
            except Exception as e:  # noqa: BLE001 - a bug must not take the service down: 500 and go on
                status, payload = 500, {"error": f"internal error: {type(e).__name__}: {e}"}
        except HTTPError as e:
            status, payload, extra = e.status, {"error": str(e)}, e.headers
            # Framing errors leave the rest of the stream unreadable; 404/405 before a body too.
            keep = keep and e.status in (404, 405) and req is not None and not announces_body(req)
        except (OSError, _NoRequest):
            raise
        except Exception as e:  # noqa: BLE001 - a bug here must not end the service either
            status, payload, keep = 500, {"error": f"internal error: {type(e).__name__}: {e}"}, False
        body = not (req and req.method == "HEAD")
        try:
            answer = response_bytes(status, payload, keep, extra, body)
        except Exception as e:  # noqa: BLE001 - a handler's answer that cannot be sent (not JSON, unknown status)
            status, payload = 500, {"error": f"internal error: {type(e).__name__}: {e}"}
            answer = response_bytes(status, payload, keep, body=body)
        conn.send(answer)
        if self.log:
            line = f"{req.method} {req.target[:200]}" if req else "-"
            self.log(f'{addr[0]}:{addr[1]} "{line}" {status}')
        return keep

    def _endpoints(self) -> list[str]:
        return [f"{'/'.join(sorted(m))} {p}" for p, m in self.routes.items()]


def announces_body(req: _Request) -> bool:
    """Whether the request announces a body (which was not read), or may: an empty Content-Length too."""
    return req.headers.get("content-length", "0") != "0" or "transfer-encoding" in req.headers


def stderr_log(line: str) -> None:
    sys.stderr.write(line + "\n")
