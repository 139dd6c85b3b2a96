"""The configuration is the catalog: every session registers the configured Delta tables by name.

An embedded Derby metastore admits one process at a time, so a stream, a job and a SQL shell could
not share it. Instead each session declares the tables found under the storage root, and the same
statements are written to <root>/catalog/register.sql for `spark-sql -i`.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.config import Config, TableRef


def delta_exists(path: str) -> bool:
    return (Path(path) / "_delta_log").is_dir() if "://" not in path else True


def _register_statements(cfg: Config) -> list[str]:
    stmts = [f"CREATE DATABASE IF NOT EXISTS {layer}" for layer in cfg.tables]
    for name in cfg.table_names():
        ref = cfg.table(name)
        if delta_exists(ref.path):
            stmts.append(f"CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION '{ref.path}'")
    return stmts


def register_tables(spark: SparkSession, cfg: Config) -> None:
    """Declare every configured table that exists on storage, and write the catalog script."""
    stmts = _register_statements(cfg)
    for stmt in stmts:
        spark.sql(stmt)
    script = cfg.root / "catalog" / "register.sql"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("".join(f"{s};\n" for s in stmts))


def register_table(spark: SparkSession, ref: TableRef) -> None:
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {ref.layer}")
    spark.sql(f"CREATE TABLE IF NOT EXISTS {ref.name} USING DELTA LOCATION '{ref.path}'")
