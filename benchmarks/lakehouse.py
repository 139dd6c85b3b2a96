"""Throughput of the lakehouse stages: rows/s for generate, bronze, silver, gold, and peak memory.

    .venv/bin/python benchmarks/lakehouse.py --rows 1000000 [--days 30] [--root DIR]

Each stage runs once on a fresh root (the first run of a job is the expensive one); rows/s is
transactions written by the generator divided by the stage's wall time.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `lakehouse` package it measures.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from lakehouse.bronze import ingest_bronze  # noqa: E402
from lakehouse.config import load_config  # noqa: E402
from lakehouse.generator import generate  # noqa: E402
from lakehouse.gold import build_gold  # noqa: E402
from lakehouse.session import build_session  # noqa: E402
from lakehouse.silver import refine_silver  # noqa: E402


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--root", help="storage root (default: a new temporary folder)")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="tidewater-bench-"))
    cfg = load_config("local", root=root)

    timings: dict[str, float] = {}
    t = time.perf_counter()
    man = generate(cfg.landing_dir, rows=args.rows, days=args.days)
    timings["generate"] = time.perf_counter() - t
    spark = build_session(cfg)
    for name, stage in (("bronze", ingest_bronze), ("silver", refine_silver), ("gold", build_gold)):
        t = time.perf_counter()
        stage(spark, cfg)
        timings[name] = time.perf_counter() - t

    rows = man.transactions_written
    print(f"\nlakehouse benchmark: {rows} transactions in {args.days} daily batches, root {root}")
    print(f"{'stage':<10}{'seconds':>10}{'rows/s':>12}")
    for name, seconds in timings.items():
        print(f"{name:<10}{seconds:>10.1f}{rows / seconds:>12,.0f}")
    jvm_pid = spark.sparkContext._gateway.proc.pid
    python_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: driver JVM {_peak_rss_mib(jvm_pid):,.0f} MiB, Python {python_peak:,.0f} MiB")


if __name__ == "__main__":
    main()
