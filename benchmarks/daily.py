"""A day's run, cold against warm: the lakehouse jobs on one new day of arrivals, each a `tidewater run`
process of its own (as the scheduler and Airflow run them) against the same jobs in a driver that has
run them before.

    .venv/bin/python benchmarks/daily.py [--rows 1000000] [--days 30] [--new-days 4] [--root DIR] [--json FILE]

The history (`--rows` transactions over `--days` days) is loaded first, in this process's driver. Then
each new day of the same scenario lands and is run: odd days cold (three processes: ingest_bronze,
refine_silver, build_gold, each timed from its launch to its exit), even days warm (the same jobs in
this process's session, which ran the history and the day before). Alternating keeps the machine's
drift out of the comparison. What a warm day saves is what the scheduler's `driver: warm` saves every
scheduled run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `lakehouse` package it measures.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from lakehouse.bronze import ingest_bronze  # noqa: E402
from lakehouse.config import load_config  # noqa: E402
from lakehouse.generator import continue_scenario, generate  # noqa: E402
from lakehouse.gold import build_gold  # noqa: E402
from lakehouse.session import build_session  # noqa: E402
from lakehouse.silver import refine_silver  # noqa: E402
from lakehouse.tables import read_table  # noqa: E402

JOBS = (("bronze", ingest_bronze), ("silver", refine_silver), ("gold", build_gold))
TIDEWATER = str(Path(sys.executable).parent / "tidewater")


def land(staged: Path, landing: Path) -> tuple[str, int]:
    """Move the oldest staged day into the landing folder; its name and transaction lines."""
    day = min(staged.glob("batch-????-??-??"))
    lines = sum(sum(1 for _ in f.open()) for f in day.glob("transactions*"))
    shutil.move(str(day), str(landing / day.name))
    return day.name, lines


def cold(root: Path) -> dict[str, float]:
    """Each job a process of its own, timed from launch to exit (Python, the JVM's start, the job)."""
    seconds = {}
    for name, spec in JOBS:
        t = time.perf_counter()
        subprocess.run([TIDEWATER, "run", spec.name, "--root", str(root)], check=True, capture_output=True)
        seconds[name] = time.perf_counter() - t
    return seconds


def warm(spark, cfg) -> dict[str, float]:
    seconds = {}
    for name, spec in JOBS:
        t = time.perf_counter()
        spec(spark, cfg)
        seconds[name] = time.perf_counter() - t
    return seconds


def print_table(days: list[dict]) -> None:
    print(f"{'day':<17}{'driver':<7}{'new txns':>9}{'bronze s':>10}{'silver s':>10}{'gold s':>9}{'total s':>9}")
    for d in days:
        s = d["seconds"]
        print(f"{d['day']:<17}{d['driver']:<7}{d['transactions']:>9,}{s['bronze']:>10.1f}{s['silver']:>10.1f}"
              f"{s['gold']:>9.1f}{sum(s.values()):>9.1f}")
    means = {k: statistics.mean(sum(d["seconds"].values()) for d in days if d["driver"] == k) for k in ("cold", "warm")}
    print(f"mean total: cold {means['cold']:.1f} s, warm {means['warm']:.1f} s "
          f"({means['cold'] / means['warm']:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="transactions of history (default: 1,000,000)")
    parser.add_argument("--days", type=int, default=30, help="days of history (default: 30)")
    parser.add_argument("--new-days", type=int, default=4, help="new days run, cold and warm by turns (default: 4)")
    parser.add_argument("--root", help="storage root (default: a new temporary folder)")
    parser.add_argument("--json", metavar="FILE", help="write every figure here as JSON")
    args = parser.parse_args()
    if args.new_days < 2:
        parser.error("--new-days must be at least 2: one cold day and one warm")
    if args.root and (Path(args.root) / "tables").exists():
        parser.error(f"{args.root} already holds a lakehouse: the history must load into a new root")
    root = Path(args.root or tempfile.mkdtemp(prefix="tidewater-daily-"))
    cfg = load_config("local", root=root)
    generate(cfg.landing_dir, rows=args.rows, days=args.days)
    spark = build_session(cfg)
    t = time.perf_counter()
    warm(spark, cfg)
    history_s = time.perf_counter() - t
    staged = root / "staged"
    continue_scenario(cfg.landing_dir, staged, args.new_days)
    days = []
    for i in range(args.new_days):
        day, lines = land(staged, cfg.landing_dir)
        driver = "cold" if i % 2 == 0 else "warm"
        seconds = cold(root) if driver == "cold" else warm(spark, cfg)
        days.append({"day": day, "driver": driver, "transactions": lines, "seconds": seconds})
    silver = read_table(spark, cfg.table("silver.transactions")).count()
    spark.stop()
    print(f"history: {args.rows:,} transactions over {args.days} days loaded in {history_s:.1f} s; "
          f"silver.transactions holds {silver:,} rows after the new days")
    print_table(days)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": args.rows, "days": args.days, "history_s": history_s,
                                               "silver_transactions": silver, "new_days": days}, indent=2))


if __name__ == "__main__":
    main()
