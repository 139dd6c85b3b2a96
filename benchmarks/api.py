"""Scoring API figures: latency and throughput at several concurrency levels, from loopback.

    .venv/bin/python benchmarks/api.py --root DIR [--env local] [--seconds 20] [--concurrency 1,4,16,32]

DIR holds a lakehouse with a champion and a filled online store (a demo root). The API is started
(`tidewater services start api`) unless one already answers on its port, and stopped afterwards if
this script started it. Each level runs that many client threads, each with its own keep-alive
connection, sending single transactions (the root's latest silver rows) for `--seconds`. Printed per
level: requests/s, client-side p50/p99, and the server's own split (feature lookup, model, reason
codes) from each answer's `latency_ms`. Then the online lookup alone, in-process (Feast's
`get_online_features` for one customer and one merchant), p50/p99 over 2,000 calls.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path; keep it from shadowing the packages.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from lakehouse.config import load_config  # noqa: E402
from lakehouse.tokens import client_token  # noqa: E402
from lakehouse.delta_reader import read_rows  # noqa: E402

COLUMNS = ["txn_id", "customer_id", "merchant_id", "event_time", "amount", "currency", "channel",
           "merchant_category", "country"]


def _q(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100)[p - 1] if len(samples) > 1 else samples[0]


def _level(host: str, port: int, bodies: list[bytes], threads: int, seconds: float, token: str) -> dict:
    client_ms, server = [], {"features": [], "model": [], "reasons": []}
    errors, lock, stop = [0], threading.Lock(), threading.Event()

    def worker(offset: int):
        conn = http.client.HTTPConnection(host, port, timeout=30)
        i = offset
        while not stop.is_set():
            started = time.perf_counter()
            conn.request("POST", "/v1/score", bodies[i % len(bodies)],
                         {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            reply = conn.getresponse()
            text = reply.read()
            elapsed = (time.perf_counter() - started) * 1000
            i += threads
            with lock:
                if reply.status != 200:
                    errors[0] += 1
                    continue
                client_ms.append(elapsed)
                split = json.loads(text)["latency_ms"]
                for stage in server:
                    server[stage].append(split[stage])
        conn.close()

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    began = time.perf_counter()
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    wall = time.perf_counter() - began
    return {"concurrency": threads, "requests": len(client_ms), "errors": errors[0], "rps": len(client_ms) / wall,
            "p50": _q(client_ms, 50), "p99": _q(client_ms, 99),
            **{f"{s}_p50": _q(v, 50) for s, v in server.items()}, **{f"{s}_p99": _q(v, 99) for s, v in server.items()}}


def _lookup_figures(cfg, rows: list[dict], n: int = 2000) -> tuple[float, float]:
    from features.store import feature_refs, feature_store

    store, refs = feature_store(cfg, apply=False), feature_refs(cfg)
    samples = []
    for i in range(n):
        r = rows[i % len(rows)]
        started = time.perf_counter()
        store.get_online_features(features=refs, entity_rows=[{"customer_id": r["customer_id"],
                                                               "merchant_id": r["merchant_id"]}]).to_dict()
        samples.append((time.perf_counter() - started) * 1000)
    return _q(samples[100:], 50), _q(samples[100:], 99)


def _tidewater(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "lakehouse.cli", *args], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--env", default="local")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", default="1,4,16,32")
    args = parser.parse_args()
    cfg = load_config(args.env, args.root)
    host, port = cfg.services.host, cfg.services.api.port
    rows = sorted(read_rows(cfg, "silver.transactions", columns=COLUMNS), key=lambda r: r["event_time"])[-2000:]
    bodies = [json.dumps({**r, "event_time": r["event_time"].isoformat()}).encode() for r in rows]
    where = ["--env", args.env, "--root", args.root]
    started_here = subprocess.run([sys.executable, "-m", "lakehouse.cli", "services", "status", "api", *where],
                                  capture_output=True, text=True).stdout.find("ready") < 0
    if started_here:
        _tidewater("services", "start", "api", *where)
    try:
        token = client_token(cfg)
        _level(host, port, bodies, 1, 3, token)  # warm-up
        levels = [_level(host, port, bodies, int(c), args.seconds, token) for c in args.concurrency.split(",")]
    finally:
        if started_here:
            _tidewater("services", "stop", "api", *where)
    lookup = _lookup_figures(cfg, rows)
    print(f"POST /v1/score, one transaction per request, {args.seconds:g} s per level, {os.cpu_count()} cores "
          f"(server and load generator share them), online store: {cfg.features.online_store}")
    print("| clients | req/s | p50 ms | p99 ms | server: features p50/p99 | model p50/p99 | reasons p50/p99 | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for r in levels:
        print(f"| {r['concurrency']} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
              f"{r['features_p50']:.1f} / {r['features_p99']:.1f} | {r['model_p50']:.1f} / {r['model_p99']:.1f} | "
              f"{r['reasons_p50']:.1f} / {r['reasons_p99']:.1f} | {r['errors']} |")
    print(f"online lookup alone (Feast get_online_features, customer + merchant, in-process): "
          f"p50 {lookup[0]:.2f} ms, p99 {lookup[1]:.2f} ms")


if __name__ == "__main__":
    main()
