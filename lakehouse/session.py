"""The one SparkSession factory: Delta, jars and logging from the Config."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from pyspark.sql import SparkSession

from lakehouse.catalog import write_catalog_script
from lakehouse import jvm_functions
from lakehouse.config import PROJECT_DIR, Config
from lakehouse.errors import SetupIncomplete
from lakehouse.identity import identify
from lakehouse.pii import DEMO_KEY, key_in_environment
from lakehouse.private_files import HADOOP_UMASK, owner_only

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def _under_spark_submit() -> bool:
    # spark-submit starts the JVM first and hands Python the gateway port; its --master and
    # --conf flags then win over the config's defaults.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def jars_dir(cfg: Config) -> Path:
    """spark.jars_dir, relative to the project: where `make setup` puts the jars Maven fetches."""
    path = Path(cfg.spark.jars_dir)
    return path if path.is_absolute() else PROJECT_DIR / path


def delta_jars(cfg: Config) -> list[str]:
    folder = jars_dir(cfg)
    jars = sorted(str(p) for p in folder.glob("delta-*.jar"))
    if not any(Path(j).name.startswith("delta-spark") for j in jars):
        raise SetupIncomplete(
            f"the Delta jars are missing from {folder}",
            hint="run `make setup` (it fetches them with Maven)",
        )
    return jars


def metastore_client_dir(cfg: Config) -> Path:
    """Where `tidewater services start metastore` writes the hive-site.xml its clients read."""
    return cfg.root / "services" / "metastore" / "client"


UDF_JAR = "tidewater-spark.jar"  # jvm/, compiled by `make setup`
KAFKA_SOURCE_JARS = ("spark-sql-kafka-*.jar", "spark-token-provider-kafka-*.jar", "kafka-clients-*.jar",
                     "commons-pool2-*.jar")


def spark_jars(cfg: Config) -> list[str]:
    """spark.jars: Delta, Spark's Kafka source (sources of kind kafka) with what it needs, and our own functions."""
    folder = jars_dir(cfg)
    kafka = sorted(str(p) for pattern in KAFKA_SOURCE_JARS for p in folder.glob(pattern))
    if not any(Path(j).name.startswith("spark-sql-kafka") for j in kafka):
        raise SetupIncomplete(f"Spark's Kafka source jars are missing from {folder}",
                              hint="run `make setup` (it fetches them with Maven)")
    return delta_jars(cfg) + kafka + [own_jar(cfg)]


def own_jar(cfg: Config) -> str:
    """jars/tidewater-spark.jar: the PII hash, the SQL server's sign-in and grants check (jvm/)."""
    own = jars_dir(cfg) / UDF_JAR
    if not own.is_file():
        raise SetupIncomplete(f"Tidewater's Spark classes ({own.name}) are missing from {own.parent}",
                              hint="run `make setup` (it compiles jvm/ with javac)")
    return str(own)


def jdbc_jar(cfg: Config) -> str:
    """The PostgreSQL JDBC driver the metastore's clients load (fetched by `make setup`)."""
    jars = sorted(jars_dir(cfg).glob("postgresql-*.jar"))
    if not jars:
        raise SetupIncomplete(f"the PostgreSQL JDBC jar is missing from {jars_dir(cfg)}",
                              hint="run `make setup` (Maven fetches it)")
    return str(jars[-1])


def hive_class_path(cfg: Config) -> str:
    """The driver class path of a `hive` catalog session: the metastore's client settings and JDBC driver."""
    client = metastore_client_dir(cfg)
    if not (client / "hive-site.xml").is_file():
        raise SetupIncomplete(f"the {cfg.env} env uses the shared metastore, which has not been started at {cfg.root}",
                              hint="`tidewater services start metastore`")
    return f"{client}:{jdbc_jar(cfg)}"


CLASS_ARCHIVE = "driver.jsa"  # written by `make setup` (lakehouse.class_archive)


def class_archive(cfg: Config) -> Path:
    """The driver JVM's class-data-sharing archive: Spark's, Delta's and our classes as a JVM holds
    them once loaded, mapped by each new driver instead of read, parsed and verified again."""
    return jars_dir(cfg) / CLASS_ARCHIVE


def archive_class_path(cfg: Config, catalog: str) -> str | None:
    """The driver's class path where it can map the archive, else None: with the shared metastore
    its client folder is on it (a JVM maps an archive only where no folder on its class path holds
    files), and a class path the conf sets is the user's.

    spark.jars reach the driver through a class loader of Spark's own, which an archive cannot hold:
    here they are on the JVM's class path too, in one order at `make setup` and at every launch."""
    if catalog == "hive" or "spark.driver.extraClassPath" in cfg.spark.conf:
        return None
    return ":".join(spark_jars(cfg))


def driver_java_options(cfg: Config, *launch: str) -> str:
    """The driver JVM's flags: the project's logging setting, spark.driver_java_options and
    spark.jit_directives, the launch's own (`launch`: the class archive's), then any
    spark.driver.extraJavaOptions the conf sets."""
    log4j = PROJECT_DIR / "conf" / "log4j2.properties"
    flags = [f"-Dlog4j2.configurationFile=file:{log4j}"] if log4j.is_file() else []
    flags += cfg.spark.driver_java_options
    if cfg.spark.jit_directives:
        directives = PROJECT_DIR / cfg.spark.jit_directives
        flags += ["-XX:+UnlockDiagnosticVMOptions", f"-XX:CompilerDirectivesFile={directives}"]
    flags += launch
    if cfg.spark.conf.get("spark.driver.extraJavaOptions"):
        flags.append(cfg.spark.conf["spark.driver.extraJavaOptions"])
    return " ".join(flags)


@contextlib.contextmanager
def _archive_conf_dir(cfg: Config) -> Iterator[None]:
    """While the driver JVM is launched: an empty SPARK_CONF_DIR, unless the user set one.

    Spark's launcher puts the conf folder first on the driver's class path; pyspark's holds the
    spark-defaults.conf written for spark-submit (the session sets all of it itself), and a folder
    holding files keeps the JVM from mapping its class archive."""
    if os.environ.get("SPARK_CONF_DIR"):
        yield
        return
    empty = jars_dir(cfg) / "driver-conf"
    empty.mkdir(parents=True, exist_ok=True)
    os.environ["SPARK_CONF_DIR"] = str(empty)
    try:
        yield
    finally:
        os.environ.pop("SPARK_CONF_DIR", None)


@contextlib.contextmanager
def _jvm_output_to(log_file: Path) -> Iterator[None]:
    """Start the JVM with its stdout and stderr in a log file: its chatter is not for the terminal
    (Delta's VACUUM prints its counts to stdout, which would break a command's --format json).

    The JVM inherits file descriptors 1 and 2 when it is launched; Python's own are restored
    right after. TIDEWATER_DEBUG=1 leaves everything on the terminal.
    """
    if os.environ.get("TIDEWATER_DEBUG") or _under_spark_submit():
        yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with open(log_file, "ab") as log:
        for fd in saved:
            os.dup2(log.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


def build_session(cfg: Config, *, write_class_archive: Path | None = None) -> SparkSession:
    """Build (or join) the SparkSession for this config (tables get names on demand: lakehouse.catalog).

    A driver launched here maps the class archive where `make setup` wrote one (a stale one, after
    an update of Java or a jar, the JVM ignores with a warning in its log); `write_class_archive`
    instead has the JVM write one there when it exits (lakehouse.class_archive)."""
    write_catalog_script(cfg)
    active = SparkSession.getActiveSession()
    if active is not None:
        jvm_functions.register(active)  # a session started by spark-submit, or by a notebook
        return active
    owner_only()  # the JVM and its workers inherit it: bronze's files are its owner's alone
    # Python workers (UDFs, scoring) run this interpreter unless the user chose one.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    # A restricted identity's views (lakehouse.grants) stay in its own session, out of a shared metastore.
    catalog = "in-memory" if identify(cfg).restricted else cfg.spark.catalog
    settings = {
        **DELTA_CONF,
        "spark.jars": ",".join(spark_jars(cfg)),
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        "spark.sql.warehouse.dir": str(cfg.root / "warehouse"),
        "spark.sql.catalogImplementation": catalog,
        **HADOOP_UMASK,
        **cfg.spark.conf,
    }
    if catalog == "hive":
        settings["spark.driver.extraClassPath"] = hive_class_path(cfg)
    class_path = archive_class_path(cfg, catalog)
    if class_path is not None:
        settings["spark.driver.extraClassPath"] = class_path
    key = os.environ.get(cfg.secrets.pii_key_env) or (DEMO_KEY if cfg.secrets.allow_demo_key else None)
    if key and cfg.spark.master.startswith("spark://"):  # executors of a cluster hash PII too
        settings[f"spark.executorEnv.{cfg.secrets.pii_key_env}"] = key  # redacted: spark.redaction.regex
    if not _under_spark_submit():
        builder = builder.master(cfg.spark.master)
        archive = _archive_flags(cfg, write_class_archive) if class_path is not None else []
        settings["spark.driver.extraJavaOptions"] = driver_java_options(cfg, *archive)
    for key, value in settings.items():
        builder = builder.config(key, value)
    conf_dir = _archive_conf_dir(cfg) if class_path is not None else contextlib.nullcontext()
    with _jvm_output_to(cfg.root / "logs" / "spark-driver.log"), key_in_environment(cfg), conf_dir:
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    jvm_functions.register(spark)
    return spark


def _archive_flags(cfg: Config, write_to: Path | None) -> list[str]:
    if write_to is not None:
        return [f"-XX:ArchiveClassesAtExit={write_to}"]
    archive = class_archive(cfg)
    return [f"-XX:SharedArchiveFile={archive}"] if archive.is_file() else []


def write_spark_defaults(cfg: Config) -> Path:
    """Write Delta's settings into the installed Spark's spark-defaults.conf.

    Under spark-submit the driver JVM starts before our Python code runs, so jars named in the
    session builder come too late for the driver's class path; spark-defaults.conf is read at
    JVM start, which makes `spark-submit jobs/<job>.py` work with no extra flags.
    """
    from pyspark.find_spark_home import _find_spark_home

    conf_file = Path(_find_spark_home()) / "conf" / "spark-defaults.conf"
    conf_file.parent.mkdir(parents=True, exist_ok=True)
    settings = {**DELTA_CONF, **HADOOP_UMASK, "spark.jars": ",".join(spark_jars(cfg)),
                "spark.driver.extraJavaOptions": driver_java_options(cfg)}
    conf_file.write_text("# Written by `make setup` (lakehouse.session.write_spark_defaults).\n"
                         + "".join(f"{k} {v}\n" for k, v in settings.items()))
    return conf_file


if __name__ == "__main__":
    from lakehouse.config import load_config

    print(f"wrote {write_spark_defaults(load_config())}")
