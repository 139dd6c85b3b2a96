"""build_training_set: labels joined to features as of each transaction's time (point in time)."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.job_runner import JobSpec, progress
from lakehouse.lineage import JobRun, inputs_unchanged, track_run
from features.serving import point_in_time_features

JOB = "build_training_set"
TRAINING_TABLE = "features.training_set"


def label_events(txns: DataFrame, labels: DataFrame) -> DataFrame:
    """One row per labelled transaction: entity keys, its event time, context and the label."""
    return (labels.select("txn_id", "is_fraud", "label_time").join(txns, "txn_id")
            .select("txn_id", "customer_id", "merchant_id", F.col("event_time").alias("event_timestamp"),
                    "amount_eur", "channel", "merchant_category", "country", "label_time",
                    F.col("is_fraud").cast("int").alias("label")))


def build_training_set(spark: SparkSession, cfg: Config) -> JobRun:
    """Write features.training_set as a new Delta version, recording every input version in lineage."""
    inputs = ["silver.transactions", "silver.labels", *(v.table for v in cfg.features.views.values())]
    if inputs_unchanged(spark, cfg, JOB, inputs):
        progress(f"{JOB}: labels and features unchanged since the last build; training set is up to date")
        return JobRun(spark, cfg, JOB)
    with track_run(spark, cfg, JOB) as run:
        txns, labels = run.read("silver.transactions"), run.read("silver.labels")
        for view in cfg.features.views.values():
            run.read(view.table)  # Feast cannot pin a Delta version: lineage records the one read
        training = point_in_time_features(cfg, label_events(txns, labels))
        ref = cfg.table(TRAINING_TABLE)
        run.writing(TRAINING_TABLE)
        training.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(ref.path)
        run.wrote(TRAINING_TABLE)
        run.count("training_rows", spark.read.format("delta").load(ref.path).count())
        progress(f"{JOB}: {run.metrics['training_rows']} labelled rows -> {TRAINING_TABLE}")
    return run


BUILD_TRAINING_SET = JobSpec(
    name=JOB,
    summary="Join labels to features as of each transaction's time (Feast, Spark) into features.training_set.",
    run=lambda spark, cfg, args: build_training_set(spark, cfg),
)
