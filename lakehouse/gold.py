"""Gold: business tables for BI, recomputed from silver when (and only when) silver changed."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.gates import prepare_quality_gate, quality_gate
from lakehouse.console import progress
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun
from lakehouse.quarantine import quarantine_once
from lakehouse.refine import SILVER_LABELS_SCHEMA


def _distinct(column: str) -> Column:
    """How many different values a group holds: a set per group, in one aggregation. Spark's
    countDistinct plans a second aggregation with a shuffle of its own; these groups are small."""
    return F.size(F.collect_set(column)).cast("long")


def customer_daily_spend(txns: DataFrame) -> DataFrame:
    return (txns.groupBy("customer_id", "event_date")
            .agg(F.count("*").alias("txn_count"),
                 F.round(F.sum("amount_eur"), 2).alias("total_amount_eur"),
                 F.round(F.avg("amount_eur"), 2).alias("avg_amount_eur"),
                 F.max("amount_eur").alias("max_amount_eur"),
                 _distinct("merchant_id").alias("distinct_merchants")))


def _labelled(txns: DataFrame, labels: DataFrame) -> DataFrame:
    """Transactions with their label (null: not labelled yet); rows labelled already pass as they are."""
    if "is_fraud" in txns.columns:
        return txns
    return txns.join(labels.select("txn_id", "is_fraud"), "txn_id", "left")


GOLD_INPUT = ("txn_id", "customer_id", "merchant_id", "event_date", "amount_eur")


def merchant_daily(txns: DataFrame, labels: DataFrame) -> DataFrame:
    return (_labelled(txns, labels).groupBy("merchant_id", "event_date")
            .agg(F.count("*").alias("txn_count"),
                 F.round(F.sum("amount_eur"), 2).alias("total_amount_eur"),
                 _distinct("customer_id").alias("distinct_customers"),
                 F.count("is_fraud").alias("labelled_count"),
                 F.sum(F.col("is_fraud").cast("int")).alias("fraud_count")))


def fraud_kpis(txns: DataFrame, labels: DataFrame) -> DataFrame:
    """Per day: volume, how much of it is labelled yet, and fraud among the labelled."""
    fraud_amount = F.when(F.col("is_fraud"), F.col("amount_eur"))
    return (_labelled(txns, labels).groupBy("event_date")
            .agg(F.count("*").alias("txn_count"),
                 F.round(F.sum("amount_eur"), 2).alias("total_amount_eur"),
                 F.count("is_fraud").alias("labelled_count"),
                 F.coalesce(F.sum(F.col("is_fraud").cast("int")), F.lit(0)).alias("fraud_count"),
                 F.round(F.coalesce(F.sum(fraud_amount), F.lit(0.0)), 2).alias("fraud_amount_eur"))
            .withColumn("label_coverage", F.round(F.try_divide("labelled_count", "txn_count"), 4))
            .withColumn("fraud_rate", F.round(F.try_divide("fraud_count", "labelled_count"), 6)))


SILVER = ("silver.transactions", "silver.labels")


@job(name="build_gold",
     summary="Rebuild the gold business tables (daily spend, merchant daily, fraud KPIs) from silver.",
     inputs=SILVER,
     outputs={"gold.customer_daily_spend": ("silver.transactions",),
              "gold.merchant_daily": SILVER, "gold.fraud_kpis": SILVER,
              "quarantine.customer_daily_spend": ("silver.transactions",),
              "quarantine.merchant_daily": SILVER, "quarantine.fraud_kpis": SILVER,
              "gold.quality_results": SILVER},
     up_to_date="gold is up to date")
def build_gold(run: JobRun, args) -> None:
    """Rebuild the gold tables from silver (the runner skips it when silver is unchanged)."""
    spark, cfg = run.spark, run.cfg
    prepare_quality_gate()
    silver = run.read("silver.transactions")
    labels = run.read_or_empty("silver.labels", SILVER_LABELS_SCHEMA)
    # Silver is read and joined to its labels once for the two labelled tables. Daily spend reads silver
    # as it is: its means of exactly half a cent round by the order of the sum, which a join reorders.
    txns = _labelled(silver.select(*GOLD_INPUT), labels).persist()
    tables = {
        "gold.customer_daily_spend": customer_daily_spend(silver),
        "gold.merchant_daily": merchant_daily(txns, labels),
        "gold.fraud_kpis": fraud_kpis(txns, labels),
    }
    gate = quality_gate()
    # Every gate runs before any table is written: a failing check leaves all of gold as it was. The
    # tables are three commits; a run killed between them is redone whole by the next run (the skip rule
    # counts only runs that finished), and each overwrite and `quarantine_once` is idempotent.
    try:
        verdicts = {name: gate.check(spark, cfg, name, df.localCheckpoint(), job=run.job, run_id=run.run_id,
                                     batch="full")
                    for name, df in tables.items()}
    finally:
        txns.unpersist()
    run.writing("gold.quality_results")
    for name, verdict in verdicts.items():
        ref = cfg.table(name)
        run.writing(name)
        verdict.passed.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(ref.path)
        version = run.wrote(name)
        if verdict.quarantined is not None:
            quarantine = f"quarantine.{name.split('.', 1)[1]}"
            run.writing(quarantine)
            quarantine_once(spark, cfg, name, verdict.quarantined, run_id=run.run_id, source_table=name)
            run.wrote(quarantine)
        gate.record(spark, cfg, verdict, version)
        progress(f"{run.job}: wrote {name}")
    run.wrote("gold.quality_results")
