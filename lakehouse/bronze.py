"""Bronze: land each new file of the landing folder (or message of a Kafka topic) once, raw, with
where and when it came from.

Files arrive by the landing protocol (lakehouse.landing): complete, under their final name. A file
that changed after it was ingested is quarantined whole, with a reason, rather than read again in part.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from urllib.parse import unquote

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql import functions as F

from lakehouse import kafka_topic
from lakehouse.config import Config, SourceConf
from lakehouse.errors import LandingNotFound
from lakehouse.console import progress
from lakehouse.cli_options import option
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun
from lakehouse.quarantine import append_quarantine
from lakehouse.tables import commit_metrics, read_table

# The file source skips files more than `maxFileAge` older than the newest it has seen (a week by
# default): a backfill copied with its original times would be dropped in silence. Ingest takes every
# file once, however old; the checkpoint then remembers each (a path and a time per file).
MAX_FILE_AGE = "36500d"
CHANGED = "landing_file_changed"

def batch_of(path: Column) -> Column:
    """The arrival batch of a landing file: the `batch-*` folder holding it, else "".

    Two string cuts per row: a regular expression here took an eighth of bronze's CPU (JFR, 10M)."""
    folder = F.substring_index(F.substring_index(path, "/", -2), "/", 1)
    return F.when(folder.startswith("batch-") & (F.length(folder) > len("batch-")), folder).otherwise(F.lit(""))


def with_ingest_metadata(lines: DataFrame, src: SourceConf) -> DataFrame:
    """Raw lines -> bronze rows: payload as received plus _source_file, _batch_id, _ingested_at."""
    path = F.col("_metadata.file_path")
    out = lines.select(
        F.col("value").alias("raw"),
        path.alias("_source_file"),
        batch_of(path).alias("_batch_id"),
        F.current_timestamp().alias("_ingested_at"),
        F.col("_metadata.file_size").alias("_file_size"),
        F.col("_metadata.file_modification_time").alias("_file_modified"),
    )
    if src.format == "csv" and src.header:
        out = out.where(F.col("raw") != F.lit(src.header))
    return out


def source_stream(spark: SparkSession, cfg: Config, landing: Path, name: str, src: SourceConf) -> DataFrame:
    """The source's rows as bronze holds them: landing files, or the messages of its Kafka topic."""
    if src.kind == "kafka":
        kafka_topic.end_offsets(cfg, kafka_topic.topic_of(name, src))  # a clear error when the broker or topic is missing
        return kafka_topic.with_message_metadata(kafka_topic.read_topic(spark, cfg, name, src))
    lines = spark.readStream.format("text").option("maxFileAge", MAX_FILE_AGE).load(str(landing / "*" / src.file_glob))
    return with_ingest_metadata(lines, src)


def checkpoint_name(name: str, src: SourceConf) -> str:
    """A source's stream checkpoint: one per kind (and topic), so a source that moves from landing
    files to a topic starts a stream of its own instead of resuming the files' one (whose offsets a
    Kafka source cannot read)."""
    return name if src.kind == "files" else f"{name}-kafka-{kafka_topic.topic_of(name, src)}"


def start_source(spark: SparkSession, cfg: Config, run: JobRun, landing: Path, name: str,
                 src: SourceConf) -> StreamingQuery:
    """Start appending the source's not-yet-seen files or messages to its bronze table, exactly once:
    the checkpoint remembers files and offsets, and Delta's sink commits each micro-batch once."""
    run.writing(src.bronze)
    return (source_stream(spark, cfg, landing, name, src).writeStream.format("delta")
            .option("mergeSchema", "true")  # bronze written before _file_size/_file_modified gains them
            .queryName(f"{run.job}_{name}")
            .option("checkpointLocation", str(cfg.checkpoint_dir(run.job, checkpoint_name(name, src))))
            .trigger(availableNow=True).start(cfg.table(src.bronze).path))


def finish_source(spark: SparkSession, cfg: Config, run: JobRun, name: str, src: SourceConf,
                  query: StreamingQuery) -> int:
    """Wait for the source's stream to take everything available; the rows it appended."""
    query.awaitTermination()
    before, after = run.outputs[src.bronze][0], run.wrote(src.bronze)
    first = 0 if before is None else before + 1
    rows = sum(commit_metrics(spark, cfg.table(src.bronze), v).get("numOutputRows", 0)
               for v in range(first, (after if after is not None else -1) + 1))
    run.count(f"{name}_rows", rows)
    return rows


def _ms(stamp) -> int:
    return round(stamp.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _recorded(spark: SparkSession, cfg: Config, table: str, columns: list[str]) -> list[dict]:
    """Each distinct combination of a few columns, read in Python (delta-rs) where it can: no Spark job per ingest."""
    from lakehouse import delta_reader

    try:
        return delta_reader.distinct_rows(cfg, table, columns)
    except delta_reader.NeedsSpark:
        return [r.asDict() for r in read_table(spark, cfg.table(table)).select(*columns).distinct().collect()]


def changed_files(spark: SparkSession, cfg: Config, landing: Path, src: SourceConf) -> list[tuple[str, str]]:
    """(file as bronze names it, what changed) for landing files whose size or time differ from when
    ingest read them. The landing folder is listed here; bronze's record of each file is read in Python."""
    seen: dict[str, list[dict]] = {}
    for r in _recorded(spark, cfg, src.bronze, ["_source_file", "_file_size", "_file_modified"]):
        if r["_file_size"] is not None:  # rows ingested before bronze recorded sizes have none
            seen.setdefault(unquote(r["_source_file"].removeprefix("file:")), []).append(r)
    out = []
    for path in sorted(landing.glob(f"*/{src.file_glob}")):
        records = seen.get(str(path.resolve()))
        if not records:
            continue  # not ingested yet: the stream takes it
        st = path.stat()
        size, ms = st.st_size, st.st_mtime_ns // 1_000_000
        if any(r["_file_size"] == size and _ms(r["_file_modified"]) == ms for r in records):
            continue
        r = records[-1]
        out.append((r["_source_file"], f"ingested at {r['_file_size']} bytes ({_when(_ms(r['_file_modified']))}); "
                                       f"now {size} bytes ({_when(ms)})"))
    return out


def quarantine_changed_files(spark: SparkSession, cfg: Config, run: JobRun, landing: Path, name: str,
                             src: SourceConf) -> int:
    """Files whose size or time differ from when they were ingested: their whole content, once, to
    quarantine.<entity> with reason landing_file_changed. Bronze keeps what it read; nothing is read twice."""
    if run.outputs[src.bronze][-1] is None or src.kind != "files":
        return 0
    changed = changed_files(spark, cfg, landing, src)
    if not changed:
        return 0
    target = f"quarantine.{name}"
    done = {(r["_source_file"], r["detail"]) for r in _recorded(spark, cfg, target, ["_source_file", "reason", "detail"])
            if r["reason"] == CHANGED}
    todo = [(file, detail) for file, detail in changed if (file, detail) not in done]
    for file, detail in todo:
        rows = (with_ingest_metadata(spark.read.format("text").load(file), src)
                .withColumn("reason", F.lit(CHANGED)).withColumn("detail", F.lit(detail)))
        run.writing(target)
        append_quarantine(spark, cfg, f"silver.{name}", rows, run_id=run.run_id, source_table=src.bronze)
        run.wrote(target)
        progress(f"{run.job}: {name}: {file} changed after it was ingested ({detail}): its whole content "
                 f"is in {target} (reason {CHANGED}); land a corrected file under a new name, or "
                 f"`tidewater quarantine replay silver.{name} --reason {CHANGED}`")
    run.count(f"{name}_changed_files", len(todo))
    return len(todo)


def _outputs(cfg: Config) -> dict[str, tuple[str, ...]]:
    """Each source's bronze table, and its entity's quarantine (for files that changed after ingest)."""
    return {table: (f"landing:{name}",) for name, src in cfg.sources.items()
            for table in (src.bronze, f"quarantine.{name}") if table in cfg.table_names()}


@job(name="ingest_bronze",
     summary="Append new landing files and Kafka messages to the bronze tables, each exactly once.",
     inputs=lambda cfg: [f"landing:{name}" for name in cfg.sources],
     outputs=_outputs,
     options=[option("--landing", help="landing folder (default: <root>/landing)")],
     skip_unchanged=False)  # new files, not table versions, are its input: the checkpoint knows which
def ingest_bronze(run: JobRun, args) -> None:
    """Ingest every configured source (landing folder or Kafka topic) into its bronze table."""
    cfg = run.cfg
    landing_dir = Path(args.landing) if args.landing else cfg.landing_dir
    if not landing_dir.is_dir():
        raise LandingNotFound(f"landing folder {landing_dir} does not exist",
                              hint="run `tidewater generate` first, or pass --root/--landing")
    # The sources' streams run side by side: one's planning and commits overlap another's tasks.
    started: list[tuple[str, SourceConf, StreamingQuery]] = []
    try:
        for name, src in cfg.sources.items():
            run.uses(f"landing:{name}")
            started.append((name, src, start_source(run.spark, cfg, run, landing_dir, name, src)))
        for name, src, query in started:
            rows = finish_source(run.spark, cfg, run, name, src, query)
            progress(f"{run.job}: {name}: {rows} new rows -> {src.bronze}")
            quarantine_changed_files(run.spark, cfg, run, landing_dir, name, src)
    finally:
        for _, _, query in started:
            with contextlib.suppress(Exception):  # the error that stopped the run is the one to report
                if query.isActive:
                    query.stop()
