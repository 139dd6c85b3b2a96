"""Features for scoring, the same ones the model was trained on, two ways, one meaning of "as of".

A transaction is scored with each view's row for its entity's latest event *strictly before* it (the
entity's state once its previous events were counted: exactly what the online store holds when the
API scores a transaction at the terminal), plus what the transaction itself gives (`with_context`:
amount, hour, amount against the 30-day average), as Feast's on-demand views compute request-time
features. Training, batch scoring, streaming and the API all use this one definition.

- `point_in_time_features`: the offline tables Feast serves, joined with Feast's rule (the newest
  row at or before one microsecond, a Spark timestamp's finest step, before the row's own time, no
  older than the view's ttl); batch scoring and the training set use this one. A test holds it equal
  to Feast's own `get_historical_features` on the same rows.
- `features_as_of`: the same trailing-window code (features.compute) run over silver for just the
  entities and time span of a micro-batch (streaming uses this one), with the same rule. Tests hold
  the two equal.

Both join through `latest_before`: one timeline per entity (its feature rows and the asked instants,
in time order) on which each instant takes the last row before it. Feast's Spark offline store joins
each instant to every row of its entity within the ttl and keeps the newest, which grows with
instants x rows per entity: 12,851 demo transactions became 16.8 million joined rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.tables import read_table
from features.compute import EVENT_TIME, feature_rows
from features.sources import SOURCES

SCORED_AT = "_scored_at"
BEFORE = dt.timedelta(microseconds=1)  # "strictly before t" is "at or before t - 1 microsecond"
EVENT_COLUMNS = ["txn_id", "customer_id", "merchant_id", EVENT_TIME, "amount_eur", "channel",
                 "merchant_category", "country"]


def scoring_events(txns: DataFrame) -> DataFrame:
    """Silver transactions as scoring entity rows: keys, event time and per-transaction context."""
    return txns.select(*EVENT_COLUMNS)


def with_context(rows: DataFrame) -> DataFrame:
    """Per-transaction context features: computed from the row itself, identically at serving time."""
    return (rows.withColumn("hour_of_day", F.hour(EVENT_TIME))
            .withColumn("amount_vs_30d_avg", F.round(F.try_divide("amount_eur", "avg_amount_30d"), 4)))


def point_in_time_features(cfg: Config, events: DataFrame,
                           read: Callable[[str], DataFrame] | None = None) -> DataFrame:
    """Each event row with every feature view's row as of just before its event time, plus its context
    features. `read` gives an offline table by name (a job's `run.read`, so lineage names the version
    joined); by default each table's current version."""
    read = read or (lambda name: read_table(events.sparkSession, cfg.table(name)))
    out = events
    for view in cfg.features.views.values():
        rows = read(view.table)
        out = out.join(latest_before(events, rows, view), [view.key, EVENT_TIME], "left")
    features = [f.name for view in cfg.features.views.values() for f in view.features]
    return with_context(out.select(*events.columns, *features))


def feast_point_in_time_features(cfg: Config, events: DataFrame) -> DataFrame:
    """What Feast's own get_historical_features gives the same rows under the same rule: the reference
    `point_in_time_features` is checked against (tests, benchmarks/features.py). Feast names the asked
    instant `event_timestamp`; the event's own time travels beside it and takes its place again."""
    from features.store import feature_refs, feature_store

    asked = (events.withColumnRenamed(EVENT_TIME, "event_timestamp").withColumn(SCORED_AT, F.col("event_timestamp"))
             .withColumn("event_timestamp", F.col("event_timestamp") - F.lit(BEFORE)))
    joined = feature_store(cfg).get_historical_features(entity_df=asked, features=feature_refs(cfg)).to_spark_df()
    return with_context(joined.withColumn("event_timestamp", F.col(SCORED_AT)).drop(SCORED_AT)
                        .withColumnRenamed("event_timestamp", EVENT_TIME))


def latest_before(events: DataFrame, rows: DataFrame, view) -> DataFrame:
    """(key, event_time, features) for each event: the view's newest row at or before one microsecond
    before it and no older than the view's ttl (Feast's point-in-time rule), or nulls.

    The last row carried forward on one sorted timeline per entity: a row at the very instant asked
    for sorts before the instant, so it counts ("at or before")."""
    ttl = dt.timedelta(days=view.ttl_days)
    features = [f.name for f in view.features]
    asked = (events.select(view.key, F.col(EVENT_TIME).alias(SCORED_AT)).distinct()
             .select(view.key, SCORED_AT, (F.col(SCORED_AT) - F.lit(BEFORE)).alias("_t"), F.lit(1).alias("_asked")))
    known = (rows.where(F.col(view.key).isNotNull())
             .select(view.key, F.col(EVENT_TIME).alias("_t"), F.lit(0).alias("_asked"),
                     F.struct(F.col(EVENT_TIME).alias("_at"), *features).alias("_row")))
    timeline = (Window.partitionBy(view.key).orderBy("_t", "_asked")
                .rowsBetween(Window.unboundedPreceding, Window.currentRow))
    carried = (asked.unionByName(known, allowMissingColumns=True)
               .withColumn("_row", F.last("_row", ignorenulls=True).over(timeline)).where("_asked = 1"))
    fresh = F.col("_row._at") >= F.col("_t") - F.lit(ttl)
    return carried.select(view.key, F.col(SCORED_AT).alias(EVENT_TIME),
                          *[F.when(fresh, F.col(f"_row.{f}")).alias(f) for f in features])


def features_as_of(cfg: Config, events: DataFrame, txns: DataFrame, customers: DataFrame,
                   labels: DataFrame) -> DataFrame:
    """Each event row with the views' features at its own time, recomputed from silver."""
    bounds = events.agg(F.min(EVENT_TIME).alias("lo"), F.max(EVENT_TIME).alias("hi")).first()
    out = events
    if bounds["lo"] is None:
        for view in cfg.features.views.values():
            for f in view.features:
                out = out.withColumn(f.name, F.lit(None).cast("long" if f.dtype == "int64" else "double"))
        return with_context(out)
    for view in cfg.features.views.values():
        longest = max(f.window_seconds for f in view.features)
        # rows as old as the ttl before the first event, each with its whole longest window behind it
        since = bounds["lo"] - BEFORE - dt.timedelta(days=view.ttl_days) - dt.timedelta(seconds=longest)
        keys = events.select(view.key).distinct()
        source = SOURCES[view.source](txns, customers, labels).join(F.broadcast(keys), view.key)
        source = source.where((F.col(view.timestamp) >= F.lit(since)) & (F.col(view.timestamp) < F.lit(bounds["hi"])))
        out = out.join(latest_before(events, feature_rows(source, view), view), [view.key, EVENT_TIME], "left")
    return with_context(out)
