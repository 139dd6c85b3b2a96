"""One managed server process: started once, found again by its pid file, stopped with nothing left.

A pid file alone can name a process that died and whose pid was reused, so the record also keeps
the process's start time: a process is ours only if both match. Each server runs in a session of
its own, so a stop signals the whole process group (a JVM and the children it forked go together).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lakehouse.errors import TidewaterError
from lakehouse.pidfile import live_pid, write_pid


class ServiceError(TidewaterError):
    """A server could not be started, found or stopped."""


@dataclass(frozen=True)
class Managed:
    """A server process: how to start it, where it listens, and how to tell it is ready."""

    name: str
    argv: list[str]
    state_dir: Path
    ports: tuple[int, ...] = ()
    host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # run as this OS user (PostgreSQL refuses to run as root)
    ready: Callable[[], bool] | None = None  # default: every port accepts connections
    address: str = ""  # what `status` prints: a URL or host:port
    # Stop by signalling the leader alone first: a Spark driver stops its query and its own JVM, where
    # a SIGTERM to the whole group would kill the JVM under a micro-batch.
    leader_first: bool = False

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"


def as_user(user: str | None) -> dict:
    """Popen's arguments to run as `user` with that user's own group only (root's group would leave it
    the group permissions of root's private folders, which are none)."""
    if user is None:
        return {}
    import pwd

    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def _listener(port: int) -> str:
    """Who listens on `port` (for the error when it is taken), as far as this user may see."""
    import psutil

    try:
        for conn in psutil.net_connections("inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({proc.name()})"
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        pass
    return "another process"


def running_pid(svc: Managed) -> int | None:
    """The pid of this service's live process, or None (no record, dead, or the pid was reused)."""
    return live_pid(svc.pid_file)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def is_ready(svc: Managed) -> bool:
    if svc.ready is not None:
        return svc.ready()
    return all(port_open(svc.host, p) for p in svc.ports)


def start(svc: Managed, timeout: float = 120.0) -> str:
    """Start `svc` unless it runs; wait until it is ready. Returns what happened, in a line."""
    pid = running_pid(svc)
    if pid is not None:
        return f"{svc.name}: already running (pid {pid}) at {svc.address}"
    for port in svc.ports:
        if port_open(svc.host, port):
            raise ServiceError(f"{svc.name}: port {port} on {svc.host} is taken by {_listener(port)}",
                               hint=f"stop that process, or set another port for {svc.name} under services: in conf")
    svc.state_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **svc.env}
    with open(svc.log_file, "ab") as log:
        proc = subprocess.Popen(svc.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, **as_user(svc.user))
    write_pid(svc.pid_file, proc.pid, argv0=svc.argv[0])
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            svc.pid_file.unlink(missing_ok=True)
            raise ServiceError(f"{svc.name} exited with status {proc.returncode} while starting: "
                               f"{_tail(svc.log_file) or 'no output'}", hint=f"full log: {svc.log_file}")
        if is_ready(svc):
            return f"{svc.name}: started (pid {proc.pid}) at {svc.address}; log {svc.log_file}"
        time.sleep(0.5)
    stop(svc)
    raise ServiceError(f"{svc.name} was not ready after {timeout:.0f}s: {_tail(svc.log_file) or 'no output'}",
                       hint=f"it was stopped again; full log: {svc.log_file}")


def stop(svc: Managed, timeout: float = 30.0) -> str:
    """SIGTERM the service's process group, SIGKILL what is left after `timeout`."""
    import psutil

    pid = running_pid(svc)
    if pid is None:
        svc.pid_file.unlink(missing_ok=True)
        return f"{svc.name}: not running"
    group = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    began = time.monotonic()
    if svc.leader_first:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        psutil.wait_procs(group[:1], timeout=timeout)
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    _, alive = psutil.wait_procs(group, timeout=max(1.0, timeout - (time.monotonic() - began)))
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    svc.pid_file.unlink(missing_ok=True)
    how = "killed after {:.0f}s".format(timeout) if alive else "stopped"
    return f"{svc.name}: {how} (pid {pid})"


def status(svc: Managed) -> dict:
    pid = running_pid(svc)
    return {"service": svc.name, "running": pid is not None, "pid": pid,
            "ready": bool(pid is not None and is_ready(svc)), "address": svc.address, "log": str(svc.log_file)}
