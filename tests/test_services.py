"""Given the demo lakehouse, when `tidewater services start` brings the stack up on loopback, then BI
clients read it over JDBC, a second start starts nothing, the scheduler runs the pipeline on a Spark
standalone cluster with the same result as a local run, and `services stop` leaves no process."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import DEMO_ENV, SMALL, conf_env, run_pipeline, tidewater_in_process
from lakehouse.config import _deep_merge, load_config
from lakehouse.delta_reader import content_digest, read_rows, table_inventory
from lakehouse.generator import generate
from lakehouse.grants import PII_COLUMNS
from lakehouse.identity import ENV_USER
from lakehouse.tokens import client_token, server_tokens, token_file

PASSWORD = {"TIDEWATER_METASTORE_PASSWORD": "metastore-test-password"}
# Ports of their own: a developer's running stack (default ports) is left alone.
PORTS = {"spark": {"master_port": 17077, "master_ui_port": 18080, "workers": 2, "worker_memory": "2g"},
         "metastore": {"port": 15433}, "sql": {"port": 11000, "driver_memory": "1g"},
         "mlflow": {"port": 15000}, "redis": {"port": 16379}}
MASTER = "spark://127.0.0.1:17077"


def _reachable_by_postgres(path: Path) -> None:
    """pytest's folders are private (0700); PostgreSQL runs as user postgres and must walk into its own."""
    for parent in [path, *path.parents]:
        if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
            os.chmod(parent, os.stat(parent).st_mode | 0o001)


def _callers(cfg, *names: str) -> None:
    """Caller tokens for these identities beside the current user's (the local token file)."""
    have = set(server_tokens(cfg).values())
    with open(token_file(cfg), "a") as out:
        out.writelines(f"{name}={secrets.token_hex(16)}\n" for name in names if name not in have)


def _connect(stack, user: str = "bi-test"):
    from pyhive import hive

    return hive.connect(host="127.0.0.1", port=stack.cfg.services.sql.port, username=user,
                        password=client_token(stack.cfg, user), auth="CUSTOM")


def services(*args: str, scenario) -> str:
    result = tidewater_in_process(["services", *args, "--env", scenario.env, "--root", str(scenario.root),
                                   "--conf-dir", str(scenario.conf_dir)], env=PASSWORD)
    assert result.returncode == 0, result.stderr
    return result.stdout


class Stack:
    def __init__(self, cfg, env, root, conf_dir):
        self.cfg, self.env, self.root, self.conf_dir = cfg, env, root, conf_dir


@pytest.fixture(scope="module")
def stack(demo_lake):
    """The demo lake served by metastore, spark (one worker), sql, mlflow and redis (scheduler: below)."""
    env = "servicetest"
    conf = conf_env(demo_lake.root, env, _deep_merge(DEMO_ENV, {"services": PORTS, "spark": {"catalog": "hive"}}))
    _reachable_by_postgres(demo_lake.root)
    cfg = load_config(env, root=demo_lake.root, conf_dir=conf)
    s = Stack(cfg, env, demo_lake.root, conf)
    _callers(cfg, "bi-test", "analyst")
    services("start", "metastore", "spark", "sql", "mlflow", "redis", scenario=s)
    yield s
    services("stop", scenario=s)  # nothing to do unless a test failed before the stop test


def _pids(stack) -> list[int]:
    rows = json.loads(services("status", "--format", "json", scenario=stack))
    return [r["pid"] for r in rows if r["pid"]]


def _listening(proc: psutil.Process) -> list:
    """A process's listening sockets; none for a short-lived child (a PostgreSQL worker) gone meanwhile."""
    try:
        return [c for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    except psutil.NoSuchProcess:
        return []


def test_start_brings_each_server_up_once_and_all_listen_on_loopback_only(stack):
    rows = json.loads(services("status", "--format", "json", scenario=stack))
    up = {r["service"] for r in rows if r["ready"]}
    assert {"metastore", "spark-master", "spark-worker-1", "spark-worker-2", "sql", "mlflow", "redis"} <= up, rows
    before = _pids(stack)
    again = services("start", "metastore", "spark", "sql", "mlflow", "redis", scenario=stack)
    assert again.count("already running") == 7, again
    assert _pids(stack) == before
    listening = {(c.laddr.ip, c.laddr.port) for pid in before
                 for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
                 for c in _listening(proc)}
    ports = {17077, 18080, 18081, 18082, 15433, 11000, 15000, 16379}
    assert ports <= {port for _, port in listening}, listening
    assert {ip.removeprefix("::ffff:") for ip, port in listening if port in ports} == {"127.0.0.1"}  # JVMs: v4-mapped


def test_a_port_taken_by_another_process_is_a_one_line_error(stack, tmp_path):
    from lakehouse.config import ServicesConf
    from services.process import Managed, ServiceError, start

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        svc = Managed("probe", ["sleep", "60"], tmp_path, ports=(port,), address=f"127.0.0.1:{port}")
        with pytest.raises(ServiceError, match=rf"port {port} on 127.0.0.1 is taken by pid {os.getpid()}"):
            start(svc, timeout=5)
    assert not svc.pid_file.exists()
    assert ServicesConf().host == "127.0.0.1"


def _rows(cfg, name):
    return read_rows(cfg, name)


def test_bi_clients_read_gold_and_drift_tables_over_jdbc(stack):
    """PyHive (DB-API), SQLAlchemy's inspector (what Superset lists schemas with) and beeline."""
    from sqlalchemy import create_engine, inspect

    port = stack.cfg.services.sql.port
    token = client_token(stack.cfg, "bi-test")
    with _connect(stack) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT event_date, txn_count, fraud_count FROM gold.fraud_kpis ORDER BY event_date")
        kpis = cursor.fetchall()
        cursor.execute("SELECT count(*), count(DISTINCT feature) FROM gold.drift_metrics")
        drift_rows, features = cursor.fetchone()
    expected = sorted((str(r["event_date"]), r["txn_count"], r["fraud_count"]) for r in _rows(stack.cfg, "gold.fraud_kpis"))
    assert [tuple(r) for r in kpis] == expected
    assert drift_rows == len(_rows(stack.cfg, "gold.drift_metrics")) and features > 5

    inspector = inspect(create_engine(f"sparksql://bi-test:{token}@127.0.0.1:{port}/default?auth=CUSTOM"))
    assert {"bronze", "silver", "gold", "meta", "bi"} <= set(inspector.get_schema_names())
    written = {t["name"].split(".", 1)[1] for t in table_inventory(stack.cfg) if t["name"].startswith("gold.")}
    assert written <= set(inspector.get_table_names(schema="gold"))
    assert set(inspector.get_view_names(schema="bi")) == {"drift_status", "model_health_daily", "quality_status"}
    columns = [c["name"] for c in inspector.get_columns("fraud_kpis", schema="gold")]
    assert columns[:3] == ["event_date", "txn_count", "total_amount_eur"]

    from pyspark.find_spark_home import _find_spark_home

    beeline = subprocess.run([f"{_find_spark_home()}/bin/beeline", "-u", f"jdbc:hive2://127.0.0.1:{port}/default",
                              "-n", "bi-test", "-p", token, "--outputformat=csv2", "--silent=true",
                              "-e", "SELECT count(*) AS n FROM gold.fraud_kpis"], capture_output=True, text=True, timeout=120)
    assert beeline.returncode == 0, beeline.stderr[-500:]
    # csv2: header, value; beeline echoes its prompt (`0: jdbc:...> `) even when silent
    answer = [re.sub(r"^0: jdbc:\S*> ?", "", line).strip() for line in beeline.stdout.splitlines()]
    assert [a for a in answer if a] == ["n", str(len(expected))]


def test_bi_views_give_a_row_per_thing_a_dashboard_shows(stack):

    with _connect(stack) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT feature, slice_value, count(*) FROM bi.drift_status GROUP BY feature, slice_value "
                       "HAVING count(*) > 1")
        assert cursor.fetchall() == []  # one latest row per feature and slice
        cursor.execute("SELECT sum(predictions), sum(alerts) FROM bi.model_health_daily")
        predictions, alerts = cursor.fetchone()
        cursor.execute("SELECT `table`, status, checks FROM bi.quality_status")
        quality = {t: (status, checks) for t, status, checks in cursor.fetchall()}
    deciding = [r for name in ("gold.predictions", "gold.predictions_stream") for r in _rows(stack.cfg, name)
                if r["route"] in ("champion", "canary")]
    assert predictions == len(deciding) and alerts == sum(r["decision"] for r in deciding)
    results = _rows(stack.cfg, "gold.quality_results")
    assert set(quality) == {r["table"] for r in results}
    assert all(status in ("passed", "warned", "quarantined", "failed") and checks > 0 for status, checks in quality.values())


def test_an_analyst_reads_its_granted_tables_over_jdbc_without_pii(stack):
    """Signed in with its token, the analyst reads what its role grants, as `tidewater sql` lets it: its
    masked views (SELECT * works there), granted tables without their PII columns; nothing else."""
    from pyhive import hive

    from services.sql_catalog import server_message

    silver = len(_rows(stack.cfg, "silver.transactions"))
    with _connect(stack, "analyst") as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT * FROM analyst.silver_transactions LIMIT 5")
        columns = {d[0].split(".")[-1] for d in cursor.description}
        assert len(cursor.fetchall()) == 5 and "txn_id" in columns and not columns & PII_COLUMNS
        cursor.execute("SELECT count(*), count(DISTINCT customer_id) FROM silver.transactions")
        assert cursor.fetchone()[0] == silver
        cursor.execute("SELECT count(*) FROM analyst.gold_fraud_kpis")
        assert cursor.fetchone()[0] == len(_rows(stack.cfg, "gold.fraud_kpis"))
        for query, says in (("SELECT * FROM silver.transactions", "has no PII grant"),
                            ("SELECT count(DISTINCT card_hash) FROM silver.transactions", "card_hash is masked"),
                            ("SELECT count(*) FROM bronze.transactions_raw", "has no read grant on bronze.transactions_raw"),
                            ("SELECT count(*) FROM quarantine.transactions", "has no read grant on quarantine.transactions"),
                            (f"SELECT count(*) FROM delta.`{stack.cfg.table('bronze.transactions_raw').path}`",
                             "has no read grant on bronze.transactions_raw"),  # a table's folder is the table
                            ("CREATE VIEW analyst.mine AS SELECT txn_id FROM silver.transactions", "may run queries only")):
            with pytest.raises(Exception) as denied:
                cursor.execute(query)
            message = server_message(denied.value)
            assert "analyst (role analyst)" in message and says in message, (query, message)
    with _connect(stack) as conn:  # an unrestricted caller reads everything
        cursor = conn.cursor()
        cursor.execute("SELECT count(card_hash) FROM silver.transactions")
        assert cursor.fetchone()[0] > 0
    with pytest.raises(Exception, match="(?i)authentication|unknown user|bad"):
        hive.connect(host="127.0.0.1", port=stack.cfg.services.sql.port, username="analyst",
                     password="0" * 32, auth="CUSTOM")


def test_a_bad_query_is_an_error_and_the_server_stays_up(stack):

    from services.sql_catalog import server_message

    with _connect(stack) as conn:
        cursor = conn.cursor()
        with pytest.raises(Exception) as bad:
            cursor.execute("SELECT no_such_column FROM gold.fraud_kpis")
        assert "UNRESOLVED_COLUMN" in server_message(bad.value) and "\n" not in server_message(bad.value)
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.slow
def test_a_job_session_sees_what_the_sql_server_registered(stack):
    """The shared metastore: a view made through the SQL server is there for `tidewater sql` in its own JVM."""
    done = subprocess.run([sys.executable, "-m", "lakehouse.cli", "sql", "SELECT count(*) AS n FROM bi.quality_status", "--format", "json",
                           "--env", stack.env, "--root", str(stack.root)],
                          capture_output=True, text=True, env={**os.environ, **PASSWORD,
                                                               "TIDEWATER_CONF_DIR": str(stack.conf_dir)})
    assert done.returncode == 0, done.stderr
    expected = len({r["table"] for r in _rows(stack.cfg, "gold.quality_results")})
    assert json.loads(done.stdout[done.stdout.index("["):])[0]["n"] == expected


def _running(job: str, root: Path) -> bool:
    return any(p.info["cmdline"] and job in p.info["cmdline"] and str(root) in p.info["cmdline"]
               for p in psutil.process_iter(["cmdline"]))


def _has_executor(stack, worker: int) -> bool:
    """The master's view: worker N runs an executor of some application."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{stack.cfg.services.spark.master_ui_port}/json/", timeout=5) as r:
        workers = sorted(json.load(r)["workers"], key=lambda w: w["webuiaddress"])
    ui = f":{stack.cfg.services.spark.master_ui_port + worker}"
    return any(w["webuiaddress"].endswith(ui) and w["coresused"] > 0 for w in workers)


@pytest.mark.slow
def test_the_scheduler_runs_the_pipeline_on_the_cluster_through_a_killed_worker_and_matches_a_local_run(
        stack, spark, tmp_path_factory):
    """Given the same landing files, when the scheduler runs ingest -> refine -> gold on the standalone cluster
    (executors in their own JVMs) and one of its two workers is killed (-9) while refine runs, then Spark
    reruns the lost tasks on the other and every table holds what the same jobs wrote in this local session."""
    cluster_root, local_root = tmp_path_factory.mktemp("on-cluster"), tmp_path_factory.mktemp("local-twin")
    small = {**SMALL, "rows": 1500, "days": 2}
    generate(cluster_root / "landing", **small)
    shutil.copytree(cluster_root / "landing", local_root / "landing")  # copy2: same sizes and times
    every = 15
    env = "clustertest"
    conf = conf_env(cluster_root, env, {
        # Two executors, one per worker (spread out): fewer JVMs to start on two cores, both workers in play.
        "spark": {"master": MASTER, "conf": {"spark.executor.memory": "1g", "spark.executor.cores": "1",
                                             "spark.cores.max": "2"}},
        "services": {**PORTS, "scheduler": {"schedules": [
            {"name": "pipeline", "every": f"{every}s", "jobs": ["ingest_bronze", "refine_silver", "build_gold"]}]}}})
    scheduled = Stack(load_config(env, root=cluster_root, conf_dir=conf), env, cluster_root, conf)
    started = dt.datetime.now(dt.timezone.utc)
    assert "scheduler: started" in services("start", "scheduler", scenario=scheduled)
    runs_file = cluster_root / "services" / "scheduler" / "runs.jsonl"
    worker = json.loads((stack.root / "services" / "spark" / "spark-worker-2.pid").read_text())["pid"]
    killed_at = None
    try:
        deadline = time.time() + 900
        while time.time() < deadline:
            if killed_at is None and _running("refine_silver", cluster_root) and _has_executor(stack, 2):
                time.sleep(10)  # well into the job's micro-batches
                os.killpg(worker, 9)  # the worker and the executor it launched
                killed_at = time.time()
            runs = [json.loads(line) for line in runs_file.read_text().splitlines()] if runs_file.exists() else []
            if any(r["job"] == "build_gold" for r in runs) or any(r["outcome"] == "failed" for r in runs):
                break
            time.sleep(5)
    finally:
        assert "scheduler: stopped" in services("stop", "scheduler", scenario=scheduled)
    assert killed_at is not None, "refine_silver never ran on both workers"
    assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE
    first = runs[:3]
    assert [(r["job"], r["outcome"]) for r in first] == [
        ("ingest_bronze", "succeeded"), ("refine_silver", "succeeded"), ("build_gold", "succeeded")], runs
    assert dt.datetime.fromisoformat(first[0]["started"]) >= started + dt.timedelta(seconds=every - 1)
    assert all(a["finished"] <= b["started"] for a, b in zip(first, first[1:]))  # in order, never overlapping

    local = load_config("local", root=local_root)
    run_pipeline(spark, local)
    cluster = scheduled.cfg
    lineage = _rows(cluster, "meta.lineage")
    assert {r["job"] for r in lineage} >= {"ingest_bronze", "refine_silver", "build_gold"}
    for name in [*(f"bronze.{t}" for t in local.tables["bronze"]), *(f"silver.{t}" for t in local.tables["silver"]),
                 "quarantine.transactions", "gold.customer_daily_spend", "gold.merchant_daily", "gold.fraud_kpis"]:
        assert content_digest(cluster, name) == content_digest(local, name), name
    assert not any(p.info["cmdline"] and str(cluster_root) in " ".join(p.info["cmdline"])
                   for p in psutil.process_iter(["cmdline"])), "a scheduled job outlived the scheduler"


def _scheduled(runs_file: Path) -> list[dict]:
    return [json.loads(line) for line in runs_file.read_text().splitlines()] if runs_file.exists() else []


def _succeeded_round(runs: list[dict], jobs: list[str]) -> list[dict] | None:
    """The first run of every job in order, each succeeded, among the scheduler's records."""
    for i in range(len(runs) - len(jobs) + 1):
        rnd = runs[i:i + len(jobs)]
        if [r["job"] for r in rnd] == jobs and all(r["outcome"] == "succeeded" for r in rnd):
            return rnd
    return None


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.slow
def test_a_warm_scheduler_runs_its_jobs_in_one_driver_and_replaces_a_killed_one(spark, tmp_path_factory):
    """Given `driver: warm` and ingest -> refine -> gold every 10 s, when two rounds have run and the
    scheduler's driver JVM is then killed (-9), then both rounds ran in one JVM as the scheduler, a later
    round runs in a new JVM, and the tables hold what the same jobs wrote in this session."""
    root, twin = tmp_path_factory.mktemp("warm-scheduler"), tmp_path_factory.mktemp("warm-twin")
    generate(root / "landing", **{**SMALL, "rows": 1500, "days": 2})
    shutil.copytree(root / "landing", twin / "landing")
    env, jobs = "warmtest", ["ingest_bronze", "refine_silver", "build_gold"]
    conf = conf_env(root, env, {"services": {"scheduler": {"driver": "warm", "schedules": [
        {"name": "pipeline", "every": "10s", "jobs": jobs}]}}})
    scheduled = Stack(load_config(env, root=root, conf_dir=conf), env, root, conf)
    runs_file = root / "services" / "scheduler" / "runs.jsonl"
    assert "scheduler: started" in services("start", "scheduler", scenario=scheduled)
    later = None
    try:
        deadline = time.time() + 600
        while len(_scheduled(runs_file)) < 2 * len(jobs) and time.time() < deadline:
            time.sleep(2)
        first_two = _scheduled(runs_file)[:2 * len(jobs)]
        os.kill(first_two[0]["driver_pid"], 9)
        while later is None and time.time() < deadline:
            time.sleep(2)
            later = _succeeded_round(_scheduled(runs_file)[2 * len(jobs):], jobs)
    finally:
        assert "scheduler: stopped" in services("stop", "scheduler", scenario=scheduled)
    assert [(r["job"], r["outcome"]) for r in first_two] == [(job, "succeeded") for job in jobs] * 2, first_two
    assert len({r["driver_pid"] for r in first_two}) == 1
    assert later is not None, _scheduled(runs_file)
    assert len({r["driver_pid"] for r in later}) == 1 and later[0]["driver_pid"] != first_two[0]["driver_pid"]
    assert _gone(later[0]["driver_pid"]), "the scheduler's driver outlived it"
    assert {r["actor"] for r in _rows(scheduled.cfg, "meta.lineage")} == {"scheduler"}
    local = load_config("local", root=twin)
    run_pipeline(spark, local)
    for name in [*(f"silver.{t}" for t in local.tables["silver"]), "quarantine.transactions",
                 "gold.customer_daily_spend", "gold.merchant_daily", "gold.fraud_kpis"]:
        assert content_digest(scheduled.cfg, name) == content_digest(local, name), name


def test_a_warm_scheduler_refuses_to_run_code_it_did_not_load(monkeypatch, tmp_path):
    """Given a warm scheduler that imported another commit than the checkout now holds, when a job is due,
    then it is refused with a hint to restart, before any driver starts: lineage never names code that
    did not run."""
    from services.scheduler import WarmDriver

    monkeypatch.setenv(ENV_USER, "someone")  # the driver sets the scheduler's identity; put back afterwards
    driver = WarmDriver(lambda: load_config("local", root=tmp_path))
    driver.code = "0" * 40  # what an older checkout's process would have imported
    returncode, detail, extra = driver("ingest_bronze", [])
    assert returncode == 1 and "the code changed since the scheduler started" in detail
    assert "tidewater services start scheduler" in detail and extra == {} and driver.spark is None
    assert not (tmp_path / "tables").exists()


def test_stop_leaves_no_process_behind(stack):
    """Runs last in this file: the stack stops in reverse order, SIGTERM first, and nothing of it survives."""
    pids = _pids(stack)
    family = [p for pid in pids for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]]
    out = services("stop", scenario=stack)
    assert "killed" not in out and out.count("stopped") == len(pids), out  # worker 2 died in the drill
    assert not [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not list((stack.root / "services").glob("*/*.pid"))
