"""Load test of `s3rec serve` on loopback: throughput and p50/p99 latency, bounded in count and time.

Starts the service in this process on 127.0.0.1 (a free port), then ``--clients`` threads each send
POST /recommend requests with histories taken from the dataset's users (their last 1..max_len items)
over keep-alive connections, until ``--requests`` answers or ``--seconds`` elapsed, whichever first.
Every answer must be 200 with k items; any other answer counts as an error. A few malformed
requests are sent first and must get 4xx (never a crash).

Usage:
  python benchmarks/serve_load.py --checkpoint runs/x/best.pt [--clients 4] [--requests 2000]
  python benchmarks/serve_load.py --dataset LastFM     # an untrained SASRec (latency does not
                                                       # depend on the weights)
Writes benchmarks/results/serve_load.json and prints a summary.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from s3rec.bench import write_record


def _recommender(args):
    from s3rec.recommend import Recommender

    if args.checkpoint:
        return Recommender.load(args.checkpoint, args.dataset)
    from s3rec.config import TrainConfig
    from s3rec.data import registry
    from s3rec.data.idmaps import load_id_maps
    from s3rec.train import build

    files = registry.locate(args.dataset)
    ds = registry.load(files.name)
    cfg = TrainConfig(dataset=ds.name)
    model, _ = build(cfg, ds)
    return Recommender(model, cfg, ds, load_id_maps(files.folder, ds.name))


def _post(conn, payload) -> tuple[int, dict]:
    body = json.dumps(payload).encode()
    conn.request("POST", "/recommend", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="a fine-tuned checkpoint (default: an untrained SASRec on --dataset)")
    p.add_argument("--dataset", default="LastFM")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--requests", type=int, default=2000, help="stop after this many answers")
    p.add_argument("--seconds", type=float, default=60.0, help="stop after this long, whatever the count")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve_load.json"))
    args = p.parse_args()

    from s3rec.serve import make_server

    rec = _recommender(args)
    server = make_server(rec, "127.0.0.1", 0)
    host, port = server.server_address[:2]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    # Malformed requests first: each must get a 4xx, and the service must keep answering.
    conn = http.client.HTTPConnection(host, port, timeout=30)
    bad = [b"{not json", json.dumps({"history": []}).encode(), json.dumps({"history": ["no-such-item"]}).encode(),
           json.dumps({"history": ["1"] * 20_000}).encode(), json.dumps({"history": [1], "k": 0}).encode()]
    bad_status = []
    for body in bad:
        conn.request("POST", "/recommend", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        bad_status.append(r.status)
    conn.close()
    assert all(400 <= s < 500 for s in bad_status), bad_status

    rng = np.random.default_rng(0)
    ds = rec.ds
    names = rec.item_names
    rows = rng.integers(0, ds.n_users, size=args.requests)
    payloads = []
    for r in rows.tolist():
        seq = ds.sequence(r)
        n = int(rng.integers(1, min(len(seq), rec.max_len) + 1))
        payloads.append({"history": [names[i] for i in seq[-n:].tolist()], "k": args.k,
                         **({"user": rec.user_names[r]} if getattr(rec.model, "uses_users", False) else {})})

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    next_i = [0]
    deadline = time.perf_counter() + args.seconds

    def client():
        c = http.client.HTTPConnection(host, port, timeout=30)
        while time.perf_counter() < deadline:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= len(payloads):
                break
            t0 = time.perf_counter()
            try:
                status, answer = _post(c, payloads[i])
                ok = status == 200 and len(answer["items"]) == args.k
            except Exception as e:  # noqa: BLE001 - any failure is an error of the run
                status, ok, answer = 0, False, {"error": repr(e)}
                c.close()
                c = http.client.HTTPConnection(host, port, timeout=30)
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if not ok:
                    errors.append(f"{status}: {answer.get('error', answer)}")
        c.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    server.shutdown()
    server.server_close()

    lat = sorted(latencies)
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1000  # noqa: E731
    record = write_record(
        args.out, "serve_load",
        command="python benchmarks/serve_load.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k not in ("out", "k")),
        model=rec.cfg.model,
        dataset=ds.name,
        items=ds.n_items,
        clients=args.clients,
        requests=len(lat),
        errors=len(errors),
        error_examples=errors[:5],
        malformed_requests_status=bad_status,
        seconds=round(wall, 3),
        requests_per_second=round(len(lat) / wall, 1),
        latency_ms={"p50": round(q(0.50), 2), "p99": round(q(0.99), 2), "mean": round(statistics.fmean(lat) * 1000, 2),
                       "max": round(lat[-1] * 1000, 2)},
    )
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
