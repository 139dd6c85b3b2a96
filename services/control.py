"""Start, stop and report the stack: the order, the set-up around each server, one caller at a time."""

from __future__ import annotations

from typing import Iterator

from lakehouse.config import Config
from lakehouse.locks import exclusive
from services import kafka, metastore, process, stack


def start_services(cfg: Config, names: list[str], env: str | None = None, conf_dir: str | None = None,
                   workers: int | None = None) -> Iterator[str]:
    """Start each service asked (by default all but those started on request) in order; yields a line per process."""
    timeout = cfg.services.start_timeout_seconds
    names = names or [n for n in stack.ORDER if n not in stack.ON_REQUEST]
    with exclusive(cfg, "services", doing="starting or stopping services"):  # check-then-spawn as one step
        for name, procs in stack.services(cfg, names, env, conf_dir, workers):
            if name == "metastore" and metastore.initialize(cfg):
                yield "metastore: PostgreSQL data folder created"
            if name == "sql":
                stack.require_metastore(cfg)
            if name == "kafka" and kafka.initialize(cfg):
                yield "kafka: storage formatted (KRaft, a new cluster id)"
            for proc in procs:
                yield process.start(proc, timeout=timeout)
            if name == "metastore":
                yield metastore.prepare(cfg)
            if name == "sql":
                from services.sql_catalog import sync_catalog

                yield sync_catalog(cfg)


def stop_services(cfg: Config, names: list[str]) -> Iterator[str]:
    """Stop each service asked (all by default) in reverse order: workers before the master."""
    with exclusive(cfg, "services", doing="starting or stopping services"):
        for _, procs in reversed(stack.services(cfg, names)):
            for proc in reversed(procs):
                yield process.stop(proc)


def foreground(cfg: Config, name: str, env: str | None = None, conf_dir: str | None = None) -> None:
    """Replace this process with one service's server (no pid file: its supervisor owns it)."""
    import os

    [(_, procs)] = stack.services(cfg, [name], env, conf_dir)
    if len(procs) != 1:
        raise process.ServiceError(f"{name} is several processes", hint="run `spark-class` master and workers one per container")
    if name == "metastore":
        metastore.initialize(cfg)
    if name == "kafka":
        kafka.initialize(cfg)
    if name == "sql":  # the metastore runs elsewhere: only the client settings are written here
        metastore.write_client_conf(cfg, metastore.password(cfg))
    proc = procs[0]
    if proc.user:
        raise process.ServiceError(f"{name} must not run as root in the foreground", hint=f"run it as user {proc.user}")
    os.execvpe(proc.argv[0], proc.argv, {**os.environ, **proc.env})


def service_status(cfg: Config, names: list[str]) -> list[dict]:
    return [process.status(p) for _, procs in stack.services(cfg, names) for p in procs]
