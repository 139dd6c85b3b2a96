"""What BI tools see through the SQL server: every configured table on storage, and the BI views.

Tables are registered through the running server itself (CREATE ... IF NOT EXISTS over JDBC), so the
shared metastore names them for every client without another Spark process; jobs of the `hive`
catalog register what they write as they go.
"""

from __future__ import annotations

from lakehouse.catalog import registration_statements
from lakehouse.config import Config
from lakehouse.delta_reader import delta_exists
from lakehouse.grants import role_view_statements
from lakehouse.tokens import client_credentials
from monitoring.bi_views import BI_DATABASE, view_statements
from services.process import ServiceError


def connect(cfg: Config, user: str | None = None):
    """A DB-API connection to the SQL server (PyHive; HiveServer2 protocol), as BI tools make one:
    the user (default: the current identity) signs in with its caller token."""
    from pyhive import hive

    user, token = client_credentials(cfg, user)
    try:
        return hive.connect(host=cfg.services.host, port=cfg.services.sql.port, username=user, password=token,
                            auth="CUSTOM")
    except Exception as err:
        raise ServiceError(f"cannot reach the SQL server at {cfg.services.host}:{cfg.services.sql.port}: {err}",
                           hint="`tidewater services start sql`") from None


def server_message(err: Exception) -> str:
    """The SQL server's own one-line message inside a PyHive error (not its Java stack)."""
    status = getattr(err.args[0], "status", None) if err.args else None
    message = getattr(status, "errorMessage", None) or str(err)
    return message.removeprefix("Error running query: ").splitlines()[0]


def table_columns(cfg: Config, name: str) -> list[str] | None:
    """A table's columns from its Delta log (no JVM); None where it has not been written."""
    from deltalake import DeltaTable

    path = cfg.table(name).path
    return [f.name for f in DeltaTable(path).schema().fields] if delta_exists(path) else None


def sync_catalog(cfg: Config) -> str:
    """Register the configured tables that exist and (re)create the BI views whose tables all exist."""
    statements = registration_statements(cfg)
    views = view_statements(cfg, exists=lambda name: delta_exists(cfg.table(name).path))
    views += role_view_statements(cfg, lambda name: table_columns(cfg, name))
    with connect(cfg) as conn:
        cursor = conn.cursor()
        for stmt in [*statements, f"CREATE DATABASE IF NOT EXISTS {BI_DATABASE}", *views]:
            try:
                cursor.execute(stmt)
            except Exception as err:
                raise ServiceError(f"sql: registering tables failed: {server_message(err)}",
                                   hint=f"statement: {stmt.splitlines()[0][:120]}") from None
    tables = sum(1 for s in statements if s.startswith("CREATE TABLE"))
    roles = [r for r, role in cfg.access.roles.items() if role.restricted]
    return (f"sql: {tables} tables and {sum(' VIEW bi.' in v for v in views)} BI views registered in the shared "
            f"metastore; masked views for {', '.join(roles) or 'no restricted role'}")
