"""The API's decisions on local disk until `record_decisions` merges them into gold.decisions_online.

The API writes each decision (a JSON line) and flushes it before it answers, so every answered
decision is in a file even if the process is killed right after; a thread fsyncs the open file every
second against a machine crash. A line cut short by a kill was never answered and is skipped.
Files are `<started>-<pid>.jsonl.open` while a process writes them and `.jsonl` once it closed
them (rotation every `ROTATE_LINES` lines, or at shutdown); one whose writer is gone counts as closed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path

import psutil

from lakehouse.config import Config

ROTATE_LINES = 50_000
OPEN = ".open"


def decisions_dir(cfg: Config) -> Path:
    return cfg.root / "services" / "api" / "decisions"


class DecisionLog:
    """Append-only, one writer per process; safe to call from request handlers (a lock per write)."""

    def __init__(self, cfg: Config):
        self.dir = decisions_dir(cfg)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock, self.file, self.lines = threading.Lock(), None, 0
        self.stop = threading.Event()
        threading.Thread(target=self._sync_every_second, name="decision-log-fsync", daemon=True).start()

    def _open(self) -> None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        self.path = self.dir / f"{stamp}-{os.getpid()}.jsonl{OPEN}"
        self.file, self.lines = open(self.path, "a", encoding="utf-8"), 0

    def _close(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            self.path.rename(self.path.with_name(self.path.name.removesuffix(OPEN)))
            self.file = None

    def write(self, rows: list[dict]) -> None:
        with self.lock:
            if self.file is None:
                self._open()
            self.file.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
            self.file.flush()
            self.lines += len(rows)
            if self.lines >= ROTATE_LINES:
                self._close()

    def _sync_every_second(self) -> None:
        while not self.stop.wait(1.0):
            with self.lock:
                if self.file is not None:
                    os.fsync(self.file.fileno())

    def close(self) -> None:
        self.stop.set()
        with self.lock:
            self._close()


def _writer_alive(path: Path) -> bool:
    pid = int(path.name.split(".")[0].rsplit("-", 1)[1])
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pending_files(cfg: Config) -> list[tuple[Path, bool]]:
    """(file, closed) for every buffer file, oldest first; closed ones may be deleted once recorded."""
    d = decisions_dir(cfg)
    files = sorted(d.glob("*.jsonl*")) if d.exists() else []
    return [(p, not p.name.endswith(OPEN) or not _writer_alive(p)) for p in files]


def read_lines(path: Path) -> tuple[list[dict], int]:
    """The complete lines of a buffer file, and how many torn lines (cut by a kill) were skipped."""
    rows, torn = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                torn += 1
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                torn += 1
    return rows, torn
