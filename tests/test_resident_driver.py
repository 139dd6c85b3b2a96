"""Given the resident driver started for a root (`tidewater services start driver`), when `tidewater run`
runs bronze -> silver -> gold there, then the driver's one warm JVM ran them as the caller, with the
tables a run in the caller's own process writes; a caller it would not run as (another PII key, a
restricted identity, a second caller while it is busy) is told why and runs in its own process, as
do runs that keep going and jobs run elsewhere; a caller killed mid-job has the job cancelled, the next
run completes; `services stop driver` leaves no process and no socket."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from conftest import SMALL, conf_env, run_pipeline, tidewater_in_process
from lakehouse.config import load_config
from lakehouse.delta_reader import content_digest, read_rows
from lakehouse.generator import generate
from lakehouse.identity import ENV_USER
from lakehouse.job_runner import find_job
from lakehouse.resident_driver import ENV_DRIVER, runs_alone, socket_path, submit

pytestmark = pytest.mark.slow
ENV = "drivertest"
CALLER = "pipeline-test"
STAGES = ("ingest_bronze", "refine_silver", "build_gold")
# Bronze is left out: it records the landing files' modification times, which differ between the copies.
TABLES = ("silver.transactions", "silver.customers", "silver.labels",
          "quarantine.transactions", "gold.customer_daily_spend", "gold.merchant_daily", "gold.fraud_kpis")


def _cli(cfg, conf, *args: str, env: dict | None = None, **popen):
    """`tidewater ARGS` as a process of its own (a caller of the driver), for this root and env."""
    argv = [sys.executable, "-m", "lakehouse.cli", *args, "--env", ENV, "--root", str(cfg.root), "--conf-dir", str(conf)]
    environ = {k: v for k, v in os.environ.items() if k != ENV_DRIVER}
    return argv, {**environ, ENV_USER: CALLER, **(env or {})}


def _run(cfg, conf, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    argv, environ = _cli(cfg, conf, "run", *args, env=env)
    return subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=300)


def _driver_pid(cfg, conf) -> int:
    out = tidewater_in_process(["services", "status", "driver", "--env", ENV, "--root", str(cfg.root),
                                "--conf-dir", str(conf), "--format", "json"]).stdout
    [row] = json.loads(out)
    return row["pid"]


@pytest.fixture(scope="module")
def driven(tmp_path_factory):
    """A root with generated arrivals and the resident driver serving it (warmed on 2,000 rows)."""
    base = tmp_path_factory.mktemp("resident")
    conf = conf_env(base, ENV, {"services": {"driver": {"warm_up_rows": 2000}}})
    cfg = load_config(ENV, root=base / "root", conf_dir=conf)
    generate(cfg.landing_dir, **SMALL)
    started = tidewater_in_process(["services", "start", "driver", "--env", ENV, "--root", str(cfg.root),
                                    "--conf-dir", str(conf)])
    assert started.returncode == 0, started.stderr
    yield cfg, conf
    tidewater_in_process(["services", "stop", "driver", "--env", ENV, "--root", str(cfg.root), "--conf-dir", str(conf)])


def test_jobs_run_in_the_warm_driver_as_the_caller(driven, spark, tmp_path):
    cfg, conf = driven
    pid = _driver_pid(cfg, conf)
    log = (cfg.root / "services" / "driver" / "driver.log").read_text()
    assert "driver: warm after" in log and not (cfg.root / "services" / "driver" / "warm-up").exists()

    for job in STAGES:
        done = _run(cfg, conf, job)
        assert done.returncode == 0, done.stderr
        assert f"{job}: runs in the resident driver (pid {pid})" in done.stderr
        assert f"{job}: done in" in done.stderr  # the job's own progress, relayed

    # The same arrivals, landed again and refined in this test's own session, give the same tables.
    reference = load_config("local", root=tmp_path / "reference")
    generate(reference.landing_dir, **SMALL)
    run_pipeline(spark, reference)
    for table in TABLES:
        assert content_digest(cfg, table) == content_digest(reference, table), table
    runs = sorted((r for r in read_rows(cfg, "meta.audit_log") if r["surface"] == "job"), key=lambda r: r["at"])
    assert [(r["actor"], r["action"], r["outcome"]) for r in runs] == [(CALLER, job, "ok") for job in STAGES]


def test_a_caller_it_would_not_run_as_is_told_why_and_runs_alone(driven, capsys, monkeypatch):
    cfg, conf = driven
    monkeypatch.setenv(cfg.secrets.pii_key_env, "another-key")
    assert submit("build_gold", [], cfg) is None
    assert (f"build_gold: runs in this process, not the resident driver: {cfg.secrets.pii_key_env} not as in the "
            "environment it was started with") in capsys.readouterr().err

    monkeypatch.delenv(cfg.secrets.pii_key_env)
    monkeypatch.setenv(ENV_USER, "analyst")
    assert submit("build_gold", [], cfg) is None
    assert "analyst has the restricted role analyst" in capsys.readouterr().err

    monkeypatch.setenv(ENV_USER, CALLER)
    monkeypatch.setenv(ENV_DRIVER, "process")
    assert submit("build_gold", [], cfg) is None and capsys.readouterr().err == ""

    # Runs that keep going and jobs that run in another environment never go to it.
    assert runs_alone(find_job("stream_online"), argparse.Namespace(continuous=True)) == "it keeps running (--continuous)"
    assert runs_alone(find_job("train"), argparse.Namespace()) == "it hands itself over to another environment"
    assert runs_alone(find_job("build_gold"), argparse.Namespace(full=True)) is None


def test_a_killed_caller_has_its_job_cancelled_and_the_next_run_completes(driven, capsys):
    cfg, conf = driven
    log = cfg.root / "services" / "driver" / "driver.log"
    argv, environ = _cli(cfg, conf, "run", "build_gold", "--full")
    caller = subprocess.Popen(argv, env=environ, stderr=subprocess.PIPE, text=True)
    for line in caller.stderr:
        if "runs in the resident driver" in line:
            break
    # Busy: a second caller is told so and runs in its own process.
    assert submit("build_gold", ["--full"], cfg) is None
    assert "not the resident driver: it is running build_gold for pipeline-test" in capsys.readouterr().err
    caller.send_signal(signal.SIGKILL)
    caller.wait()
    deadline = time.time() + 60
    while "build_gold for pipeline-test: exit 1" not in log.read_text() and time.time() < deadline:
        time.sleep(0.5)
    assert "the caller of build_gold went away; cancelling the job" in log.read_text()
    assert "build_gold for pipeline-test: exit 1" in log.read_text()

    again = _run(cfg, conf, "build_gold", "--full")
    assert again.returncode == 0 and "runs in the resident driver" in again.stderr, again.stderr
    assert read_rows(cfg, "gold.fraud_kpis")


def test_stop_leaves_no_process_and_no_socket(driven):
    cfg, conf = driven
    pid = _driver_pid(cfg, conf)
    stopped = tidewater_in_process(["services", "stop", "driver", "--env", ENV, "--root", str(cfg.root),
                                    "--conf-dir", str(conf)])
    assert stopped.returncode == 0 and f"driver: stopped (pid {pid})" in stopped.stdout
    assert not psutil.pid_exists(pid) and not socket_path(cfg).exists()
    alone = _run(cfg, conf, "build_gold")  # no driver: the job runs (here: skips) in its own process
    assert alone.returncode == 0 and "resident driver" not in alone.stderr, alone.stderr
