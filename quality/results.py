"""gold.quality_results: one row per check per run, the single table a quality dashboard reads."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import SparkSession

from lakehouse.config import Config
from lakehouse.schemas import spark_schema
from lakehouse.tables import append_rows

RESULTS_TABLE = "gold.quality_results"

STATUS_FOR_POLICY = {"warn": "warned", "quarantine": "quarantined", "fail": "failed"}


@dataclass
class ResultRow:
    """One check's outcome on one table version, in one run."""

    run_id: str
    job: str
    table: str
    table_version: int | None
    batch: str | None
    engine: str
    check: str
    policy: str
    status: str  # passed | warned | quarantined | failed
    observed_value: str | None
    rows_checked: int | None
    rows_failing: int | None
    checked_at: dt.datetime


def write_results(spark: SparkSession, cfg: Config, rows: list[ResultRow]) -> None:
    if not rows:
        return
    append_rows(spark, cfg.table(RESULTS_TABLE), rows, spark_schema(ResultRow))
