"""VACUUM of one Delta table past a window, counting the files it removes.

Delta refuses a window shorter than the table's delta.deletedFileRetentionDuration (7 days unless
set) while `spark.databricks.delta.retentionDurationCheck.enabled` is on: a reader or writer still
working on an older version could lose files under it. Retention sets the property to its window
first, so the check holds; an erasure (window 0, its own tables only) turns the check off for its
own VACUUM and back on after it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from pyspark.sql import SparkSession

from lakehouse.config import TableRef

RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"


# VACUUM lists the table's folders in a Spark job of this many tasks: 10,000 by default, which took
# 70-90 s for a one-folder table here (3-4 s with the session's shuffle partitions).
LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"


@contextlib.contextmanager
def _session_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    before = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def retention_check_off(spark: SparkSession):
    return _session_conf(spark, RETENTION_CHECK, "false")


def interval(hours: int) -> str:
    """A Delta table-property interval (`interval 720 hours`)."""
    return f"interval {hours} hours"


def _data_files(path: str) -> int:
    """Files of a local table outside its log (checksum companions aside)."""
    root = Path(path)
    return sum(1 for p in root.rglob("*")
               if p.is_file() and not p.name.startswith(".") and "_delta_log" not in p.relative_to(root).parts)


def vacuum(spark: SparkSession, ref: TableRef, hours: int, dry_run: bool = False) -> int:
    """Remove the files the table stopped referencing more than `hours` ago; the number removed
    (dry_run: the number it would remove). A local table's files are counted before and after (one
    VACUUM); elsewhere a dry run lists them first."""
    with _session_conf(spark, LISTING_PARALLELISM, spark.conf.get("spark.sql.shuffle.partitions")):
        return _vacuum(spark, ref, hours, dry_run)


def _vacuum(spark: SparkSession, ref: TableRef, hours: int, dry_run: bool) -> int:
    target = f"delta.`{ref.path}`"
    if dry_run or "://" in ref.path:
        doomed = spark.sql(f"VACUUM {target} RETAIN {hours} HOURS DRY RUN").count()
        if doomed and not dry_run:
            spark.sql(f"VACUUM {target} RETAIN {hours} HOURS").collect()
        return doomed
    before = _data_files(ref.path)
    spark.sql(f"VACUUM {target} RETAIN {hours} HOURS").collect()
    return before - _data_files(ref.path)
