"""A small HTTP JSON service over a :class:`~s3rec.recommend.Recommender` (standard library only).

Endpoints (all responses are JSON):

- ``GET /health`` -> ``{"status": "ok"}``
- ``GET /info`` -> model, dataset, number of items and users, ``max_len``, limits
- ``POST /recommend`` with ``{"history": [item, ...], "k": 10, "exclude_history": true, "user": null}``
  -> ``{"items": [...], "scores": [...]}`` (original ids, best first). ``history`` is oldest first;
  ``user`` (an original user id) is needed only by models that embed users, or alone (without
  ``history``) to recommend from that user's whole sequence in the dataset.

Bad requests never crash the service: malformed JSON, a wrong type, an empty or too-long history
(more than ``max_history`` items), unknown item or user ids, ``k`` out of range, or a body over
``max_body`` bytes get a 4xx answer ``{"error": "..."}``. Model calls are serialised by a lock
(PyTorch already uses every core for one call). Binds to 127.0.0.1 by default.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .errors import S3RecError
from .recommend import Recommender, UnknownItemsError

MAX_BODY = 1 << 20  # bytes
MAX_HISTORY = 10_000  # items; longer histories are rejected (the model reads the last max_len anyway)
MAX_K = 1000


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def parse_request(body: bytes, max_history: int = MAX_HISTORY, n_items: int | None = None) -> dict:
    """Validate a /recommend body; returns ``{"history", "k", "exclude_history", "user"}``."""
    try:
        req = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {e}") from None
    if not isinstance(req, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
    unknown = sorted(set(req) - {"history", "k", "exclude_history", "user"})
    if unknown:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"unknown field(s): {', '.join(unknown)}")
    history = req.get("history")
    user = req.get("user")
    if history is None and user is None:
        raise RequestError(HTTPStatus.BAD_REQUEST, "give a 'history' (list of item ids) or a 'user'")
    if history is not None:
        if not isinstance(history, list) or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in history):
            raise RequestError(HTTPStatus.BAD_REQUEST, "'history' must be a list of item ids (strings or integers)")
        if not history:
            raise RequestError(HTTPStatus.BAD_REQUEST, "'history' is empty: at least one item is needed")
        if len(history) > max_history:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"'history' has {len(history)} items; at most {max_history} are accepted")
    if user is not None and (not isinstance(user, (str, int)) or isinstance(user, bool)):
        raise RequestError(HTTPStatus.BAD_REQUEST, "'user' must be a string or an integer")
    k = req.get("k", 10)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= min(MAX_K, n_items or MAX_K):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"'k' must be an integer in 1..{min(MAX_K, n_items or MAX_K)}")
    exclude = req.get("exclude_history", True)
    if not isinstance(exclude, bool):
        raise RequestError(HTTPStatus.BAD_REQUEST, "'exclude_history' must be true or false")
    return {"history": history, "k": k, "exclude_history": exclude, "user": user}


def make_handler(rec: Recommender, max_history: int = MAX_HISTORY, max_body: int = MAX_BODY, quiet: bool = True):
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "s3rec"
        protocol_version = "HTTP/1.1"  # keep-alive: load tests and clients reuse connections
        # One write per response and no Nagle delay: otherwise headers and body leave in two packets
        # and the second waits for the client's delayed ACK (~40 ms per request on Linux).
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def log_message(self, fmt, *args):  # noqa: D401 - the stdlib's name
            if not quiet:
                sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

        def _send(self, status: HTTPStatus, payload: dict):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: HTTPStatus, message: str):
            self._send(status, {"error": message})

        def do_GET(self):
            if self.path == "/health":
                self._send(HTTPStatus.OK, {"status": "ok"})
            elif self.path == "/info":
                self._send(HTTPStatus.OK, {**rec.info(), "max_history": max_history, "max_k": MAX_K})
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: GET {self.path} (try /health, /info, POST /recommend)")

        def do_POST(self):
            if self.path != "/recommend":
                self._drain()
                self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: POST {self.path} (try /recommend)")
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self.close_connection = True
                self._error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
                return
            if length < 0 or length > max_body:
                self.close_connection = True  # do not read a body this large
                self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body of {length} bytes; at most {max_body} accepted")
                return
            body = self.rfile.read(length)
            try:
                req = parse_request(body, max_history, rec.ds.n_items)
                with lock:
                    if req["history"] is None:
                        (_, top), = rec.iter_users([req["user"]], req["k"], req["exclude_history"])
                    else:
                        top = rec.recommend(req["history"], req["k"], req["exclude_history"], req["user"])
            except RequestError as e:
                self._error(e.status, str(e))
                return
            except UnknownItemsError as e:
                self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(e))
                return
            except S3RecError as e:
                self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(e))
                return
            except Exception as e:  # a bug must not take the service down: answer 500 and go on
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(e).__name__}: {e}")
                return
            self._send(HTTPStatus.OK, {"items": [i for i, _ in top], "scores": [round(s, 6) for _, s in top]})

        def _drain(self):
            try:
                length = min(int(self.headers.get("Content-Length", "0")), max_body)
                self.rfile.read(length)
            except ValueError:
                self.close_connection = True

    return Handler


def make_server(rec: Recommender, host: str = "127.0.0.1", port: int = 8080, **kwargs) -> ThreadingHTTPServer:
    """A ready-to-run server (``port=0`` picks a free port: see ``server.server_address``)."""
    server = ThreadingHTTPServer((host, port), make_handler(rec, **kwargs))
    server.daemon_threads = True
    return server


def serve_forever(rec: Recommender, host: str, port: int, quiet: bool = False, log=print) -> None:
    server = make_server(rec, host, port, quiet=quiet)
    h, p = server.server_address[:2]
    log(f"serving {rec.cfg.model} on {rec.ds.name} at http://{h}:{p} (GET /health, GET /info, POST /recommend); Ctrl-C stops")
    t0 = time.time()
    try:
        server.serve_forever()
    finally:
        server.server_close()
        log(f"stopped after {time.time() - t0:.0f} s")
