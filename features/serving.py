"""Features for scoring, the same ones the model was trained on, two ways.

- `point_in_time_features`: Feast's point-in-time join over the offline tables (batch scoring and
  the training set use this one).
- `features_as_of`: the same trailing-window code (features.compute) run over silver for just the
  entities and time span of a micro-batch (streaming uses this one). The online store keeps only
  each entity's latest row, so it cannot give the features as of a given transaction's time, and a
  stream scoring a transaction must not wait for the feature job to reach it. Recomputing the few
  windows a micro-batch needs gives the batch job's values by construction (tests hold them equal).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.config import Config
from features.compute import EVENT_TIME, feature_rows
from features.sources import SOURCES

FEAST_EVENT_TIME = "event_timestamp"
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
    """Each event row joined to every feature view as of its event time (Feast, kept in Spark).

    Feast names the entity rows' time `event_timestamp` (its own convention, needed where the rows
    carry other timestamps too): the name changes for the call and back, here only.
    """
    from features.store import feature_refs, feature_store

    store = feature_store(cfg)
    entity_rows = events.withColumnRenamed(EVENT_TIME, FEAST_EVENT_TIME)
    joined = store.get_historical_features(entity_df=entity_rows, features=feature_refs(cfg)).to_spark_df()
    return with_context(joined.withColumnRenamed(FEAST_EVENT_TIME, EVENT_TIME))


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
        since = bounds["lo"] - dt.timedelta(seconds=longest)
        keys = events.select(view.key).distinct()
        source = SOURCES[view.source](txns, customers, labels).join(F.broadcast(keys), view.key)
        source = source.where((F.col(view.timestamp) >= F.lit(since)) & (F.col(view.timestamp) <= F.lit(bounds["hi"])))
        rows = feature_rows(source, view)
        out = out.join(rows, [view.key, EVENT_TIME], "left")
    return with_context(out)
