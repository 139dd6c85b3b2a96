"""meta.audit_log: who did what, to which tables and model versions, when, and how it ended.

One row per CLI command, job run, SQL query, denied access and scoring API call (the API writes its
rows in batches). The table is created with `delta.appendOnly`, so Delta itself refuses an UPDATE
or DELETE of what was recorded. Queries are recorded by their fingerprint and the tables they name,
never by their text (a WHERE clause may hold personal data).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib.util
import logging
import typing
from dataclasses import dataclass, field

from lakehouse.config import Config
from lakehouse.identity import Identity

log = logging.getLogger(__name__)


@dataclass
class AuditEntry:
    """A row of meta.audit_log."""

    at: dt.datetime
    actor: str
    role: str
    surface: str  # cli | job | api
    action: str  # the command ("models card"), the job, or the API route
    outcome: str  # ok | denied | failed
    detail: str | None = None  # a query's fingerprint, a denial's missing grant, a job's summary
    tables: list[str] = field(default_factory=list)  # layer.table or layer.table@version
    models: list[str] = field(default_factory=list)  # name vN
    error: str | None = None
    run_id: str | None = None  # meta.lineage's run of a job


PROPERTIES = {"delta.appendOnly": "true"}


def arrow_schema():
    """AuditEntry's columns for delta-rs, derived without PySpark: commands that need no JVM write it too."""
    import pyarrow as pa

    atoms = {str: pa.string(), dt.datetime: pa.timestamp("us", tz="UTC")}
    hints = typing.get_type_hints(AuditEntry)
    fields = []
    for f in dataclasses.fields(AuditEntry):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        kind = pa.list_(pa.field("element", pa.string(), True)) if typing.get_origin(hint) is list \
            else atoms[args[0] if args else hint]
        fields.append(pa.field(f.name, kind, True))
    return pa.schema(fields)


def entry(who: Identity, surface: str, action: str, outcome: str = "ok", **fields) -> AuditEntry:
    return AuditEntry(dt.datetime.now(dt.timezone.utc), who.name, who.role, surface, action, outcome, **fields)


def fingerprint(text: str) -> str:
    """A query's fingerprint: the same text, the same 16 hex characters; the text is not recorded."""
    return "sha256:" + hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:16]


def record(cfg: Config, rows: list[AuditEntry], spark=None) -> None:
    """Append rows: delta-rs where it is installed and the table is local (no JVM), else Spark (the
    training environment). A failure is a warning: the action happened; losing its record must be loud."""
    if not rows:
        return
    ref = cfg.table(cfg.access.audit_table)
    try:
        if "://" not in ref.path and importlib.util.find_spec("deltalake") is not None:
            import pyarrow as pa
            from deltalake import DeltaTable, write_deltalake

            schema = arrow_schema()
            DeltaTable.create(ref.path, schema, mode="ignore", configuration=PROPERTIES)
            write_deltalake(ref.path, pa.Table.from_pylist([dataclasses.asdict(r) for r in rows], schema=schema),
                            mode="append")
        else:
            from lakehouse.schemas import spark_schema
            from lakehouse.tables import append_rows, create_if_missing

            create_if_missing(spark, ref.path, spark_schema(AuditEntry), PROPERTIES)
            append_rows(spark, ref, rows, spark_schema(AuditEntry))
    except Exception as err:  # noqa: BLE001
        log.warning("could not write %d row(s) to %s: %s", len(rows), ref.name, str(err).splitlines()[0])


def since(text: str) -> dt.datetime:
    """`--since`: an ISO time (UTC unless it says otherwise) or an age such as 30m, 2h, 7d."""
    from lakehouse.errors import ConfigError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    now = dt.datetime.now(dt.timezone.utc)
    if text[:-1].isdigit() and text[-1:] in units:
        return now - dt.timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since {text!r} is neither an ISO time nor an age", hint="for example 2h or 2026-12-05T10:00") from None
    return at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)


def read(cfg: Config, user: str | None = None, since: dt.datetime | None = None, limit: int = 200) -> list[dict]:
    """The newest rows first, filtered by actor and time (delta-rs, no JVM)."""
    from deltalake import DeltaTable

    from lakehouse.delta_reader import delta_exists

    ref = cfg.table(cfg.access.audit_table)
    if not delta_exists(ref.path):
        return []
    rows = DeltaTable(ref.path).to_pyarrow_table().to_pylist()
    rows = [r for r in rows if (user is None or r["actor"] == user) and (since is None or r["at"] >= since)]
    return sorted(rows, key=lambda r: r["at"], reverse=True)[:limit]


_notes: dict = {}
_in_command: list[bool] = []  # set while a CLI command runs: its one row gathers what it touched


def report(cfg: Config, who: Identity, action: str, outcome: str, **fields) -> None:
    """Inside a command, add to its row; elsewhere (a notebook, a library call) write a row of its own."""
    if _in_command:
        note(**fields)
    else:
        record(cfg, [entry(who, "library", action, outcome, **fields)])


def note(**fields) -> None:
    """What the running command adds to its audit row (tables, detail, outcome), before it ends."""
    for key, value in fields.items():
        if isinstance(value, list):
            _notes.setdefault(key, []).extend(v for v in value if v not in _notes.get(key, []))
        else:
            _notes[key] = value


def begin_command() -> None:
    _notes.clear()
    _in_command.append(True)


def take_notes() -> dict:
    notes = dict(_notes)
    _notes.clear()
    _in_command.clear()
    return notes
