"""Bronze: land each new file of the landing folder once, raw, with where and when it came from."""

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
from lakehouse.tables import commit_metrics

def with_ingest_metadata(lines: DataFrame, src: SourceConf) -> DataFrame:
    """Raw lines -> bronze rows: payload as received plus _source_file, _batch_id, _ingested_at."""
    path = F.col("_metadata.file_path")
    out = lines.select(
        F.col("value").alias("raw"),
        path.alias("_source_file"),
        F.regexp_extract(path, r"/(batch-[^/]+)/[^/]*$", 1).alias("_batch_id"),
        F.current_timestamp().alias("_ingested_at"),
    )
    if src.format == "csv" and src.header:
        out = out.where(F.col("raw") != F.lit(src.header))
    return out


def ingest_source(spark: SparkSession, cfg: Config, run: JobRun, landing: Path, name: str,
                  src: SourceConf) -> int:
    """Append the source's not-yet-seen files to its bronze table; the checkpoint remembers files."""
    ref = cfg.table(src.bronze)
    run.writing(src.bronze)
    lines = spark.readStream.format("text").load(str(landing / "*" / src.file_glob))
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


def _outputs(cfg: Config) -> dict[str, tuple[str, ...]]:
    return {src.bronze: (f"landing:{name}",) for name, src in cfg.sources.items()}


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
