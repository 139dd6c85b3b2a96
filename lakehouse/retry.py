"""Writes that another job's commit got in ahead of: tried again on the new snapshot.

Delta commits optimistically: a MERGE that read the table while another writer committed files it
could have matched fails with a concurrent-modification error and commits nothing. Tidewater's
keyed writes (silver's MERGEs, quarantine's settle and insert-if-absent) are safe to run again
from the start, so they are retried with backoff; after the last try the error is one line that
says which table and what to do.
"""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

from delta.exceptions import (ConcurrentAppendException, ConcurrentDeleteDeleteException,
                              ConcurrentDeleteReadException, ConcurrentTransactionException,
                              ConcurrentWriteException, MetadataChangedException)

from lakehouse.console import progress
from lakehouse.errors import TidewaterError

T = TypeVar("T")

CONFLICTS = (ConcurrentAppendException, ConcurrentDeleteReadException, ConcurrentDeleteDeleteException,
             ConcurrentTransactionException, ConcurrentWriteException, MetadataChangedException)
ATTEMPTS = 8
FIRST_WAIT_SECONDS = 0.5


class WriteConflict(TidewaterError):
    """Another writer kept committing to the same table: nothing of this write was committed."""


def retry_conflicts(write: Callable[[], T], table: str, attempts: int = ATTEMPTS) -> T:
    """Run `write` (which must read what it needs afresh each time) until no concurrent commit beats it."""
    for attempt in range(1, attempts):
        try:
            return write()
        except CONFLICTS as err:
            wait = FIRST_WAIT_SECONDS * 2 ** (attempt - 1) * (1 + random.random())
            progress(f"{table}: another writer committed first ({type(err).__name__}); trying again in "
                     f"{wait:.1f}s ({attempt}/{attempts - 1})")
            time.sleep(wait)
    try:
        return write()
    except CONFLICTS as err:
        raise WriteConflict(f"{table}: another writer committed first {attempts} times in a row "
                            f"({type(err).__name__})",
                            hint="another job is writing this table; rerun when it is done (this write "
                                 "committed nothing)") from None
