"""Bronze: land each new file of the landing folder once, raw, with where and when it came from.

Files arrive by the landing protocol (lakehouse.landing): complete, under their final name. A file
that changed after it was ingested is quarantined whole, with a reason, rather than read again in part.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config, SourceConf
from lakehouse.errors import LandingNotFound
from lakehouse.console import progress
from lakehouse.cli_options import option
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun
from lakehouse.quarantine import append_quarantine
from lakehouse.tables import commit_metrics, current_version, read_table

# The file source skips files more than `maxFileAge` older than the newest it has seen (a week by
# default): a backfill copied with its original times would be dropped in silence. Ingest takes every
# file once, however old; the checkpoint then remembers each (a path and a time per file).
MAX_FILE_AGE = "36500d"
CHANGED = "landing_file_changed"

def with_ingest_metadata(lines: DataFrame, src: SourceConf) -> DataFrame:
    """Raw lines -> bronze rows: payload as received plus _source_file, _batch_id, _ingested_at."""
    path = F.col("_metadata.file_path")
    out = lines.select(
        F.col("value").alias("raw"),
        path.alias("_source_file"),
        F.regexp_extract(path, r"/(batch-[^/]+)/[^/]*$", 1).alias("_batch_id"),
        F.current_timestamp().alias("_ingested_at"),
        F.col("_metadata.file_size").alias("_file_size"),
        F.col("_metadata.file_modification_time").alias("_file_modified"),
    )
    if src.format == "csv" and src.header:
        out = out.where(F.col("raw") != F.lit(src.header))
    return out


def ingest_source(spark: SparkSession, cfg: Config, run: JobRun, landing: Path, name: str,
                  src: SourceConf) -> int:
    """Append the source's not-yet-seen files to its bronze table; the checkpoint remembers files."""
    ref = cfg.table(src.bronze)
    run.writing(src.bronze)
    lines = spark.readStream.format("text").option("maxFileAge", MAX_FILE_AGE).load(str(landing / "*" / src.file_glob))
    query = (with_ingest_metadata(lines, src).writeStream.format("delta")
             .queryName(f"{run.job}_{name}")
             .option("checkpointLocation", str(cfg.checkpoint_dir(run.job, name)))
             .trigger(availableNow=True).start(ref.path))
    query.awaitTermination()
    before, after = run.outputs[src.bronze][0], run.wrote(src.bronze)
    first = 0 if before is None else before + 1
    rows = sum(commit_metrics(spark, ref, v).get("numOutputRows", 0)
               for v in range(first, (after if after is not None else -1) + 1))
    run.count(f"{name}_rows", rows)
    return rows


def quarantine_changed_files(spark: SparkSession, cfg: Config, run: JobRun, landing: Path, name: str,
                             src: SourceConf) -> int:
    """Files whose size or time differ from when they were ingested: their whole content, once, to
    quarantine.<entity> with reason landing_file_changed. Bronze keeps what it read; nothing is read twice."""
    ref = cfg.table(src.bronze)
    if run.outputs[src.bronze][-1] is None:
        return 0
    listed = (spark.read.format("binaryFile").load(str(landing / "*" / src.file_glob))
              .select(F.col("path").alias("_source_file"), F.col("length").alias("size"),
                      F.col("modificationTime").alias("modified")))
    ingested = (read_table(spark, ref).where(F.col("_file_size").isNotNull())
                .select("_source_file", "_file_size", "_file_modified").distinct())
    changed = (listed.join(ingested, "_source_file")
               .where((F.col("size") != F.col("_file_size")) | (F.col("modified") != F.col("_file_modified")))
               .select("_source_file", F.format_string("ingested at %d bytes (%s); now %d bytes (%s)",
                                                       "_file_size", F.col("_file_modified").cast("string"),
                                                       "size", F.col("modified").cast("string")).alias("detail"))
               .collect())
    if not changed:
        return 0
    target = f"quarantine.{name}"
    done = set()
    if current_version(spark, cfg.table(target)) is not None:
        done = {(r["_source_file"], r["detail"]) for r in read_table(spark, cfg.table(target))
                .where(F.col("reason") == CHANGED).select("_source_file", "detail").distinct().collect()}
    todo = [r for r in changed if (r["_source_file"], r["detail"]) not in done]
    for r in todo:
        rows = (with_ingest_metadata(spark.read.format("text").load(r["_source_file"]), src)
                .withColumn("reason", F.lit(CHANGED)).withColumn("detail", F.lit(r["detail"])))
        run.writing(target)
        append_quarantine(spark, cfg, f"silver.{name}", rows, run_id=run.run_id, source_table=src.bronze)
        run.wrote(target)
        progress(f"{run.job}: {name}: {r['_source_file']} changed after it was ingested ({r['detail']}): "
                 f"its whole content is in {target} (reason {CHANGED}); land a corrected file under a new "
                 f"name, or `tidewater quarantine replay silver.{name} --reason {CHANGED}`")
    run.count(f"{name}_changed_files", len(todo))
    return len(todo)


def _outputs(cfg: Config) -> dict[str, tuple[str, ...]]:
    """Each source's bronze table, and its entity's quarantine (for files that changed after ingest)."""
    return {table: (f"landing:{name}",) for name, src in cfg.sources.items()
            for table in (src.bronze, f"quarantine.{name}") if table in cfg.table_names()}


@job(name="ingest_bronze",
     summary="Append new landing files to the bronze tables, each file exactly once.",
     inputs=lambda cfg: [f"landing:{name}" for name in cfg.sources],
     outputs=_outputs,
     options=[option("--landing", help="landing folder (default: <root>/landing)")],
     skip_unchanged=False)  # new files, not table versions, are its input: the checkpoint knows which
def ingest_bronze(run: JobRun, args) -> None:
    """Ingest every configured source from the landing folder into its bronze table."""
    cfg = run.cfg
    landing_dir = Path(args.landing) if args.landing else cfg.landing_dir
    if not landing_dir.is_dir():
        raise LandingNotFound(f"landing folder {landing_dir} does not exist",
                              hint="run `tidewater generate` first, or pass --root/--landing")
    for name, src in cfg.sources.items():
        run.uses(f"landing:{name}")
        rows = ingest_source(run.spark, cfg, run, landing_dir, name, src)
        progress(f"{run.job}: {name}: {rows} new rows -> {src.bronze}")
        quarantine_changed_files(run.spark, cfg, run, landing_dir, name, src)
