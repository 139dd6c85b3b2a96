"""The one SparkSession factory: Delta, jars, logging and catalog registration from the Config."""

from __future__ import annotations

import os
from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.catalog import register_tables
from lakehouse.config import PROJECT_DIR, Config
from lakehouse.errors import SetupIncomplete

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def _under_spark_submit() -> bool:
    # spark-submit starts the JVM first and hands Python the gateway port; its --master and
    # --conf flags then win over the config's defaults.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def delta_jars(cfg: Config) -> list[str]:
    jars_dir = Path(cfg.spark.jars_dir)
    if not jars_dir.is_absolute():
        jars_dir = PROJECT_DIR / jars_dir
    jars = sorted(str(p) for p in jars_dir.glob("delta-*.jar"))
    if not any(Path(j).name.startswith("delta-spark") for j in jars):
        raise SetupIncomplete(
            f"the Delta jars are missing from {jars_dir}",
            hint="run `make setup` (it fetches them with Maven)",
        )
    return jars


def build_session(cfg: Config, register: bool = True) -> SparkSession:
    """Build (or join) the SparkSession for this config and register the lakehouse tables."""
    active = SparkSession.getActiveSession()
    if active is not None:
        if register:
            register_tables(active, cfg)
        return active
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    settings = {
        **DELTA_CONF,
        "spark.jars": ",".join(delta_jars(cfg)),
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        "spark.sql.warehouse.dir": str(cfg.root / "warehouse"),
        "spark.sql.catalogImplementation": "in-memory",
        **cfg.spark.conf,
    }
    if not _under_spark_submit():
        builder = builder.master(cfg.spark.master)
        log4j = PROJECT_DIR / "conf" / "log4j2.properties"
        if log4j.is_file():
            settings.setdefault(
                "spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log4j}"
            )
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if register:
        register_tables(spark, cfg)
    return spark
