"""Event streams the feature views aggregate, built from silver with point-in-time joins only."""

from __future__ import annotations

from typing import Callable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def customer_events(txns: DataFrame, customers: DataFrame, labels: DataFrame) -> DataFrame:
    """Each transaction, with is_foreign against the customer's home country *as of* the event."""
    home = customers.select("customer_id", F.col("country").alias("home_country"), "valid_from", "valid_to")
    as_of = (F.col("t.customer_id") == F.col("h.customer_id")) & (F.col("h.valid_from") <= F.col("t.event_time")) \
        & (F.col("h.valid_to").isNull() | (F.col("t.event_time") < F.col("h.valid_to")))
    joined = txns.alias("t").join(home.alias("h"), as_of, "left")
    return joined.select(
        F.col("t.customer_id").alias("customer_id"), F.col("t.event_time").alias("event_time"),
        "t.amount_eur", "t.merchant_id",
        F.when(F.col("h.home_country").isNull(), None)
        .otherwise((F.col("t.country") != F.col("h.home_country")).cast("double")).alias("is_foreign"))


def merchant_events(txns: DataFrame, customers: DataFrame, labels: DataFrame) -> DataFrame:
    """Two streams per merchant: its transactions (at event time) and their labels (at label time)."""
    txn_rows = txns.select("merchant_id", "event_time", F.lit(1).alias("is_txn"),
                           F.lit(None).cast("double").alias("label_is_fraud"))
    label_rows = (labels.join(txns.select("txn_id", "merchant_id"), "txn_id")
                  .select("merchant_id", F.col("label_time").alias("event_time"), F.lit(0).alias("is_txn"),
                          F.col("is_fraud").cast("double").alias("label_is_fraud")))
    return txn_rows.unionByName(label_rows)


SOURCES: dict[str, Callable[[DataFrame, DataFrame, DataFrame], DataFrame]] = {
    "customer_events": customer_events,
    "merchant_events": merchant_events,
}
