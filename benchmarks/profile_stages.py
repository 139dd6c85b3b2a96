"""Where the lakehouse stages' time goes: each stage's Spark SQL executions and tasks, from Spark's event log.

    .venv/bin/python benchmarks/profile_stages.py --rows 300000 [--days 30] [--root DIR] [--top 12] [--jfr]
        [--cpu] [--warm-up ROWS] [--landing DIR]

Runs bronze, silver and gold once on a fresh root (as benchmarks/lakehouse.py does, in a fresh driver
or with --warm-up in one that has run them before) with the event log on, then prints per stage its
wall time, the time no Spark query was running (Python, planning, commits), and its slowest SQL
executions with what started each (the line of our code, or inside a stream the stream's name), their
tasks' CPU, GC and spill. With --jfr the driver JVM also runs Java
Flight Recorder, and each stage gets the share of its JVM samples per kind of work (JSON parsing,
Parquet writing, the batch cache, ...) and its hottest methods: where the CPU goes inside a query,
which the event log cannot say. With --cpu each stage also gets where the machine's CPU went: the
driver JVM's task threads, JIT compiler threads and GC apart from the rest, Python's own, and how many
classes Spark generated and compiled. Profile before changing anything.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from lakehouse.bronze import ingest_bronze  # noqa: E402
from lakehouse.config import load_config  # noqa: E402
from lakehouse.generator import generate  # noqa: E402
from lakehouse.gold import build_gold  # noqa: E402
from lakehouse.session import build_session  # noqa: E402
from lakehouse.silver import refine_silver  # noqa: E402

STAGES = (("bronze", ingest_bronze), ("silver", refine_silver), ("gold", build_gold))
# A JVM sample counts for the first kind of work any frame of its stack names (frames are matched by
# "Class.method" substrings, most specific kinds first).
WORK_KINDS = (
    ("JSON parsing", ("CreateJacksonParser", "JacksonParser", "jsonObjectKeys", "JsonToStructs")),
    ("PII tokens (HMAC)", ("PiiToken",)),
    ("Parquet writing", ("ParquetWriteSupport", "ColumnWriter", "ValuesWriter", "FileFormatDataWriter",
                         "ParquetOutputWriter", "DeltaTaskStatisticsTracker", "Binary.equals")),
    ("Parquet reading", ("VectorizedParquetRecordReader", "ParquetDictionary", "VectorizedColumnReader")),
    ("batch cache building", ("CachedRDDBuilder", "DefaultCachedBatchSerializer$$anon$1.", "ColumnStats",
                              "ColumnBuilder")),
    ("batch cache reading", ("DefaultCachedBatchSerializer$$anon$2", "ColumnAccessor")),
    ("sorting", ("UnsafeExternalRowSorter", "UnsafeExternalSorter", "UnsafeInMemorySorter")),
    ("window functions", ("WindowEvaluatorFactory",)),
    ("shuffle", ("ShuffleWriter", "ShuffleExternalSorter", "DiskBlockObjectWriter", "ShuffleBlockFetcherIterator")),
    ("aggregation", ("hashAgg", "HashAggregate", "ObjectHashAggregate")),
    ("Delta log", ("Snapshot", "DeltaLog", "Checkpoints", "OptimisticTransaction")),
    ("planning, codegen", ("RuleExecutor", "QueryPlanner", "CodeGenerator", "UnitCompiler")),
    ("py4j calls", ("ClientServerConnection", "GatewayConnection")),
)
# A driver JVM thread counts for the first kind whose name prefix it has (Linux keeps 15 characters).
THREAD_KINDS = (("tasks", "Executor task l"), ("JIT C2", "C2 CompilerThre"), ("JIT C1", "C1 CompilerThre"),
                ("GC", "GC Thread"))
TICKS = os.sysconf("SC_CLK_TCK")


def _stat_cpu(stat: str) -> float:
    """User + system seconds from a /proc .../stat line (fields after the command's closing parenthesis)."""
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_snapshot(spark, jvm_pid: int) -> dict:
    """The machine's busy CPU seconds, the driver JVM's (in all and per live thread), Python's, and the
    count of classes Spark's code generator compiled: what `cpu_report` subtracts between two moments."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    threads = {}
    for task in Path(f"/proc/{jvm_pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended while we looked
            continue
        threads[task.name] = (stat[stat.index("(") + 1:stat.rindex(")")], _stat_cpu(stat))
    codegen = spark._jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()
    t = os.times()
    return {"machine": (sum(ticks) - ticks[3] - ticks[4]) / TICKS,
            "jvm": _stat_cpu(Path(f"/proc/{jvm_pid}/stat").read_text()), "threads": threads,
            "python": t.user + t.system, "generated": codegen.getCount()}


def cpu_report(wall: float, before: dict, after: dict) -> None:
    """Where a stage's CPU went. A JVM thread that ended during the stage (a stream's own thread) is
    no longer listed, but its time is in the JVM's total: it lands in "rest" (planning, streams, commits)."""
    kinds = Counter()
    for tid, (name, cpu) in after["threads"].items():
        kind = next((k for k, prefix in THREAD_KINDS if name.startswith(prefix)), None)
        if kind:
            kinds[kind] += cpu - before["threads"].get(tid, (name, 0.0))[1]
    jvm = after["jvm"] - before["jvm"]
    machine = after["machine"] - before["machine"]
    print(f"  CPU: machine {machine:.1f} CPU-s busy ({machine / wall:.2f} cores of {os.cpu_count()}); driver JVM "
          f"{jvm:.1f}: " + ", ".join(f"{k} {kinds[k]:.1f}" for k in ("tasks", "JIT C2", "JIT C1", "GC"))
          + f", rest {jvm - sum(kinds.values()):.1f}; Python {after['python'] - before['python']:.1f}; "
          f"classes generated and compiled {after['generated'] - before['generated']}")


def _benchmark():
    """benchmarks/lakehouse.py, whose warm-up --warm-up runs (by path: its name is the package's)."""
    spec = importlib.util.spec_from_file_location("lakehouse_benchmark", Path(__file__).with_name("lakehouse.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def events(log_dir: Path) -> list[dict]:
    """Every event of the one application logged under log_dir (a file, or a rolling folder of files)."""
    app = sorted(log_dir.iterdir())[-1]
    files = sorted(app.glob("events_*")) if app.is_dir() else [app]
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def executions(log: list[dict]) -> list[dict]:
    """SQL executions with start, end, what started them, and their tasks' totals."""
    started, stage_of, tasks = {}, {}, defaultdict(Counter)
    for e in log:
        kind = e["Event"]
        if kind.endswith("SQLExecutionStart"):
            started[e["executionId"]] = e
        elif kind == "SparkListenerJobStart":
            for stage in e["Stage IDs"]:
                stage_of[stage] = e.get("Properties", {}).get("spark.sql.execution.id")
        elif kind == "SparkListenerTaskEnd":
            m, c = e.get("Task Metrics") or {}, tasks[stage_of.get(e["Stage ID"])]
            c["tasks"] += 1
            c["cpu_s"] += m.get("Executor CPU Time", 0) / 1e9
            c["gc_s"] += m.get("JVM GC Time", 0) / 1e3
            c["spill_mib"] += m.get("Disk Bytes Spilled", 0) / 2**20
    out = []
    for e in log:
        if e["Event"].endswith("SQLExecutionEnd") and e["executionId"] in started:
            s = started[e["executionId"]]
            what = (s.get("description") or "").splitlines()[:1] or [""]
            out.append({"id": e["executionId"], "start": s["time"] / 1e3, "end": e["time"] / 1e3,
                        "what": what[0][:90], **tasks.get(str(e["executionId"]), Counter())})
    # A streaming micro-batch (foreachBatch) is an execution of its own around the queries it runs:
    # show those, not the wrapper (it has no tasks of its own).
    return [r for r in out if r.get("tasks") or not any(
        o is not r and r["start"] <= o["start"] and o["end"] <= r["end"] for o in out)]


def report(name: str, start: float, end: float, runs: list[dict], top: int) -> None:
    mine = [r for r in runs if start <= r["start"] <= end]
    busy, until = 0.0, start
    for r in sorted(mine, key=lambda r: r["start"]):  # executions nest: count covered time once
        busy += max(0.0, r["end"] - max(r["start"], until))
        until = max(until, r["end"])
    print(f"\n{name}: {end - start:.1f} s wall, {len(mine)} SQL executions, "
          f"{end - start - busy:.1f} s with none running")
    print(f"  {'s':>6} {'CPU s':>6} {'GC s':>5} {'spill MiB':>9}  started by")
    for r in sorted(mine, key=lambda r: r["start"] - r["end"])[:top]:
        print(f"  {r['end'] - r['start']:6.1f} {r.get('cpu_s', 0):6.1f} {r.get('gc_s', 0):5.1f} "
              f"{r.get('spill_mib', 0):9.0f}  {r['what']}")


def jvm_samples(recording: Path) -> list[tuple[float, list[str]]]:
    """(seconds since local midnight, as `jfr print` shows times; frames leaf first as "Class.method")
    of each JFR execution sample."""
    text = subprocess.run(["jfr", "print", "--events", "jdk.ExecutionSample", "--stack-depth", "64",
                           str(recording)], check=True, capture_output=True, text=True).stdout
    out, at, frames = [], 0.0, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("startTime = "):
            h, m, sec = line.split()[2].split(":")
            at = int(h) * 3600 + int(m) * 60 + float(sec)
        elif line == "stackTrace = [":
            frames = []
        elif frames is not None and line == "]":
            out.append((at, frames))
            frames = None
        elif frames is not None and line != "...":
            frames.append(".".join(line.split("(", 1)[0].rsplit(".", 2)[-2:]))
    return out


def report_jvm(name: str, start: float, end: float, samples: list[tuple[float, list[str]]], top: int) -> None:
    """The stage's JVM samples per kind of work, and its hottest methods (the sampled frame itself)."""
    def of_day(t: float) -> float:  # local time: the JVM's zone, which is this process's
        d = dt.datetime.fromtimestamp(t)
        return d.hour * 3600 + d.minute * 60 + d.second + d.microsecond / 1e6
    lo, hi = of_day(start), of_day(end)
    mine = [frames for at, frames in samples if lo <= at <= hi and frames]
    if not mine:
        return
    kinds, methods = Counter(), Counter()
    for frames in mine:
        stack = " ".join(frames)
        kinds[next((kind for kind, marks in WORK_KINDS if any(m in stack for m in marks)), "other")] += 1
        methods[frames[0]] += 1
    print(f"  JVM samples ({len(mine)}), by kind of work: " +
          ", ".join(f"{kind} {n / len(mine):.0%}" for kind, n in kinds.most_common()))
    print("  hottest methods: " + ", ".join(f"{m} {n / len(mine):.1%}" for m, n in methods.most_common(top)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--root", help="storage root (default: a new temporary folder)")
    parser.add_argument("--top", type=int, default=12, help="slowest executions shown per stage")
    parser.add_argument("--landing", help="copy this landing folder (a generated one) instead of generating rows")
    parser.add_argument("--jfr", action="store_true",
                        help="also sample the driver JVM with Java Flight Recorder and show where its CPU went")
    parser.add_argument("--warm-up", type=int, default=0, metavar="ROWS",
                        help="first run the stages in the same driver on ROWS other transactions (another seed, "
                             "a root of their own), as benchmarks/lakehouse.py --warm-up does (default: 0, a fresh driver)")
    parser.add_argument("--cpu", action="store_true",
                        help="also show each stage's CPU seconds: the driver JVM's tasks, JIT compilers and GC, "
                             "Python, and the machine's")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="tidewater-profile-"))
    cfg = load_config("local", root=root)
    log_dir = root / "eventlog"
    log_dir.mkdir(parents=True, exist_ok=True)
    cfg.spark.conf.update({"spark.eventLog.enabled": "true", "spark.eventLog.dir": str(log_dir),
                           "spark.eventLog.compress": "false"})
    if args.jfr:
        cfg.spark.driver_java_options.append("-XX:StartFlightRecording=settings=profile")
    if args.landing:  # profiles of one change against another read the same files
        shutil.copytree(args.landing, cfg.landing_dir)
    else:
        generate(cfg.landing_dir, rows=args.rows, days=args.days)
    spark = build_session(cfg)
    jvm_pid = spark.sparkContext._gateway.proc.pid
    if args.warm_up:
        _benchmark().warm_up(spark, root / "warm-up", args.warm_up, args.days)
    spans, cpu = [], {}
    for name, stage in STAGES:
        before = cpu_snapshot(spark, jvm_pid) if args.cpu else None
        t = time.time()
        stage(spark, cfg)
        spans.append((name, t, time.time()))
        if args.cpu:
            cpu[name] = (before, cpu_snapshot(spark, jvm_pid))
    samples = []
    if args.jfr:  # the driver JVM does not exit normally: ask it for the recording while it runs
        recording = root / "driver.jfr"
        subprocess.run(["jcmd", str(jvm_pid), "JFR.dump", f"filename={recording}"], check=True, capture_output=True)
        samples = jvm_samples(recording)
    spark.stop()  # flushes the event log
    runs = executions(events(log_dir))
    for name, start, end in spans:
        report(name, start, end, runs, args.top)
        if name in cpu:
            cpu_report(end - start, *cpu[name])
        report_jvm(name, start, end, samples, args.top)


if __name__ == "__main__":
    main()
