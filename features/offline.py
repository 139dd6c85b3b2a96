"""compute_features: the offline feature tables (Delta), incrementally from the newest event days."""

from __future__ import annotations

import datetime as dt

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config, FeatureViewConf
from lakehouse.console import progress
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun, last_successful_inputs
from lakehouse.refine import SILVER_LABELS_SCHEMA
from lakehouse.tables import create_if_missing, read_table
from features.compute import EVENT_TIME, feature_rows
from features.sources import SOURCES

def _first_new_day(spark: SparkSession, cfg: Config, previous: dict, txns: DataFrame, labels: DataFrame):
    """The earliest day with events that arrived since the last run (None: compute everything)."""
    days = []
    for name, df, ts in (("silver.transactions", txns, "event_time"), ("silver.labels", labels, "label_time")):
        before = previous.get(name)
        if before is None:
            return None
        old = read_table(spark, cfg.table(name), before).select("txn_id")
        days.append(df.join(old, "txn_id", "left_anti").agg(F.min(F.to_date(ts))).first()[0])
    days = [d for d in days if d is not None]
    return min(days) if days else dt.date.max


def merge_features(spark: SparkSession, table_path: str, rows: DataFrame, view: FeatureViewConf) -> None:
    """Upsert on (entity, event_time): a rerun rewrites nothing, late events fix their days."""
    create_if_missing(spark, table_path, rows.schema)
    changed = " OR ".join(f"NOT (t.{f.name} <=> s.{f.name})" for f in view.features)
    (DeltaTable.forPath(spark, table_path).alias("t")
     .merge(rows.alias("s"), f"t.{view.key} = s.{view.key} AND t.{EVENT_TIME} = s.{EVENT_TIME}")
     .whenMatchedUpdateAll(condition=changed).whenNotMatchedInsertAll().execute())


SILVER = ("silver.transactions", "silver.customers", "silver.labels")


@job(name="compute_features",
     summary="Compute the offline feature tables (trailing-window aggregates as of each event) from silver.",
     inputs=SILVER,
     outputs=lambda cfg: {view.table: SILVER for view in cfg.features.views.values()})
def compute_features(run: JobRun, args) -> None:
    """MERGE feature rows from the first day with new events (the runner skips it when silver is unchanged)."""
    spark, cfg = run.spark, run.cfg
    previous = last_successful_inputs(spark, cfg, run.job) or {}
    txns, customers = run.read("silver.transactions"), run.read("silver.customers")
    labels = run.read_or_empty("silver.labels", SILVER_LABELS_SCHEMA)
    from_day = _first_new_day(spark, cfg, previous, txns, labels)
    if from_day == dt.date.max:
        progress(f"{run.job}: no new events since the last run")
        return
    for name, view in cfg.features.views.items():
        events = SOURCES[view.source](txns, customers, labels)
        if from_day is not None:  # the longest window's history is all a new day needs
            longest = max(f.window_seconds for f in view.features)
            events = events.where(F.col(view.timestamp) >=
                                  F.lit(dt.datetime.combine(from_day, dt.time())) - F.expr(f"INTERVAL {longest} SECONDS"))
        rows = feature_rows(events, view, from_day)
        run.writing(view.table)
        merge_features(spark, cfg.table(view.table).path, rows, view)
        run.wrote(view.table)
        progress(f"{run.job}: {name} -> {view.table} (from {from_day or 'the first event'})")
