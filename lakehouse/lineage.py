"""meta.lineage: which table versions each job run read and wrote, with which code version."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Iterator

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from lakehouse.catalog import register_table
from lakehouse.config import PROJECT_DIR, Config
from lakehouse.errors import root_cause
from lakehouse.tables import current_version, read_table

LINEAGE_TABLE = "meta.lineage"

LINEAGE_SCHEMA = T.StructType([
    T.StructField("run_id", T.StringType(), False),
    T.StructField("job", T.StringType(), False),
    T.StructField("env", T.StringType(), True),
    T.StructField("code_version", T.StringType(), True),
    T.StructField("started_at", T.TimestampType(), False),
    T.StructField("ended_at", T.TimestampType(), False),
    T.StructField("status", T.StringType(), False),
    T.StructField("error", T.StringType(), True),
    T.StructField("inputs", T.ArrayType(T.StructType([
        T.StructField("table", T.StringType(), False),
        T.StructField("version", T.LongType(), True),
    ])), False),
    T.StructField("outputs", T.ArrayType(T.StructType([
        T.StructField("table", T.StringType(), False),
        T.StructField("version_before", T.LongType(), True),
        T.StructField("version", T.LongType(), True),
    ])), False),
    T.StructField("metrics", T.MapType(T.StringType(), T.LongType()), False),
])


def code_version() -> str:
    """The git commit of the code (with -dirty for local changes), else the package version."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_DIR, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=PROJECT_DIR, capture_output=True, text=True, timeout=5).stdout
        return sha + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        from lakehouse import __version__
        return f"tidewater-{__version__}"


@dataclass
class JobRun:
    """What one run read and wrote; filled in by the job, saved by `track_run`."""

    spark: SparkSession
    cfg: Config
    job: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    inputs: dict[str, int | None] = field(default_factory=dict)
    outputs: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)

    def read(self, name: str) -> DataFrame:
        """Read a table at its current version and remember that version as an input."""
        ref = self.cfg.table(name)
        version = current_version(self.spark, ref)
        self.inputs[name] = version
        return read_table(self.spark, ref, version)

    def read_or_empty(self, name: str, schema: str) -> DataFrame:
        """Like `read`, but a table not written yet reads as no rows (labels arrive days later)."""
        if current_version(self.spark, self.cfg.table(name)) is None:
            self.inputs[name] = None
            return self.spark.createDataFrame([], schema)
        return self.read(name)

    def writing(self, name: str) -> None:
        """Note an output's version before the job writes it."""
        if name not in self.outputs:
            self.outputs[name] = (current_version(self.spark, self.cfg.table(name)), None)

    def wrote(self, name: str) -> int | None:
        """Note an output's version after the job wrote it (and register it by name)."""
        ref = self.cfg.table(name)
        before = self.outputs.get(name, (None, None))[0]
        after = current_version(self.spark, ref)
        self.outputs[name] = (before, after)
        if after is not None:
            register_table(self.spark, ref)
        return after

    def count(self, metric: str, n: int) -> None:
        self.metrics[metric] = self.metrics.get(metric, 0) + int(n)

    def changed_outputs(self) -> dict[str, int]:
        return {t: v for t, (b, v) in self.outputs.items() if v is not None and v != b}


def _save(run: JobRun, status: str, error: str | None) -> None:
    ended = dt.datetime.now(dt.timezone.utc)
    row = (run.run_id, run.job, run.cfg.env, code_version(), run.started_at, ended, status, error,
           [(t, v) for t, v in run.inputs.items()],
           [(t, b, a) for t, (b, a) in run.outputs.items()],
           run.metrics)
    ref = run.cfg.table(LINEAGE_TABLE)
    run.spark.createDataFrame([row], LINEAGE_SCHEMA).write.format("delta").mode("append").save(ref.path)
    register_table(run.spark, ref)


@contextlib.contextmanager
def track_run(spark: SparkSession, cfg: Config, job: str) -> Iterator[JobRun]:
    """Record a lineage row for the job run inside the block, failed runs included."""
    run = JobRun(spark, cfg, job)
    try:
        yield run
    except BaseException as err:
        _save(run, "failed", root_cause(err))
        raise
    _save(run, "succeeded", None)


def last_successful_inputs(spark: SparkSession, cfg: Config, job: str) -> dict[str, int | None] | None:
    """The input versions of the job's latest successful run, or None if it never ran."""
    ref = cfg.table(LINEAGE_TABLE)
    if current_version(spark, ref) is None:
        return None
    row = (read_table(spark, ref).where(f"job = '{job}' AND status = 'succeeded'")
           .orderBy("ended_at", ascending=False).select("inputs").first())
    return None if row is None else {i["table"]: i["version"] for i in row["inputs"]}


def input_versions(spark: SparkSession, cfg: Config, tables) -> dict[str, int | None]:
    return {t: current_version(spark, cfg.table(t)) for t in tables}


def inputs_unchanged(spark: SparkSession, cfg: Config, job: str, tables) -> bool:
    """True when the job's last successful run read exactly the tables' current versions."""
    return last_successful_inputs(spark, cfg, job) == input_versions(spark, cfg, tables)


def producer_of(spark: SparkSession, cfg: Config, table: str, version: int) -> dict | None:
    """The successful run that wrote `table` at `version` (its first version after the run's start)."""
    ref = cfg.table(LINEAGE_TABLE)
    if current_version(spark, ref) is None:
        return None
    rows = (read_table(spark, ref).where("status = 'succeeded'")
            .selectExpr("*", "explode(outputs) AS o").where(f"o.table = '{table}'")
            .where(f"o.version >= {version} AND coalesce(o.version_before, -1) < {version}")
            .orderBy("ended_at").limit(1).collect())
    if not rows:
        return None
    r = rows[0].asDict(recursive=True)
    r.pop("o")
    return r


def upstream_chain(spark: SparkSession, cfg: Config, table: str, version: int, depth: int = 10) -> dict:
    """The tree of runs behind table@version: its producer, then each input's producer, recursively."""
    node: dict = {"table": table, "version": version, "produced_by": None, "inputs": []}
    run = producer_of(spark, cfg, table, version)
    if run is None or depth == 0:
        return node
    node["produced_by"] = {k: run[k] for k in ("job", "run_id", "code_version", "started_at", "ended_at")}
    node["produced_by"]["metrics"] = run["metrics"]
    for inp in run["inputs"]:
        if inp["version"] is None:
            node["inputs"].append({"table": inp["table"], "version": None, "produced_by": None, "inputs": []})
        else:
            node["inputs"].append(upstream_chain(spark, cfg, inp["table"], inp["version"], depth - 1))
    return node
