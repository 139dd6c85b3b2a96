"""quarantine.<table>: every row a job refused, as received, with the reason and where it came from."""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config, TableRef
from lakehouse.delta_reader import delta_exists
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


def quarantine_ref(cfg: Config, target: str) -> TableRef:
    return cfg.table(f"quarantine.{target.split('.', 1)[1]}")


def quarantine_rows(rows: DataFrame, *, run_id: str, source_table: str) -> DataFrame:
    """Rejected rows as the quarantine table holds them: a fresh id each, not replayed yet."""
    return (as_quarantine_rows(rows)
            .withColumn("quarantine_id", F.expr("uuid()"))
            .withColumn("source_table", F.lit(source_table))
            .withColumn("run_id", F.lit(run_id))
            .withColumn("quarantined_at", F.current_timestamp())
            .withColumn("replayed_at", F.lit(None).cast("timestamp"))
            .withColumn("replay_run_id", F.lit(None).cast("string")))


def append_quarantine(spark: SparkSession, cfg: Config, target: str, rows: DataFrame, *, run_id: str,
                      source_table: str, txn: tuple[str, int] | None = None) -> None:
    """Append rejected rows to quarantine.<short name of target>.

    `txn` = (app id, version) makes the append idempotent: Delta skips a version it already has,
    so a replayed batch (silver's, a stream's micro-batch) does not quarantine its rows twice.
    """
    writer = quarantine_rows(rows, run_id=run_id, source_table=source_table).write.format("delta").mode("append")
    if txn is not None:
        writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
    writer.save(quarantine_ref(cfg, target).path)


def quarantine_once(spark: SparkSession, cfg: Config, target: str, rows: DataFrame, *, run_id: str,
                    source_table: str) -> None:
    """Quarantine rejected rows that quarantine does not hold yet for the same source and reason.

    For tables rebuilt in full (gold): a rebuild rejects the same rows again, and a rebuild killed
    half way is run again; either way each rejected row is in quarantine once.
    """
    ref = quarantine_ref(cfg, target)
    fresh = quarantine_rows(rows, run_id=run_id, source_table=source_table).dropDuplicates(["raw", "reason"])
    if not delta_exists(ref.path):
        fresh.write.format("delta").mode("append").save(ref.path)
        return
    (DeltaTable.forPath(spark, ref.path).alias("t")
     .merge(fresh.alias("s"), "t.source_table = s.source_table AND t.reason = s.reason AND t.raw = s.raw")
     .whenNotMatchedInsertAll()
     .execute())


def settle_replay(spark: SparkSession, cfg: Config, target: str, replayed: DataFrame, refused: DataFrame, *,
                  run_id: str, source_table: str) -> None:
    """Mark the replayed quarantine rows and quarantine what still fails, in one Delta commit.

    Two commits (append, then mark) leave a window: a replay killed between them finds the new
    rows *and* the old ones unreplayed, and the next replay quarantines both again. One MERGE has
    no such window; what the replay put into silver before it is keyed, so a rerun adds nothing.
    """
    marks = replayed.select("quarantine_id", F.lit(True).alias("_mark"))
    fresh = quarantine_rows(refused, run_id=run_id, source_table=source_table)
    columns = fresh.columns
    source = fresh.withColumn("_mark", F.lit(False)).unionByName(marks, allowMissingColumns=True).localCheckpoint()
    (DeltaTable.forPath(spark, quarantine_ref(cfg, target).path).alias("t")
     .merge(source.alias("s"), "s._mark AND t.quarantine_id = s.quarantine_id")
     .whenMatchedUpdate(set={"replayed_at": F.current_timestamp(), "replay_run_id": F.lit(run_id)})
     .whenNotMatchedInsert(condition="NOT s._mark", values={c: f"s.{c}" for c in columns})
     .execute())
