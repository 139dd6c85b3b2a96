"""The resident driver (`tidewater services start driver`): one Spark session, kept up and warm, that
runs the jobs `tidewater run` hands it for its root and env (the protocol: lakehouse/resident_driver.py).

Before it takes a job it runs bronze -> silver -> gold on `services.driver.warm_up_rows` generated
transactions under a scratch root of its own, so that the first job finds Spark's code loaded and
JIT-compiled (what a fresh `tidewater run` process pays: benchmarks/lakehouse.py --resident).
It takes one job at a time, as its caller: the caller's identity, folder and output. A caller that
goes away has its job's Spark work cancelled until the job ends and its next output line raises; a
commit already under way may still land.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from lakehouse.config import load_config
from lakehouse.console import progress
from lakehouse.identity import ENV_USER, identify
from lakehouse.errors import TidewaterError, describe
from lakehouse.resident_driver import (PER_CALLER, code_identity, environment_digest, messages, restricted, send,
                                      session_digest, socket_path)
from services.server_args import server_parser

CANCEL_EVERY_S = 0.5
WARM_UP_JOBS = ("ingest_bronze", "refine_silver", "build_gold")


class _Forward:
    """A text stream whose writes go to the caller's socket (stdout or stderr of the job). Once the
    caller is gone, a write raises: the job stops at its next line of output, as a process whose
    terminal closed would."""

    def __init__(self, conn: socket.socket, stream: str, lock: threading.Lock, gone: threading.Event):
        self.conn, self.stream, self.lock, self.gone = conn, stream, lock, gone

    def write(self, text: str) -> int:
        if self.gone.is_set():
            raise BrokenPipeError("the caller of this job went away")
        with self.lock, contextlib.suppress(OSError):  # noticed by the cancelling thread
            send(self.conn, stream=self.stream, text=text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class ResidentDriver:
    """Serves `tidewater run` for one root and env from one Spark session, a job at a time."""

    def __init__(self, env: str | None, root: str | None, conf_dir: str | None):
        from lakehouse.session import build_session

        self.env, self.conf_dir = env, conf_dir
        self.cfg = load_config(env, root, conf_dir)
        who = identify(self.cfg)
        if who.restricted:  # its session's catalog would be the restricted one, for every caller
            raise PermissionError(f"{who.name} has the restricted role {who.role}: start the driver as an engineer")
        self.code, self.environment = code_identity(), environment_digest(self.cfg)
        self.session_conf = session_digest(self.cfg)
        self.lock = threading.Lock()
        self.running: str | None = None
        self.spark = build_session(self.cfg)

    def warm_up(self, rows: int) -> float:
        """Run the lakehouse stages on `rows` generated transactions under a scratch root (removed after)."""
        from lakehouse.generator import generate
        from lakehouse.job_runner import find_job

        scratch = self.cfg.root / "services" / "driver" / "warm-up"
        shutil.rmtree(scratch, ignore_errors=True)
        cfg = load_config(self.env, scratch, self.conf_dir)
        started = time.monotonic()
        generate(cfg.landing_dir, rows=rows, days=cfg.generator.days, seed=cfg.generator.seed + 1)
        for job in WARM_UP_JOBS:
            find_job(job)(self.spark, cfg)
        shutil.rmtree(scratch, ignore_errors=True)
        return time.monotonic() - started

    def refusal(self, request: dict) -> str | None:
        """Why this driver would not run the request as the caller's own process would; None if it would."""
        from lakehouse.job_runner import find_job
        from lakehouse.resident_driver import runs_alone

        if request["code"] != self.code or code_identity() != self.code:
            return f"the code changed since it started ({self.code}); restart it: {RESTART}"
        if request["session"] != self.session_conf:
            return f"the conf's spark or secrets settings changed since it started; restart it: {RESTART}"
        differ = [n for n in sorted(set(request["environment"]) | set(self.environment))
                  if request["environment"].get(n, "") != self.environment.get(n, "")]
        if differ:
            return f"{', '.join(differ)} not as in the environment it was started with"
        reason = restricted(identify(self.cfg, request["user"]))
        if reason is not None:
            return reason
        if not os.path.isdir(request["cwd"]):
            return f"it cannot enter the caller's folder {request['cwd']}"
        return runs_alone(find_job(request["job"]), argparse.Namespace(continuous="--continuous" in request["argv"]))

    def serve(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by a driver that was killed (`services start` refuses while one runs)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        os.chmod(path, 0o600)
        server.listen()
        progress(f"driver: serving `tidewater run` for {self.cfg.root} (env {self.cfg.env}) at {path}")
        try:
            while True:
                conn, _ = server.accept()
                threading.Thread(target=self.handle, args=(conn,), daemon=True).start()
        finally:
            server.close()
            path.unlink(missing_ok=True)

    def handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                request = next(messages(conn))
            except (OSError, ValueError, StopIteration):  # a readiness probe, or not our protocol
                return
            if not self.lock.acquire(blocking=False):
                with contextlib.suppress(OSError):
                    send(conn, refused=f"it is running {self.running or 'another job'}")
                return
            try:
                reason = self.refusal(request)
                if reason is not None:
                    send(conn, refused=reason)
                    return
                self.running = f"{request['job']} for {request['user']}"
                started = time.monotonic()
                _log(f"driver: {self.running}: {' '.join(request['argv'])}")
                send(conn, accepted=os.getpid())
                code = self._run(conn, request)
                _log(f"driver: {self.running}: exit {code} after {time.monotonic() - started:.1f} s")
                send(conn, exit=code)
            except (OSError, KeyError, TidewaterError) as err:  # the caller went, or sent what we cannot run
                _log(f"driver: request not run to the end: {describe(err)[0]}")
            finally:
                self.running = None
                self.lock.release()

    def _run(self, conn: socket.socket, request: dict) -> int:
        from lakehouse.job_runner import main as job_main, report_error

        done, gone, cancelling = threading.Event(), threading.Event(), threading.Lock()
        threading.Thread(target=self._cancel_when_gone, args=(conn, done, gone, cancelling, request["job"]),
                         daemon=True).start()
        try:
            with _as_caller(conn, request, gone):
                try:
                    return job_main(request["job"], request["argv"], spark=self.spark)
                except (Exception, SystemExit) as err:  # one line to the caller, as `tidewater run` prints it
                    return report_error(err)
        except OSError:  # its caller went away: not even the error could be told
            return 1
        finally:
            done.set()
            with cancelling:  # no cancel may reach the next caller's job
                pass
            for query in self.spark.streams.active:  # a job's stream never outlives it here
                _log(f"driver: stopping the stream {query.name or query.id} that {request['job']} left running")
                query.stop()

    def _cancel_when_gone(self, conn: socket.socket, done: threading.Event, gone: threading.Event,
                          cancelling: threading.Lock, job: str) -> None:
        """A caller closes its end only by going away: its job's Spark work is then cancelled until it
        ends, and its next line of output raises."""
        with contextlib.suppress(OSError):
            while conn.recv(1):
                pass
        gone.set()
        if not done.is_set():
            _log(f"driver: the caller of {job} went away; cancelling the job")
        while True:
            with cancelling:
                if done.is_set():
                    return
                self.spark.sparkContext.cancelAllJobs()
                for query in self.spark.streams.active:
                    with contextlib.suppress(Exception):
                        query.stop()
            done.wait(CANCEL_EVERY_S)


RESTART = "tidewater services stop driver; tidewater services start driver"


@contextlib.contextmanager
def _as_caller(conn: socket.socket, request: dict, gone: threading.Event) -> Iterator[None]:
    """While a job runs: its output goes to the caller, with the caller's identity and folder."""
    lock = threading.Lock()
    out, err = _Forward(conn, "out", lock, gone), _Forward(conn, "err", lock, gone)
    saved: dict[str, Any] = {n: os.environ.get(n) for n in PER_CALLER}
    cwd, stdout, stderr = os.getcwd(), sys.stdout, sys.stderr
    handlers = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    streams = [h.setStream(err) for h in handlers]
    sys.stdout, sys.stderr = out, err
    _set_environment({**request["caller"], ENV_USER: request["user"]})
    try:
        os.chdir(request["cwd"])
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        for handler, stream in zip(handlers, streams):
            handler.setStream(stream)
        _set_environment(saved)
        os.chdir(cwd)


def _log(message: str) -> None:
    """A line in the driver's own log (while a job runs, stderr is its caller's)."""
    progress(message, sys.__stderr__)


def _set_environment(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def main(argv: list[str] | None = None) -> None:
    from lakehouse.console import configure_logging
    from lakehouse.private_files import owner_only

    parser = server_parser("services.driver", __doc__.splitlines()[0])
    parser.add_argument("--warm-up-rows", type=int, help="transactions to warm up on (default: the conf's)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `services stop`: the socket goes with it
    owner_only()
    configure_logging()
    driver = ResidentDriver(args.env, args.root, args.conf_dir)
    rows = driver.cfg.services.driver.warm_up_rows if args.warm_up_rows is None else args.warm_up_rows
    if rows and driver.cfg.spark.catalog == "in-memory":  # a shared metastore would list the scratch tables
        progress(f"driver: warming up on {rows:,} generated transactions")
        progress(f"driver: warm after {driver.warm_up(rows):.1f} s")
    driver.serve(socket_path(driver.cfg))


if __name__ == "__main__":
    main()
