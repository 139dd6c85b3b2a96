"""The resident driver's address and protocol, and `tidewater run`'s side of it.

A `tidewater run` process starts a JVM that loads Spark's classes and JIT-compiles its code again
every time: at 1M rows on 2 cores about 25 s of a 66 s bronze -> silver -> gold run
(benchmarks/lakehouse.py), at the demo's size most of a job. `tidewater services start driver`
(services/driver.py) keeps one warm session up per root and env. While it is up, `tidewater run`
sends it the job's command line over a Unix socket only its owner can open, prints what the job
prints and exits with the job's status; a caller that goes away (Ctrl-C, kill) cancels its job.

The driver runs one job at a time, and only one it runs as the caller's own process would: the same
code and session settings, the same TIDEWATER_*/MLFLOW_* environment and keys, an identity without
restrictions (a restricted one gets a session with a catalog of its own). Otherwise, or while it is
busy, the job runs in the caller's process as before, and the caller is told why in a line. Runs that
keep going and jobs that hand themselves over run in their own process, as does every job with
`TIDEWATER_DRIVER=process`.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import struct
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from lakehouse.config import Config
from lakehouse.console import progress
from lakehouse.identity import ENV_USER

ENV_DRIVER = "TIDEWATER_DRIVER"  # `process`: never hand a job to the resident driver
# Set per job from the caller's environment (who, and where its conf and root are); every other
# TIDEWATER_* variable must be the driver's own.
PER_CALLER = (ENV_USER, "TIDEWATER_DEBUG", "TIDEWATER_ROOT", "TIDEWATER_ENV", "TIDEWATER_CONF_DIR")


def _runtime_dir() -> Path:
    """A folder only this user can enter, for the sockets (their paths must stay under ~100 bytes).
    Always under /tmp: a caller from cron or ssh finds the driver a login shell started."""
    base = Path("/tmp") / f"tidewater-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    st = base.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{base} is not this user's private folder (owner {st.st_uid}, mode {oct(st.st_mode)})")
    return base


def socket_path(cfg: Config) -> Path:
    """Where the resident driver for this root and env listens."""
    digest = hashlib.sha256(f"{cfg.root}\0{cfg.env}".encode()).hexdigest()[:16]
    return _runtime_dir() / f"driver-{digest}.sock"


def environment_digest(cfg: Config, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The settings a job reads from the environment, each as a hash (keys never travel as text)."""
    environ = os.environ if environ is None else environ
    names = {n for n in environ if n.startswith(("TIDEWATER_", "MLFLOW_"))}
    names |= {cfg.secrets.pii_key_env, cfg.access.tokens_env}
    return {n: hashlib.sha256(environ[n].encode()).hexdigest()[:16] if n in environ else ""
            for n in sorted(names - {*PER_CALLER, ENV_DRIVER})}


def session_digest(cfg: Config) -> str:
    """The conf's settings a running session cannot take up: Spark's, and the secrets' (the key's
    variable and whether the demo key may stand in for it are fixed when the JVM starts)."""
    return hashlib.sha256((cfg.spark.model_dump_json() + cfg.secrets.model_dump_json()).encode()).hexdigest()[:16]


def code_identity() -> str:
    """The code a process runs: the commit, and with local changes a hash of them (a driver started on
    a changed tree must not take a job after further changes, which `-dirty` alone would not tell)."""
    from lakehouse.config import PROJECT_DIR
    from lakehouse.lineage import code_version

    version = code_version()
    if not version.endswith("-dirty"):
        return version
    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=PROJECT_DIR, capture_output=True, timeout=10).stdout
    return f"{version}:{hashlib.sha256(diff).hexdigest()[:12]}"


def runs_alone(spec, args) -> str | None:
    """Why this job run does not go to the resident driver, or None: one that keeps running
    (`--continuous`) or hands itself over to another environment (training) runs as it always has."""
    if getattr(args, "continuous", False):
        return "it keeps running (--continuous)"
    if spec.hand_over is not None:
        return "it hands itself over to another environment"
    return None


def restricted(who) -> str | None:
    """Why this identity's jobs stay out of the driver, or None: a restricted one's session keeps a
    catalog of its own (lakehouse.session)."""
    if who.restricted:
        return f"{who.name} has the restricted role {who.role}, whose session keeps a catalog of its own"
    return None


def send(conn: socket.socket, **message) -> None:
    conn.sendall((json.dumps(message) + "\n").encode())


def messages(conn: socket.socket) -> Iterator[dict]:
    with conn.makefile("r", encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


def _same_user(conn: socket.socket) -> bool:
    """The process at the other end runs as this user (the folder says so; the kernel confirms it)."""
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid == os.getuid()


def submit(job: str, argv: list[str], cfg: Config) -> int | None:
    """Run `job` with `argv` in the resident driver for cfg's root and env, printing what it prints:
    its exit status, or None where no driver takes it (none is up, or it says why it will not)."""
    from lakehouse.identity import current_user, identify

    if os.environ.get(ENV_DRIVER) == "process":
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(socket_path(cfg)))
    except OSError:  # no driver: the usual case
        conn.close()
        return None
    with conn:
        if not _same_user(conn):
            progress(f"{job}: runs in this process: the resident driver's socket belongs to another user")
            return None
        reason = restricted(identify(cfg))
        if reason is not None:
            progress(f"{job}: runs in this process, not the resident driver: {reason}")
            return None
        send(conn, job=job, argv=argv, cwd=os.getcwd(), code=code_identity(), session=session_digest(cfg),
             user=current_user(), caller={n: os.environ.get(n) for n in PER_CALLER},
             environment=environment_digest(cfg))
        for message in messages(conn):
            if "refused" in message:
                progress(f"{job}: runs in this process, not the resident driver: {message['refused']}")
                return None
            if "accepted" in message:
                progress(f"{job}: runs in the resident driver (pid {message['accepted']})")
                continue
            if "exit" in message:
                return message["exit"]
            stream = sys.stdout if message.get("stream") == "out" else sys.stderr
            stream.write(message["text"])
            stream.flush()
    progress(f"{job}: the resident driver went away before the job ended")
    return 1
