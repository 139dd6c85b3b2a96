"""SQL server figures: a gold query over JDBC (the Thrift server) against the same query in-process.

    TIDEWATER_METASTORE_PASSWORD=... .venv/bin/python benchmarks/sql_server.py --root DIR [--env cluster] [--queries 100]

DIR holds a lakehouse with gold tables (a demo root, say) and the running `metastore` and `sql`
services of that root (`tidewater services start metastore sql --root DIR`). Prints p50/p99 latency of
`SELECT * FROM gold.fraud_kpis ORDER BY event_date` through PyHive, and of the same query collected from
an in-process SparkSession (local mode), each after 5 warm-up queries.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path; keep it from shadowing the packages.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from lakehouse.catalog import sql  # noqa: E402
from lakehouse.config import load_config  # noqa: E402
from lakehouse.session import build_session  # noqa: E402
from services.sql_catalog import connect  # noqa: E402

QUERY = "SELECT * FROM gold.fraud_kpis ORDER BY event_date"


def _timed(run, n: int) -> list[float]:
    for _ in range(5):
        run()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _line(name: str, samples: list[float], rows: int) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"| {name} | {rows} | {q[49]:.1f} | {q[98]:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--env", default="cluster")
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    cfg = load_config(args.env, args.root)

    with connect(cfg) as conn:
        cursor = conn.cursor()

        def over_jdbc():
            cursor.execute(QUERY)
            return cursor.fetchall()

        jdbc_rows = len(over_jdbc())
        jdbc = _timed(over_jdbc, args.queries)

    local = load_config("local", args.root)
    spark = build_session(local)
    in_process_rows = len(sql(spark, local, QUERY).collect())
    in_process = _timed(lambda: sql(spark, local, QUERY).collect(), args.queries)
    print(f"{args.queries} queries each: {QUERY}")
    print("| path | rows | p50 ms | p99 ms |\n|---|---|---|---|")
    print(_line("Thrift server (PyHive, JDBC protocol)", jdbc, jdbc_rows))
    print(_line("in-process SparkSession (collect)", in_process, in_process_rows))


if __name__ == "__main__":
    main()
