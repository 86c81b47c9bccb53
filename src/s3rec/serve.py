"""A small HTTP JSON service over a :class:`~s3rec.recommend.Recommender` (standard library only).

Endpoints (all responses are JSON):

- ``GET /health`` -> ``{"status": "ok"}``
- ``GET /info`` -> model, dataset, number of items and users, ``max_len``, limits
- ``POST /recommend`` with ``{"history": [item, ...], "k": 10, "exclude_history": true, "user": null}``
  -> ``{"items": [...], "scores": [...]}`` (original ids, best first). ``history`` is oldest first;
  ``user`` (an original user id) is needed only by models that embed users, or alone (without
  ``history``) to recommend from that user's whole sequence in the dataset.

Bad requests never crash the service: malformed JSON, JSON nested deeper than ``MAX_JSON_DEPTH``,
a number too long to convert, a wrong type, an empty or too-long history (more than ``max_history``
items), unknown item or user ids or ``k`` out of range get a 4xx answer ``{"error": "..."}``; so do
malformed or oversized HTTP requests (:mod:`s3rec.httpserver`, which also bounds connections and
times out slow clients). Model calls are serialised by a lock (PyTorch already uses every core for
one call). Binds to 127.0.0.1 by default.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http import HTTPStatus

from .errors import S3RecError
from .httpserver import Limits, Routes, Server, stderr_log
from .recommend import Recommender

MAX_HISTORY = 10_000  # items; longer histories are rejected (the model reads the last max_len anyway)
MAX_K = 1000
MAX_JSON_DEPTH = 16  # a request needs 2 (an object holding a list)
# Strings (skipped; one left open runs to the end: linear time whatever the quotes) and brackets.
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.S)


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether the JSON text nests arrays/objects deeper than ``limit`` (brackets in strings do not count)."""
    if body.count(b"[") + body.count(b"{") <= limit:  # every real request: no scan
        return False
    depth = 0
    for m in _JSON_TOKEN.finditer(body):
        c = m[0]
        if c in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif c in (b"]", b"}"):
            depth -= 1
    return False


def parse_request(body: bytes, max_history: int = MAX_HISTORY, n_items: int | None = None) -> dict:
    """Validate a /recommend body; returns ``{"history", "k", "exclude_history", "user"}``."""
    if json_depth_exceeds(body, MAX_JSON_DEPTH):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"body nests JSON deeper than {MAX_JSON_DEPTH} levels")
    try:
        req = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {e}") from None
    except ValueError as e:  # an integer of more than 4300 digits (Python's conversion limit)
        raise RequestError(HTTPStatus.BAD_REQUEST, f"body holds a number too long: {e}") from None
    except RecursionError:
        raise RequestError(HTTPStatus.BAD_REQUEST, "body nests JSON too deeply") from None
    if not isinstance(req, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
    unknown = sorted(set(req) - {"history", "k", "exclude_history", "user"})
    if unknown:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"unknown field(s): {', '.join(unknown)[:200]}")
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


def make_routes(rec: Recommender, max_history: int = MAX_HISTORY) -> Routes:
    """The service's endpoints: path -> {method: handler(body) -> (status, payload)}."""
    lock = threading.Lock()

    def recommend(body: bytes):
        try:
            req = parse_request(body, max_history, rec.ds.n_items)
            with lock:
                if req["history"] is None:
                    (_, top), = rec.iter_users([req["user"]], req["k"], req["exclude_history"])
                else:
                    top = rec.recommend(req["history"], req["k"], req["exclude_history"], req["user"])
        except RequestError as e:
            return e.status, {"error": str(e)}
        except S3RecError as e:  # unknown items or user, a history the model cannot take
            return HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(e)[:1000]}
        return HTTPStatus.OK, {"items": [i for i, _ in top], "scores": [round(s, 6) for _, s in top]}

    info = {**rec.info(), "max_history": max_history, "max_k": MAX_K}
    return {
        "/health": {"GET": lambda body: (HTTPStatus.OK, {"status": "ok"})},
        "/info": {"GET": lambda body: (HTTPStatus.OK, info)},
        "/recommend": {"POST": recommend},
    }


def make_server(rec: Recommender, host: str = "127.0.0.1", port: int = 8080, *, max_history: int = MAX_HISTORY,
                limits: Limits = Limits(), quiet: bool = True, log=stderr_log) -> Server:
    """A ready-to-run server (``port=0`` picks a free port: see ``server.server_address``); a port in
    use or an address that cannot be bound raises :class:`S3RecError`."""
    try:
        return Server(make_routes(rec, max_history), host, port, limits, log=None if quiet else log)
    except OverflowError:
        raise S3RecError(f"--port {port}: must be in 0..65535") from None
    except OSError as e:
        raise S3RecError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve_forever(rec: Recommender, host: str, port: int, quiet: bool = False, log=print,
                  limits: Limits = Limits()) -> None:
    server = make_server(rec, host, port, limits=limits, quiet=quiet)
    h, p = server.server_address[:2]
    log(f"serving {rec.cfg.model} on {rec.ds.name} at http://{h}:{p} (GET /health, GET /info, POST /recommend; "
        f"{limits.max_connections} connections at once, {limits.timeout:g} s per request); Ctrl-C stops")
    t0 = time.time()
    try:
        server.serve_forever()
    finally:
        server.server_close()
        log(f"stopped after {time.time() - t0:.0f} s")
