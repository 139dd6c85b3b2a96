"""One run at a time: an exclusive lock file under the storage root per job that must not overlap.

`flock` is released by the kernel when the holder dies, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from typing import Iterator

from lakehouse.config import Config
from lakehouse.errors import AlreadyRunning


@contextmanager
def exclusive(cfg: Config, name: str, doing: str = "running") -> Iterator[None]:
    """Hold <root>/_locks/<name>.lock for the block, or raise AlreadyRunning naming the holder."""
    path = cfg.root / "_locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise AlreadyRunning(f"another {name} run ({holder}) is {doing}",
                                 hint="wait for it to finish (or stop it), then rerun; nothing was changed") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
