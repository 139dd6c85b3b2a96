"""Delta tables read in Python with delta-rs, no JVM: what metadata commands need in well under 2 s.

Versions and row counts come from the Delta log (each file's `numRecords`); rows come from the
Parquet files the log lists (read with pyarrow's Parquet reader, filtered in Arrow). That suits
meta.lineage and one transaction's rows; Spark remains the engine for everything else. Timestamps
come back naive, in UTC and to the microsecond, as Spark gives them (nanoseconds or time zones would
pull in pandas).

A table's files are its rows only without reader features that change what a file means: deletion
vectors (rows deleted in place) and column mapping (physical column names) are read through delta-rs's
own scan instead, and a feature delta-rs cannot read at all (type widening, anything newer) raises
`NeedsSpark`, on which a command falls back to Spark (`lakehouse.spark_reader`) with a one-line note.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from lakehouse.config import Config
from lakehouse.errors import TidewaterError

# Reader features after which the log's files are still the table's rows, as written.
PLAIN_FEATURES = {"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"}
# Reader features delta-rs's scan applies (checked against Spark's Delta 4.4 tables in the tests).
SCANNED_FEATURES = {"deletionVectors", "columnMapping"}


class NeedsSpark(TidewaterError):
    """A table uses a Delta reader feature that delta-rs cannot read: use Spark for this command."""


def delta_exists(path: str) -> bool:
    return (Path(path) / "_delta_log").is_dir() if "://" not in path else True


def _table(cfg: Config, name: str):
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    ref = cfg.table(name)
    if not delta_exists(ref.path):
        return None
    try:
        return DeltaTable(ref.path)
    except TableNotFoundError:  # a _delta_log folder without a commit yet
        return None
    except DeltaError as err:
        raise NeedsSpark(f"{name}: delta-rs cannot open it ({str(err).splitlines()[0]})") from None


def reader_features(table) -> set[str]:
    """The reader features a table's protocol names (reader version 2 is column mapping)."""
    protocol = table.protocol()
    features = set(protocol.reader_features or ())
    if protocol.min_reader_version == 2:
        features.add("columnMapping")
    return features


def _scanned(name: str, table) -> set[str]:
    """The features only delta-rs's scan applies; NeedsSpark for those it cannot read."""
    features = reader_features(table)
    unreadable = features - PLAIN_FEATURES - SCANNED_FEATURES
    if unreadable:
        raise NeedsSpark(f"{name} uses Delta reader feature {', '.join(sorted(unreadable))}, which delta-rs cannot read")
    return features & SCANNED_FEATURES


def _scan(table, query: str = "SELECT * FROM t"):
    """Rows through delta-rs's DataFusion scan (deletion vectors and column mapping applied)."""
    import pyarrow as pa
    from deltalake import QueryBuilder

    # From the Arrow stream, not pa.table(): that probes for pandas, which costs as much as the read.
    return pa.RecordBatchReader.from_stream(QueryBuilder().register("t", table).execute(query)).read_all()


def table_version(cfg: Config, name: str) -> int | None:
    """The table's latest Delta version, or None when it has never been written."""
    table = _table(cfg, name)
    return None if table is None else table.version()


def table_state(cfg: Config, name: str) -> dict[str, Any] | None:
    """name, version, rows (from the log's per-file record counts) and path; None if not written."""
    table = _table(cfg, name)
    if table is None:
        return None
    counts = table.get_add_actions(flatten=True).column("num_records").to_pylist()
    if "deletionVectors" in _scanned(name, table) or None in counts:  # the log alone does not say
        rows = _scan(table, "SELECT count(*) AS n FROM t").column("n")[0].as_py()
    else:
        rows = sum(counts)
    return {"name": name, "version": table.version(), "rows": int(rows), "path": cfg.table(name).path}


def _plain_type(t):
    """The Arrow type as rows should come back: naive UTC timestamps, plain strings, nested alike."""
    import pyarrow as pa

    if pa.types.is_timestamp(t):
        return pa.timestamp("us")
    if pa.types.is_string_view(t) or pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_binary_view(t) or pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(_plain_type(t.field(i).type)) for i in range(t.num_fields)])
    if pa.types.is_map(t):
        return pa.map_(t.key_field.with_type(_plain_type(t.key_type)), t.item_field.with_type(_plain_type(t.item_type)))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(t.value_field.with_type(_plain_type(t.value_type)))
    return t


def _plain(rows):
    """One file's rows in the plain types: Spark's files (INT96, naive) and delta-rs's (UTC) then agree."""
    import pyarrow as pa

    return rows.cast(pa.schema([f.with_type(_plain_type(f.type)) for f in rows.schema]))


def arrow_rows(rows, where: Callable | None = None) -> list[dict]:
    """An Arrow table's rows as dicts (maps as dicts); `where(arrow_table)` gives a boolean mask."""
    import pyarrow as pa

    plain = pa.schema([f.with_type(_plain_type(f.type)) for f in rows.schema])
    if where is not None:  # filter first: casting every row of a big table costs more than the read
        if any(pa.types.is_string_view(f.type) or pa.types.is_binary_view(f.type) for f in rows.schema):
            rows = rows.cast(plain)  # delta-rs's scan gives view types, which not every kernel takes
        rows = rows.filter(where(rows))
    return rows.cast(plain).to_pylist(maps_as_pydicts="strict")


def _arrow(name: str, table, columns: list[str] | None):
    """The table's current rows as one Arrow table; with `columns`, only those, a column some (or
    all) files lack being null there."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if _scanned(name, table):
        return _scan(table, f"SELECT {', '.join(columns)} FROM t" if columns else "SELECT * FROM t")
    parts = []
    for uri in table.file_uris():
        file = pq.ParquetFile(uri.removeprefix("file://"))
        parts.append(_plain(file.read(columns=[c for c in columns if c in file.schema_arrow.names]
                                      if columns else None)))
    if not parts:
        return None
    rows = pa.concat_tables(parts, promote_options="permissive")  # older files may lack newer columns
    for c in columns or ():
        if c not in rows.column_names:
            rows = rows.append_column(c, pa.nulls(len(rows)))
    return rows


def read_rows(cfg: Config, name: str, where: Callable | None = None,
              columns: list[str] | None = None) -> list[dict]:
    """The table's current rows as dicts (only `columns`, if given: a file written before a column
    existed gives nulls); `where(arrow_table)` gives a boolean mask; [] if not written."""
    table = _table(cfg, name)
    rows = None if table is None else _arrow(name, table, columns)
    return [] if rows is None else arrow_rows(rows, where)


def distinct_rows(cfg: Config, name: str, columns: list[str]) -> list[dict]:
    """Each distinct combination of `columns` once, deduplicated in Arrow before any Python object
    is made (bronze's per-file record: millions of rows, a few hundred combinations)."""
    table = _table(cfg, name)
    rows = None if table is None else _arrow(name, table, columns)
    if rows is None:
        return []
    return arrow_rows(_plain(rows).group_by(columns).aggregate([]))  # view types are not every kernel's


def _run_column(name: str) -> bool:
    """A clock or an id of the run that wrote the row: differs between two runs on the same input."""
    return name.endswith("_at") or name.endswith("run_id") or name == "quarantine_id"


def _comparable(value, root: str):
    if isinstance(value, str):
        return value.replace(root, "<root>")
    if isinstance(value, float):
        return round(value, 6)  # sums over other partitionings differ in the last bits
    return value


def content_digest(cfg: Config, name: str) -> tuple[int, str]:
    """Row count and an order-free SHA-256 of the table's rows without run clocks, run ids and the
    storage root: equal for two roots whose jobs ran on the same input (local and cluster, say)."""
    rows = []
    for row in read_rows(cfg, name):
        kept = {k: _comparable(v, str(cfg.root)) for k, v in sorted(row.items()) if not _run_column(k)}
        rows.append(json.dumps(kept, sort_keys=True, default=str))
    return len(rows), hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()


def table_inventory(cfg: Config) -> list[dict[str, Any]]:
    """Every configured table that has been written: name, version, rows, path."""
    return [state for name in cfg.table_names() if (state := table_state(cfg, name))]
