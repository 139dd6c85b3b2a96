"""Features for scoring, the same ones the model was trained on, two ways, one meaning of "as of".

A transaction is scored with each view's row for its entity's latest event *strictly before* it (the
entity's state once its previous events were counted: exactly what the online store holds when the
API scores a transaction at the terminal), plus what the transaction itself gives (`with_context`:
amount, hour, amount against the 30-day average), as Feast's on-demand views compute request-time
features. Training, batch scoring, streaming and the API all use this one definition.

- `point_in_time_features`: Feast's point-in-time join over the offline tables (batch scoring and
  the training set use this one), asked for each row one microsecond (a Spark timestamp's finest
  step) before its own time.
- `features_as_of`: the same trailing-window code (features.compute) run over silver for just the
  entities and time span of a micro-batch (streaming uses this one), with Feast's rule (the newest
  row at or before that instant, no older than the view's ttl). Tests hold the two equal.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.config import Config
from features.compute import EVENT_TIME, feature_rows
from features.sources import SOURCES

FEAST_EVENT_TIME = "event_timestamp"
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


def point_in_time_features(cfg: Config, events: DataFrame) -> DataFrame:
    """Each event row joined to every feature view as of just before its event time (Feast, in Spark).

    Feast names the entity rows' time `event_timestamp` (its own convention, needed where the rows
    carry other timestamps too): it gets the instant one microsecond before the event; the event's
    own time travels beside it and takes its place again afterwards, here only.
    """
    from features.store import feature_refs, feature_store

    store = feature_store(cfg)
    entity_rows = (events.withColumnRenamed(EVENT_TIME, FEAST_EVENT_TIME)
                   .withColumn(SCORED_AT, F.col(FEAST_EVENT_TIME))
                   .withColumn(FEAST_EVENT_TIME, F.col(FEAST_EVENT_TIME) - F.lit(BEFORE)))
    joined = store.get_historical_features(entity_df=entity_rows, features=feature_refs(cfg)).to_spark_df()
    return with_context(joined.withColumn(FEAST_EVENT_TIME, F.col(SCORED_AT)).drop(SCORED_AT)
                        .withColumnRenamed(FEAST_EVENT_TIME, EVENT_TIME))


def latest_before(events: DataFrame, rows: DataFrame, view) -> DataFrame:
    """(key, event_time, features) for each event: the view's newest row at or before one microsecond
    before it and no older than the view's ttl (Feast's point-in-time rule), or nulls."""
    ttl = dt.timedelta(days=view.ttl_days)
    wanted = events.select(view.key, F.col(EVENT_TIME).alias(SCORED_AT)).distinct()
    at = F.col(SCORED_AT) - F.lit(BEFORE)
    pairs = wanted.join(rows, view.key).where((F.col(EVENT_TIME) <= at) & (F.col(EVENT_TIME) >= at - F.lit(ttl)))
    newest = Window.partitionBy(view.key, SCORED_AT).orderBy(F.desc(EVENT_TIME))
    return (pairs.withColumn("_rn", F.row_number().over(newest)).where("_rn = 1")
            .select(view.key, F.col(SCORED_AT).alias(EVENT_TIME), *(f.name for f in view.features)))


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
