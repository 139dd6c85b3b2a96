"""The configuration is the catalog: every session registers the configured Delta tables by name.

An embedded Derby metastore admits one process at a time, so a stream, a job and a SQL shell could
not share it. Instead each session declares the tables found under the storage root, and the same
statements are written to <root>/catalog/register.sql for `spark-sql -i`.
"""

from __future__ import annotations


from pyspark.sql import SparkSession

from lakehouse.config import Config, TableRef
from lakehouse.delta_reader import delta_exists


# name -> location registered in this process's catalog (one SparkSession per process).
_registered: dict[str, str] = {}


def register_table(spark: SparkSession, ref: TableRef) -> None:
    """Make `ref.name` resolve to `ref.path` in this session (re-pointing it if the root moved)."""
    if _registered.get(ref.name) == ref.path:
        return
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {ref.layer}")
    if ref.name in _registered:
        spark.sql(f"DROP TABLE IF EXISTS {ref.name}")  # external table: drops the name, not the data
    spark.sql(f"CREATE TABLE IF NOT EXISTS {ref.name} USING DELTA LOCATION '{ref.path}'")
    _registered[ref.name] = ref.path


def register_tables(spark: SparkSession, cfg: Config) -> None:
    """Declare every configured table that exists on storage, and write the catalog script."""
    existing = [cfg.table(n) for n in cfg.table_names() if delta_exists(cfg.table(n).path)]
    for ref in existing:
        register_table(spark, ref)
    for name in set(_registered) - {r.name for r in existing}:  # names from another root
        spark.sql(f"DROP TABLE IF EXISTS {name}")
        del _registered[name]
    stmts = [f"CREATE DATABASE IF NOT EXISTS {layer}" for layer in cfg.tables]
    stmts += [f"CREATE TABLE IF NOT EXISTS {r.name} USING DELTA LOCATION '{r.path}'" for r in existing]
    script = cfg.root / "catalog" / "register.sql"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("".join(f"{s};\n" for s in stmts))
