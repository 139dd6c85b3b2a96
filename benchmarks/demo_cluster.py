"""The demo's wall time, embedded (local) vs the standalone cluster, on the same generated data, one run.

    .venv/bin/python benchmarks/demo_cluster.py [--out DIR] [--rows N] [--days D] [--workers 2]

Runs `tidewater demo` into DIR/local, then `tidewater services start` (metastore, spark with N workers,
sql, mlflow, redis) and `tidewater demo --env cluster` into DIR/cluster, reads `gold.fraud_kpis` and
`gold.drift_metrics` over JDBC (PyHive, the Thrift server), stops the stack and checks that no process
of it is left. Prints both wall times and, per table, both row counts and whether the contents match
(`lakehouse.delta_reader.content_digest`: without run clocks and run ids). DIR/local and DIR/cluster
are deleted first; logs are DIR/*.log, figures DIR/demo_cluster.json. Both demos use the same PII key
and metastore password: $TIDEWATER_PII_KEY / $TIDEWATER_METASTORE_PASSWORD, or a random one for this run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path; keep it from shadowing the packages.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import psutil  # noqa: E402

from lakehouse.config import load_config  # noqa: E402
from lakehouse.delta_reader import content_digest, table_inventory  # noqa: E402
from services.sql_catalog import connect  # noqa: E402

OVER_JDBC = ("gold.fraud_kpis", "gold.drift_metrics")


def _tidewater(args: list[str], log: Path, env: dict) -> float:
    """Run one `tidewater` command with its output in `log`; its wall time in seconds."""
    print(f"$ tidewater {' '.join(args)}   (log: {log})", flush=True)
    started = time.time()
    with open(log, "a") as out:
        code = subprocess.call([sys.executable, "-m", "lakehouse.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                               env=env)
    elapsed = time.time() - started
    if code:
        sys.exit(f"error: `tidewater {' '.join(args)}` exited {code} after {elapsed:.0f} s; see {log}")
    print(f"  done in {_minutes(elapsed)}", flush=True)
    return elapsed


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def _left_behind(root: Path) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and str(root) in " ".join(p.info["cmdline"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/tidewater-demo-cluster", help="folder for both roots and logs")
    parser.add_argument("--rows", type=int, help="transactions (the demo's default if unset)")
    parser.add_argument("--days", type=int, help="days of history (the demo's default if unset)")
    parser.add_argument("--workers", type=int, default=2, help="standalone workers")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    local_root, cluster_root = out / "local", out / "cluster"
    for root in (local_root, cluster_root):
        shutil.rmtree(root, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, os.stat(out).st_mode | 0o001)  # PostgreSQL runs as user postgres and walks into the root
    env = {**os.environ, "TIDEWATER_PII_KEY": os.environ.get("TIDEWATER_PII_KEY") or secrets.token_hex(16),
           "TIDEWATER_METASTORE_PASSWORD": os.environ.get("TIDEWATER_METASTORE_PASSWORD") or secrets.token_hex(16)}
    os.environ.update(env)
    scale = [*(["--rows", str(args.rows)] if args.rows else []), *(["--days", str(args.days)] if args.days else [])]

    local_s = _tidewater(["demo", "--root", str(local_root), *scale], out / "local.log", env)
    cluster = ["--env", "cluster", "--root", str(cluster_root)]
    start_s = _tidewater(["services", "start", "metastore", "spark", "sql", "mlflow", "redis", "--workers",
                          str(args.workers), *cluster], out / "services.log", env)
    try:
        cluster_s = _tidewater(["demo", *cluster, *scale], out / "cluster.log", env)
        cfg = load_config("cluster", cluster_root)
        with connect(cfg) as conn:
            cursor = conn.cursor()
            over_jdbc = {}
            for name in OVER_JDBC:
                cursor.execute(f"SELECT * FROM {name}")
                over_jdbc[name] = len(cursor.fetchall())
    finally:
        _tidewater(["services", "stop", *cluster], out / "services.log", env)
    left = _left_behind(cluster_root)

    local_cfg = load_config("local", local_root)
    tables = []
    for state in table_inventory(local_cfg):
        name = state["name"]
        (local_rows, local_digest), (cluster_rows, cluster_digest) = (content_digest(local_cfg, name),
                                                                      content_digest(cfg, name))
        tables.append({"table": name, "local_rows": local_rows, "cluster_rows": cluster_rows,
                       "same_content": local_digest == cluster_digest})

    print(f"\nsame generated data (seed from conf/base.yaml){', ' + ' '.join(scale) if scale else ', default scale'};"
          f" {args.workers} workers")
    print("| run | wall time |\n|---|---|")
    print(f"| `tidewater demo` (embedded, local[*]) | {_minutes(local_s)} |")
    print(f"| `tidewater services start` (metastore, spark, sql, mlflow, redis) | {_minutes(start_s)} |")
    print(f"| `tidewater demo --env cluster` | {_minutes(cluster_s)} |")
    print(f"\nover JDBC after the cluster demo: {', '.join(f'{n} {r} rows' for n, r in over_jdbc.items())}")
    print(f"processes of the cluster root left after `services stop`: {left or 'none'}")
    print("\n| table | local rows | cluster rows | same content |\n|---|---|---|---|")
    for t in tables:
        print(f"| {t['table']} | {t['local_rows']} | {t['cluster_rows']} | {'yes' if t['same_content'] else 'no'} |")
    (out / "demo_cluster.json").write_text(json.dumps(
        {"rows": args.rows, "days": args.days, "workers": args.workers, "local_seconds": round(local_s, 1),
         "services_start_seconds": round(start_s, 1), "cluster_seconds": round(cluster_s, 1),
         "over_jdbc": over_jdbc, "left_behind": left, "tables": tables}, indent=2))
    if left:
        sys.exit(f"error: processes left after `services stop`: {left}")


if __name__ == "__main__":
    main()
