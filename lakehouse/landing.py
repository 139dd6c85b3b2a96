"""The landing protocol: a file is visible to ingest only once it is complete.

A source writes each file under a hidden name (`.<name>.part`, in the batch folder it belongs to) and
renames it into place when it is complete: a rename on one filesystem is atomic, and Spark's file
source never lists names that start with `.` or `_`. A file that changes after it was ingested (a
copy that did not follow the protocol, a resend under the same name) is not read again in part: ingest
quarantines its whole final content with a reason (lakehouse.bronze.quarantine_changed_files).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterator

PART_SUFFIX = ".part"


def part_path(path: Path) -> Path:
    """Where `path` is written until it is complete: hidden from every listing ingest makes."""
    return path.with_name(f".{path.name}{PART_SUFFIX}")


@contextlib.contextmanager
def complete_file(path: Path, mode: str = "w") -> Iterator[IO[str]]:
    """Open `path` for writing by the protocol: it appears under its name, whole, when the block ends."""
    part = part_path(path)
    with open(part, mode) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)
