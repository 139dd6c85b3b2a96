"""Trailing-window features as of every event: one row per entity and event timestamp.

A feature at time t aggregates the entity's events in (t - window, t]; nothing after t is ever
seen, which is what makes the point-in-time join of training labels correct.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.config import FeatureConf, FeatureViewConf

EVENT_TIME = "event_time"  # the time column of every event, feature and prediction table


def _aggregate(f: FeatureConf, window) -> Column:
    col = F.col(f.column) if f.column else F.lit(1)
    if f.agg == "count":
        return F.count(col).over(window)
    if f.agg == "count_distinct":  # distinct aggregates cannot run over a window; a set can
        return F.size(F.collect_set(col).over(window))
    return {"sum": F.sum, "avg": F.avg, "max": F.max}[f.agg](col).over(window)


def _aggregate_where(f: FeatureConf, inside: Column) -> Column:
    """The same aggregate as `_aggregate`, over the rows where `inside` holds (a group, not a window)."""
    col = F.when(inside, F.col(f.column) if f.column else F.lit(1))
    if f.agg == "count":
        return F.count(col)
    if f.agg == "count_distinct":
        return F.size(F.collect_set(col))
    return {"sum": F.sum, "avg": F.avg, "max": F.max}[f.agg](col)


def latest_feature_rows(events: DataFrame, view: FeatureViewConf) -> DataFrame:
    """Each entity's row at its newest event only: what `feature_rows` gives there, one group-by
    instead of a window per event (the online store keeps nothing older). A window takes the events
    of the last `window_seconds - 1` seconds up to that one, as in `feature_rows`."""
    seconds = F.col(view.timestamp).cast("long")
    newest = events.groupBy(view.key).agg(F.max(view.timestamp).alias("_newest"))
    aged = events.join(newest, view.key).withColumn("_age", F.col("_newest").cast("long") - seconds)
    features = [_aggregate_where(f, F.col("_age") <= f.window_seconds - 1)
                .cast("long" if f.dtype == "int64" else "double").alias(f.name) for f in view.features]
    return aged.groupBy(view.key, F.col("_newest").alias(EVENT_TIME)).agg(*features)


def feature_rows(events: DataFrame, view: FeatureViewConf, from_day=None) -> DataFrame:
    """Compute the view's features at each event; keep rows on or after `from_day` if given."""
    seconds = F.col(view.timestamp).cast("long")
    cols = [view.key, view.timestamp]
    out = events.withColumn("_ts", seconds)
    for f in view.features:
        window = (Window.partitionBy(view.key).orderBy("_ts")
                  .rangeBetween(-(f.window_seconds - 1), Window.currentRow))
        value = _aggregate(f, window)
        out = out.withColumn(f.name, value.cast("long" if f.dtype == "int64" else "double"))
        cols.append(f.name)
    out = out.select(*cols).withColumnRenamed(view.timestamp, EVENT_TIME)
    if from_day is not None:
        out = out.where(F.to_date(EVENT_TIME) >= F.lit(from_day))
    # Events sharing a timestamp see the same window: one row per entity and time.
    return out.dropDuplicates([view.key, EVENT_TIME])
