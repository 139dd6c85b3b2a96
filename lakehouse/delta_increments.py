"""The rows a Delta table's commits added since a reader's last position, read as batches from its log.

This is what a Delta stream with `skipChangeCommits` hands a `foreachBatch`, without a streaming
query: a warm driver spends ~1 s (~1.3 CPU-s) planning and bookkeeping a query before its first row,
and silver started four per run. The log is read here: on a first run every file of the snapshot
(oldest first), after that the files each later commit added. A commit that also removed rows (an
erasure's DELETE) brings no new rows and is passed over, as `skipChangeCommits` does. The files are
split into batches that take files until they hold `max_bytes` (the file that crosses it included, as
a Delta stream's `maxBytesPerTrigger` admits them; a file is never split), each read as Parquet.

Progress is kept in the layout of a Structured Streaming checkpoint: offsets/<n> holds batch n's
end, a Delta source offset, written before the batch is processed; commits/<n> is written after it.
So a checkpoint a Delta stream left resumes here, a batch killed half-way is replayed with the same
id and the same files, and governance.stream_offsets reads how far a reader got whichever wrote it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from lakehouse.errors import TidewaterError

LOG_DIGITS = 20  # digits of a Delta commit file name
OFFSET_LOG = "v1"  # the version line Structured Streaming writes atop offsets/<n> and commits/<n>
BATCHES_KEPT = 100  # as spark.sql.streaming.minBatchesToRetain


class UnreadableIncrement(TidewaterError):
    """The table's log no longer holds what the reader has not read, or it was replaced."""


@dataclass(frozen=True)
class Position:
    """A Delta source offset: every file of `version` up to `index` read (-1: none of it yet). A
    starting version's files are its snapshot's, oldest first; a later version's those its commit added."""

    version: int
    index: int
    starting: bool


@dataclass(frozen=True)
class AddedFile:
    path: str  # as the log names it: relative to the table and URL-encoded, or absolute
    size: int
    plain: bool  # the Parquet file's rows are its rows in the table (no deletion vector)


@dataclass(frozen=True)
class Batch:
    id: int
    files: tuple[AddedFile, ...]  # none: the batch only moves the position past commits that added no rows
    end: Position
    snapshot: int | None = None  # a first run's whole snapshot, read through Delta (files not plain)


def _finished(last: Position) -> Position:
    """Where a reader that read `last`, the last file of its version, goes on: the next version, none
    of it read yet (as a Delta stream records it; the finished version's files are not listed again)."""
    return Position(last.version + 1, -1, False)


def source_offsets(record: Path) -> list[dict]:
    """The Delta source offsets in a streaming checkpoint's offsets/<n> file (one per Delta source;
    line 0 is the log's version, line 1 the batch's metadata)."""
    return [json.loads(line) for line in record.read_text().splitlines()[1:]
            if line.startswith("{") and "reservoirId" in line]


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class DeltaIncrements:
    """Batches of the rows a Delta table gained up to `upto` that the checkpoint has not committed."""

    def __init__(self, spark: SparkSession, table_path: str, checkpoint: Path, max_bytes: int, upto: int):
        from deltalake import DeltaTable
        from pyarrow import fs

        from lakehouse.delta_reader import reader_features

        self.spark, self.path, self.checkpoint, self.max_bytes, self.upto = spark, table_path, checkpoint, max_bytes, upto
        self._fs, root = fs.FileSystem.from_uri(table_path if "://" in table_path else f"file://{table_path}")
        self._log = f"{root}/_delta_log"
        self._table = DeltaTable(table_path, version=upto)
        self.table_id = self._table.metadata().id
        # Partition values and physical column names are not in the Parquet files: such tables are
        # read whole through Delta on a first run, and cannot be read by increment.
        self.plain_layout = not (self._table.metadata().partition_columns
                                 or "columnMapping" in reader_features(self._table))
        self.schema = T.StructType.fromJson(json.loads(self._table.schema().to_json()))

    # -- the checkpoint ------------------------------------------------------------------------------
    def _ids(self, folder: str) -> list[int]:
        return sorted(int(p.name) for p in (self.checkpoint / folder).glob("[0-9]*") if p.name.isdigit())

    def _reset_hint(self) -> str:
        return (f"remove {self.checkpoint} to read the table again from its current snapshot: silver's MERGE "
                "keeps each key once, but rows quarantined before are quarantined again")

    def _position(self, batch_id: int) -> Position:
        record = self.checkpoint / "offsets" / str(batch_id)
        offset = next(iter(source_offsets(record)), None)
        if offset is None:
            raise UnreadableIncrement(f"{record} holds no Delta source offset: it is not a Delta reader's checkpoint",
                                      hint=self._reset_hint())
        if offset["reservoirId"] != self.table_id:
            raise UnreadableIncrement(
                f"{self.checkpoint} read another table at {self.path} (Delta id {offset['reservoirId']}, now "
                f"{self.table_id}): the table was replaced", hint=self._reset_hint())
        return Position(offset["reservoirVersion"], offset.get("index", -1), offset.get("isStartingVersion", False))

    def batches(self) -> Iterator[Batch]:
        """The batch a killed run left uncommitted (same id, same files), then new ones up to `upto`."""
        committed, planned = self._ids("commits"), self._ids("offsets")
        last = committed[-1] if committed else None
        start = self._position(last) if last is not None else None
        next_id = 0 if last is None else last + 1
        if next_id in planned:
            end = self._position(next_id)
            # The last version the batch read: its end's, or the one before where it ended a version.
            through = end.version if end.index >= 0 else end.version - 1
            if through > self.upto:
                raise UnreadableIncrement(
                    f"{self.checkpoint} recorded a batch through version {through} of {self.path}, which is at "
                    f"version {self.upto}: the table was restored to an earlier version", hint=self._reset_hint())
            files = tuple(f for pos, f in self._after(start, through) if (pos.version, pos.index) <= (end.version, end.index))
            whole = start is None and not self._plain(files)
            yield Batch(next_id, files, end, snapshot=through if whole else None)
            start, next_id = end, next_id + 1
        yield from self._plan(start, next_id)

    def _plan(self, start: Position | None, next_id: int) -> Iterator[Batch]:
        """New batches from `start` through `upto`. The last one ends past `upto` (as a Delta stream's
        does), so commits that added no rows (a DELETE, table properties) are not left unread; where
        only such commits came, a batch of no files moves the position past them."""
        caught_up = Position(self.upto + 1, -1, False)
        pending = list(self._after(start, self.upto))
        if not pending:
            if start != caught_up:
                yield Batch(next_id, (), caught_up)
            return
        if start is None and not self._plain(f for _, f in pending):
            yield Batch(next_id, tuple(f for _, f in pending), caught_up, snapshot=self.upto)
            return
        files: list[AddedFile] = []
        size = 0
        for i, (pos, f) in enumerate(pending):
            files.append(f)
            size += f.size
            following = pending[i + 1] if i + 1 < len(pending) else None
            if following is None:
                yield Batch(next_id, tuple(files), caught_up)
            elif size >= self.max_bytes:
                ends_version = (following[0].version, following[0].starting) != (pos.version, pos.starting)
                yield Batch(next_id, tuple(files), _finished(pos) if ends_version else pos)
                files, size, next_id = [], 0, next_id + 1

    def begin(self, batch: Batch) -> None:
        """Record the batch's end before it is processed (a replayed batch's is already there)."""
        target = self.checkpoint / "offsets" / str(batch.id)
        if target.exists():
            return
        meta = {"batchWatermarkMs": 0, "batchTimestampMs": int(time.time() * 1000), "conf": {}}
        offset = {"sourceVersion": 1, "reservoirId": self.table_id, "reservoirVersion": batch.end.version,
                  "index": batch.end.index, "isStartingVersion": batch.end.starting}
        _write_atomically(target, "\n".join([OFFSET_LOG, json.dumps(meta), json.dumps(offset)]))

    def commit(self, batch: Batch) -> None:
        """The batch is processed: the next run starts after it. Old batches' records are dropped."""
        _write_atomically(self.checkpoint / "commits" / str(batch.id), f"{OFFSET_LOG}\n{json.dumps({'nextBatchWatermarkMs': 0})}")
        for folder in ("offsets", "commits"):
            for old in self._ids(folder)[:-BATCHES_KEPT]:
                (self.checkpoint / folder / str(old)).unlink(missing_ok=True)

    # -- the table's log -----------------------------------------------------------------------------
    def _after(self, start: Position | None, upto: int) -> Iterator[tuple[Position, AddedFile]]:
        """Each file after `start` up to version `upto`, with its position; from a snapshot at `upto`
        where nothing was read yet."""
        if start is None:
            for i, f in enumerate(self._snapshot_at(upto)):
                yield Position(upto, i, True), f
            return
        if start.version <= upto:
            files = self._snapshot_at(start.version) if start.starting else self._added(start.version)
            for i in range(max(start.index + 1, 0), len(files)):
                yield Position(start.version, i, start.starting), files[i]
        for version in range(start.version + 1, upto + 1):
            for i, f in enumerate(self._added(version)):
                yield Position(version, i, False), f

    def _snapshot_at(self, version: int) -> list[AddedFile]:
        from deltalake import DeltaTable

        return self._files_of(self._table if version == self.upto else DeltaTable(self.path, version=version))

    @staticmethod
    def _files_of(table) -> list[AddedFile]:
        """A snapshot's files, oldest first (as a Delta stream's first batch orders them). delta-rs does
        not say which file has a deletion vector: where the table may have them, none counts as plain."""
        import pyarrow as pa

        from lakehouse.delta_reader import reader_features

        plain = "deletionVectors" not in reader_features(table)
        adds = pa.RecordBatchReader.from_stream(table.get_add_actions(flatten=True)).read_all()
        rows = adds.select(["path", "size_bytes", "modification_time"]).to_pylist()
        rows.sort(key=lambda r: (r["modification_time"], r["path"]))
        return [AddedFile(r["path"], r["size_bytes"], plain) for r in rows]

    def _added(self, version: int) -> list[AddedFile]:
        """The files commit `version` added as new rows; none where it also removed rows."""
        name = f"{self._log}/{version:0{LOG_DIGITS}d}.json"
        try:
            with self._fs.open_input_stream(name) as stream:
                actions = [json.loads(line) for line in stream.read().decode().splitlines() if line.strip()]
        except FileNotFoundError:
            raise UnreadableIncrement(
                f"version {version} of {self.path} is no longer in its log, and {self.checkpoint} has not read it",
                hint=f"{self._reset_hint()}; keep the log longer (delta.logRetentionDuration)") from None
        if any(a["remove"].get("dataChange", True) for a in actions if "remove" in a):
            return []
        return [AddedFile(a["add"]["path"], a["add"]["size"], a["add"].get("deletionVector") is None)
                for a in actions if "add" in a and a["add"].get("dataChange", True)]

    # -- rows ------------------------------------------------------------------------------------------
    def _plain(self, files) -> bool:
        """Whether these files' rows are their Parquet rows, in a table whose layout adds nothing to them."""
        return self.plain_layout and all(f.plain for f in files)

    def _absolute(self, path: str) -> str:
        return path if "://" in path or path.startswith("file:") else f"{self.path.rstrip('/')}/{unquote(path)}"

    def read(self, batch: Batch) -> DataFrame:
        """The batch's rows. Plain files are read as Parquet with the table's schema (a file written
        before a column was added gives it as null, as Delta does); a first run's snapshot whose files
        are not plain is read through Delta, whole."""
        if batch.snapshot is not None:
            return self.spark.read.format("delta").option("versionAsOf", batch.snapshot).load(self.path)
        if self._plain(batch.files):
            return self.spark.read.schema(self.schema).parquet(*[self._absolute(f.path) for f in batch.files])
        raise UnreadableIncrement(
            f"{self.path} has deletion vectors, partitions or column mapping in files added after "
            f"{self.checkpoint} started: they cannot be read by increment", hint=self._reset_hint())
