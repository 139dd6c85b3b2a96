"""The configuration is the catalog: configured Delta tables get their names when SQL asks for them.

An embedded Derby metastore admits one process at a time, so a stream, a job and a SQL shell could
not share it. Instead a session declares a configured table the first time a query names it (jobs
read and write paths and need no names), and every configured table found under the storage root
is written to <root>/catalog/register.sql for `spark-sql -i`.

Declaring is per table on demand because each `CREATE TABLE ... LOCATION` loads the table's Delta
snapshot: about 0.75 s a table, 24 s for the demo's 32 at every session start.
"""

from __future__ import annotations

import re

from pyspark.sql import DataFrame, SparkSession

from lakehouse.config import Config, TableRef
from lakehouse.delta_reader import delta_exists
from lakehouse.errors import AccessDenied

RUN_SQL_ON_FILES = "spark.sql.runSQLOnFiles"
# name -> location registered in this process's catalog (one SparkSession per process).
_registered: dict[str, str] = {}


def register_table(spark: SparkSession, ref: TableRef) -> None:
    """Make `ref.name` resolve to `ref.path` in this session (re-pointing it if the root moved)."""
    if _registered.get(ref.name) == ref.path:
        return
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {ref.layer}")
    if ref.name in _registered:
        _drop(spark, ref.name)  # external table: drops the name, not the data
    spark.sql(f"CREATE TABLE IF NOT EXISTS {ref.name} USING DELTA LOCATION '{ref.path}'")
    _registered[ref.name] = ref.path


def register_written(spark: SparkSession, cfg: Config, names) -> None:
    """Name the configured tables a job wrote in a shared (hive) catalog, for every other client to see."""
    configured = set(cfg.table_names())
    for name in names:
        if name in configured and delta_exists(cfg.table(name).path):
            register_table(spark, cfg.table(name))


def named_in(cfg: Config, text: str) -> list[TableRef]:
    """The configured tables a query names (`layer.table`, not inside a longer name or a path)."""
    refs = []
    for name in cfg.table_names():
        if re.search(rf"(?<![\w.`/]){re.escape(name)}(?![\w])", text, flags=re.IGNORECASE):
            refs.append(cfg.table(name))
    return refs


def _drop(spark: SparkSession, name: str) -> None:
    """Forget a name this session declared (a table or a restricted identity's view)."""
    kind = "VIEW" if _registered.pop(name, "").startswith("view:") else "TABLE"
    spark.sql(f"DROP {kind} IF EXISTS {name}")


def register_view(spark: SparkSession, ref: TableRef, hidden: list[str] | None = None) -> None:
    """Name `ref` as a view without the `hidden` columns, over the table under a database no
    restricted query may name (lakehouse.grants)."""
    from lakehouse.grants import HIDDEN_PREFIX

    behind = TableRef(name=f"{HIDDEN_PREFIX}{ref.name}", path=ref.path)
    if _registered.get(ref.name) == f"view:{ref.path}":
        return
    register_table(spark, behind)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {ref.layer}")
    if ref.name in _registered:
        _drop(spark, ref.name)
    shown = [f"`{c}`" for c in spark.table(behind.name).columns if c not in (hidden or [])]
    spark.sql(f"CREATE OR REPLACE VIEW {ref.name} AS SELECT {', '.join(shown)} FROM {behind.name}")
    _registered[ref.name] = f"view:{ref.path}"


def authorize(cfg: Config, query: str):
    """(identity, tables the query names), once the identity may run it; noted for its audit row."""
    from lakehouse import audit, grants
    from lakehouse.identity import identify

    who = identify(cfg)
    refs = named_in(cfg, query)
    fields = {"detail": audit.fingerprint(query), "tables": [r.name for r in refs]}
    try:
        grants.check_query(cfg, who, query, [r.name for r in refs])
    except AccessDenied as err:
        audit.report(cfg, who, "sql", "denied", error=str(err), **fields)
        raise
    audit.report(cfg, who, "sql", "ok", **fields)
    return who, refs


def sql(spark: SparkSession, cfg: Config, query: str) -> DataFrame:
    """`spark.sql(query)` with the configured tables it names declared first (those on storage), as the
    acting identity may see them: a restricted role gets its granted tables as masked views, or a one-line
    denial (recorded in meta.audit_log with the query's fingerprint)."""
    from lakehouse import grants

    who, refs = authorize(cfg, query)
    for ref in refs:
        if not delta_exists(ref.path):
            if ref.name in _registered:  # declared at another root: not this table
                _drop(spark, ref.name)
        elif who.restricted:
            register_view(spark, ref, grants.masked(who, spark.read.format("delta").load(ref.path).columns))
        else:
            register_table(spark, ref)
    if not who.restricted:
        return spark.sql(query)
    # No `delta.`/path`` past the views: off while the query is analyzed (spark.sql analyzes at once),
    # then as it was, for the rest of the session.
    previous = spark.conf.get(RUN_SQL_ON_FILES, "true")
    spark.conf.set(RUN_SQL_ON_FILES, "false")
    try:
        return spark.sql(query)
    finally:
        spark.conf.set(RUN_SQL_ON_FILES, previous)


def registration_statements(cfg: Config) -> list[str]:
    """The SQL that names every configured table on storage (for `spark-sql -i` and the SQL server)."""
    existing = [cfg.table(n) for n in cfg.table_names() if delta_exists(cfg.table(n).path)]
    stmts = [f"CREATE DATABASE IF NOT EXISTS {layer}" for layer in cfg.tables]
    return stmts + [f"CREATE TABLE IF NOT EXISTS {r.name} USING DELTA LOCATION '{r.path}'" for r in existing]


def write_catalog_script(cfg: Config) -> None:
    """<root>/catalog/register.sql: every configured table on storage, for `spark-sql -i`."""
    stmts = registration_statements(cfg)
    script = cfg.root / "catalog" / "register.sql"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("".join(f"{s};\n" for s in stmts))
