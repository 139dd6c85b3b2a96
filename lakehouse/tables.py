"""Reading Delta tables and their versions: the edge where transforms meet storage."""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from lakehouse.catalog import delta_exists
from lakehouse.config import TableRef
from lakehouse.errors import TableNotFound


def current_version(spark: SparkSession, ref: TableRef) -> int | None:
    """The table's latest Delta version, or None when it has never been written."""
    if not delta_exists(ref.path):
        return None
    return DeltaTable.forPath(spark, ref.path).history(1).select("version").first()[0]


def read_table(spark: SparkSession, ref: TableRef, version: int | None = None) -> DataFrame:
    if not delta_exists(ref.path):
        raise TableNotFound(f"{ref.name} has not been written yet ({ref.path})",
                            hint="run the job that produces it first (see `tidewater demo`)")
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(ref.path)


def create_if_missing(spark: SparkSession, path: str, schema) -> None:
    """An empty Delta table with this schema, so a first MERGE has a target."""
    if not delta_exists(path):
        spark.createDataFrame([], schema).write.format("delta").save(path)


def commit_metrics(spark: SparkSession, ref: TableRef, version: int) -> dict[str, int]:
    """Delta's operationMetrics of one commit, as integers (rows inserted, updated, ...)."""
    row = (DeltaTable.forPath(spark, ref.path).history()
           .where(f"version = {version}").select("operationMetrics").first())
    return {k: int(v) for k, v in (row[0] or {}).items() if str(v).lstrip("-").isdigit()}


def union_all(frames: list[DataFrame]) -> DataFrame:
    """The rows of every frame (matched by column name); at least one frame."""
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out
