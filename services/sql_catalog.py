"""What BI tools see through the SQL server: every configured table on storage, and the BI views.

Tables are registered through the running server itself (CREATE ... IF NOT EXISTS over JDBC), so the
shared metastore names them for every client without another Spark process; jobs of the `hive`
catalog register what they write as they go.
"""

from __future__ import annotations

import getpass

from lakehouse.catalog import registration_statements
from lakehouse.config import Config
from lakehouse.delta_reader import delta_exists
from monitoring.bi_views import BI_DATABASE, view_statements
from services.process import ServiceError


def connect(cfg: Config, user: str | None = None):
    """A DB-API connection to the SQL server (PyHive; HiveServer2 protocol), as BI tools make one."""
    from pyhive import hive

    try:
        return hive.connect(host=cfg.services.host, port=cfg.services.sql.port, username=user or getpass.getuser())
    except Exception as err:
        raise ServiceError(f"cannot reach the SQL server at {cfg.services.host}:{cfg.services.sql.port}: {err}",
                           hint="`tidewater services start sql`") from None


def server_message(err: Exception) -> str:
    """The SQL server's own one-line message inside a PyHive error (not its Java stack)."""
    status = getattr(err.args[0], "status", None) if err.args else None
    message = getattr(status, "errorMessage", None) or str(err)
    return message.removeprefix("Error running query: ").splitlines()[0]


def sync_catalog(cfg: Config) -> str:
    """Register the configured tables that exist and (re)create the BI views whose tables all exist."""
    statements = registration_statements(cfg)
    views = view_statements(cfg, exists=lambda name: delta_exists(cfg.table(name).path))
    with connect(cfg) as conn:
        cursor = conn.cursor()
        for stmt in [*statements, f"CREATE DATABASE IF NOT EXISTS {BI_DATABASE}", *views]:
            try:
                cursor.execute(stmt)
            except Exception as err:
                raise ServiceError(f"sql: registering tables failed: {server_message(err)}",
                                   hint=f"statement: {stmt.splitlines()[0][:120]}") from None
    tables = sum(1 for s in statements if s.startswith("CREATE TABLE"))
    return f"sql: {tables} tables and {len(views)} BI views registered in the shared metastore"
