"""gold.quality_results: one row per check per run, the single table a quality dashboard reads."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from lakehouse.catalog import register_table
from lakehouse.config import Config

RESULTS_TABLE = "gold.quality_results"

RESULTS_SCHEMA = T.StructType([
    T.StructField("run_id", T.StringType(), False),
    T.StructField("job", T.StringType(), False),
    T.StructField("table", T.StringType(), False),
    T.StructField("table_version", T.LongType(), True),
    T.StructField("batch", T.StringType(), True),
    T.StructField("engine", T.StringType(), False),
    T.StructField("check", T.StringType(), False),
    T.StructField("policy", T.StringType(), False),
    T.StructField("status", T.StringType(), False),  # passed | warned | quarantined | failed
    T.StructField("observed_value", T.StringType(), True),
    T.StructField("rows_checked", T.LongType(), True),
    T.StructField("rows_failing", T.LongType(), True),
    T.StructField("checked_at", T.TimestampType(), False),
])

STATUS_FOR_POLICY = {"warn": "warned", "quarantine": "quarantined", "fail": "failed"}


@dataclass
class ResultRow:
    run_id: str
    job: str
    table: str
    table_version: int | None
    batch: str | None
    engine: str
    check: str
    policy: str
    status: str
    observed_value: str | None
    rows_checked: int | None
    rows_failing: int | None
    checked_at: dt.datetime


def write_results(spark: SparkSession, cfg: Config, rows: list[ResultRow]) -> None:
    if not rows:
        return
    ref = cfg.table(RESULTS_TABLE)
    data = [tuple(asdict(r).values()) for r in rows]
    spark.createDataFrame(data, RESULTS_SCHEMA).write.format("delta").mode("append").save(ref.path)
    register_table(spark, ref)
