"""What `tidewater tables` and the demo summary show: every configured table's state."""

from __future__ import annotations

from pyspark.sql import SparkSession

from lakehouse.config import Config
from lakehouse.tables import current_version, read_table


def table_inventory(spark: SparkSession, cfg: Config, only_existing: bool = True) -> list[dict]:
    rows = []
    for name in cfg.table_names():
        ref = cfg.table(name)
        version = current_version(spark, ref)
        if version is None and only_existing:
            continue
        count = None if version is None else read_table(spark, ref, version).count()
        rows.append({"name": name, "version": version, "rows": count, "path": ref.path})
    return rows
