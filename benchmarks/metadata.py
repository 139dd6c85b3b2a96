"""Metadata commands: delta-rs (what `tidewater tables` / `lineage` do) against Spark, side by side.

Each figure is the wall time of a fresh process answering one question, as a user at a terminal
pays it: the delta-rs side runs the `tidewater` command; the Spark side starts a session and reads
the same answer with Spark (table versions and counts, the lineage chain).

    .venv/bin/python benchmarks/metadata.py --root var/lakehouse [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
TIDEWATER = str(Path(sys.executable).parent / "tidewater")

SPARK_TABLES = """
from lakehouse.config import load_config
from lakehouse.session import build_session
from lakehouse.tables import current_version, read_table
cfg = load_config(None, {root!r}); spark = build_session(cfg)
for name in cfg.table_names():
    v = current_version(spark, cfg.table(name))
    if v is not None:
        read_table(spark, cfg.table(name), v).count()
"""

SPARK_LINEAGE = """
from lakehouse.config import load_config
from lakehouse.lineage import upstream_chain
from lakehouse.session import build_session
from lakehouse.tables import current_version
cfg = load_config(None, {root!r}); spark = build_session(cfg)
upstream_chain(spark, cfg, "gold.fraud_kpis", current_version(spark, cfg.table("gold.fraud_kpis")))
"""


def seconds(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=PROJECT)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(PROJECT / "var" / "lakehouse"), help="a lakehouse the demo built")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (the median is printed)")
    args = parser.parse_args()
    txn = subprocess.run([TIDEWATER, "sql", "--root", args.root, "--format", "json",
                          "SELECT txn_id FROM gold.predictions ORDER BY txn_id LIMIT 1"],
                         check=True, capture_output=True, text=True, cwd=PROJECT).stdout.split('"txn_id": "')[1].split('"')[0]
    rows = [
        ("tables (versions + row counts)", seconds([TIDEWATER, "tables", "--root", args.root], args.repeat),
         seconds([sys.executable, "-c", SPARK_TABLES.format(root=args.root)], args.repeat)),
        ("lineage gold.fraud_kpis", seconds([TIDEWATER, "lineage", "gold.fraud_kpis", "--root", args.root], args.repeat),
         seconds([sys.executable, "-c", SPARK_LINEAGE.format(root=args.root)], args.repeat)),
        (f"lineage --txn {txn}", seconds([TIDEWATER, "lineage", "--txn", txn, "--root", args.root], args.repeat), None),
        ("jobs (declarations)", seconds([TIDEWATER, "jobs", "--root", args.root], args.repeat), None),
    ]
    print(f"{'question':<36} {'delta-rs (s)':>12} {'Spark (s)':>10} {'speed-up':>9}")
    for name, fast, spark in rows:
        peer = f"{spark:10.2f} {spark / fast:8.1f}x" if spark else f"{'-':>10} {'-':>9}"
        print(f"{name:<36} {fast:12.2f} {peer}")


if __name__ == "__main__":
    main()
