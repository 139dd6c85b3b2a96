"""SQLAlchemy dialect `sparksql://` for BI tools on the SQL server: PyHive's Hive dialect, Spark's listings.

Spark answers `SHOW TABLES IN db` with (namespace, tableName, isTemporary) where Hive answers with the
name alone, so PyHive's `hive://` inspector lists the schema's name once per table and calls every
table a view. Superset, Metabase's SQLAlchemy-based importers and pandas list tables through the
inspector, so this dialect reads the right column and asks `SHOW VIEWS` for views.
"""

from __future__ import annotations

from pyhive.sqlalchemy_hive import HiveDialect
from sqlalchemy import text


class SparkSqlDialect(HiveDialect):
    name = "sparksql"

    def _names(self, connection, command: str, schema: str | None) -> list[str]:
        query = command + (" IN " + self.identifier_preparer.quote_identifier(schema) if schema else "")
        rows = connection.execute(text(query)).fetchall()
        return [row[1] for row in rows if not row[2]]  # (namespace, name, isTemporary)

    def get_table_names(self, connection, schema=None, **kw):
        views = set(self.get_view_names(connection, schema))
        return [n for n in self._names(connection, "SHOW TABLES", schema) if n not in views]

    def get_view_names(self, connection, schema=None, **kw):
        return self._names(connection, "SHOW VIEWS", schema)

    def has_table(self, connection, table_name, schema=None, **kw):
        return table_name in self._names(connection, "SHOW TABLES", schema)
