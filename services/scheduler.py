"""The scheduler service: each configured schedule runs its jobs in order, every `every`.

APScheduler keeps the clock (one instance per schedule: a run still going when the next is due is
not started twice, and missed runs coalesce into one). Each job runs as `tidewater run JOB`, so it is
recorded in meta.lineage like any other run; a job listed in two schedules never runs twice at once
(a lock per job). Every scheduled run appends a line to <root>/services/scheduler/runs.jsonl.

With `services.scheduler.driver: warm` the jobs run instead in the scheduler's own Spark session, one
at a time across all schedules (they share its session, and Great Expectations' context is one per
process), as the scheduler's identity. Its JVM has compiled the jobs' code on earlier runs;
one that died is replaced at the next job.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from lakehouse.config import Config, ScheduleConf, load_config
from lakehouse.console import progress
from lakehouse.errors import AlreadyRunning, describe
from lakehouse.identity import ENV_USER
from lakehouse.lineage import code_version
from lakehouse.locks import exclusive
from services.server_args import server_args


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _record(log: Path, **row) -> None:
    with open(log, "a") as handle:
        handle.write(json.dumps(row) + "\n")


SCHEDULER = "scheduler"  # the identity scheduled runs act as (conf access.identities gives it a role)


def run_process(job: str, job_args: list[str]) -> tuple[int, str, dict]:
    """The job as a `tidewater run` process of its own: its exit status and last line."""
    done = subprocess.run([sys.executable, "-m", "lakehouse.cli", "run", job, *job_args],
                          capture_output=True, text=True, env={**os.environ, ENV_USER: SCHEDULER})
    return done.returncode, (done.stderr.strip().splitlines() or [""])[-1], {}


class WarmDriver:
    """The scheduler's own Spark session, in which `driver: warm` runs the jobs one at a time."""

    def __init__(self, load: Callable[[], Config]):
        self.load, self.lock, self.spark = load, threading.Lock(), None
        self.code = code_version()  # what this process imported
        os.environ[ENV_USER] = SCHEDULER  # the identity in lineage and the audit log, as a process run's

    def __call__(self, job: str, job_args: list[str]) -> tuple[int, str, dict]:
        from lakehouse.job_runner import find_job

        with self.lock:
            now = code_version()
            if now != self.code:  # lineage would name code this process never loaded
                return 1, (f"error: the code changed since the scheduler started ({self.code} -> {now}); "
                           "restart it: tidewater services stop scheduler; tidewater services start scheduler"), {}
            try:
                cfg = self.load()  # the conf as it is now; Spark's own settings are the session's
                spark = self._session(cfg)
                find_job(job)(spark, cfg)
            except Exception as err:  # recorded like a process's one-line error
                message, _ = describe(err)
                return 1, f"error: {message}", {"driver_pid": self._pid()}
            return 0, "", {"driver_pid": self._pid()}

    def _session(self, cfg: Config):
        from lakehouse.session import build_session

        if self.spark is not None and not self._alive():
            progress("scheduler: the warm driver's JVM is gone; starting a new one")
            _forget_dead_session()
            self.spark = None
        if self.spark is None:
            self.spark = build_session(cfg)
            progress(f"scheduler: jobs run in this process's driver (warm), JVM pid {self._pid()}")
        return self.spark

    def _alive(self) -> bool:
        from py4j.protocol import Py4JError

        try:
            return not self.spark.sparkContext._jsc.sc().isStopped()
        except (Py4JError, ConnectionError, AttributeError):
            return False

    def _pid(self) -> int | None:
        from pyspark import SparkContext

        gateway = SparkContext._gateway
        return gateway.proc.pid if gateway is not None and getattr(gateway, "proc", None) else None


def _forget_dead_session() -> None:
    """PySpark keeps its gateway and session in class attributes: cleared, the next session launches a JVM."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    SparkContext._gateway = SparkContext._jvm = SparkContext._active_spark_context = None
    SparkSession._instantiatedSession = SparkSession._activeSession = None


def run_schedule(cfg: Config, schedule: ScheduleConf, job_args: list[str], log: Path,
                 runner: Callable[[str, list[str]], tuple[int, str, dict]] = run_process) -> None:
    """Run the schedule's jobs in order; the first that fails ends this run (the next one retries)."""
    for job in schedule.jobs:
        started = _now()
        try:
            with exclusive(cfg, f"scheduled_{job}", doing="running"):
                returncode, last, extra = runner(job, job_args)
        except AlreadyRunning as err:
            _record(log, schedule=schedule.name, job=job, started=started, finished=_now(), outcome="skipped",
                    detail=str(err))
            continue
        _record(log, schedule=schedule.name, job=job, started=started, finished=_now(),
                outcome="succeeded" if returncode == 0 else "failed", returncode=returncode, detail=last, **extra)
        if returncode != 0:
            return


def serve(cfg: Config, job_args: list[str], load: Callable[[], Config]) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    state = cfg.root / "services" / "scheduler"
    state.mkdir(parents=True, exist_ok=True)
    log, heartbeat = state / "runs.jsonl", state / "heartbeat"
    runner = WarmDriver(load) if cfg.services.scheduler.driver == "warm" else run_process
    scheduler = BackgroundScheduler(timezone="UTC")
    for schedule in cfg.services.scheduler.schedules:
        scheduler.add_job(run_schedule, IntervalTrigger(seconds=schedule.seconds),
                          args=(cfg, schedule, job_args, log, runner),
                          id=schedule.name, max_instances=1, coalesce=True, misfire_grace_time=None)
    scheduler.start()
    while True:
        heartbeat.write_text(json.dumps({"at": _now(), "next": {j.id: str(j.next_run_time) for j in scheduler.get_jobs()}}))
        time.sleep(5)


def main(argv: list[str] | None = None) -> None:
    args = server_args("services.scheduler", __doc__.splitlines()[0], argv)
    cfg = load_config(args.env, args.root, args.conf_dir)
    job_args = ["--root", str(cfg.root)]
    if args.env:
        job_args += ["--env", args.env]
    if args.conf_dir:
        job_args += ["--conf-dir", args.conf_dir]
    serve(cfg, job_args, lambda: load_config(args.env, args.root, args.conf_dir))


if __name__ == "__main__":
    main()
