"""Streaming scoring: end-to-end latency (silver commit -> its predictions committed) and events/s,
with score_stream running continuously (`tidewater stream start`).

    .venv/bin/python benchmarks/stream_scoring.py --root DEMO_ROOT [--env ENV] [--conf-dir DIR] [--days 4]

DEMO_ROOT holds a demo lakehouse (silver, a champion); the script adds days to it, so pass a copy or a
scratch demo. It continues the demo's scenario one day at a time (the generator's own continuation:
same seed and settings), and for each day lands it, runs ingest_bronze and refine_silver in this
process, and waits until gold.predictions_stream holds a prediction for every new transaction the
stream scores (the mature ones). Per day: rows, the silver commit's time, the time of the
predictions_stream commit that completed them (both from the Delta logs), their difference
(latency), and rows over that latency (events/s). Printed as a table; also benchmarks/results/stream_scoring.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path; keep it from shadowing the packages.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from lakehouse.config import load_config  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent
TIDEWATER = str(Path(sys.executable).parent / "tidewater")


def _commits(path: str) -> list[tuple[int, float]]:
    """(version, commit time in epoch seconds) of a Delta table, from its log."""
    from deltalake import DeltaTable

    return [(h["version"], h["timestamp"] / 1000) for h in DeltaTable(path).history()]


def _stream(action: str, args) -> str:
    cmd = [TIDEWATER, "stream", action, "--root", str(args.root), *(["--env", args.env] if args.env else [])]
    done = subprocess.run(cmd, capture_output=True, text=True,
                          env={**__import__("os").environ, **({"TIDEWATER_CONF_DIR": args.conf_dir} if args.conf_dir else {})})
    if done.returncode != 0:
        raise SystemExit(f"tidewater stream {action} failed: {done.stderr.strip()[-1500:]}")
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="a demo lakehouse (it gains --days days)")
    parser.add_argument("--env", default=None, help="its env (default local or $TIDEWATER_ENV)")
    parser.add_argument("--conf-dir", default=None, help="its configuration folder (default the project's conf/)")
    parser.add_argument("--days", type=int, default=4, help="days to add, one at a time (default 4)")
    args = parser.parse_args()
    if args.conf_dir:
        __import__("os").environ["TIDEWATER_CONF_DIR"] = args.conf_dir
    from deltalake import DeltaTable

    from lakehouse.bronze import ingest_bronze
    from lakehouse.generator import continue_scenario
    from lakehouse.session import build_session
    from lakehouse.silver import refine_silver

    cfg = load_config(args.env, root=args.root, conf_dir=args.conf_dir)
    start = dt.date.fromisoformat(json.loads((cfg.landing_dir / "_manifest.json").read_text())["start_date"])
    spark = build_session(cfg)
    silver, stream = cfg.table("silver.transactions").path, cfg.table("gold.predictions_stream").path
    print(_stream("start", args), flush=True)
    results = []
    try:
        status = cfg.root / "streams" / "score_stream" / "status.json"
        started = time.time()
        while not (status.exists() and json.loads(status.read_text()).get("state") == "running"
                   and status.stat().st_mtime >= started):
            time.sleep(0.5)  # the stream's own start (a JVM) is not part of the figure
        for _ in range(args.days):
            batch = continue_scenario(cfg.landing_dir, cfg.landing_dir, days=1).batches[-1]
            day = (dt.date.fromisoformat(batch.removeprefix("batch-")) - start).days
            silver_before = DeltaTable(silver).version()
            ingest_bronze(spark, cfg)
            refine_silver(spark, cfg)
            silver_commit = max(t for v, t in _commits(silver) if v > silver_before)
            now = spark.read.format("delta").load(silver).select("txn_id")
            then = spark.read.format("delta").option("versionAsOf", silver_before).load(silver).select("txn_id")
            new_ids = {r[0] for r in now.subtract(then).collect()}
            deadline = time.time() + 600
            while time.time() < deadline:
                seen = set(DeltaTable(stream).to_pyarrow_table(columns=["txn_id"]).column(0).to_pylist())
                if new_ids <= seen:
                    break
                time.sleep(0.5)
            scored, added, new = len(new_ids & seen), len(new_ids), DeltaTable(silver).version()
            done_at = max(t for v, t in _commits(stream))
            latency = done_at - silver_commit
            results.append({"day": day, "silver_version": new, "rows": added, "scored": scored,
                            "latency_s": latency, "events_per_s": scored / latency if latency > 0 else None})
            print(f"day {day}: {added} new silver rows, {scored} scored by the stream, "
                  f"silver commit -> predictions committed in {latency:.1f} s", flush=True)
    finally:
        print(_stream("stop", args), flush=True)
        spark.stop()
    print(f"\nStreaming scoring (score_stream --continuous, trigger every {cfg.scoring.stream_trigger_seconds} s, "
          f"{cfg.scoring.stream_max_files_per_trigger} silver file(s) per micro-batch; 2 cores)")
    print(f"{'day':>4} {'rows':>6} {'scored':>7} {'latency s':>10} {'events/s':>9}")
    for r in results:
        print(f"{r['day']:>4} {r['rows']:>6} {r['scored']:>7} {r['latency_s']:>10.1f} {r['events_per_s'] or 0:>9.1f}")
    out = PROJECT / "benchmarks" / "results" / "stream_scoring.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
