"""Soda's Spark data source over our session, with a cursor that leaves the process's clock alone.

soda-sparkdf's cursor wraps every collect in freezegun's `freeze_time` so that Spark's timestamps
come back as naive UTC whatever the Python process's time zone. freeze_time swaps `datetime` in every
loaded module, for every thread: a silver stream refined beside a Soda check then resolved its type
hints to freezegun's FakeDatetime. This cursor collects a timestamp column as its microseconds since
the epoch (`unix_micros`) and builds the same naive UTC datetime in Python: nothing is patched, and a
thread beside a check (another entity's stream, the scheduler's clock, the scoring API) keeps the real one.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import TimestampType
from soda_sparkdf.common.data_sources.sparkdf_data_source import (
    SparkDataFrameCursor,
    SparkDataFrameDataSourceConnection,
    SparkDataFrameDataSourceConnectionWrapper,
    SparkDataFrameDataSourceImpl,
)
from soda_sparkdf.common.data_sources.sparkdf_data_source_connection import (
    SparkDataFrameDataSource as SparkDataFrameDataSourceModel,
)

_EPOCH = dt.datetime(1970, 1, 1)


def utc_from_micros(micros: int | None) -> dt.datetime | None:
    """The naive UTC datetime Soda's own cursor gives for a timestamp (what freeze_time made of it)."""
    return None if micros is None else _EPOCH + dt.timedelta(microseconds=micros)


class UtcCursor(SparkDataFrameCursor):
    """Soda's cursor, its fetches without the clock freeze (same rows, same pages)."""

    def execute(self, sql: str) -> None:
        super().execute(sql)  # the description keeps the query's own types
        self._timestamps = [i for i, f in enumerate(self.df.schema.fields) if isinstance(f.dataType, TimestampType)]

    def _rows(self, df: DataFrame) -> list[tuple]:
        if not self._timestamps:
            return [tuple(row) for row in df.collect()]
        # by position: a query's columns need not have distinct names
        named = df.toDF(*[f"c{i}" for i in range(len(df.columns))])
        micros = named.select([F.unix_micros(c).alias(c) if i in self._timestamps else F.col(c)
                               for i, c in enumerate(named.columns)])
        return [tuple(utc_from_micros(v) if i in self._timestamps else v for i, v in enumerate(row))
                for row in micros.collect()]

    def fetchall(self) -> tuple[tuple]:
        return tuple(self._rows(self.df))

    def fetchmany(self, size: int) -> tuple[tuple]:
        rows = self._rows(self.df.offset(self.cursor_index).limit(size))
        self.cursor_index += len(rows)
        return tuple(rows)

    def fetchone(self) -> tuple | None:
        if self._cached_rows is None or self.cursor_index >= self._cache_index + self.CACHE_ROW_COUNT:
            self._cached_rows = self._rows(self.df.offset(self.cursor_index).limit(self.CACHE_ROW_COUNT))
            self._cache_index = self.cursor_index
        at = self.cursor_index - self._cache_index
        if at >= len(self._cached_rows):
            return None
        self.cursor_index += 1
        return self._cached_rows[at]


class _UtcConnection(SparkDataFrameDataSourceConnectionWrapper):
    def cursor(self) -> UtcCursor:
        return UtcCursor(self._session)


def data_source(spark: SparkSession, name: str) -> SparkDataFrameDataSourceImpl:
    """Soda's data source over an existing session (as its `from_existing_session`), with UtcCursor."""
    properties = {"spark_session": spark, "schema_": name, "use_catalog": False, "catalog": None}
    model = SparkDataFrameDataSourceModel(name=name, connection_properties=properties)
    connection = SparkDataFrameDataSourceConnection(name=name, connection_properties=properties,
                                                    connection=_UtcConnection(spark))
    return SparkDataFrameDataSourceImpl(data_source_model=model, connection=connection)
