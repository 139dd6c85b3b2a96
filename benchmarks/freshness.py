"""Kafka -> online store freshness: how long after a transaction is published its customer's online
features include it, with `tidewater services start kafka features` running.

    .venv/bin/python benchmarks/freshness.py --root DIR [--rows 4000] [--rate 20,100] [--seconds 30]

DIR (a new folder) gets a lakehouse of its own in the `kafka` env: a scenario (30 days of warm-up
history, then 2 days) published to the broker, ingested from the topic, refined, featured and
materialized, so the stream works over a real history. Then the stream runs as a service, and for
each rate a publisher sends the scenario's next days' transactions (in event order, one message each, keyed like `generate --to-kafka`) while a poller
looks up each published customer (all pending ones in one Feast call, every 0.2 s) until the online
row's event time reaches the transaction's: that wall time minus the publish time is the freshness. Printed per rate: messages/s sent, p50/p99/max
freshness, and the stream's own figure (Kafka's timestamp to the online write) from its status file.
Results also go to benchmarks/results/freshness.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path; keep it from shadowing the packages.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from lakehouse.config import load_config  # noqa: E402
from lakehouse.generator import generate  # noqa: E402
from lakehouse.kafka_topic import BATCH_HEADER, in_event_order  # noqa: E402

ENV = "kafka"
PROJECT = Path(__file__).resolve().parent.parent
TIDEWATER = str(Path(sys.executable).parent / "tidewater")
POLL_SECONDS = 0.2  # between lookups of every pending customer: the poller must not starve the stream of CPU
BUILT_DAYS = 2  # scenario days in the lakehouse before the benchmark publishes the next ones


def _tidewater(*args: str, root: Path) -> None:
    done = subprocess.run([TIDEWATER, *args, "--env", ENV, "--root", str(root)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"tidewater {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    print(f"  tidewater {' '.join(args)}: ok", flush=True)


def _q(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100)[p - 1] if len(samples) > 1 else samples[0]


def build_lake(cfg, rows: int, days: int) -> list[Path]:
    """The scenario, generated whole; its first days published to the topic and their other files
    landed, then the batch path once: silver and the online store up to date. Returns the held-back
    days' batch folders (the benchmark publishes their transactions)."""
    import shutil

    from lakehouse.kafka_topic import publish_batches

    print(f"building the lakehouse under {cfg.root} ({rows} rows a {BUILT_DAYS} days + 30 warm-up days)", flush=True)
    scenario = cfg.root / "bench-scenario"
    settings = {**cfg.generator.model_dump(), "rows": round(rows / BUILT_DAYS * (BUILT_DAYS + days)),
                "days": BUILT_DAYS + days}
    generate(scenario, **settings)
    batches = sorted(scenario.glob("batch-*"))
    built, held = batches[:-days], batches[-days:]
    print(f"  published {publish_batches(cfg, built)} transactions to Kafka", flush=True)
    cfg.landing_dir.mkdir(parents=True, exist_ok=True)
    for batch in built:
        shutil.move(str(batch), str(cfg.landing_dir / batch.name))
    for job in ("ingest_bronze", "refine_silver", "compute_features", "materialize_online"):
        _tidewater("run", job, root=cfg.root)
    return held


def arrivals(cfg, held: list[Path]) -> list[tuple[str, dict]]:
    """The held-back days' valid transactions, once each, in event order: the ones the poller can
    follow online (a quarantined one never reaches the store, by design)."""
    import re

    lines = [line for batch in held for path in sorted(batch.glob("transactions*.jsonl"))
             for line in path.read_text().splitlines()]
    valid, ids = [], set()
    for line, rec in in_event_order(lines):
        if rec is None or rec.get("txn_id") in ids or not all(rec.get(k) for k in ("txn_id", "customer_id", "merchant_id",
                                                                                    "event_time", "currency")):
            continue
        if not (isinstance(rec.get("amount"), (int, float)) and rec["amount"] >= 0 and rec["currency"] in cfg.currencies
                and rec.get("channel") in ("pos", "ecom", "atm") and re.fullmatch(r"[A-Z]{2}", rec.get("country") or "")):
            continue
        ids.add(rec["txn_id"])
        valid.append((line, rec))
    return valid


def run_rate(cfg, lines: list[tuple[str, dict]], rate: float, seconds: float) -> dict:
    """Publish at `rate` messages/s for `seconds`; follow each message's customer until it is online."""
    from confluent_kafka import Producer

    from features.store import feature_store

    store = feature_store(cfg, apply=False)
    src = cfg.sources["transactions"]
    producer = Producer({"bootstrap.servers": cfg.services.kafka_bootstrap, "linger.ms": 0, "log_level": 0})
    pending: dict[str, list[tuple[str, float]]] = {}  # customer -> [(event time, published at)]
    seen: list[float] = []
    lock, done = threading.Lock(), threading.Event()

    def poll() -> None:
        while not (done.is_set() and not pending):
            with lock:
                customers = list(pending)
            if not customers:
                time.sleep(0.01)
                continue
            online = store.get_online_features(features=["customer_features:txn_count_24h"],
                                               entity_rows=[{"customer_id": c} for c in customers]
                                               ).to_dict(include_event_timestamps=True)
            now = time.time()
            for customer, ts in zip(customers, online["txn_count_24h__ts"]):
                if ts is None:
                    continue
                stamp = dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")  # epoch seconds
                with lock:
                    waiting = pending.get(customer, [])
                    arrived = [p for p in waiting if p[0][:19] <= stamp]
                    for p in arrived:
                        seen.append(now - p[1])
                        waiting.remove(p)
                    if not waiting:
                        pending.pop(customer, None)
            if done.is_set() and time.time() - done_at[0] > 120:
                break  # whatever is still pending after two minutes counts as not seen
            time.sleep(POLL_SECONDS)

    done_at = [0.0]
    poller = threading.Thread(target=poll)
    poller.start()
    sent, began = 0, time.time()
    while time.time() - began < seconds and sent < len(lines):
        line, rec = lines[sent]
        due = began + sent / rate
        time.sleep(max(0.0, due - time.time()))
        with lock:
            pending.setdefault(rec["customer_id"], []).append((rec["event_time"].replace("Z", ""), time.time()))
        producer.produce(src.topic or "transactions", value=line.encode(), key=rec["customer_id"].encode(),
                         headers=[(BATCH_HEADER, b"bench")])
        producer.poll(0)
        sent += 1
    producer.flush(30)
    elapsed = time.time() - began
    done_at[0] = time.time()
    done.set()
    poller.join()
    del lines[:sent]
    status = json.loads((cfg.root / "streams" / "stream_online" / "status.json").read_text())
    return {"rate": rate, "sent": sent, "sent_per_s": sent / elapsed, "seen": len(seen), "lost": sent - len(seen),
            "p50_s": _q(seen, 50) if seen else None, "p99_s": _q(seen, 99) if seen else None,
            "max_s": max(seen) if seen else None, "stream_batches": status.get("batches"),
            "stream_last_batch_p50_s": status.get("freshness_p50_s")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="a folder for the benchmark's own lakehouse (created)")
    parser.add_argument("--rows", type=int, default=4000, help="scenario transactions before the warm-up (default 4000)")
    parser.add_argument("--rate", default="20,100", help="messages per second, comma-separated (default 20,100)")
    parser.add_argument("--seconds", type=float, default=30, help="publishing time per rate (default 30)")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} is not empty: the benchmark builds its own lakehouse and topic in a new folder")
    cfg = load_config(ENV, root=root)
    _tidewater("services", "start", "kafka", root=root)
    try:
        lines = arrivals(cfg, build_lake(cfg, args.rows, days=3))
        _tidewater("services", "start", "features", root=root)
        status, deadline = cfg.root / "streams" / "stream_online" / "status.json", time.time() + 600
        while time.time() < deadline and json.loads(status.read_text()).get("batches", 0) < 1:
            time.sleep(1)  # its first micro-batch reads the topic from the start: not part of the figure
        results = [run_rate(cfg, lines, float(r), args.seconds) for r in args.rate.split(",")]
    finally:
        subprocess.run([TIDEWATER, "services", "stop", "features", "kafka", "--env", ENV, "--root", str(root)],
                       capture_output=True, text=True)
    print(f"\nKafka -> online store freshness ({cfg.features.online_store}, trigger every "
          f"{cfg.features.stream_trigger_seconds:g} s, 2 cores shared by broker, stream and this client)")
    print(f"{'rate/s':>7} {'sent/s':>7} {'sent':>6} {'seen':>6} {'p50 s':>7} {'p99 s':>7} {'max s':>7} {'batches':>8}")
    for r in results:
        print(f"{r['rate']:>7g} {r['sent_per_s']:>7.1f} {r['sent']:>6} {r['seen']:>6} {r['p50_s'] or 0:>7.2f} "
              f"{r['p99_s'] or 0:>7.2f} {r['max_s'] or 0:>7.2f} {r['stream_batches']:>8}")
    out = PROJECT / "benchmarks" / "results" / "freshness.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
