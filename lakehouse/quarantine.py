"""quarantine.<table>: every row a job refused, as received, with the reason and where it came from."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.refine import QUARANTINE_COLUMNS


def as_quarantine_rows(df: DataFrame) -> DataFrame:
    """Shape any rejected rows for quarantine: rows without a raw payload keep their JSON."""
    if "raw" not in df.columns:
        payload = [c for c in df.columns if c not in ("reason", "detail")]
        df = df.withColumn("raw", F.to_json(F.struct(*payload)))
    for meta, kind in (("_source_file", "string"), ("_batch_id", "string"), ("_ingested_at", "timestamp")):
        if meta not in df.columns:
            df = df.withColumn(meta, F.lit(None).cast(kind))
    return df.select(*QUARANTINE_COLUMNS)


def append_quarantine(spark: SparkSession, cfg: Config, target: str, rows: DataFrame, *, run_id: str,
                      source_table: str, txn: tuple[str, int] | None = None) -> None:
    """Append rejected rows to quarantine.<short name of target>.

    `txn` = (app id, version) makes the append idempotent: Delta skips a version it already has,
    so a replayed streaming micro-batch does not quarantine its rows twice.
    """
    ref = cfg.table(f"quarantine.{target.split('.', 1)[1]}")
    writer = (as_quarantine_rows(rows)
              .withColumn("quarantine_id", F.expr("uuid()"))
              .withColumn("source_table", F.lit(source_table))
              .withColumn("run_id", F.lit(run_id))
              .withColumn("quarantined_at", F.current_timestamp())
              .withColumn("replayed_at", F.lit(None).cast("timestamp"))
              .withColumn("replay_run_id", F.lit(None).cast("string"))
              .write.format("delta").mode("append"))
    if txn is not None:
        writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
    writer.save(ref.path)
