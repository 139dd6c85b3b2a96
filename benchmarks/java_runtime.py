"""A fresh driver on Java 25 with an ahead-of-time cache, side by side with the project's Java 17 driver.

    .venv/bin/python benchmarks/java_runtime.py --rows 1000000 [--days 30] [--root DIR] [--pairs 3]
        [--java-home /usr/lib/jvm/temurin-25-jdk-amd64] [--train-rows 20000] [--no-peer] [--json FILE]

A fresh driver spends about a third of the lakehouse stages' CPU loading Spark's classes and
JIT-compiling its code (README, issue 15). Java 25 can keep what a training run loaded, linked and
profiled in an ahead-of-time cache (JEPs 483, 514, 515) that later JVMs map at start. Spark 4.1.4's
Hadoop client (3.4.2) calls `Subject.getSubject`, which Java 24 and later refuse; Hadoop 3.4.3 calls
`Subject.current` instead, so its two client jars (fetched with Maven into <root>/java25/jars) go first on
the Java 25 driver's class path. Nothing here changes how the platform runs: this measures whether it should.

Steps: generate the landing files once; write the cache (the three stages on --train-rows other
transactions in a Java 25 driver that exits normally, as `lakehouse.class_archive` does for Java 17's
archive); then --pairs pairs of fresh processes, alternating the driver as configured (Java 17 and its
class archive) and Java 25 with the cache, each running bronze, silver and gold on a fresh root over
the same landing files. The DuckDB peer then runs once and is verified against the last Java 25 root
(the same rows as the Java 17 driver writes). Prints every run, the means and the ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from lakehouse.class_archive import exit_normally  # noqa: E402
from lakehouse.config import load_config  # noqa: E402
from lakehouse.generator import generate  # noqa: E402
from lakehouse.session import build_session, spark_jars  # noqa: E402

JAVA_HOME = "/usr/lib/jvm/temurin-25-jdk-amd64"
HADOOP = "3.4.3"  # the first Hadoop 3.4 client that no longer calls Subject.getSubject
HADOOP_JARS = ("hadoop-client-api", "hadoop-client-runtime")
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"  # the version pom.xml uses
TRAIN_SEED = 7  # not the generator's default: the training run sees other customers, merchants and ids


def _benchmark():
    """benchmarks/lakehouse.py: its stages and its peer (by path: its name is the package's)."""
    spec = importlib.util.spec_from_file_location("lakehouse_benchmark", Path(__file__).with_name("lakehouse.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def java_major(java_home: Path) -> int:
    """The major version `java -version` reports, or a clear error where there is no JDK."""
    java = java_home / "bin" / "java"
    if not java.is_file():
        sys.exit(f"error: no JDK at {java_home} (hint: pass --java-home, a Java 25 JDK's folder)")
    shown = subprocess.run([str(java), "-version"], capture_output=True, text=True).stderr
    found = re.search(r'version "(\d+)', shown)
    return int(found.group(1)) if found else 0


def hadoop_jars(folder: Path) -> list[str]:
    """Hadoop 3.4.3's client jars, fetched with Maven once."""
    folder.mkdir(parents=True, exist_ok=True)
    jars = [folder / f"{name}-{HADOOP}.jar" for name in HADOOP_JARS]
    for name, jar in zip(HADOOP_JARS, jars):
        if not jar.is_file():
            # Outside the project: its pom sends the dependency plugin's copies to jars/, Spark's class path.
            subprocess.run(["mvn", "-q", "-B", f"{DEPENDENCY_PLUGIN}:copy", f"-Dartifact=org.apache.hadoop:{name}:{HADOOP}",
                            f"-DoutputDirectory={folder}"], cwd=folder, check=True, capture_output=True)
    return [str(j) for j in jars]


def java25_launch(args, work: Path) -> tuple[dict[str, str], list[str]]:
    """The environment and child arguments of a Java 25 driver: its JDK, Hadoop 3.4.3 first on the class
    path, and an empty conf folder (one holding files on the class path keeps a JVM from mapping a cache)."""
    empty = work / "empty-conf"
    empty.mkdir(parents=True, exist_ok=True)
    class_path = hadoop_jars(work / "jars") + spark_jars(load_config("local", root=work))
    env = {**os.environ, "JAVA_HOME": str(args.java_home), "SPARK_CONF_DIR": str(empty)}
    return env, ["--class-path", ":".join(class_path)]


def run_child(root: Path, landing: Path, env: dict[str, str] | None, extra: list[str]) -> dict:
    """Bronze, silver and gold in a fresh process on a fresh root over a copy of `landing`: its figures."""
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(landing, root / "landing")
    done = subprocess.run([sys.executable, __file__, "--child", str(root), *extra],
                          env=env, capture_output=True, text=True)
    last = done.stdout.strip().splitlines()[-1:] if done.stdout.strip() else []
    if done.returncode != 0 or not last or not last[0].startswith("{"):
        raise RuntimeError(f"a driver failed (exit {done.returncode}); its output ends:\n{done.stderr[-3000:]}")
    return json.loads(last[0])


def child(args) -> None:
    """One fresh driver: the stages, timed; with --exit-jvm the JVM then exits normally (the cache is
    written at a normal exit, which PySpark's JVM otherwise does not make)."""
    cfg = load_config("local", root=args.child)
    cfg.spark.driver_java_options.extend(args.java_option)
    if args.class_path:
        cfg.spark.conf["spark.driver.extraClassPath"] = args.class_path
    t = time.perf_counter()
    spark = build_session(cfg)
    start = time.perf_counter() - t
    java = spark.sparkContext._jvm.java.lang.System.getProperty("java.version")
    seconds = _benchmark().run_stages(spark, cfg)
    if args.exit_jvm:
        exit_normally(spark)
    print(json.dumps({"java": java, "start_s": start, "seconds": seconds}))


def train_cache(args, work: Path, env: dict[str, str], extra: list[str]) -> Path:
    """Write the Java 25 driver's cache from the three stages on --train-rows generated transactions."""
    cache = work / "driver.aot"
    cache.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="tidewater-aot-") as scratch:
        landing = Path(scratch) / "landing"
        generate(landing, rows=args.train_rows, days=2, seed=TRAIN_SEED)
        run_child(Path(scratch) / "root", landing, env,
                  [*extra, "--exit-jvm", f"--java-option=-XX:AOTCacheOutput={cache}"])
    if not cache.is_file():
        raise RuntimeError(f"the Java 25 driver wrote no cache at {cache}")
    return cache


def report(runs: list[dict], peer: dict | None) -> dict:
    """Print each run and the means per runtime (and the peer's ratio): the figures as JSON."""
    print(f"{'run':>4} {'driver':<32} {'start s':>8} {'bronze':>7} {'silver':>7} {'gold':>7} {'total':>7}")
    for i, r in enumerate(runs, 1):
        s = r["seconds"]
        print(f"{i:>4} {r['label']:<32} {r['start_s']:>8.1f} {s['bronze']:>7.1f} {s['silver']:>7.1f} "
              f"{s['gold']:>7.1f} {sum(s.values()):>7.1f}")
    means = {}
    for label in dict.fromkeys(r["label"] for r in runs):
        mine = [r for r in runs if r["label"] == label]
        means[label] = {stage: statistics.mean(r["seconds"][stage] for r in mine) for stage in ("bronze", "silver", "gold")}
        means[label]["total"] = sum(means[label].values())
    peer_s = sum(peer["seconds"].values()) if peer else None
    for label, m in means.items():
        ratio = f", {m['total'] / peer_s:.1f}x the DuckDB peer's {peer_s:.2f} s" if peer_s else ""
        print(f"mean {label}: {m['bronze']:.1f} + {m['silver']:.1f} + {m['gold']:.1f} = {m['total']:.1f} s{ratio}")
    return {"runs": runs, "means": means, "peer_s": peer_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="generated transactions (default: 1,000,000)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--root", help="work folder (default: a new temporary folder)")
    parser.add_argument("--pairs", type=int, default=3, help="runs of each driver, alternating (default: 3)")
    parser.add_argument("--java-home", type=Path, default=Path(JAVA_HOME), help=f"a Java 25 JDK (default: {JAVA_HOME})")
    parser.add_argument("--train-rows", type=int, default=20_000,
                        help="transactions the cache's training run refines (default: 20,000)")
    parser.add_argument("--no-peer", action="store_true", help="do not run the DuckDB peer")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--class-path", help=argparse.SUPPRESS)
    parser.add_argument("--java-option", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--exit-jvm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if java_major(args.java_home) < 25:
        sys.exit(f"error: {args.java_home} is not Java 25 or later (hint: the cache's one-step training "
                 "needs Java 25; pass --java-home)")
    root = Path(args.root or tempfile.mkdtemp(prefix="tidewater-java-runtime-"))
    landing = root / "landing"
    if not landing.is_dir():
        print(f"generating {args.rows:,} transactions into {landing}", file=sys.stderr)
        generate(landing, rows=args.rows, days=args.days)
    work = root / "java25"
    env25, extra25 = java25_launch(args, work)
    t = time.perf_counter()
    cache = train_cache(args, work, env25, extra25)
    print(f"Java 25 cache: {cache} ({cache.stat().st_size / 2**20:,.0f} MiB), written in "
          f"{time.perf_counter() - t:.0f} s", file=sys.stderr)
    drivers = [("as configured", None, []),
               ("Java 25 + AOT cache", env25, [*extra25, f"--java-option=-XX:AOTCache={cache}"])]
    runs = []
    for i in range(args.pairs):
        for label, env, extra in drivers:
            figures = run_child(root / "run", landing, env, extra)
            runs.append({"label": f"{label} (Java {figures['java'].split('.')[0]})", **figures})
            print(f"run {len(runs)}: {runs[-1]['label']}: {sum(figures['seconds'].values()):.1f} s", file=sys.stderr)
    # The peer reads the files the last run read, and its tables are checked against that run's.
    peer = None if args.no_peer else _benchmark().run_peer(root / "run" / "landing", root / "run")
    out = {"rows": args.rows, "days": args.days, "train_rows": args.train_rows, "hadoop_on_java25": HADOOP,
           **report(runs, peer), "verification": peer["verification"] if peer else None}
    if peer:
        print(f"peer against the last {runs[-1]['label']} run: {peer['verification']['summary']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    if peer and not peer["verification"]["identical"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
