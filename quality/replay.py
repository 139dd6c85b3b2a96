"""`tidewater quarantine replay TABLE`: send (fixed) quarantined rows back through the silver gate.

Selected rows are refined and gated exactly like new bronze rows. Those that now pass are MERGEd
into silver (so a key already there is never inserted twice); those that still fail are
quarantined again with today's reason. Every selected row is then marked replayed, so the next
replay does not pick it up again.
"""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.errors import TableNotFound
from lakehouse.lineage import JobRun, track_run
from lakehouse.silver import refiners
from lakehouse.tables import read_table

JOB = "quarantine_replay"


def replay_quarantine(spark: SparkSession, cfg: Config, table: str, reason: str | None = None) -> JobRun:
    """Replay the not-yet-replayed quarantine rows of a silver table (optionally one reason)."""
    entity = table.split(".", 1)[-1]
    target = f"silver.{entity}"
    quarantine = cfg.table(f"quarantine.{entity}")
    with track_run(spark, cfg, JOB) as run:
        by_entity = {r.entity: r for r in refiners(spark, cfg, run)}
        if entity not in by_entity:
            raise TableNotFound(f"{target} is not a refined silver table",
                                hint=f"replayable: {', '.join('silver.' + e for e in by_entity)}")
        pending = run.read(quarantine.name).where(F.col("replayed_at").isNull())
        if reason:
            pending = pending.where(F.col("reason") == reason)
        pending = pending.localCheckpoint()  # the quarantine table changes below
        n = pending.count()
        run.count(f"{entity}_replayed", n)
        if n == 0:
            return run
        refiner = by_entity[entity]
        run.writing(target)
        run.writing(quarantine.name)
        refiner.process_rows(pending.select("raw", "_source_file", "_batch_id", "_ingested_at"),
                             txn=(f"{JOB}:{entity}:{run.run_id}", 0))
        (DeltaTable.forPath(spark, quarantine.path).alias("t")
         .merge(pending.select("quarantine_id").alias("s"), "t.quarantine_id = s.quarantine_id")
         .whenMatchedUpdate(set={"replayed_at": F.current_timestamp(), "replay_run_id": F.lit(run.run_id)})
         .execute())
        run.wrote(target)
        run.wrote(quarantine.name)
    return run


def still_quarantined(spark: SparkSession, cfg: Config, entity: str):
    return read_table(spark, cfg.table(f"quarantine.{entity}")).where(F.col("replayed_at").isNull())
