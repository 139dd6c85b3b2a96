"""The servers `tidewater services` runs, in start order, each from the project's own installs.

Spark's master and workers come from the pyspark wheel (`spark-class`; it has no start scripts), the
SQL server is Spark's Thrift server over the shared metastore, MLflow and the scheduler run in the
platform's Python, PostgreSQL and Redis are Debian's servers, Kafka is Apache's broker from Maven's jars.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from lakehouse.config import PROJECT_DIR, Config
from lakehouse.session import DELTA_CONF, delta_jars, jdbc_jar, metastore_client_dir, own_jar
from lakehouse.grants import grant_settings
from lakehouse.tokens import tokens_text
from services import kafka, metastore
from services.process import Managed, ServiceError, port_open

ORDER = ["metastore", "spark", "sql", "mlflow", "redis", "kafka", "features", "api", "driver", "scheduler"]
# Started only when named: a resident driver holds a JVM (and, on a cluster, executors) for its root.
ON_REQUEST = ("driver",)


def _spark_home() -> Path:
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home())


def state_dir(cfg: Config, name: str) -> Path:
    return cfg.root / "services" / name


def _alive_workers(cfg: Config) -> int:
    s = cfg.services
    try:
        url = f"http://{s.host}:{s.spark.master_ui_port}/json/"
        with urllib.request.urlopen(url, timeout=2) as reply:
            return int(json.load(reply).get("aliveworkers", 0))
    except (OSError, ValueError):
        return 0


def spark_cluster(cfg: Config, workers: int | None = None) -> list[Managed]:
    """The standalone master, then N workers (each ready once the master counts it alive)."""
    s, host = cfg.services.spark, cfg.services.host
    d = state_dir(cfg, "spark")
    spark_class = str(_spark_home() / "bin" / "spark-class")
    env = {"SPARK_LOCAL_IP": host, "SPARK_LOG_DIR": str(d), "SPARK_WORKER_DIR": str(d / "work"),
           "PYSPARK_PYTHON": sys.executable}
    master_url = f"spark://{host}:{s.master_port}"
    procs = [Managed("spark-master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", host,
                                      "--port", str(s.master_port), "--webui-port", str(s.master_ui_port)],
                     d, ports=(s.master_port, s.master_ui_port), host=host, env=env,
                     address=f"{master_url} (UI http://{host}:{s.master_ui_port})")]
    recorded = len(list(d.glob("spark-worker-*.pid")))  # so that stop finds workers a --workers start added
    for i in range(workers or max(s.workers, recorded)):
        ui_port = s.master_ui_port + 1 + i
        procs.append(Managed(f"spark-worker-{i + 1}",
                             [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", host,
                              "--cores", str(s.worker_cores), "--memory", s.worker_memory,
                              "--webui-port", str(ui_port), "--work-dir", str(d / "work"), master_url],
                             d, ports=(ui_port,), host=host, env=env,
                             ready=lambda n=i + 1: _alive_workers(cfg) >= n,
                             address=f"worker of {master_url} (UI http://{host}:{ui_port})"))
    return procs


GRANTS_EXTENSION = "dev.tidewater.spark.GrantsExtension"
TOKEN_AUTHENTICATOR = "dev.tidewater.spark.TokenAuthenticator"


def sql_server(cfg: Config) -> Managed:
    """Spark's Thrift server (HiveServer2 protocol, JDBC/ODBC) over the shared metastore.

    Users sign in with their caller token as password (lakehouse.tokens; CUSTOM authentication,
    jvm/.../TokenAuthenticator), and each statement runs as its user (doAs), so the grants check
    (jvm/.../GrantsCheck) holds a restricted identity to its role's grants, as `tidewater sql` does.
    """
    q, host = cfg.services.sql, cfg.services.host
    d = state_dir(cfg, "sql")
    argv = [str(_spark_home() / "bin" / "spark-submit"),
            "--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2", "--name", "tidewater-sql",
            "--master", q.master, "--driver-memory", q.driver_memory,
            # Delta on the driver's own class path too: jars added by spark.jars alone are not always
            # visible to the Thrift server's per-session class loader (DATA_SOURCE_NOT_FOUND: DELTA).
            "--driver-class-path", ":".join([str(metastore_client_dir(cfg)), jdbc_jar(cfg),
                                             *delta_jars(cfg), own_jar(cfg)]),
            "--conf", "spark.sql.catalogImplementation=hive",
            "--conf", f"spark.sql.extensions={DELTA_CONF['spark.sql.extensions']},{GRANTS_EXTENSION}",
            *[x for key, value in grant_settings(cfg).items() for x in ("--conf", f"{key}={value}")],
            "--conf", f"spark.tidewater.access.tokensEnv={cfg.access.tokens_env}",
            "--conf", f"spark.sql.warehouse.dir={cfg.root / 'warehouse'}",
            "--conf", "spark.ui.enabled=false",
            "--conf", f"spark.sql.session.timeZone={cfg.spark.conf.get('spark.sql.session.timeZone', 'UTC')}",
            "spark-internal",
            "--hiveconf", f"hive.server2.thrift.port={q.port}", "--hiveconf", f"hive.server2.thrift.bind.host={host}",
            "--hiveconf", "hive.server2.authentication=CUSTOM",
            "--hiveconf", f"hive.server2.custom.authentication.class={TOKEN_AUTHENTICATOR}",
            "--hiveconf", "hive.server2.enable.doAs=true"]
    return Managed("sql", argv, d, ports=(q.port,), host=host,
                   env={"SPARK_LOG_DIR": str(d), cfg.access.tokens_env: tokens_text(cfg)},
                   address=f"jdbc:hive2://{host}:{q.port}/default (user + token)")


def mlflow_server(cfg: Config) -> Managed:
    port, host = cfg.services.mlflow.port, cfg.services.host
    d = state_dir(cfg, "mlflow")
    argv = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{d / 'mlflow.db'}",
            "--artifacts-destination", (d / "artifacts").as_uri()]

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    return Managed("mlflow", argv, d, ports=(port,), host=host, ready=healthy, address=f"http://{host}:{port}")


def redis_server(cfg: Config) -> Managed:
    port, host = cfg.services.redis.port, cfg.services.host
    d = state_dir(cfg, "redis")
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server is not installed", hint="`make setup` installs Debian's redis-server")
    argv = [binary, "--bind", host, "--port", str(port), "--dir", str(d), "--appendonly", "yes",
            "--save", "", "--daemonize", "no", "--protected-mode", "yes"]
    return Managed("redis", argv, d, ports=(port,), host=host, address=f"redis://{host}:{port}")


def _python_server(module: str, cfg: Config, env: str | None, conf_dir: str | None) -> list[str]:
    """`python -m MODULE` for this root, env and conf folder (services.server_args parses them)."""
    argv = [sys.executable, "-m", module, "--root", str(cfg.root)]
    if env:
        argv += ["--env", env]
    if conf_dir:
        argv += ["--conf-dir", conf_dir]
    return argv


def scheduler(cfg: Config, env: str | None, conf_dir: str | None) -> Managed:
    d = state_dir(cfg, "scheduler")
    argv = _python_server("services.scheduler", cfg, env, conf_dir)
    heartbeat = d / "heartbeat"

    def ticking() -> bool:  # written every 5 s: a stale file from an earlier run is not a live scheduler
        return heartbeat.exists() and time.time() - heartbeat.stat().st_mtime < 15

    return Managed("scheduler", argv, d, env={"PYTHONPATH": str(PROJECT_DIR), "SPARK_LOCAL_IP": cfg.services.host},
                   ready=ticking, address=f"{len(cfg.services.scheduler.schedules)} schedules "
                   f"(runs in {d / 'runs.jsonl'})")


def resident_driver(cfg: Config, env: str | None, conf_dir: str | None) -> Managed:
    """The warm Spark session `tidewater run` hands its jobs to (services/driver.py)."""
    from lakehouse.resident_driver import socket_path

    path = socket_path(cfg)

    def listening() -> bool:  # it binds the socket once warm; a file left by a killed one refuses
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            return probe.connect_ex(str(path)) == 0

    argv = [*_python_server("services.driver", cfg, env, conf_dir),
            "--warm-up-rows", str(cfg.services.driver.warm_up_rows)]
    return Managed("driver", argv, state_dir(cfg, "driver"),
                   env={"PYTHONPATH": str(PROJECT_DIR), "SPARK_LOCAL_IP": cfg.services.host}, ready=listening,
                   address=f"{path} (`tidewater run` for {cfg.root}, env {cfg.env})")


def online_features(cfg: Config, env: str | None, conf_dir: str | None) -> Managed:
    """stream_online --continuous: the online store follows new transactions (Kafka or silver)."""
    from features.online_stream import SOURCE, from_kafka, status_file
    from lakehouse.kafka_topic import topic_of

    argv = [sys.executable, "-m", "lakehouse.cli", "run", "stream_online", "--continuous", "--root", str(cfg.root)]
    argv += [*(["--env", env] if env else []), *(["--conf-dir", conf_dir] if conf_dir else [])]
    status = status_file(cfg)

    def streaming() -> bool:  # rewritten every second while the query runs; a file left by a stopped one is not
        try:
            state = json.loads(status.read_text())
        except (OSError, ValueError):
            return False
        return state.get("state") == "running" and time.time() - state.get("updated_at", 0) < 15

    kafka = SOURCE in cfg.sources and from_kafka(cfg)
    fed_by = f"Kafka topic {topic_of(SOURCE, cfg.sources[SOURCE])}" if kafka else "silver.transactions"
    return Managed("features", argv, state_dir(cfg, "features"),
                   env={"PYTHONPATH": str(PROJECT_DIR), "SPARK_LOCAL_IP": cfg.services.host}, ready=streaming,
                   leader_first=True, address=f"{fed_by} -> {cfg.features.online_store} online store (status {status})")


def api_server(cfg: Config, env: str | None, conf_dir: str | None) -> Managed:
    port, host = cfg.services.api.port, cfg.services.host
    d = state_dir(cfg, "api")
    argv = _python_server("services.api_server", cfg, env, conf_dir)

    def answering() -> bool:  # 503 before a champion is registered: up, and /healthz says why
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    return Managed("api", argv, d, ports=(port,), host=host, env={"PYTHONPATH": str(PROJECT_DIR)}, ready=answering,
                   address=f"http://{host}:{port}/v1/score")


def services(cfg: Config, names: list[str], env: str | None = None, conf_dir: str | None = None,
             workers: int | None = None) -> list[tuple[str, list[Managed]]]:
    """(name, processes) for each name asked, in start order."""
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        raise ServiceError(f"unknown service {unknown[0]!r}", hint=f"services: {', '.join(ORDER)}")
    build = {"metastore": lambda: [metastore.server(cfg)], "spark": lambda: spark_cluster(cfg, workers),
             "sql": lambda: [sql_server(cfg)], "mlflow": lambda: [mlflow_server(cfg)],
             "redis": lambda: [redis_server(cfg)], "kafka": lambda: [kafka.server(cfg)],
             "features": lambda: [online_features(cfg, env, conf_dir)], "api": lambda: [api_server(cfg, env, conf_dir)],
             "driver": lambda: [resident_driver(cfg, env, conf_dir)], "scheduler": lambda: [scheduler(cfg, env, conf_dir)]}
    return [(n, build[n]()) for n in ORDER if n in (names or ORDER)]


def require_metastore(cfg: Config) -> None:
    if not port_open(cfg.services.host, cfg.services.metastore.port) or \
            not (metastore_client_dir(cfg) / "hive-site.xml").exists():
        raise ServiceError("the SQL server needs the metastore, which is not running",
                           hint="`tidewater services start metastore sql`")
