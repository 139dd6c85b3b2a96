"""Feature store figures: feature job and materialization rows/s, the point-in-time join beside Feast's,
online lookup latency.

    .venv/bin/python benchmarks/features.py --rows 1000000 [--days 30] [--lookups 1000] [--join-days 1]
        [--feast-rows 2000]

Runs the lakehouse pipeline on generated data first (not timed here; see benchmarks/lakehouse.py),
then times compute_features and materialize_online; the point-in-time join (features.serving, what
score_batch and build_training_set use) on the transactions of the last --join-days days (what a
daily score_batch asks for), and on --feast-rows of them against Feast's own get_historical_features,
each run twice in this session with the second run timed, their results compared row for row; and online
lookups in-process for one entity and for a batch of 100, on SQLite and (when redis-server is
installed) a local Redis.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import functions as F

# Run as a script, this folder comes first on sys.path; keep it from shadowing the packages.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from features.offline import compute_features  # noqa: E402
from features.serving import feast_point_in_time_features, point_in_time_features, scoring_events  # noqa: E402
from features.online import materialize_online  # noqa: E402
from features.store import feature_store, online_features  # noqa: E402
from lakehouse.bronze import ingest_bronze  # noqa: E402
from lakehouse.config import load_config  # noqa: E402
from lakehouse.generator import generate  # noqa: E402
from lakehouse.session import build_session  # noqa: E402
from lakehouse.silver import refine_silver  # noqa: E402
from lakehouse.tables import read_table  # noqa: E402


def _percentiles(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"p50 {q[49] * 1000:.2f} ms, p99 {q[98] * 1000:.2f} ms"


def entity_sample(spark, cfg, n: int = 1000) -> list[str]:
    """Up to n customer ids with features: the entities the lookups ask for."""
    return [r[0] for r in read_table(spark, cfg.table("features.customer_features"))
            .select("customer_id").distinct().limit(n).collect()]


def lookup_seconds(cfg, customers: list[str], n: int, batches: int | None = None) -> tuple[list[float], list[float]]:
    """Seconds per online lookup, in-process: n lookups of one entity, then `batches` (default
    max(n // 10, 20)) of the first 100 entities in one call."""
    store = feature_store(cfg, apply=False)
    one, batch = [], []
    for i in range(n):
        t = time.perf_counter()
        online_features(cfg, "customer_id", [customers[i % len(customers)]], store=store)
        one.append(time.perf_counter() - t)
    for i in range(batches or max(n // 10, 20)):
        t = time.perf_counter()
        online_features(cfg, "customer_id", customers[:100], store=store)
        batch.append(time.perf_counter() - t)
    return one, batch


def join_seconds(cfg, join, events) -> float:
    """Seconds for a point-in-time join of `events`, the second of two runs (the first compiles its plan)."""
    for _ in range(2):
        t = time.perf_counter()
        join(cfg, events).write.format("noop").mode("overwrite").save()
        seconds = time.perf_counter() - t
    return seconds


def point_in_time(spark, cfg, man, days: int, sample: int) -> None:
    """The point-in-time join on the transactions of the generated period's last `days` days, and beside
    Feast's on `sample` of them (Feast's grows with rows x rows per entity: at 1M, timing both on one
    day's 33,266 transactions had not finished after ten minutes): seconds, and the sample's rows compared."""
    end = dt.date.fromisoformat(man.start_date) + dt.timedelta(days=man.days)
    txns = read_table(spark, cfg.table("silver.transactions"))
    events = scoring_events(txns.where(F.to_date("event_time").between(F.lit(end - dt.timedelta(days=days)),
                                                                       F.lit(end - dt.timedelta(days=1))))).cache()
    n = events.count()
    every = join_seconds(cfg, point_in_time_features, events)
    some = events.orderBy("txn_id").limit(sample).cache()
    m = some.count()
    ours, feast = (join_seconds(cfg, join, some) for join in (point_in_time_features, feast_point_in_time_features))
    a = point_in_time_features(cfg, some).cache()
    b = feast_point_in_time_features(cfg, some).select(*a.columns).cache()
    same = a.count() == b.count() and a.exceptAll(b).isEmpty() and b.exceptAll(a).isEmpty()
    print(f"point-in-time join  {every:8.1f} s  {n / every:>10,.0f} rows/s  ({n} transactions of the last {days} day(s))")
    print(f"  on {m} of them    {ours:8.1f} s  {m / ours:>10,.0f} rows/s; Feast's get_historical_features {feast:.1f} s, "
          f"{m / feast:,.0f} rows/s ({feast / ours:.1f}x); identical rows: {same}")
    for frame in (a, b, some, events):
        frame.unpersist()
    if not same:
        sys.exit("the point-in-time join and Feast's differ")


def _lookups(cfg, customers: list[str], n: int) -> tuple[str, str]:
    one, batch = lookup_seconds(cfg, customers, n)
    return _percentiles(one), _percentiles(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--join-days", type=int, default=1, help="days of transactions the point-in-time join asks for")
    parser.add_argument("--feast-rows", type=int, default=2000,
                        help="of those, how many both joins are timed on side by side and compared (default 2000)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tidewater-features-bench-"))
    cfg = load_config("local", root=root)
    man = generate(cfg.landing_dir, rows=args.rows, days=args.days)
    spark = build_session(cfg)
    ingest_bronze(spark, cfg)
    refine_silver(spark, cfg)
    rows = read_table(spark, cfg.table("silver.transactions")).count()

    t = time.perf_counter()
    compute_features(spark, cfg)
    feature_s = time.perf_counter() - t
    feature_rows = sum(read_table(spark, cfg.table(v.table)).count() for v in cfg.features.views.values())
    t = time.perf_counter()
    materialize_online(spark, cfg)
    materialize_s = time.perf_counter() - t
    customers = entity_sample(spark, cfg)

    print(f"\nfeatures benchmark: {man.transactions_written} generated, {rows} silver transactions, root {root}")
    print(f"compute_features    {feature_s:8.1f} s  {rows / feature_s:>10,.0f} silver rows/s  ({feature_rows} feature rows)")
    print(f"materialize_online  {materialize_s:8.1f} s  {feature_rows / materialize_s:>10,.0f} feature rows/s (sqlite)")
    point_in_time(spark, cfg, man, args.join_days, args.feast_rows)
    one, batch = _lookups(cfg, customers, args.lookups)
    print(f"online sqlite       1 entity: {one}; 100 entities: {batch}")

    server = shutil.which("redis-server")
    if server:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([server, "--port", str(port), "--save", "", "--appendonly", "no"],
                                stdout=subprocess.DEVNULL)
        time.sleep(1)
        try:
            rcfg = load_config("local", root=root, overrides={"features": {
                "online_store": "redis", "redis_url": f"127.0.0.1:{port}"}})
            store = feature_store(rcfg)
            now = dt.datetime.now(dt.timezone.utc)
            t = time.perf_counter()
            for name, view in rcfg.features.views.items():  # a full backfill, timed like the SQLite one
                first = read_table(spark, rcfg.table(view.table)).agg(F.min("event_time")).first()[0]
                store.materialize(start_date=first.replace(tzinfo=dt.timezone.utc) - dt.timedelta(seconds=1),
                                  end_date=now, feature_views=[name])
            redis_s = time.perf_counter() - t
            print(f"materialize redis   {redis_s:8.1f} s  {feature_rows / redis_s:>10,.0f} feature rows/s")
            one, batch = _lookups(rcfg, customers, args.lookups)
            print(f"online redis        1 entity: {one}; 100 entities: {batch}")
        finally:
            proc.terminate()


if __name__ == "__main__":
    main()
