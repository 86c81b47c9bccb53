"""Load and robustness test of the HTTP service on loopback: the current server against the previous one
(and, when it is importable, the same endpoints as an ASGI app under uvicorn), in the same run.

For each server and round (the servers alternate, their order reversed every round): ``--clients``
keep-alive clients, in a child process (so that they do not share the server's interpreter lock),
send ``GET /health``, then ``POST /recommend`` with histories from the dataset's users, for
``--seconds`` each; throughput (answers per second), p50/p99 latency and errors (any answer but 200).
Then a few bad requests and a client that sends one byte every 0.1 s: what each server answers.

The servers: ``current`` (src/s3rec/serve.py), ``previous`` (serve.py at ``--previous-rev``, loaded
from git into a temporary module), ``uvicorn`` (only with uvicorn installed: the current handlers in a
minimal ASGI app, httptools parser, one event loop). The model: an untrained SASRec on a synthetic
dataset (latency does not depend on the weights), or ``--checkpoint``. The server runs with one
PyTorch thread.

Usage:
  python benchmarks/serve_load.py [--clients 8] [--seconds 2] [--rounds 2] [--previous-rev REV]
Writes benchmarks/results/serve_load.json and prints it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRICKLE_SECONDS = 4.0
BAD_REQUESTS = {  # what the issue lists; each answer is recorded as "STATUS json" / "STATUS other" / "no answer"
    "garbage request line": b"GARBAGE\r\n\r\n",
    "HTTP/0.9": b"GET /health\r\n",
    "HEAD /health": b"HEAD /health HTTP/1.1\r\nHost: bench\r\n\r\n",
    "PUT /recommend": b"PUT /recommend HTTP/1.1\r\nHost: bench\r\nContent-Length: 2\r\n\r\n{}",
    "70 KB request line": b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: bench\r\n\r\n",
    "150 headers": b"GET /health HTTP/1.1\r\nHost: bench\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
    "k of 5000 digits": b'{"history": ["1"], "k": ' + b"7" * 5000 + b"}",
    "JSON 100,000 deep": b'{"history": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


# --- the servers -------------------------------------------------------------------------------------

def synthetic_recommender(folder: Path, users: int = 500, items: int = 1000):
    import numpy as np

    from s3rec.config import TrainConfig
    from s3rec.data import registry
    from s3rec.recommend import Recommender
    from s3rec.train import build

    rng = np.random.default_rng(0)
    lines = [f"{u} " + " ".join(map(str, rng.choice(np.arange(1, items + 1), int(rng.integers(5, 51)), replace=False)))
             for u in range(1, users + 1)]
    lines.append(f"{users + 1} " + " ".join(map(str, range(1, items + 1))))  # every item used
    (folder / "Synth.txt").write_text("\n".join(lines) + "\n")
    ds = registry.load("Synth", folder)
    cfg = TrainConfig(dataset="Synth")
    return Recommender(build(cfg, ds)[0], cfg, ds, None)


def previous_rev() -> str:
    def git(*argv):
        return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True)

    if git("diff", "--quiet", "HEAD", "--", "src/s3rec/serve.py", "src/s3rec/httpserver.py").returncode:
        return "HEAD"  # measuring a change in progress against what is committed
    last = git("log", "-n", "1", "--format=%H", "--", "src/s3rec/serve.py").stdout.strip()
    return f"{last}^"


def previous_module(rev: str, folder: Path):
    """serve.py as committed at ``rev``, importable as ``s3rec._serve_previous`` (its relative imports work)."""
    text = subprocess.run(["git", "show", f"{rev}:src/s3rec/serve.py"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout
    path = folder / "_serve_previous.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("s3rec._serve_previous", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Running:
    """A server started in a thread of this process; ``port``, ``stop()``."""

    def __init__(self, name, rec, previous):
        self.name = name
        if name == "uvicorn":
            self._start_uvicorn(rec)
        else:
            if name == "current":
                from s3rec.httpserver import Limits
                from s3rec.serve import make_server

                self.server = make_server(rec, "127.0.0.1", 0, limits=Limits(timeout=2.0))
            else:
                self.server = previous.make_server(rec, "127.0.0.1", 0)
            self.port = self.server.server_address[1]
            self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
            self.thread.start()

    def _start_uvicorn(self, rec):
        import uvicorn

        from s3rec.serve import make_routes

        with socket.create_server(("127.0.0.1", 0)) as free:  # uvicorn binds it itself: given a bound socket,
            self.port = free.getsockname()[1]  # its answers waited ~40 ms each (delayed ACK) in our trials
        config = uvicorn.Config(asgi_app(make_routes(rec)), host="127.0.0.1", port=self.port, http="httptools",
                                lifespan="off", log_level="error", access_log=False, timeout_keep_alive=2,
                                limit_concurrency=64)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    def stop(self):
        if self.name == "uvicorn":
            self.server.should_exit = True
        else:
            self.server.shutdown()
            self.server.server_close()
        self.thread.join(5)


def asgi_app(routes):
    """The service's handlers as a minimal ASGI app (no limits of its own: only to time the stack)."""

    async def app(scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        methods = routes.get(scope["path"])
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        if methods is None:
            status, payload = 404, {"error": "no such endpoint"}
        elif method not in methods:
            status, payload = 405, {"error": "method not allowed"}
        else:
            status, payload = methods[method](body)
        data = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": int(status),
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    return app


# --- the clients (in a child process) ----------------------------------------------------------------

def _read_answer(sock, buf: bytearray) -> int:
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end]).lower()
    i = head.index(b"content-length:") + 15
    length = int(head[i:head.index(b"\r\n", i)])
    while len(buf) < end + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    del buf[: end + length]
    return int(head[9:12])


def load(port: int, requests: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` keep-alive connections sending ``requests`` (round robin) for ``seconds``."""
    latencies, errors = [], []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(offset):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf, mine, bad, i = bytearray(), [], [], offset
        start.wait()
        end = time.perf_counter() + seconds
        while (t0 := time.perf_counter()) < end:
            try:
                s.sendall(requests[i % len(requests)])
                status = _read_answer(s, buf)
            except OSError as e:
                status = repr(e)
                s.close()
                s, buf = socket.create_connection(("127.0.0.1", port), timeout=10), bytearray()
            mine.append(time.perf_counter() - t0)
            if status != 200:
                bad.append(status)
            i += 1
        s.close()
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    threads = [threading.Thread(target=client, args=(k * 997,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    q = lambda f: round(lat[min(len(lat) - 1, int(f * len(lat)))] * 1000, 3)  # noqa: E731
    return {"requests": len(lat), "errors": len(errors), "error_examples": [str(e) for e in errors[:3]],
            "requests_per_second": round(len(lat) / wall, 1), "p50_ms": q(0.50), "p99_ms": q(0.99),
            "mean_ms": round(statistics.fmean(lat) * 1000, 3), "max_ms": round(lat[-1] * 1000, 3)}


def probe(port: int, data: bytes, wait: float = 2.0) -> str:
    """Send one raw request; "STATUS json", "STATUS other" (not a JSON body), "not HTTP" or "no answer"."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        try:
            s.sendall(data)
            buf = bytearray()
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except OSError:
            pass
    if not buf.startswith(b"HTTP/1."):
        return "no answer" if not buf else "not HTTP"
    head, _, body = bytes(buf).partition(b"\r\n\r\n")
    json_type = b"application/json" in head.lower()
    return f"{head[9:12].decode()} {'json' if json_type else 'other'}"


def trickle(port: int) -> str:
    """One byte every 0.1 s for up to TRICKLE_SECONDS: when (if) the server cuts the client off."""
    s = socket.create_connection(("127.0.0.1", port), timeout=1)
    t0 = time.perf_counter()
    data = b"GET /health HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"a" * 1000
    try:
        for byte in data:
            if time.perf_counter() - t0 > TRICKLE_SECONDS:
                return f"still open after {TRICKLE_SECONDS:g} s"
            s.send(bytes([byte]))
            s.settimeout(0.1)
            try:
                answer = s.recv(100)
                return f"cut off after {time.perf_counter() - t0:.1f} s ({answer[9:12].decode() or 'closed'})"
            except TimeoutError:
                pass
    except OSError as e:
        return f"cut off after {time.perf_counter() - t0:.1f} s ({type(e).__name__})"
    finally:
        s.close()
    return "?"


def client_job(job: tuple) -> dict:
    kind, port, args = job
    if kind == "load":
        return load(port, *args)
    return {"bad_requests": {name: probe(port, data) for name, data in args[0].items()}, "trickle": trickle(port)}


# --- main ------------------------------------------------------------------------------------------------

def recommend_requests(rec, n: int = 2000, k: int = 10) -> list[bytes]:
    import numpy as np

    rng = np.random.default_rng(0)
    out = []
    for r in rng.integers(0, rec.ds.n_users, size=n).tolist():
        seq = rec.ds.sequence(r)
        m = int(rng.integers(1, min(len(seq), rec.max_len) + 1))
        body = json.dumps({"history": [rec.item_names[i] for i in seq[-m:].tolist()], "k": k}).encode()
        out.append(b"POST /recommend HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="a fine-tuned checkpoint (default: an untrained SASRec on synthetic data)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=2.0, help="per server, endpoint and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--previous-rev", help="git revision whose src/s3rec/serve.py is 'previous' (default: HEAD when "
                   "the service has uncommitted changes, else the commit before the last one that changed serve.py)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve_load.json"))
    args = p.parse_args()

    import torch

    from s3rec.bench import write_record

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    tmp = tempfile.TemporaryDirectory()
    folder = Path(tmp.name)
    if args.checkpoint:
        from s3rec.recommend import Recommender

        rec = Recommender.load(args.checkpoint)
    else:
        rec = synthetic_recommender(folder)
    args.previous_rev = args.previous_rev or previous_rev()
    previous = previous_module(args.previous_rev, folder)
    rev = subprocess.run(["git", "rev-parse", "--short", args.previous_rev], cwd=REPO, capture_output=True,
                         text=True).stdout.strip()
    names = ["previous", "current"]
    try:
        import uvicorn

        names.append("uvicorn")
        uvicorn_version = uvicorn.__version__
    except ImportError:
        uvicorn_version = None
    endpoints = {"health": [b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"], "recommend": recommend_requests(rec)}
    bad = dict(BAD_REQUESTS)
    for name in ("k of 5000 digits", "JSON 100,000 deep"):
        bad[name] = b"POST /recommend HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n%s" % (len(bad[name]), bad[name])

    rounds: dict[str, dict[str, list]] = {n: {e: [] for e in endpoints} for n in names}
    robustness = {}
    t_start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                server = Running(name, rec, previous)
                try:
                    for endpoint, requests in endpoints.items():
                        rounds[name][endpoint].append(
                            pool.apply(client_job, (("load", server.port, (requests, args.clients, args.seconds)),)))
                    if r == 0:
                        robustness[name] = pool.apply(client_job, (("probe", server.port, (bad,)),))
                finally:
                    server.stop()
    summary = {n: {e: {"requests_per_second": statistics.median(x["requests_per_second"] for x in runs),
                       "p50_ms": statistics.median(x["p50_ms"] for x in runs),
                       "p99_ms": statistics.median(x["p99_ms"] for x in runs),
                       "errors": sum(x["errors"] for x in runs)}
                   for e, runs in per.items()} for n, per in rounds.items()}
    record = write_record(
        args.out, "serve_load",
        command="python benchmarks/serve_load.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"),
        note="2 CPU cores shared with other work; server (1 torch thread) and clients (one child process) on them",
        load_average_before=[round(x, 2) for x in load_before],
        servers={"previous": f"src/s3rec/serve.py at {rev} (http.server.ThreadingHTTPServer)",
                 "current": "src/s3rec/serve.py + httpserver.py (timeout 2 s, 64 connections)",
                 **({"uvicorn": f"uvicorn {uvicorn_version}, httptools, the current handlers as an ASGI app"}
                    if uvicorn_version else {})},
        model=rec.cfg.model, dataset=rec.ds.name, items=rec.ds.n_items, clients=args.clients,
        seconds_per_run=args.seconds, rounds=args.rounds, wall_seconds=round(time.perf_counter() - t_start, 1),
        summary_median_of_rounds=summary, runs=rounds, robustness=robustness,
    )
    tmp.cleanup()
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    sys.exit(main())
