"""Write the driver JVM's class archive (`make setup`): a small bronze -> silver -> gold run in a JVM
that saves, as it exits, every class it loaded (Java's dynamic class-data sharing).

Every job is a JVM of its own, and each loaded some 30,000 classes from their jars, parsing and
verifying each. A driver that maps them from the archive instead starts in about half the time and
reaches its first rows sooner (benchmarks/lakehouse.py, README). The archive holds the classes of the
jars and Java it was written with: after an update the JVM ignores it, with a warning in its log,
until `make setup` writes it again.

    .venv/bin/python -m lakehouse.class_archive [--rows 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

from py4j.protocol import Py4JError
from pyspark import SparkContext

from lakehouse.bronze import ingest_bronze
from lakehouse.config import load_config
from lakehouse.console import progress
from lakehouse.errors import SetupIncomplete
from lakehouse.generator import generate
from lakehouse.gold import build_gold
from lakehouse.session import archive_class_path, build_session, class_archive
from lakehouse.silver import refine_silver


def exit_normally(spark) -> None:
    """Stop the session and end its driver JVM with a normal exit, at which Java writes a class archive
    or an ahead-of-time cache (PySpark's JVM is otherwise killed, which writes neither)."""
    gateway = SparkContext._gateway
    spark.stop()
    with contextlib.suppress(Py4JError, ConnectionError):  # the JVM exits as it answers: no reply
        gateway.jvm.java.lang.System.exit(0)
    gateway.proc.wait(timeout=600)


def write_archive(rows: int, env: str = "local") -> Path:
    """Run the lakehouse stages on `rows` generated transactions in a JVM that writes the archive as it exits."""
    with tempfile.TemporaryDirectory(prefix="tidewater-class-archive-") as scratch:
        cfg = load_config(env, root=scratch)
        if archive_class_path(cfg, cfg.spark.catalog) is None:
            raise SetupIncomplete(f"the {env} env's driver class path cannot map a class archive",
                                  hint="write it with an env whose catalog is in-memory (the default: local)")
        archive = class_archive(cfg)
        partial = archive.with_name(archive.name + ".partial")
        partial.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)  # a driver must not map the old one while this one is written
        started = time.perf_counter()
        generate(cfg.landing_dir, rows=rows, days=2)
        spark = build_session(cfg, write_class_archive=partial)
        for stage in (ingest_bronze, refine_silver, build_gold):
            stage(spark, cfg)
        exit_normally(spark)
        if not partial.is_file():
            log = (cfg.root / "logs" / "spark-driver.log").read_text(errors="replace").splitlines()
            raise SetupIncomplete(f"the driver JVM wrote no class archive at {partial}; its log ends: "
                                  + " | ".join(log[-3:]), hint="run `make setup` again")
        partial.rename(archive)
    progress(f"class archive: {archive} ({archive.stat().st_size / 2**20:,.0f} MiB) "
             f"in {time.perf_counter() - started:.0f} s")
    return archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="transactions the run refines (default: 2000)")
    parser.add_argument("--env", default="local", help="the env whose driver class path it is for (default: local)")
    args = parser.parse_args()
    write_archive(args.rows, args.env)


if __name__ == "__main__":
    main()
