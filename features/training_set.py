"""build_training_set: labels joined to features as of each transaction's time (point in time)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.console import progress
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun
from features.maturity import first_mature_day, mature, too_short
from features.serving import point_in_time_features

TRAINING_TABLE = "features.training_set"


def label_events(txns: DataFrame, labels: DataFrame) -> DataFrame:
    """One row per labelled transaction: entity keys, its event time, context and the label."""
    return (labels.select("txn_id", "is_fraud", "label_time").join(txns, "txn_id")
            .select("txn_id", "customer_id", "merchant_id", "event_time",
                    "amount_eur", "channel", "merchant_category", "country", "label_time",
                    F.col("is_fraud").cast("int").alias("is_fraud")))


def _inputs(cfg: Config) -> list[str]:
    return ["silver.transactions", "silver.labels", *(v.table for v in cfg.features.views.values())]


@job(name="build_training_set",
     summary="Join labels to features as of each transaction's time (Feast's point-in-time rule, Spark) "
             "into features.training_set.",
     inputs=_inputs,
     outputs=lambda cfg: {TRAINING_TABLE: _inputs(cfg)})
def build_training_set(run: JobRun, args) -> None:
    """Write features.training_set as a new Delta version, recording every input version in lineage."""
    spark, cfg = run.spark, run.cfg
    txns, labels = run.read("silver.transactions"), run.read("silver.labels")
    day = first_mature_day(cfg, txns)
    events = label_events(txns, labels)
    counts = events.agg(F.count("*").alias("all"),
                        F.count(F.when(F.to_date("event_time") >= F.lit(day), 1)).alias("mature")).first()
    if counts["all"] and not counts["mature"]:
        raise too_short(cfg, txns)
    training = point_in_time_features(cfg, mature(events, day), run.read)
    ref = cfg.table(TRAINING_TABLE)
    run.writing(TRAINING_TABLE)
    training.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(ref.path)
    run.wrote(TRAINING_TABLE)
    run.count("training_rows", spark.read.format("delta").load(ref.path).count())
    run.count("immature_rows_left_out", counts["all"] - counts["mature"])
    progress(f"{run.job}: {run.metrics['training_rows']} labelled rows from {day} -> {TRAINING_TABLE} "
             f"({run.metrics['immature_rows_left_out']} earlier ones left out: less than "
             f"{cfg.features.maturity_days} day(s) of history behind them)")
