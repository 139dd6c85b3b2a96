"""Pid files that name one process, not whatever later got its pid: the record keeps its start time.

A process is the recorded one only if both its pid and its start time match; a pid file left by a
process that died (a kill -9, a reboot) names nothing, even when the pid has been given to another.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_pid(path: Path, pid: int, **extra) -> None:
    import psutil

    path.write_text(json.dumps({"pid": pid, "started": psutil.Process(pid).create_time(), **extra}))


def live_pid(path: Path) -> int | None:
    """The recorded process's pid while it runs, else None (no record, dead, a zombie, or a reused pid)."""
    import psutil

    try:
        record = json.loads(path.read_text())
        proc = psutil.Process(record["pid"])
        if proc.status() == psutil.STATUS_ZOMBIE or abs(proc.create_time() - record["started"]) > 1.0:
            return None
        return record["pid"]
    except (FileNotFoundError, ValueError, KeyError, TypeError, psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
