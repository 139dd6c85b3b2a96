"""The scheduler service: each configured schedule runs its jobs in order, every `every`.

APScheduler keeps the clock (one instance per schedule: a run still going when the next is due is
not started twice, and missed runs coalesce into one). Each job runs as `tidewater run JOB`, so it is
recorded in meta.lineage like any other run; a job listed in two schedules never runs twice at once
(a lock per job). Every scheduled run appends a line to <root>/services/scheduler/runs.jsonl.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from lakehouse.config import Config, ScheduleConf, load_config
from lakehouse.errors import AlreadyRunning
from lakehouse.identity import ENV_USER
from lakehouse.locks import exclusive
from services.server_args import server_args


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _record(log: Path, **row) -> None:
    with open(log, "a") as handle:
        handle.write(json.dumps(row) + "\n")


SCHEDULER = "scheduler"  # the identity scheduled runs act as (conf access.identities gives it a role)


def run_schedule(cfg: Config, schedule: ScheduleConf, job_args: list[str], log: Path) -> None:
    """Run the schedule's jobs in order; the first that fails ends this run (the next one retries)."""
    for job in schedule.jobs:
        started = _now()
        try:
            with exclusive(cfg, f"scheduled_{job}", doing="running"):
                done = subprocess.run([sys.executable, "-m", "lakehouse.cli", "run", job, *job_args],
                                      capture_output=True, text=True, env={**os.environ, ENV_USER: SCHEDULER})
        except AlreadyRunning as err:
            _record(log, schedule=schedule.name, job=job, started=started, finished=_now(), outcome="skipped",
                    detail=str(err))
            continue
        last = (done.stderr.strip().splitlines() or [""])[-1]
        _record(log, schedule=schedule.name, job=job, started=started, finished=_now(),
                outcome="succeeded" if done.returncode == 0 else "failed", returncode=done.returncode, detail=last)
        if done.returncode != 0:
            return


def serve(cfg: Config, job_args: list[str]) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    state = cfg.root / "services" / "scheduler"
    state.mkdir(parents=True, exist_ok=True)
    log, heartbeat = state / "runs.jsonl", state / "heartbeat"
    scheduler = BackgroundScheduler(timezone="UTC")
    for schedule in cfg.services.scheduler.schedules:
        scheduler.add_job(run_schedule, IntervalTrigger(seconds=schedule.seconds), args=(cfg, schedule, job_args, log),
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
    serve(cfg, job_args)


if __name__ == "__main__":
    main()
