"""Retention per layer: each table keeps the files it no longer references, and its log, for its
layer's window (governance.retention), and VACUUM removes what is older.

The window is also set on the table (delta.deletedFileRetentionDuration, delta.logRetentionDuration),
so Delta's own log cleanup and any other VACUUM keep the same promise, and Delta's retention check
holds for windows under its 7-day default. Setting them is a commit: only where they differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession

from lakehouse.config import Config, TableRef
from lakehouse.retry import retry_conflicts
from lakehouse.tables import current_version
from governance.vacuum import interval, retention_check_off, vacuum

PROPERTIES = ("delta.deletedFileRetentionDuration", "delta.logRetentionDuration")


@dataclass(frozen=True)
class RetentionResult:
    table: str
    window: str
    properties_set: bool
    files_removed: int


def _set_window(spark: SparkSession, ref: TableRef, hours: int) -> bool:
    """The table's retention properties at `hours`; whether they had to change."""
    target = f"delta.`{ref.path}`"
    current = spark.sql(f"DESCRIBE DETAIL {target}").first()["properties"] or {}
    wanted = {p: interval(hours) for p in PROPERTIES}
    if all(current.get(p) == v for p, v in wanted.items()):
        return False
    settings = ", ".join(f"'{p}' = '{v}'" for p, v in wanted.items())
    retry_conflicts(lambda: spark.sql(f"ALTER TABLE {target} SET TBLPROPERTIES ({settings})"), ref.name)
    return True


def apply_retention(spark: SparkSession, cfg: Config, dry_run: bool = False) -> list[RetentionResult]:
    """Every written table of a layer with a window: properties set, then vacuumed past the window."""
    out = []
    for name in cfg.table_names():
        ref = cfg.table(name)
        hours = cfg.governance.retention_hours(ref.layer)
        if hours is None or current_version(spark, ref) is None:
            continue
        window = cfg.governance.retention[ref.layer]
        if dry_run:  # counted as if the window were already set on the table
            with retention_check_off(spark):
                out.append(RetentionResult(name, window, False, vacuum(spark, ref, hours, dry_run=True)))
            continue
        changed = _set_window(spark, ref, hours)
        # A VACUUM is two commits (its start and end) even when it removes nothing: only where it will.
        doomed = vacuum(spark, ref, hours, dry_run=True)
        out.append(RetentionResult(name, window, changed, vacuum(spark, ref, hours) if doomed else 0))
    return out
