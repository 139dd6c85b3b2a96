"""Gold: business tables for BI, recomputed from silver when (and only when) silver changed: the
dates its changes touched, from the files Delta's log says they added or removed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.catalog import delta_exists
from lakehouse.cli_options import option
from lakehouse.gates import prepare_quality_gate, quality_gate
from lakehouse.console import progress
from lakehouse.job_runner import job
from lakehouse.lineage import JobRun, code_version, last_successful_run
from lakehouse.quarantine import quarantine_once
from lakehouse.refine import SILVER_LABELS_SCHEMA
from lakehouse.tables import changed_files
from lakehouse.threads import side_by_side


def _per_group_with_distinct(rows: DataFrame, keys: list[str], distinct: str, partial: list[Column],
                             final: list[Column]) -> DataFrame:
    """Aggregate `rows` per `keys`, counting the different values of `distinct` per group as `_distinct`.

    Rows are grouped by keys + `distinct` first (`partial`, named `_`-columns) and those groups again
    per key (`final`, over the partial columns): two hash aggregations in one shuffle by the keys.
    Spark's own countDistinct adds a shuffle; a set per group (collect_set) is an object aggregate
    that sorts every row once it holds more than 128 groups."""
    by_value = rows.repartition(*keys).groupBy(*keys, distinct).agg(*partial)
    return by_value.groupBy(*keys).agg(*final, F.count(distinct).alias("_distinct"))


def customer_daily_spend(txns: DataFrame) -> DataFrame:
    """Per customer and day. Amounts in EUR are summed as whole cents, so no order of summing changes a
    total, and a mean of exactly half a cent rounds up: an incremental build equals a full one."""
    cents = F.sum("_cents")
    return (_per_group_with_distinct(
                txns, ["customer_id", "event_date"], "merchant_id",
                [F.count("*").alias("_count"), F.count("amount_eur").alias("_priced"),
                 F.sum(F.round(F.col("amount_eur") * 100).cast("long")).alias("_cents"),
                 F.max("amount_eur").alias("_max")],
                [F.sum("_count").alias("txn_count"), F.round(cents / 100, 2).alias("total_amount_eur"),
                 (F.round(cents / F.sum("_priced")) / 100).alias("avg_amount_eur"),
                 F.max("_max").alias("max_amount_eur")])
            .withColumnRenamed("_distinct", "distinct_merchants"))


def _labelled(txns: DataFrame, labels: DataFrame) -> DataFrame:
    """Transactions with their label (null: not labelled yet); rows labelled already pass as they are."""
    if "is_fraud" in txns.columns:
        return txns
    return txns.join(labels.select("txn_id", "is_fraud"), "txn_id", "left")


GOLD_INPUT = ("txn_id", "customer_id", "merchant_id", "event_date", "amount_eur")


def merchant_daily(txns: DataFrame, labels: DataFrame) -> DataFrame:
    return (_per_group_with_distinct(
                _labelled(txns, labels), ["merchant_id", "event_date"], "customer_id",
                [F.count("*").alias("_count"), F.sum("amount_eur").alias("_amount"),
                 F.count("is_fraud").alias("_labelled"), F.sum(F.col("is_fraud").cast("int")).alias("_fraud")],
                [F.sum("_count").alias("txn_count"), F.round(F.sum("_amount"), 2).alias("total_amount_eur"),
                 F.sum("_labelled").alias("labelled_count"), F.sum("_fraud").alias("fraud_count")])
            .withColumnRenamed("_distinct", "distinct_customers")
            .select("merchant_id", "event_date", "txn_count", "total_amount_eur", "distinct_customers",
                    "labelled_count", "fraud_count"))


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
GOLD = ("gold.customer_daily_spend", "gold.merchant_daily", "gold.fraud_kpis")


@dataclass
class Changed:
    """The event dates whose gold rows may differ since the last build: where transactions changed
    (every gold table) and where only labels did (the two labelled tables)."""

    transactions: set[dt.date]
    labels: set[dt.date]

    def of(self, table: str) -> set[dt.date]:
        return self.transactions if table == "gold.customer_daily_spend" else self.transactions | self.labels


def _dates(rows: DataFrame) -> set[dt.date]:
    return {r[0] for r in rows.select("event_date").distinct().collect()}


def changed_dates(run: JobRun, silver: DataFrame) -> Changed | str:
    """The dates the silver commits since the last successful build touched, from the files those
    commits added or removed (a superset of the rows that changed); where gold must be rebuilt
    whole instead, why."""
    spark, cfg = run.spark, run.cfg
    last = last_successful_run(spark, cfg, run.job)
    if last is None:
        return "no earlier build"
    if last["code_version"] != code_version():
        return f"built last by other code ({last['code_version']})"
    if not all(delta_exists(cfg.table(name).path) for name in GOLD):
        return "a gold table is missing"
    files = {}
    for name in SILVER:
        now = run.inputs.get(name)
        files[name] = [] if now is None else changed_files(spark, cfg.table(name), last["inputs"].get(name), now)
        if files[name] is None:
            return f"the log of {name} no longer holds every commit since the last build"
    txn_files, label_files = files["silver.transactions"], files["silver.labels"]
    try:
        txn_dates = _dates(spark.read.parquet(*txn_files)) if txn_files else set()
        label_dates = (_dates(silver.join(spark.read.parquet(*label_files).select("txn_id"), "txn_id", "left_semi"))
                       if label_files else set())
    except AnalysisException as err:  # a file VACUUM removed: the change cannot be read back
        return f"a changed file can no longer be read ({err.getErrorClass() or 'analysis error'})"
    return Changed(txn_dates, label_dates)


def _on_dates(dates: set[dt.date]) -> str:
    """A replaceWhere predicate: these dates' rows."""
    return "event_date IN (" + ", ".join(f"DATE'{d.isoformat()}'" for d in sorted(dates)) + ")"


@job(name="build_gold",
     summary="Update the gold business tables (daily spend, merchant daily, fraud KPIs) from silver: "
             "the dates silver's changes touched, or every date.",
     inputs=SILVER,
     outputs={"gold.customer_daily_spend": ("silver.transactions",),
              "gold.merchant_daily": SILVER, "gold.fraud_kpis": SILVER,
              "quarantine.customer_daily_spend": ("silver.transactions",),
              "quarantine.merchant_daily": SILVER, "quarantine.fraud_kpis": SILVER,
              "gold.quality_results": SILVER},
     options=[option("--full", is_flag=True, default=None,
                     help="Rebuild every date, even if silver did not change (as after a code change).")],
     rerun_options=("full",),
     up_to_date="gold is up to date")
def build_gold(run: JobRun, args) -> None:
    """Recompute the gold rows of every date silver's changes since the last build touched (the
    runner skips it when silver is unchanged); every date on a first build, a code change, --full or --force."""
    spark, cfg = run.spark, run.cfg
    prepare_quality_gate()
    silver = run.read("silver.transactions")
    labels = run.read_or_empty("silver.labels", SILVER_LABELS_SCHEMA)
    flags = "; ".join(f"--{flag}" for flag in ("full", "force") if getattr(args, flag, False))
    found = flags or changed_dates(run, silver)
    changed = found if isinstance(found, Changed) else None
    dates = {name: None if changed is None else changed.of(name) for name in GOLD}
    if changed is None:
        progress(f"{run.job}: rebuilding every date ({found})")
    else:
        touched = changed.transactions | changed.labels
        progress(f"{run.job}: {len(touched)} dates changed"
                 + (f", {min(touched)} to {max(touched)}" if touched else ""))
        run.count("gold_dates_rebuilt", len(touched))

    def in_scope(df: DataFrame, table: str) -> DataFrame:
        return df if dates[table] is None else df.where(F.col("event_date").isin(sorted(dates[table])))

    # Silver is read and joined to its labels once for all three tables (daily spend's dates are among
    # the labelled tables' dates).
    txns = _labelled(in_scope(silver.select(*GOLD_INPUT), "gold.merchant_daily"), labels).persist()
    tables = {
        "gold.customer_daily_spend": customer_daily_spend(in_scope(txns, "gold.customer_daily_spend")),
        "gold.merchant_daily": merchant_daily(txns, labels),
        "gold.fraud_kpis": fraud_kpis(txns, labels),
    }
    tables = {name: df for name, df in tables.items() if dates[name] is None or dates[name]}
    gate = quality_gate()
    batch = {name: "full" if dates[name] is None else f"{len(dates[name])} dates, {min(dates[name])} to {max(dates[name])}"
             for name in tables}
    # Every gate runs before any table is written: a failing check leaves all of gold as it was. The
    # tables are three commits; a run killed between them is redone by the next run (the skip rule and
    # the changed dates count only runs that finished), and each write and `quarantine_once` is idempotent.
    # Rows are computed side by side (they share the labelled transactions); the gates run one at a time
    # (GE's context is one per process), and so do the writes, in this order: a run killed at a commit
    # leaves the tables after it as the last build left them.
    try:
        computed = dict(zip(tables, side_by_side([df.localCheckpoint for df in tables.values()], run.job)))
        verdicts = {name: gate.check(spark, cfg, name, df, job=run.job, run_id=run.run_id, batch=batch[name])
                    for name, df in computed.items()}
    finally:
        txns.unpersist()
    run.writing("gold.quality_results")
    for name, verdict in verdicts.items():
        ref = cfg.table(name)
        run.writing(name)
        writer = verdict.passed.write.format("delta").mode("overwrite")
        if dates[name] is None:
            writer = writer.option("overwriteSchema", "true")
        else:  # only the changed dates' rows are replaced, in one commit
            writer = writer.option("replaceWhere", _on_dates(dates[name]))
        writer.save(ref.path)
        version = run.wrote(name)
        if verdict.quarantined is not None:
            quarantine = f"quarantine.{name.split('.', 1)[1]}"
            run.writing(quarantine)
            quarantine_once(spark, cfg, name, verdict.quarantined, run_id=run.run_id, source_table=name)
            run.wrote(quarantine)
        gate.record(spark, cfg, verdict, version)
        progress(f"{run.job}: wrote {name}")
    run.wrote("gold.quality_results")
