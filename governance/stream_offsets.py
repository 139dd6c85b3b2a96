"""Whether every Delta stream reading a table has read all of it, from the streams' checkpoints.

Erasing vacuums the files a DELETE rewrote at once. A stream that has not yet read a commit would
then look for files that are gone (or, told to ignore missing files, silently lose other customers'
rows), so an erasure waits until the streams over its tables have caught up. A stream's checkpoint
(`<root>/_checkpoints/<job>/<name>`) says, per committed micro-batch, the table (its Delta id) and
the version it reads next; the table's log says which later commits added rows. Silver's reader of
bronze (lakehouse.delta_increments) keeps its progress in the same layout, so it is read alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lakehouse.config import Config, TableRef
from lakehouse.delta_increments import LOG_DIGITS, source_offsets


@dataclass(frozen=True)
class StreamLag:
    checkpoint: str  # <job>/<name>
    table: str
    unread: list[int]  # versions that added rows the stream has not read


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def _read_positions(checkpoint: Path) -> list[dict]:
    """The Delta source offsets of the checkpoint's last committed micro-batch."""
    commits = [int(p.name) for p in (checkpoint / "commits").glob("[0-9]*") if p.name.isdigit()]
    if not commits:
        return []
    offsets = checkpoint / "offsets" / str(max(commits))
    return source_offsets(offsets) if offsets.is_file() else []


def _table_id(ref: TableRef) -> str:
    from deltalake import DeltaTable

    return DeltaTable(ref.path).metadata().id


def _added_files(ref: TableRef, version: int) -> int:
    """Files commit `version` added as new rows."""
    commit = Path(ref.path) / "_delta_log" / f"{version:0{LOG_DIGITS}d}.json"
    if not commit.is_file():
        return 0
    return sum(bool(json.loads(line).get("add", {}).get("dataChange")) for line in _lines(commit))


def _snapshot_files(ref: TableRef, version: int) -> int:
    from deltalake import DeltaTable

    return len(DeltaTable(ref.path, version=version).file_uris())


def unread_versions(ref: TableRef, position: dict, latest: int) -> list[int]:
    """Versions up to `latest` holding rows a stream at this Delta source offset has not read.

    The offset names the version it is in and the index of the last file it read there (-1: none
    yet); a stream that started from a snapshot (isStartingVersion) reads that version's whole
    snapshot first, then each later commit's added files.
    """
    version, index = position["reservoirVersion"], position.get("index", -1)
    files = _snapshot_files if position.get("isStartingVersion") else _added_files
    first_unread = version if index < files(ref, version) - 1 else version + 1
    return [v for v in range(first_unread, latest + 1)
            if (v == version and files(ref, v) > 0) or (v != version and _added_files(ref, v) > 0)]


def stream_lags(cfg: Config, refs: list[TableRef], versions: dict[str, int]) -> list[StreamLag]:
    """Streams (by checkpoint) over these local tables that have not read every commit adding rows."""
    ids = {_table_id(ref): ref for ref in refs if "://" not in ref.path}
    out = []
    for offsets in sorted((cfg.root / "_checkpoints").glob("*/*/offsets")):
        checkpoint = offsets.parent
        for position in _read_positions(checkpoint):
            ref = ids.get(position["reservoirId"])
            if ref is None:
                continue
            unread = unread_versions(ref, position, versions[ref.name])
            if unread:
                out.append(StreamLag(f"{checkpoint.parent.name}/{checkpoint.name}", ref.name, unread))
    return out
