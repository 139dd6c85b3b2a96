"""Throughput of the lakehouse stages, side by side with DuckDB + delta-rs doing the same work.

    .venv/bin/python benchmarks/lakehouse.py --rows 1000000 [--days 30] [--root DIR] [--no-peer] [--json FILE]
        [--warm-up ROWS] [--resident]

Each stage runs once on a fresh root (the first run of a job is the expensive one); rows/s is
transactions written by the generator divided by the stage's wall time. The peer
(benchmarks/duckdb_peer.py) then runs the same stages on the same landing files in a process of its
own, under <root>/duckdb-peer, and its tables are verified against Tidewater's. ratio is Tidewater's
seconds over the peer's; peak memory is each side's resident high-water mark. The driver JVM's start
comes before the stages and is printed apart, as the peer's process start is not counted either.

By default the driver is fresh: what a `tidewater run` process pays without the resident driver. With
--warm-up ROWS the same driver first runs the three stages on ROWS other transactions (another seed, a
scratch root of their own), as the scheduler's warm driver (`services.scheduler.driver: warm`) has run
its jobs before: the timed stages then cost the work, not the JVM's class loading and compilation.
With --resident the stages are what a user's `tidewater run` gets with `tidewater services start driver`
up: the service is started for the root (it warms itself up on generated rows: its conf's
`services.driver.warm_up_rows`, or --warm-up ROWS; its start is printed apart, as the JVM's is), and
each stage is the job handed to it and waited for, from this process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `lakehouse` package it measures.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from lakehouse.bronze import ingest_bronze  # noqa: E402
from lakehouse.config import load_config  # noqa: E402
from lakehouse.generator import generate  # noqa: E402
from lakehouse.gold import build_gold  # noqa: E402
from lakehouse.session import build_session, class_archive  # noqa: E402
from lakehouse.silver import refine_silver  # noqa: E402

PEER = Path(__file__).resolve().parent / "duckdb_peer.py"
STAGES = {"bronze": "bronze", "silver": "silver (+quarantine)", "gold": "gold", "total": "total"}
WARM_UP_SEED = 7  # not the generator's default: the warm-up sees other customers, merchants and ids


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_peer(landing: Path, root: Path) -> dict:
    """Run the peer on the landing files into <root>/duckdb-peer and verify it against root: its JSON."""
    peer_root = root / "duckdb-peer"
    out = peer_root / "benchmark.json"
    out.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, str(PEER), "--landing", str(landing), "--root", str(peer_root),
                           "--verify", str(root), "--json", str(out)], capture_output=True, text=True)
    if not out.exists():  # it wrote no figures: it failed before the end, not on a difference
        raise RuntimeError(f"the DuckDB peer failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def run_stages(spark, cfg) -> dict[str, float]:
    """Bronze, silver and gold once, in this driver: each stage's wall seconds."""
    seconds = {}
    for name, stage in (("bronze", ingest_bronze), ("silver", refine_silver), ("gold", build_gold)):
        t = time.perf_counter()
        stage(spark, cfg)
        seconds[name] = time.perf_counter() - t
    return seconds


def warm_up(spark, root: Path, rows: int, days: int) -> dict:
    """Run the stages on `rows` other transactions under `root`, so the driver has run them before."""
    cfg = load_config("local", root=root)
    generate(cfg.landing_dir, rows=rows, days=days, seed=WARM_UP_SEED)
    t = time.perf_counter()
    seconds = run_stages(spark, cfg)
    return {"rows": rows, "seed": WARM_UP_SEED, "root": str(root), "seconds": seconds,
            "total_s": time.perf_counter() - t}


def run_resident(cfg) -> tuple[dict[str, float], dict, dict[str, float]]:
    """Start the resident driver for cfg's root, hand it the three stages as `tidewater run` does, stop it:
    each stage's wall seconds, the driver's start, its JVM's and Python's peak memory."""
    import psutil

    from lakehouse.resident_driver import submit
    from services.process import running_pid, start, stop
    from services.stack import resident_driver

    service = resident_driver(cfg, cfg.env, None)
    t = time.perf_counter()
    print(start(service, timeout=600), file=sys.stderr)
    driver = {"start_s": time.perf_counter() - t, "class_archive": class_archive(cfg).is_file(),
              "resident": {"warm_up_rows": cfg.services.driver.warm_up_rows}}
    seconds = {}
    try:
        for name, job in (("bronze", "ingest_bronze"), ("silver", "refine_silver"), ("gold", "build_gold")):
            t = time.perf_counter()
            if submit(job, ["--root", str(cfg.root), "--env", cfg.env], cfg) != 0:
                raise RuntimeError(f"{job} did not run to the end in the resident driver (log: {service.log_file})")
            seconds[name] = time.perf_counter() - t
        python = psutil.Process(running_pid(service))
        jvm = next(p for p in python.children(recursive=True) if p.name() == "java")
        memory = {"tidewater_jvm": _peak_rss_mib(jvm.pid), "tidewater_python": _peak_rss_mib(python.pid)}
    finally:
        print(stop(service), file=sys.stderr)
    return seconds, driver, memory


def figures(args, man, generate_s: float, driver: dict, seconds: dict[str, float], memory: dict[str, float],
            versions: dict[str, str], peer: dict | None) -> dict:
    """Every figure of the run, as --json writes it (one file per size makes a README table or plot)."""
    rows = man.transactions_written
    peer_seconds = dict(peer["seconds"]) if peer else {}
    seconds = dict(seconds, total=sum(seconds.values()))
    if peer_seconds:
        peer_seconds["total"] = sum(peer_seconds.values())
    stages = {}
    for name, s in seconds.items():
        p = peer_seconds.get(name)
        stages[name] = {"tidewater_s": s, "peer_s": p, "ratio": s / p if p else None,
                        "tidewater_rows_per_s": rows / s, "peer_rows_per_s": rows / p if p else None}
    return {"rows": args.rows, "days": args.days, "transactions": rows, "root": str(args.root),
            "cpus": os.cpu_count(), "generate_s": generate_s, "refine_batch_mib": args.refine_batch_mib,
            "driver": driver,
            "stages": stages,
            "peak_memory_mib": {**memory, "peer": peer["peak_memory_mib"] if peer else None},
            "versions": {**versions, **(peer["versions"] if peer else {})},
            "verification": peer["verification"] if peer else None}


def print_table(fig: dict) -> None:
    def cell(value, fmt: str, width: int) -> str:
        return f"{'-' if value is None else format(value, fmt):>{width}}"

    print(f"\nlakehouse benchmark: {fig['transactions']} transactions in {fig['days']} daily batches, "
          f"root {fig['root']} (generated in {fig['generate_s']:.1f} s)")
    print(f"{'stage':<22}{'Tidewater s':>12}{'DuckDB+delta-rs s':>19}{'ratio':>9}"
          f"{'Tidewater rows/s':>18}{'DuckDB rows/s':>15}")
    for name, label in STAGES.items():
        st = fig["stages"][name]
        print(f"{label:<22}{cell(st['tidewater_s'], '.1f', 12)}{cell(st['peer_s'], '.2f', 19)}"
              f"{cell(st['ratio'], '.1f', 8)}{'x' if st['ratio'] else ' '}"
              f"{cell(st['tidewater_rows_per_s'], ',.0f', 18)}{cell(st['peer_rows_per_s'], ',.0f', 15)}")
    mem = fig["peak_memory_mib"]
    peer = "" if mem["peer"] is None else f"; DuckDB+delta-rs process {mem['peer']:,.0f} MiB"
    print(f"peak memory: Tidewater driver JVM {mem['tidewater_jvm']:,.0f} MiB + Python "
          f"{mem['tidewater_python']:,.0f} MiB{peer}")
    driver = fig["driver"]
    if "resident" in driver:
        print(f"resident driver: started and warmed on {driver['resident']['warm_up_rows']:,} generated "
              f"transactions in {driver['start_s']:.1f} s (`tidewater services start driver`), before the stages")
    else:
        print(f"driver JVM started in {driver['start_s']:.1f} s, before the stages "
              f"({'mapping the class archive' if driver['class_archive'] else 'no class archive: make setup writes it'})")
    if "warm_up" in driver:
        w = driver["warm_up"]
        print(f"warm driver: before the timed stages it ran them on {w['rows']:,} other transactions "
              f"(seed {w['seed']}) in {w['total_s']:.1f} s")
    if fig["verification"]:
        print(f"verification: {fig['verification']['summary']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--root", help="storage root (default: a new temporary folder)")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the DuckDB + delta-rs peer and verify it (default: on)")
    parser.add_argument("--json", metavar="FILE", help="write every figure here as JSON")
    parser.add_argument("--warm-up", type=int, default=0, metavar="ROWS",
                        help="first run the stages in the same driver on ROWS other transactions, as a warm "
                             "driver has (default: 0, a fresh driver; with --resident: the driver's "
                             "services.driver.warm_up_rows)")
    parser.add_argument("--resident", action="store_true",
                        help="hand the stages to the resident driver (`tidewater services start driver`), as "
                             "`tidewater run` does when it is up")
    parser.add_argument("--refine-batch-mib", type=int, metavar="MIB",
                        help="bronze MiB per silver micro-batch for every source (default: the conf's)")
    args = parser.parse_args()
    if args.root and (Path(args.root) / "tables").exists():
        parser.error(f"{args.root} already holds a lakehouse: each stage is timed on a new root")
    if args.resident and args.refine_batch_mib:
        parser.error("--resident runs the jobs as the conf says: no --refine-batch-mib")
    args.root = Path(args.root or tempfile.mkdtemp(prefix="tidewater-bench-"))
    cfg = load_config("local", root=args.root)
    if args.refine_batch_mib:
        batch_bytes = {"refine_batch_bytes": args.refine_batch_mib * 2**20}
        cfg = load_config("local", root=args.root, overrides={"sources": {s: batch_bytes for s in cfg.sources}})
    args.refine_batch_mib = cfg.sources["transactions"].refine_batch_bytes / 2**20  # as run, for the JSON

    t = time.perf_counter()
    man = generate(cfg.landing_dir, rows=args.rows, days=args.days)
    generate_s = time.perf_counter() - t
    versions = {"spark": version("pyspark"), "delta-spark": version("delta-spark")}
    if args.resident:
        if args.warm_up:
            cfg = load_config("local", root=args.root, overrides={"services": {"driver": {"warm_up_rows": args.warm_up}}})
        seconds, driver, memory = run_resident(cfg)
    else:
        t = time.perf_counter()
        spark = build_session(cfg)
        driver = {"start_s": time.perf_counter() - t, "class_archive": class_archive(cfg).is_file()}
        if args.warm_up:
            driver["warm_up"] = warm_up(spark, args.root / "warm-up", args.warm_up, args.days)
        seconds = run_stages(spark, cfg)
        memory = {"tidewater_jvm": _peak_rss_mib(spark.sparkContext._gateway.proc.pid),
                  "tidewater_python": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        spark.stop()  # the peer gets the machine's memory to itself (at 10M its silver holds 15 GiB)

    peer = run_peer(cfg.landing_dir, args.root) if args.peer else None
    fig = figures(args, man, generate_s, driver, seconds, memory, versions, peer)
    print_table(fig)
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))
    if peer and not peer["verification"]["identical"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
